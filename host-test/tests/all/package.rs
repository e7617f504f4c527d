//! The marketplace bundle: validated against the component's `describe`, written with its
//! metadata stamped, the manifest's configuration taken from `describe`, and SHA-256 sums.

use host_test::package::{self, Stamp};
use host_test::runtime::Runtime;
use serde_json::Value;

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
    let wasm = std::fs::read(out.join("entra_zenqms.wasm")).unwrap();
    let manifest_bytes = std::fs::read(out.join("integration.json")).unwrap();
    // The sums are those of the files written.
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert_eq!(
        sums,
        format!(
            "{}  entra_zenqms.wasm\n{}  integration.json\n",
            package::sha256_hex(&wasm),
            package::sha256_hex(&manifest_bytes)
        )
    );

    // The manifest: the wizard as written, the configuration as the component describes it,
    // the contract it needs and the digest of the `.wasm` beside it.
    let d = package::describe(Runtime::shared()).unwrap();
    let m: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(m["configuration"], d.configuration);
    assert_eq!(m["contract"], "zenqms:entra-sync@0.3.0");
    assert_eq!(m["contract"], d.contract.as_str());
    assert_eq!(m["component_sha256"], package::sha256_hex(&wasm).as_str());
    assert_eq!(m["component"], "entra_zenqms.wasm");
    assert_eq!(m["version"], "0.3.0");
    assert_eq!(m["world"]["version"], "0.3.0");
    let exports = m["world"]["exports"].as_array().unwrap();
    assert!(exports.iter().any(|e| e == "describe"), "{exports:?}");
    let source: Value =
        serde_json::from_str(&std::fs::read_to_string(package::default_manifest()).unwrap())
            .unwrap();
    assert_eq!(m["config_wizard"], source["config_wizard"]);
    for key in [
        "permissions",
        "network",
        "webhook",
        "schedule",
        "display_name",
    ] {
        assert_eq!(m[key], source[key], "{key}");
    }
    let scope = m["config_wizard"]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["fields"].as_array().unwrap())
        .find(|f| f["key"] == "scope_groups")
        .expect("the wizard asks for scope_groups");
    assert_eq!(scope["label"], "Scope groups");
    assert_eq!(
        (scope["required"].clone(), scope["secret"].clone()),
        (false.into(), false.into())
    );

    // The `.wasm`'s metadata, read back with wasm-metadata's reader.
    let stamp = Stamp::read(&wasm).unwrap();
    assert_eq!(stamp.name, "entra-zenqms");
    assert_eq!(stamp.version, d.version);
    assert_eq!(stamp.description, d.description);
    assert_eq!(stamp.license, "Apache-2.0");
    assert_eq!(stamp.source, package::DEFAULT_REPOSITORY);
    let commit = stamp.revision.trim_end_matches("-dirty");
    assert!(
        stamp.revision == "unknown"
            || (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "revision: {}",
        stamp.revision
    );
    // Only metadata changed: the stamped component is still a valid component (wasmtime loads
    // what validates; the rewrite copies every other section as it was).
    wasmparser::Validator::new()
        .validate_all(&wasm)
        .expect("the stamped component validates");
    let built = std::fs::read(host_test::runtime::COMPONENT_WASM).unwrap();
    assert!(wasm.len() > built.len() && wasm.len() < built.len() + 4096);
    std::fs::remove_dir_all(&out).ok();
    // Last, so the checks above run whatever the size. 1.5 MiB: the 1 MiB target of
    // docs/performance.md was given up for the `url` crate and the security rules of issue 11,
    // and the admin actions, `describe` and scope of issue 16 added 148 KB (see
    // docs/performance.md, "Component size"); group members carried between calls (issue 15,
    // 2026-12-01) about 14 KB more, within 1.55 MiB; a second step beside the members' read
    // and the opening round's address check (issue 15, twelfth session) about 5 KB more,
    // within 1.56 MiB; a scrubber that no marker or escape can complete a secret with, and
    // admin results scrubbed before they are escaped (two red teams, thirteenth session),
    // about 3 KB more, within 1.57 MiB; the guard's rolling window by the hour, its base read
    // within the budget, links and deactivations written apart, accounts sharing a link, and
    // joined audit causes, and a window that counts every deactivation sent once per user
    // (a bug hunt and five red teams, fourteenth session) about 22 KB more, within 1.59 MiB;
    // a run's dry_run fixed at its start, links found in the forms an admin types, the tenant
    // checked by every call, duplicate links left out of group changes' roles (four bug
    // hunts, sixteenth session), queued groups worked in chunks and a scope change's reads
    // kept for the call, and the red teams' fixes to those (grants checked against hand-made
    // duplicate links, users entering a scope read before they are queued, the walk's counts
    // restored when a step is done again, and two more red teams' fixes), about 40 KB more,
    // within 1.63 MiB; a secret found however an echo spells it (percent-encoded once or
    // twice, JSON- or HTML-escaped, cut short), the guard window's automatic full syncs and
    // lost subscription answers mended (six red teams, eighteenth session), about 9 KB more
    // (1,711,711 bytes against 1,702,610), within 1.64 MiB; a deactivation ZenQMS refused
    // with other changes sent alone, a checkMemberGroups 404 asked again, refused sends not
    // counted by the guard, audit records that keep the change a write exists for, leavers
    // deactivated past a gone scope group, a burst of gone groups recomputed once, no role
    // granted outside the scope (four red teams, nineteenth session), about 19 KB more
    // (1,732,137 bytes), within 1.66 MiB; a group change's grants judged against the scope
    // (`checkMemberGroups` in `$batch`, twentieth session) about 16 KB more (1,750,509 bytes
    // unstamped), within 1.68 MiB.
    assert!(
        wasm.len() < (1 << 20) + (1 << 19) + (1 << 20) * 18 / 100,
        "component under 1.68 MiB: {} bytes",
        wasm.len()
    );
}

