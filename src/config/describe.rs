//! `describe`: the component's self-description, built from the one key table
//! ([`crate::config::keys::SPECS`]), so the platform's wizard asks for exactly what the
//! configuration parser accepts.

use serde_json::{Map, Value, json};

use crate::config::keys::{KeySpec, Kind, SPECS};

/// The WIT package version this component implements (`wit/world.wit`).
pub const CONTRACT: &str = "zenqms:entra-sync@0.3.0";

/// The JSON Schema (draft 2020-12) of one key's value. Every value reaches the component as a
/// string, so every key is a string with a `format` or `pattern` saying which strings;
/// booleans and counts are strings too (`"true"`, `"10"`). A value the schema accepts is one
/// the parser accepts (what JSON Schema cannot say: a role mapped twice). The parser is more
/// lenient than the schema in ways a wizard never needs: spaces around a value, ASCII case
/// variants of the words (`TRUE`, `Sandbox`), a `+` before a count, an empty value for an
/// optional key (read as missing).
/// A GUID, without anchors.
const GUID_BARE: &str =
    "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";
/// A domain name as `email_match_domains` takes it (ASCII labels of letters, digits and
/// hyphens, dot-separated; `address::is_domain` checks the rest), without anchors.
const DOMAIN: &str = "[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)+";
/// A count from 0 to 4294967295 (u32::MAX), digits only.
const COUNT: &str = "^(?:[0-9]{1,9}|[0-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$";

fn value_schema(spec: &KeySpec) -> Map<String, Value> {
    const GUID: &str =
        "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";
    let mut s = Map::new();
    s.insert("type".into(), "string".into());
    match spec.kind {
        Kind::Guid => {
            s.insert("format".into(), "uuid".into());
            s.insert("pattern".into(), GUID.into());
        }
        Kind::Text => {
            // Credentials: something besides spaces, and no whitespace inside (the parser
            // trims the ends and refuses a credential holding a space or a line break).
            s.insert("minLength".into(), 1.into());
            s.insert("pattern".into(), "^\\s*\\S+\\s*$".into());
        }
        Kind::Choice(words) => {
            s.insert("enum".into(), json!(words));
        }
        Kind::Url => {
            // https, or plain http to a loopback test server; no user info, query or fragment
            // (the parser's `check_base_url`).
            s.insert("format".into(), "uri".into());
            s.insert(
                "pattern".into(),
                "^\\s*(?:https://[^/?#@\\s]+|http://(?:127(?:\\.[0-9]{1,3}){3}|localhost|\\[::1\\])(?::[0-9]{1,5})?)(?:/[^?#@\\s]*)?\\s*$".into(),
            );
        }
        Kind::Boolean => {
            s.insert("enum".into(), json!(["true", "false"]));
        }
        Kind::Count => {
            // 0 to 4294967295 (a u32, as the parser reads it), digits only.
            s.insert("pattern".into(), COUNT.into());
        }
        Kind::GuidList => {
            // 1 to 50 GUIDs, comma-separated (spaces around items and empty items ignored,
            // as the parser does).
            s.insert(
                "pattern".into(),
                format!(
                    "^[\\s,]*{G}\\s*(?:,[\\s,]*{G}\\s*){{0,49}}[\\s,]*$",
                    G = GUID_BARE
                )
                .into(),
            );
        }
        Kind::DomainList => {
            // 1 to 500 domain names (ASCII labels), comma-separated, spaces only around items.
            s.insert(
                "pattern".into(),
                format!("^\\s*{D}\\s*(?:,\\s*{D}\\s*){{0,499}}$", D = DOMAIN).into(),
            );
        }
        Kind::RoleMappings => {
            s.insert("contentMediaType".into(), "application/json".into());
            s.insert(
                "contentSchema".into(),
                json!({
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["role", "groups"],
                        "additionalProperties": false,
                        "properties": {
                            "role": {"type": "string", "minLength": 1, "pattern": "\\S", "description": "ZenQMS role id (each role in one mapping only)"},
                            "groups": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "format": "uuid"},
                                "description": "Entra group object ids"
                            }
                        }
                    }
                }),
            );
        }
    }
    s.insert("title".into(), spec.title.into());
    s.insert("description".into(), spec.description.into());
    if let Some(d) = spec.default {
        s.insert("default".into(), d.into());
    }
    if spec.secret {
        s.insert("writeOnly".into(), true.into());
    }
    s
}

