//! The fuzz targets of `host_test::fuzz`, briefly (the `fuzz` command runs them for millions of
//! executions), plus random webhook requests through the real component in wasmtime.

use crate::common::*;
use host_test::fuzz::{self, TARGETS};
use host_test::runner::Runner;
use host_test::runtime::Runtime;
use host_test::scenario::{Scenario, Step};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn every_fuzz_target_holds_for_thousands_of_cases() {
    for (name, target) in TARGETS {
        let mut runner = fuzz::runner(3_000);
        if let Err(e) = target(&mut runner) {
            panic!("fuzz target {name} failed: {e}");
        }
    }
}

/// Inputs that once broke (or nearly broke) a parser stay here as regressions.
#[test]
fn regression_corpus() {
    use entra_zenqms::platform::{Method, Request};
    let p = fuzz::Offline::default();
    for body in [
        &b"{\"value\": null}"[..],
        b"{\"value\": [null]}",
        b"{\"value\": [{\"subscriptionId\": 5}]}",
        b"\xff\xfe",
        b"",
        b"{\"value\": [{\"subscriptionId\": \"s\", \"resource\": \"Users/\"}]}",
    ] {
        let req = Request {
            method: Method::Post,
            url: "https://hooks.example/i".into(),
            headers: vec![],
            body: body.to_vec(),
        };
        let inst = entra_zenqms::handlers::Instance {
            id: "i".into(),
            webhook_url: "https://hooks.example/i".into(),
            config: vec![],
            state: Some("{\"version\": 1}".into()),
            budget_ms: 1000,
            inbox: Vec::new(),
        };
        let _ =
            entra_zenqms::handlers::event(&p, &inst, &entra_zenqms::handlers::Event::Webhook(req));
    }
    for q in [
        "validationToken=%",
        "validationToken=%ZZ",
        "validationToken",
        "=&=&",
    ] {
        let url = format!("https://hooks.example/i?{q}");
        assert!(entra_zenqms::platform::url::Url::parse(&url).is_ok());
    }
}

#[test]
fn random_webhook_requests_never_trap_the_component() {
    let s = scenario(vec![entra_user(1)], json!([]), vec![], json!([]));
    let mut runner = Runner::new(
        Runtime::shared(),
        Scenario::from_json(&s.to_string()).unwrap(),
    );
    assert!(
        runner
            .run_step(0, &serde_json::from_value(json!({"deploy": {}})).unwrap())
            .ok
    );
    let mut cases = fuzz::runner(200);
    let strategy = (
        prop_oneof![Just("POST"), Just("GET"), Just("PATCH")],
        "[ -~]{0,60}",
        proptest::collection::vec(any::<u8>(), 0..400),
    );
    let runner = std::cell::RefCell::new(runner);
    cases
        .run(&strategy, |(method, query, body)| {
            let step: Step = serde_json::from_value(json!({"webhook": {
                "method": method, "query": query, "body_text": String::from_utf8_lossy(&body),
            }}))
            .unwrap();
            let rec = runner.borrow_mut().run_step(1, &step);
            let trapped = rec.error.as_deref().is_some_and(|e| e.contains("trapped"));
            prop_assert!(!trapped, "{:?}", rec.error);
            Ok(())
        })
        .unwrap();
    let runner = runner.into_inner();
    assert!(runner.invariants().is_empty(), "{:?}", runner.invariants());
}