#[test]
fn a_manifest_that_disagrees_with_the_component_is_refused() {
    let text = std::fs::read_to_string(package::default_manifest()).unwrap();
    let environment = "{\"key\": \"zenqms_environment\", \"label\": \"ZenQMS environment\", \"type\": \"string\", \"enum\": [\"production\", \"sandbox\"], \"default\": \"production\"";
    // (changed manifest, what the refusal must name)
    let cases = [
        // A key the component does not read (and one it reads not asked).
        (
            text.replace("\"key\": \"dry_run\"", "\"key\": \"dry_rnu\""),
            "dry_rnu",
        ),
        // A key the component reads that the wizard does not ask for.
        (
            text.replace("\"key\": \"scope_groups\"", "\"key\": \"scope_group\""),
            "scope_groups",
        ),
        // A required key marked optional.
        (
            text.replace(
                "{\"key\": \"zenqms_api_token\", \"label\": \"ZenQMS API token\", \"type\": \"string\", \"required\": true",
                "{\"key\": \"zenqms_api_token\", \"label\": \"ZenQMS API token\", \"type\": \"string\", \"required\": false",
            ),
            "required=true",
        ),
        // An optional key marked required.
        (
            text.replace(
                "{\"key\": \"scope_groups\", \"label\": \"Scope groups\", \"type\": \"string\", \"required\": false",
                "{\"key\": \"scope_groups\", \"label\": \"Scope groups\", \"type\": \"string\", \"required\": true",
            ),
            "required=false",
        ),
        // A secret not marked secret.
        (
            text.replace(
                "\"required\": true, \"secret\": true}",
                "\"required\": true, \"secret\": false}",
            ),
            "secret=true",
        ),
        // A plain key marked secret.
        (
            text.replace(
                "\"key\": \"entra_tenant_id\", \"label\": \"Directory (tenant) ID\", \"type\": \"string\", \"format\": \"guid\", \"required\": true, \"secret\": false",
                "\"key\": \"entra_tenant_id\", \"label\": \"Directory (tenant) ID\", \"type\": \"string\", \"format\": \"guid\", \"required\": true, \"secret\": true",
            ),
            "secret=false",
        ),
        // A world the component does not export.
        (
            text.replace("\"on-delete\"]", "\"on-delete\", \"on-pause\"]"),
            "on-pause",
        ),
        // A world without the component's describe export.
        (
            text.replace("\"on-event\", \"describe\",", "\"on-event\","),
            "describe",
        ),
        // The world of another contract version.
        (
            text.replace(
                "\"version\": \"0.3.0\",\n    \"name\": \"integration\"",
                "\"version\": \"0.2.0\",\n    \"name\": \"integration\"",
            ),
            "zenqms:entra-sync@0.3.0",
        ),
        // The ZenQMS token allowed to any configured host again.
        (
            text.replace(
                "\"https://public-api-sandbox.zenqms.com\"]",
                "\"https://public-api-sandbox.zenqms.com\", \"config:zenqms_base_url\"]",
            ),
            "'network'",
        ),
        // A documented ZenQMS host missing from the outbound hosts.
        (
            text.replace(", \"https://public-api-sandbox.zenqms.com\"]", "]"),
            "'network'",
        ),
        // The environment offered with a value the component refuses.
        (
            text.replace(
                environment,
                &environment.replace("\"sandbox\"]", "\"staging\"]"),
            ),
            "staging",
        ),
        // The environment with another default than the component's.
        (
            text.replace(
                environment,
                &environment.replace("\"default\": \"production\"", "\"default\": \"sandbox\""),
            ),
            "defaults to",
        ),
        // The wizard asking for the URL instead of the environment.
        (
            text.replace(
                "\"key\": \"zenqms_environment\"",
                "\"key\": \"zenqms_environment_url\"",
            ),
            "zenqms_environment",
        ),
        // Another component's name.
        (
            text.replace("\"name\": \"entra-zenqms\"", "\"name\": \"entra-sync\""),
            "entra-sync",
        ),
    ];
    let dir = temp("bad");
    for (i, (bad, names)) in cases.iter().enumerate() {
        assert_ne!(bad, &text, "case {i} did not change the manifest");
        let path = dir.join(format!("m{i}.json"));
        std::fs::write(&path, bad).unwrap();
        let err = package::validate(&path, Runtime::shared())
            .expect_err(&format!("case {i} was accepted"));
        eprintln!("case {i}: {err:#}");
        assert!(format!("{err:#}").contains(names), "case {i}: {err:#}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn package_refuses_a_manifest_that_sets_what_it_generates() {
    let text = std::fs::read_to_string(package::default_manifest()).unwrap();
    let bad = text.replacen('{', "{\n  \"component_sha256\": \"0\",", 1);
    let dir = temp("gen");
    let path = dir.join("integration.json");
    std::fs::write(&path, bad).unwrap();
    let err = package::package(&path, &dir.join("dist"), Runtime::shared()).unwrap_err();
    assert!(err.to_string().contains("component_sha256"), "{err:#}");
    std::fs::remove_dir_all(&dir).ok();
}
