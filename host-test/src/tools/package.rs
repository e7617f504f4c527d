//! `host-test package`: the marketplace bundle. Validates `wit/integration.json` against the
//! built component — the world it exports and imports, and the configuration its `describe`
//! export publishes (keys, required, secret) — then writes `dist/` with the `.wasm` (built with
//! `--profile component`, its metadata stamped: name, version, description, license, source,
//! revision), the manifest (the wizard's pages from `integration.json`, `configuration` from
//! `describe`, the `.wasm`'s SHA-256 and the contract it needs) and SHA-256 sums.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::host::runtime::Runtime;
use crate::sim::world::World;

/// The manifest fields the validation reads (the file may hold more).
#[derive(Debug, Deserialize)]
struct Manifest {
    name: String,
    version: String,
    component: String,
    world: WorldSpec,
    config_wizard: Wizard,
    permissions: Value,
    /// Outbound origins the platform should allow.
    network: Vec<String>,
    webhook: Value,
    schedule: Value,
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
    id: String,
    title: String,
    fields: Vec<Field>,
}

#[derive(Debug, Deserialize)]
struct Field {
    key: String,
    label: String,
    required: bool,
    secret: bool,
    /// The values a choice field offers.
    #[serde(default, rename = "enum")]
    choices: Option<Vec<String>>,
    /// The value the wizard shows before the admin chooses.
    #[serde(default)]
    default: Option<Value>,
}

/// The component's `describe` answer (`wit/world.wit`).
#[derive(Debug, Clone, Deserialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    /// The WIT package it implements, e.g. `zenqms:entra-sync@0.3.0`.
    pub contract: String,
    pub description: String,
    /// JSON Schema of the configuration.
    pub configuration: Value,
}

/// What [`validate`] established.
#[derive(Debug)]
pub struct Checked {
    /// One line per check that passed.
    pub lines: Vec<String>,
    /// Disagreements that do not stop the bundle.
    pub warnings: Vec<String>,
    /// The component's self-description.
    pub description: Description,
    /// The bundle's `.wasm` file name (the manifest's `component`).
    pub component: String,
}

/// Where the source is published when `Cargo.toml` names no `repository`.
pub const DEFAULT_REPOSITORY: &str = "https://github.com/zenqms/entra-zenqms";

/// The manifest source, next to the WIT world it describes.
pub fn default_manifest() -> PathBuf {
    workspace_root().join("wit/integration.json")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-test lives in the workspace")
        .to_path_buf()
}

/// The component's `describe` export's answer, as JSON text (no call context, no network).
pub fn describe_text(runtime: &Runtime) -> Result<String> {
    let (_, _, text) = runtime.call(World::offline(chrono::Utc::now()), |b, store| {
        b.call_describe(store)
    });
    text.context("calling describe")
}

/// Calls the component's `describe` export and reads its answer.
pub fn describe(runtime: &Runtime) -> Result<Description> {
    let text = describe_text(runtime)?;
    serde_json::from_str(&text).with_context(|| format!("describe's answer does not parse: {text}"))
}

/// A configuration value's string form, as the component receives it (`false` -> `"false"`).
fn as_config_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks describe's configuration schema and the wizard against it; returns the number of
/// keys and of required keys.
fn check_configuration(schema: &Value, fields: &[&Field]) -> Result<(usize, usize)> {
    ensure!(
        schema["type"] == "object",
        "describe's configuration is not an object schema"
    );
    ensure!(
        schema["additionalProperties"] == false,
        "describe's configuration must refuse keys it does not list (additionalProperties: false)"
    );
    let properties = schema["properties"]
        .as_object()
        .filter(|p| !p.is_empty())
        .context("describe's configuration lists no properties")?;
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .context("describe's configuration has no 'required' list")?
        .iter()
        .map(|v| v.as_str().context("'required' holds a non-string"))
        .collect::<Result<_>>()?;
    for key in &required {
        ensure!(
            properties.contains_key(*key),
            "describe requires '{key}' but does not list it"
        );
    }

    let mut seen = BTreeSet::new();
    for f in fields {
        ensure!(
            seen.insert(f.key.as_str()),
            "the wizard asks for '{}' twice",
            f.key
        );
        ensure!(!f.label.trim().is_empty(), "field '{}' has no label", f.key);
    }
    let listed: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
    let unknown: Vec<&&str> = seen.difference(&listed).collect();
    let missing: Vec<&&str> = listed.difference(&seen).collect();
    ensure!(
        unknown.is_empty() && missing.is_empty(),
        "the wizard's fields differ from the component's configuration (describe): \
         not read by the component {unknown:?}, not asked by the wizard {missing:?}"
    );
    for f in fields {
        let prop = &properties[&f.key];
        let is_required = required.contains(f.key.as_str());
        ensure!(
            f.required == is_required,
            "field '{}' must be marked required={is_required} (describe's 'required')",
            f.key
        );
        let write_only = prop["writeOnly"] == true;
        ensure!(
            f.secret == write_only,
            "field '{}' must be marked secret={write_only} (describe's 'writeOnly')",
            f.key
        );
        if let Some(choices) = &f.choices {
            let offered: Option<Vec<&str>> = prop["enum"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect());
            ensure!(
                offered.as_deref() == Some(&choices.iter().map(String::as_str).collect::<Vec<_>>()),
                "field '{}' offers {choices:?}, the component accepts {}",
                f.key,
                prop.get("enum")
                    .map_or("any value".into(), Value::to_string)
            );
        }
        if let Some(default) = &f.default {
            let theirs = prop.get("default").map(as_config_string);
            ensure!(
                theirs.as_deref() == Some(as_config_string(default).as_str()),
                "field '{}' defaults to {default}, the component to {theirs:?}",
                f.key
            );
        }
    }
    Ok((fields.len(), required.len()))
}

