//! The marketplace bundle: validated against the component, written with SHA-256 sums.

use host_test::package;
use host_test::runtime::Runtime;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pkg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn package_validates_the_manifest_and_writes_the_bundle() {
    let out = temp("ok");
    let files = package::package(&package::default_manifest(), &out, Runtime::shared()).unwrap();
    assert_eq!(files.len(), 3);
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  entra_zenqms.wasm") && sums.contains("  integration.json"));
    let wasm = std::fs::read(out.join("entra_zenqms.wasm")).unwrap();
    // 1.25 MiB: the 1 MiB target of docs/performance.md was given up for the `url` crate and
    // the security rules of issue 11 (see docs/performance.md, "Component size").
    assert!(
        wasm.len() < (1 << 20) + (1 << 18),
        "component under 1.25 MiB: {} bytes",
        wasm.len()
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_manifest_that_disagrees_with_the_component_is_refused() {
    let text = std::fs::read_to_string(package::default_manifest()).unwrap();
    let cases = [
        // A key the component does not read.
        text.replace("\"key\": \"dry_run\"", "\"key\": \"dry_rnu\""),
        // A required key marked optional.
        text.replace(
            "{\"key\": \"zenqms_api_token\", \"label\": \"ZenQMS API token\", \"type\": \"string\", \"required\": true",
            "{\"key\": \"zenqms_api_token\", \"label\": \"ZenQMS API token\", \"type\": \"string\", \"required\": false",
        ),
        // A secret not marked secret.
        text.replace("\"required\": true, \"secret\": true}", "\"required\": true, \"secret\": false}"),
        // A world the component does not export.
        text.replace("\"on-delete\"]", "\"on-delete\", \"on-pause\"]"),
        // The ZenQMS token allowed to any configured host again.
        text.replace(
            "\"https://public-api-sandbox.zenqms.com\"]",
            "\"https://public-api-sandbox.zenqms.com\", \"config:zenqms_base_url\"]",
        ),
        // A documented ZenQMS host missing from the outbound hosts.
        text.replace(", \"https://public-api-sandbox.zenqms.com\"]", "]"),
        // The environment offered with a value the component refuses.
        text.replace(
            "\"enum\": [\"production\", \"sandbox\"]",
            "\"enum\": [\"production\", \"staging\"]",
        ),
        // The wizard asking for the URL instead of the environment.
        text.replace("\"key\": \"zenqms_environment\"", "\"key\": \"zenqms_environment_url\""),
    ];
    let dir = temp("bad");
    for (i, bad) in cases.iter().enumerate() {
        assert_ne!(bad, &text, "case {i} did not change the manifest");
        let path = dir.join(format!("m{i}.json"));
        std::fs::write(&path, bad).unwrap();
        let err = package::validate(&path, Runtime::shared()).unwrap_err();
        eprintln!("case {i}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
