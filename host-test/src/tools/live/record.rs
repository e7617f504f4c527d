//! `--record <dir>`: every exchange as one JSON file (`NNNNNN-<target>.json`), secrets
//! redacted, plus `commands.json` (the commands run, in order) from which `rebuild` writes
//! `scenario.json`. Several runs may record into one directory; numbering continues.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::exchange::{Exchange, NetError};
use crate::sim::world::{Target, encode_component};

pub const REDACTED: &str = "[redacted]";
/// Headers whose values are credentials.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "set-cookie", "x-api-key"];
/// JSON keys and form fields whose values are credentials (clientState is Graph's shared secret
/// with the webhook).
const SECRET_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "clientstate",
];

/// One side of an exchange, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// ...or any other body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

/// One recorded exchange file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
    /// `login`, `graph`, `zenqms` or `denied`.
    pub target: String,
    pub method: String,
    /// The URL the component sent to.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_to: Option<String>,
    pub at: String,
    pub elapsed_ms: u64,
    pub request: Message,
    pub response: Option<Message>,
    pub error: Option<String>,
}

/// One command run, as `commands.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandEntry {
    pub at: String,
    /// The scenario step that replays it.
    pub step: Value,
    pub ok: bool,
}

pub struct Recorder {
    pub dir: PathBuf,
    next: u64,
    /// Values that must never be written: configured secrets and issued access tokens.
    secrets: Vec<String>,
    failed: Option<String>,
}

fn target_name(t: Option<Target>) -> &'static str {
    match t {
        Some(Target::Login) => "login",
        Some(Target::Graph) => "graph",
        Some(Target::Zenqms) => "zenqms",
        Some(Target::Denied) | None => "denied",
    }
}

/// Replaces the values of credential keys anywhere in a JSON value.
pub fn redact_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_json(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

/// A form body (`a=1&b=2`) with credential fields replaced.
fn redact_form(text: &str) -> String {
    text.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn message(status: Option<u16>, headers: &[(String, String)], body: &[u8]) -> Message {
    let mut out = Message {
        status,
        ..Message::default()
    };
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        let v = if SECRET_HEADERS.contains(&k.as_str()) {
            REDACTED.to_string()
        } else {
            v.clone()
        };
        out.headers
            .entry(k)
            .and_modify(|old| *old = format!("{old}, {v}"))
            .or_insert(v);
    }
    if body.is_empty() {
        return out;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut json) => {
            redact_json(&mut json);
            out.body = Some(json);
        }
        Err(_) => out.body_text = Some(redact_form(&String::from_utf8_lossy(body))),
    }
    out
}

impl Recorder {
    /// Opens (creating) `dir`; `secrets`: the configured credentials.
    pub fn open(dir: &Path, secrets: Vec<String>) -> Result<Recorder> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let next = exchange_files(dir)?.len() as u64 + 1;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            next,
            // Shorter values would mangle the JSON; the structured redaction still covers them.
            secrets: secrets.into_iter().filter(|s| s.len() >= 4).collect(),
            failed: None,
        })
    }

    /// Serialises with every known secret replaced, however it was encoded.
    pub fn scrub(&self, value: &impl Serialize) -> Result<String> {
        let mut text = serde_json::to_string_pretty(value)?;
        for s in &self.secrets {
            let json_inner = serde_json::to_string(s)?;
            let json_inner = json_inner.trim_matches('"').to_string();
            for form in [s.clone(), encode_component(s), json_inner] {
                text = text.replace(&form, REDACTED);
            }
        }
        Ok(text)
    }

    /// Writes one exchange (a write error is reported once, at the end: the call goes on).
    pub fn record(&mut self, ex: &Exchange) {
        if let Ok(resp) = &ex.result
            && let Ok(json) = serde_json::from_slice::<Value>(&resp.body)
            && let Some(token) = json.get("access_token").and_then(Value::as_str)
        {
            self.secrets
                .extend(Some(token.to_string()).filter(|t| t.len() >= 4));
        }
        let (response, error) = match &ex.result {
            Ok(r) => (Some(message(Some(r.status), &r.headers, &r.body)), None),
            Err(NetError::Denied(why)) => (None, Some(format!("denied: {why}"))),
            Err(NetError::Timeout) => (None, Some("timeout".to_string())),
            Err(NetError::Transport(why)) => (None, Some(format!("transport: {why}"))),
        };
        let rec = Recorded {
            seq: self.next,
            target: target_name(ex.target).into(),
            method: ex.request.method.clone(),
            url: ex.request.url.clone(),
            sent_to: ex.sent_to.clone(),
            at: ex.at.to_rfc3339(),
            elapsed_ms: ex.elapsed_ms,
            request: message(None, &ex.request.headers, &ex.request.body),
            response,
            error,
        };
        let path = self
            .dir
            .join(format!("{:06}-{}.json", self.next, rec.target));
        self.next += 1;
        let written = self
            .scrub(&rec)
            .and_then(|text| Ok(std::fs::write(&path, text)?));
        if let Err(e) = written {
            self.failed
                .get_or_insert(format!("{}: {e}", path.display()));
        }
    }

    /// Appends a command to `commands.json`; fails if any exchange could not be written.
    pub fn finish_command(&mut self, entry: CommandEntry) -> Result<()> {
        if let Some(e) = self.failed.take() {
            anyhow::bail!("recording an exchange failed: {e}");
        }
        let path = self.dir.join("commands.json");
        let mut all = read_commands(&self.dir)?;
        let mut entry = entry;
        redact_json(&mut entry.step);
        all.push(entry);
        std::fs::write(&path, self.scrub(&all)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

pub fn read_commands(dir: &Path) -> Result<Vec<CommandEntry>> {
    let path = dir.join("commands.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The exchange files in `dir`, in order.
pub fn exchange_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() > 7 && n.as_bytes()[..6].iter().all(u8::is_ascii_digit))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub fn read_exchanges(dir: &Path) -> Result<Vec<Recorded>> {
    exchange_files(dir)?
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

/// A JSON object's field, or an empty map.
pub fn object(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        let m = message(
            None,
            &[("Authorization".into(), "Bearer abc".into())],
            b"grant_type=client_credentials&client_secret=s3cr%7Et&scope=x",
        );
        assert_eq!(m.headers["authorization"], REDACTED);
        assert_eq!(
            m.body_text.as_deref(),
            Some("grant_type=client_credentials&client_secret=[redacted]&scope=x")
        );
        let mut v =
            serde_json::json!({"value": [{"clientState": "x", "id": "1"}], "access_token": "t"});
        redact_json(&mut v);
        assert_eq!(v["value"][0]["clientState"], REDACTED);
        assert_eq!(v["access_token"], REDACTED);
        assert_eq!(v["value"][0]["id"], "1");
        let r = Recorder {
            dir: PathBuf::new(),
            next: 1,
            secrets: vec!["s~1 2".into()],
            failed: None,
        };
        let text = r.scrub(&serde_json::json!(["s~1 2", "a=s~1%202"])).unwrap();
        assert!(!text.contains("s~1"), "{text}");
    }
}
