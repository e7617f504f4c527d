//! `host-test package`: the marketplace bundle. Validates `wit/integration.json` against the
//! built component — the world it exports and imports, and the config keys it actually reads
//! (learned by asking the component itself) — then writes `dist/` with the `.wasm` (built with `--profile component`), the
//! manifest and SHA-256 sums.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::host::runtime::{Instance, Runtime, WitFailure};
use crate::sim::world::World;

/// The manifest fields the validation reads (the file may hold more).
#[derive(Debug, Deserialize)]
struct Manifest {
    name: String,
    version: String,
    component: String,
    world: WorldSpec,
    config_wizard: Wizard,
    permissions: serde_json::Value,
    /// Outbound origins the platform should allow.
    network: Vec<String>,
    webhook: serde_json::Value,
    schedule: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct WorldSpec {
    package: String,
    version: String,
    exports: Vec<String>,
    imports: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Wizard {
    pages: Vec<Page>,
}

#[derive(Debug, Deserialize)]
struct Page {
    fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
struct Field {
    key: String,
    required: bool,
    secret: bool,
    /// The values a choice field offers.
    #[serde(default, rename = "enum")]
    choices: Vec<String>,
}

/// The manifest source, next to the WIT world it describes.
pub fn default_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/integration.json")
}

/// The component's answer to an `on-deploy` with this config (no network: every request denied).
fn deploy_error(runtime: &Runtime, config: Vec<(String, String)>) -> Result<String> {
    let instance = Instance {
        id: "package-check".into(),
        webhook_url: "https://hooks.example/package-check".into(),
        config,
        state: None,
        budget_ms: 1_000,
        inbox: Vec::new(),
    };
    let (_, _, result) = runtime.call(World::offline(chrono::Utc::now()), |b, store| {
        b.call_on_deploy(store, &instance)
    });
    match result? {
        Ok(_) => bail!("the component deployed without any network: cannot probe its config keys"),
        Err(WitFailure { message, .. }) => Ok(message),
    }
}

/// A value of the right shape for a key, so only unknown or missing keys are reported.
fn sample_value(key: &str) -> String {
    match key {
        "entra_tenant_id" | "entra_client_id" => "00000000-0000-0000-0000-000000000001".into(),
        "zenqms_base_url" => "https://acme.zenqms.com".into(),
        "zenqms_environment" => "production".into(),
        "role_mappings" => "[]".into(),
        "max_deactivations" => "10".into(),
        "allow_mass_deactivation" | "dry_run" => "false".into(),
        _ => "x".into(),
    }
}

/// Checks the manifest against the component; returns what was checked, one line each.
pub fn validate(manifest_path: &Path, runtime: &Runtime) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let m: Manifest = serde_json::from_str(&text).context("integration.json does not parse")?;
    let mut checked = Vec::new();
    ensure!(
        !m.name.is_empty() && !m.version.is_empty(),
        "name and version are required"
    );
    ensure!(
        m.component.ends_with(".wasm"),
        "component must name the .wasm file"
    );
    for (what, v) in [
        ("permissions", &m.permissions),
        ("webhook", &m.webhook),
        ("schedule", &m.schedule),
    ] {
        ensure!(v.is_object(), "'{what}' must be an object");
    }
    let graph = m.permissions["microsoft_graph"]["scopes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for scope in ["User.Read.All", "Group.Read.All", "GroupMember.Read.All"] {
        ensure!(graph.iter().any(|s| s == scope), "permissions lack {scope}");
    }
    // Outbound hosts: exactly the services the component talks to, as plain https origins (no
    // wildcard from the config: the ZenQMS token goes to ZenQMS's documented API hosts).
    let wanted = [
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        entra_zenqms::config::ZENQMS_PRODUCTION_API,
        entra_zenqms::config::ZENQMS_SANDBOX_API,
    ];
    let declared: BTreeSet<&str> = m.network.iter().map(String::as_str).collect();
    ensure!(
        declared == wanted.into_iter().collect(),
        "'network' must list exactly {wanted:?}, it lists {:?}",
        m.network
    );
    checked.push(format!("network: {}", m.network.join(", ")));
    ensure!(
        m.config_wizard.pages.len() == 2,
        "the wizard has two pages (connections, role mapping)"
    );

    // The world: the component's own type must export and import what the manifest says.
    let prefix = format!("{}/", m.world.package);
    let imports = runtime.imports();
    for want in &m.world.imports {
        let full = format!("{want}@{}", m.world.version);
        ensure!(
            imports.contains(&full),
            "the component does not import {full} (it imports {imports:?})"
        );
        ensure!(
            want.starts_with(&prefix),
            "import {want} is not of package {}",
            m.world.package
        );
    }
    let exports = runtime.exports();
    for want in &m.world.exports {
        ensure!(
            exports.contains(want),
            "the component does not export {want} (it exports {exports:?})"
        );
    }
    checked.push(format!(
        "world {}@{} exports {:?}",
        m.world.package, m.world.version, m.world.exports
    ));

    // Config keys: every manifest key is one the component reads, and the required ones are
    // exactly those whose absence the component reports.
    let fields: Vec<&Field> = m
        .config_wizard
        .pages
        .iter()
        .flat_map(|p| &p.fields)
        .collect();
    let all: Vec<(String, String)> = fields
        .iter()
        .map(|f| (f.key.clone(), sample_value(&f.key)))
        .collect();
    let with_all = deploy_error(runtime, all)?;
    ensure!(
        !with_all.contains("unknown key"),
        "the component does not read every manifest key: {with_all}"
    );
    let with_none = deploy_error(runtime, Vec::new())?;
    let missing: BTreeSet<String> = with_none
        .split("missing key '")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect();
    let required: BTreeSet<String> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.key.clone())
        .collect();
    ensure!(
        missing == required,
        "required keys differ: the component requires {missing:?}, the manifest marks {required:?}"
    );
    for f in &fields {
        let looks_secret = f.key.contains("secret") || f.key.contains("token");
        ensure!(
            f.secret == looks_secret,
            "field {} must be marked secret={looks_secret}",
            f.key
        );
    }
    // The ZenQMS environment is a choice of exactly the values the component accepts.
    let env = fields
        .iter()
        .find(|f| f.key == "zenqms_environment")
        .context("the wizard must ask for zenqms_environment")?;
    ensure!(
        env.choices == ["production", "sandbox"],
        "zenqms_environment must offer production and sandbox, it offers {:?}",
        env.choices
    );
    for (value, accepted) in [("production", true), ("sandbox", true), ("staging", false)] {
        let config = fields
            .iter()
            .map(|f| {
                let v = if f.key == env.key {
                    value.into()
                } else {
                    sample_value(&f.key)
                };
                (f.key.clone(), v)
            })
            .collect();
        let refused = deploy_error(runtime, config)?.contains("'zenqms_environment'");
        ensure!(
            refused != accepted,
            "the component {} zenqms_environment={value}",
            if accepted { "refuses" } else { "accepts" }
        );
    }
    checked.push(format!(
        "{} config keys known to the component, {} required",
        fields.len(),
        required.len()
    ));
    Ok(checked)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Validates and writes the bundle into `out`; returns the files written.
pub fn package(manifest_path: &Path, out: &Path, runtime: &Runtime) -> Result<Vec<PathBuf>> {
    for line in validate(manifest_path, runtime)? {
        println!("ok: {line}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let wasm = std::fs::read(crate::host::runtime::COMPONENT_WASM)
        .context("reading the built component")?;
    let manifest = std::fs::read(manifest_path)?;
    let files = [("entra_zenqms.wasm", wasm), ("integration.json", manifest)];
    let mut sums = String::new();
    let mut written = Vec::new();
    for (name, bytes) in &files {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        sums.push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
        written.push(path);
    }
    let sums_path = out.join("SHA256SUMS");
    std::fs::write(&sums_path, sums)?;
    written.push(sums_path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