/// The configuration as a JSON Schema object: `properties` (one per key, in the wizard's
/// order), `required`, and no other keys allowed (the parser refuses unknown keys).
pub fn configuration_schema() -> Value {
    let properties: Map<String, Value> = SPECS
        .iter()
        .map(|s| (s.name.to_string(), Value::Object(value_schema(s))))
        .collect();
    let required: Vec<&str> = SPECS
        .iter()
        .filter(|s| s.required)
        .map(|s| s.name)
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The export `describe`'s answer: `{"name", "version", "contract", "description",
/// "configuration"}` as JSON text.
pub fn describe() -> String {
    json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "contract": CONTRACT,
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "configuration": configuration_schema(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// A value the schema says is valid for `name`, derived from the schema alone.
    fn valid_value(schema: &Value) -> String {
        if let Some(d) = schema.get("default").and_then(Value::as_str) {
            return d.to_string();
        }
        if let Some(first) = schema["enum"].get(0).and_then(Value::as_str) {
            return first.to_string();
        }
        if schema.get("contentMediaType").is_some() {
            return "[]".into();
        }
        match (schema["format"].as_str(), schema["pattern"].as_str()) {
            (Some("uuid"), _) => "0f0f0f0f-0000-4000-8000-000000000001".into(),
            (Some("uri"), _) => "https://public-api-sandbox.zenqms.com".into(),
            (_, Some(p)) if p.contains("429496729") => "25".into(),
            (_, Some(p)) if p.contains("{12}") => "0f0f0f0f-0000-4000-8000-000000000002".into(),
            (_, Some(_)) => "contoso.com".into(),
            _ => "some-text".into(),
        }
    }

    /// A value the schema says is invalid for this key, when its schema restricts values.
    fn invalid_value(schema: &Value) -> Option<&'static str> {
        let restricted = schema.get("enum").is_some()
            || schema.get("format").is_some()
            || schema.get("pattern").is_some()
            || schema.get("contentMediaType").is_some();
        restricted.then_some("not valid!")
    }

    fn parsed() -> Value {
        serde_json::from_str(&describe()).expect("describe is JSON")
    }

    /// The configuration the schema alone describes as complete: every key with a valid value.
    fn full_config(schema: &Value) -> Vec<(String, String)> {
        schema["properties"]
            .as_object()
            .expect("properties")
            .iter()
            .map(|(k, v)| (k.clone(), valid_value(v)))
            .collect()
    }

    #[test]
    fn describe_names_the_component_and_contract() {
        let d = parsed();
        assert_eq!(d["name"], "entra-zenqms");
        assert_eq!(d["contract"], CONTRACT);
        let wit = include_str!("../../wit/world.wit");
        assert!(wit.contains(&format!("package {CONTRACT};")));
    }

    #[test]
    fn the_schema_accepts_what_the_parser_accepts_and_nothing_else() {
        let schema = parsed()["configuration"].clone();
        let full = full_config(&schema);
        // Every key the schema lists, with a value valid by the schema, is accepted.
        config::parse(&full).expect("the schema's own valid values parse");
        // The keys are exactly the parser's.
        let mut listed: Vec<&str> = full.iter().map(|(k, _)| k.as_str()).collect();
        let mut keys = config::key_names();
        listed.sort_unstable();
        keys.sort_unstable();
        assert_eq!(listed, keys);
        // A key the schema does not list is refused.
        let mut extra = full.clone();
        extra.push(("not_a_key".into(), "x".into()));
        assert!(config::parse(&extra).is_err());
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for (key, prop) in schema["properties"].as_object().unwrap() {
            // Without it: refused exactly when the schema says it is required.
            let without: Vec<_> = full.iter().filter(|(k, _)| k != key).cloned().collect();
            let err = config::parse(&without).err();
            assert_eq!(err.is_some(), required.contains(&key.as_str()), "{key}");
            if let Some(e) = err {
                assert!(e.to_string().contains(key.as_str()), "{e}");
            }
            // With a value outside the schema: refused, naming the key.
            if let Some(bad) = invalid_value(prop) {
                let mut wrong = without.clone();
                wrong.push((key.clone(), bad.into()));
                let e = config::parse(&wrong).expect_err(key);
                assert!(e.to_string().contains(key.as_str()), "{e}");
            }
            // The default is what the parser takes for an absent key.
            if let Some(d) = prop.get("default").and_then(Value::as_str) {
                let mut with = without.clone();
                with.push((key.clone(), d.into()));
                // (Whether `zenqms_environment` was given is not part of what it means.)
                let parsed = |pairs: &[(String, String)]| {
                    config::parse(pairs).ok().map(|mut c| {
                        c.zenqms_environment_given = false;
                        c
                    })
                };
                assert_eq!(parsed(&with), parsed(&without), "{key}: default differs");
            }
            // Secrets are exactly the keys the parser treats as credentials.
            let write_only = prop.get("writeOnly") == Some(&Value::Bool(true));
            assert_eq!(write_only, config::is_secret_key(key), "{key}");
        }
    }
}