/// Checks the manifest against the component; returns what was checked, one line each.
pub fn validate(manifest_path: &Path, runtime: &Runtime) -> Result<Vec<String>> {
    Ok(check(manifest_path, runtime)?.lines)
}

/// [`validate`], with the warnings and the component's description.
pub fn check(manifest_path: &Path, runtime: &Runtime) -> Result<Checked> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let m: Manifest = serde_json::from_str(&text).context("integration.json does not parse")?;
    let mut checked = Vec::new();
    let mut warnings = Vec::new();
    ensure!(
        !m.name.is_empty() && !m.version.is_empty(),
        "name and version are required"
    );
    ensure!(
        m.component.ends_with(".wasm") && !m.component.contains(['/', '\\']),
        "component must name the .wasm file (no directory)"
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

    // The component's own account of itself.
    let d = describe(runtime)?;
    ensure!(
        d.name == m.name,
        "the manifest names '{}', the component calls itself '{}'",
        m.name,
        d.name
    );
    let contract = format!("{}@{}", m.world.package, m.world.version);
    ensure!(
        d.contract == contract,
        "the manifest's world is {contract}, the component implements {}",
        d.contract
    );
    if d.version != m.version {
        warnings.push(format!(
            "integration.json is version {}, the component (Cargo.toml) {}",
            m.version, d.version
        ));
    }

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
    for have in &exports {
        ensure!(
            m.world.exports.contains(have),
            "the manifest's world does not list the component's export {have}"
        );
    }
    checked.push(format!(
        "world {contract} exports {:?}, as the component does",
        m.world.exports
    ));

    // The wizard: its pages and labels are the manifest's own, its fields exactly the
    // component's configuration keys, required and secret as describe says.
    ensure!(!m.config_wizard.pages.is_empty(), "the wizard has no pages");
    let mut page_ids = BTreeSet::new();
    for p in &m.config_wizard.pages {
        ensure!(
            page_ids.insert(p.id.as_str()) && !p.id.is_empty(),
            "page ids must be present and unique ('{}')",
            p.id
        );
        ensure!(
            !p.title.trim().is_empty() && !p.fields.is_empty(),
            "page '{}' needs a title and fields",
            p.id
        );
    }
    let fields: Vec<&Field> = m
        .config_wizard
        .pages
        .iter()
        .flat_map(|p| &p.fields)
        .collect();
    let (keys, required) = check_configuration(&d.configuration, &fields)?;
    checked.push(format!(
        "{} wizard pages ask for the component's {keys} configuration keys ({required} required, secrets write-only), as describe says",
        m.config_wizard.pages.len()
    ));
    Ok(Checked {
        lines: checked,
        warnings,
        description: d,
        component: m.component,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the bundled `.wasm`'s metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub name: String,
    pub version: String,
    pub description: String,
    /// SPDX expression.
    pub license: String,
    /// Repository URL.
    pub source: String,
    /// Git commit (`-dirty` when tracked files differ from it), or `unknown`.
    pub revision: String,
}

impl Stamp {
    /// The stamp for the component `d` describes, from this checkout.
    pub fn for_component(d: &Description) -> Stamp {
        let root = workspace_root();
        Stamp {
            name: d.name.clone(),
            version: d.version.clone(),
            description: d.description.clone(),
            // The workspace's license, which the component inherits like host-test.
            license: env!("CARGO_PKG_LICENSE").into(),
            source: repository(&root).unwrap_or_else(|| DEFAULT_REPOSITORY.into()),
            revision: revision(&root),
        }
    }

    /// Writes it into a component's metadata sections (replacing what they held).
    pub fn apply(&self, wasm: &[u8]) -> Result<Vec<u8>> {
        use wasm_metadata::{
            AddMetadata, AddMetadataField, Description, Licenses, Revision, Source, Version,
        };
        let mut add = AddMetadata::default();
        add.name = AddMetadataField::Set(self.name.clone());
        add.version = AddMetadataField::Set(Version::new(self.version.clone()));
        add.description = AddMetadataField::Set(Description::new(self.description.clone()));
        add.licenses = AddMetadataField::Set(
            Licenses::new(&self.license)
                .with_context(|| format!("license '{}' is not SPDX", self.license))?,
        );
        add.source = AddMetadataField::Set(
            Source::new(&self.source)
                .with_context(|| format!("source '{}' is not a URL", self.source))?,
        );
        add.revision = AddMetadataField::Set(Revision::new(self.revision.clone()));
        add.to_wasm(wasm)
            .context("writing the component's metadata")
    }

    /// Reads the stamp back from a component's metadata sections.
    pub fn read(wasm: &[u8]) -> Result<Stamp> {
        let payload = wasm_metadata::Payload::from_binary(wasm).context("reading metadata")?;
        let m = payload.metadata();
        let text = |what: &str, v: Option<String>| v.with_context(|| format!("no {what}"));
        Ok(Stamp {
            name: text("name", m.name.clone())?,
            version: text("version", m.version.as_ref().map(ToString::to_string))?,
            description: text(
                "description",
                m.description.as_ref().map(ToString::to_string),
            )?,
            license: text("license", m.licenses.as_ref().map(ToString::to_string))?,
            source: text("source", m.source.as_ref().map(ToString::to_string))?,
            revision: text("revision", m.revision.as_ref().map(ToString::to_string))?,
        })
    }
}

/// `repository` of `Cargo.toml`'s `[package]` or `[workspace.package]`, when it names one (a
/// plain `key = "value"` line; no TOML parser for one string).
fn repository(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).ok()?;
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[package]" && section != "[workspace.package]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "repository" {
            let v = value.trim().trim_matches('"');
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The checkout's git commit, `-dirty` when tracked files differ from it; `unknown` without git.
fn revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--verify", "HEAD"]) {
        Some(commit) if commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => "unknown".into(),
    }
}

/// A JSON object that keeps its keys in the order read (serde_json's own map sorts them here).
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The manifest as bundled: the source's entries in order, `component_sha256` after
/// `component`, `contract` and `configuration` (describe's) after `world`.
fn bundled_manifest(source: &str, d: &Description, wasm_sha256: &str) -> Result<Vec<u8>> {
    let Ordered(entries) =
        serde_json::from_str(source).context("integration.json does not parse")?;
    let generated = ["component_sha256", "contract", "configuration"];
    let mut out = Vec::new();
    for (key, value) in entries {
        if generated.contains(&key.as_str()) {
            bail!("integration.json may not set '{key}': package writes it");
        }
        let after_world = key == "world";
        let after_component = key == "component";
        out.push((key, value));
        if after_component {
            out.push(("component_sha256".into(), wasm_sha256.into()));
        }
        if after_world {
            out.push(("contract".into(), d.contract.clone().into()));
            out.push(("configuration".into(), d.configuration.clone()));
        }
    }
    let mut text = serde_json::to_vec_pretty(&Ordered(out))?;
    text.push(b'\n');
    Ok(text)
}

/// Validates and writes the bundle into `out`; returns the files written.
pub fn package(manifest_path: &Path, out: &Path, runtime: &Runtime) -> Result<Vec<PathBuf>> {
    let checked = check(manifest_path, runtime)?;
    for line in &checked.lines {
        println!("ok: {line}");
    }
    for line in &checked.warnings {
        println!("warning: {line}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let built = std::fs::read(crate::host::runtime::COMPONENT_WASM)
        .context("reading the built component")?;
    let stamp = Stamp::for_component(&checked.description);
    let wasm = stamp.apply(&built)?;
    ensure!(
        Stamp::read(&wasm)? == stamp,
        "the component's metadata does not read back as written"
    );
    let source = std::fs::read_to_string(manifest_path)?;
    let manifest = bundled_manifest(&source, &checked.description, &sha256_hex(&wasm))?;
    let files = [
        (checked.component.as_str(), wasm),
        ("integration.json", manifest),
    ];
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

    #[test]
    fn the_bundled_manifest_keeps_the_source_order_and_adds_the_generated_entries() {
        let d = Description {
            name: "n".into(),
            version: "1".into(),
            contract: "p:q@1.0.0".into(),
            description: "d".into(),
            configuration: serde_json::json!({"type": "object"}),
        };
        let text = bundled_manifest(
            r#"{"name": "n", "component": "c.wasm", "world": {}, "zeta": 1, "alpha": 2}"#,
            &d,
            "abc",
        )
        .unwrap();
        let Ordered(entries) = serde_json::from_slice(&text).unwrap();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "component",
                "component_sha256",
                "world",
                "contract",
                "configuration",
                "zeta",
                "alpha"
            ]
        );
        assert!(bundled_manifest(r#"{"contract": "x"}"#, &d, "abc").is_err());
    }

    #[test]
    fn repository_is_read_from_the_package_sections_only() {
        let dir = std::env::temp_dir().join(format!("pkg-repo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |text: &str| std::fs::write(dir.join("Cargo.toml"), text).unwrap();
        write("[package]\nname = \"x\"\n[dependencies]\nrepository = \"no\"\n");
        assert_eq!(repository(&dir), None);
        write("[workspace.package]\nrepository = \"https://example.org/r\"\n");
        assert_eq!(repository(&dir).as_deref(), Some("https://example.org/r"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
