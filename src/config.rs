//! The instance configuration: parsing and validation.
//!
//! Validation collects every problem instead of stopping at the first, so an admin fixes the
//! wizard in one pass. Secrets are wrapped in [`Secret`], whose `Debug` never shows the value.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::platform::Platform;
use crate::platform::url::Url;

pub mod describe;
pub mod keys;

/// Config keys the component reads (the README documents each; [`keys::SPECS`] describes each).
pub fn key_names() -> Vec<&'static str> {
    keys::names()
}

/// Whether `key` holds a credential (registered as the call's secrets, never shown).
pub fn is_secret_key(key: &str) -> bool {
    keys::spec(key).is_some_and(|s| s.secret)
}

/// Registers the credential values among the platform's raw config pairs with `p` (before
/// parsing, so even a configuration that does not parse cannot show them).
pub fn register_secrets(pairs: &[(String, String)], p: &dyn Platform) {
    for (k, v) in pairs {
        if is_secret_key(k) {
            p.add_secret(v);
        }
    }
}

/// ZenQMS's public API, production and sandbox (ZenQMS help center, "ZenQMS API
/// Configuration"; docs/zenqms-api.md). The API token goes here unless `zenqms_base_url`
/// overrides it.
pub const ZENQMS_PRODUCTION_API: &str = "https://public-api.zenqms.com";
pub const ZENQMS_SANDBOX_API: &str = "https://public-api-sandbox.zenqms.com";

/// The config key `zenqms_environment`: which documented ZenQMS API the token goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ZenqmsEnvironment {
    #[default]
    Production,
    Sandbox,
}

impl ZenqmsEnvironment {
    /// The environment's API base URL, without a trailing slash.
    pub fn api_base(self) -> &'static str {
        match self {
            ZenqmsEnvironment::Production => ZENQMS_PRODUCTION_API,
            ZenqmsEnvironment::Sandbox => ZENQMS_SANDBOX_API,
        }
    }
}

/// A credential. `Debug` is redacted so it cannot slip into a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One ZenQMS role driven by membership of one or more Entra groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMapping {
    pub role: String,
    /// Entra group object ids, lowercase.
    pub groups: Vec<String>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Lowercase GUID.
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub zenqms_environment: ZenqmsEnvironment,
    /// Where ZenQMS requests go, without a trailing slash: the environment's API, or the
    /// `zenqms_base_url` override (https, or plain http to loopback).
    pub zenqms_base_url: String,
    /// True when `zenqms_base_url` set the base.
    pub zenqms_base_overridden: bool,
    /// `zenqms_environment` was given (not the default): an override to the other documented
    /// environment is then warned about ([`Config::base_url_warning`]).
    pub zenqms_environment_given: bool,
    pub zenqms_api_token: Secret,
    pub role_mappings: Vec<RoleMapping>,
    /// `scope_groups`: Entra group object ids (lowercase, sorted, no repeats); empty: every
    /// user is in scope.
    pub scope_groups: Vec<String>,
    /// Most deactivations one run may make; none: 10% of linked users, at least 10.
    pub max_deactivations: Option<u32>,
    /// Lets the next deploy's full sync exceed the limit once.
    pub allow_mass_deactivation: bool,
    /// Read everything, write nothing: log the plan instead.
    pub dry_run: bool,
    /// The domains in which an address may link an existing ZenQMS account, when the admin set
    /// them (lowercase); none: the domains learned from member users' UPN suffixes.
    pub email_match_domains: Option<BTreeSet<String>>,
}

impl Config {
    /// Registers this configuration's credentials with `p` as the call's secrets.
    pub fn register_secrets(&self, p: &dyn Platform) {
        p.add_secret(self.client_secret.expose());
        p.add_secret(self.zenqms_api_token.expose());
    }

    /// The warning a deploy logs when `zenqms_base_url` sends the API token to a host that is
    /// neither one of ZenQMS's documented API hosts nor loopback (it names that host).
    pub fn base_url_warning(&self) -> Option<String> {
        let url = Url::parse(&self.zenqms_base_url).ok()?;
        let origin = url.origin();
        let documented = [ZENQMS_PRODUCTION_API, ZENQMS_SANDBOX_API].contains(&origin.as_str());
        // The other documented environment than `zenqms_environment` names: a configuration
        // copied from production into a sandbox instance (or the reverse) would write to the
        // environment the admin did not choose, silently (a bug hunt).
        let expected = self.zenqms_environment.api_base();
        if self.zenqms_base_overridden
            && self.zenqms_environment_given
            && documented
            && origin.as_str() != expected
        {
            return Some(format!(
                "zenqms_base_url is {origin}, but zenqms_environment names {expected}: the API token and every write go to {origin}; remove zenqms_base_url or set zenqms_environment to match it"
            ));
        }
        (self.zenqms_base_overridden && !documented && !url.is_loopback()).then(|| {
            format!(
                "zenqms_base_url sends the ZenQMS API token to {origin}, an undocumented origin (ZenQMS documents {ZENQMS_PRODUCTION_API} and {ZENQMS_SANDBOX_API})"
            )
        })
    }

    /// Every group id named by a mapping, deduplicated and sorted.
    pub fn mapped_groups(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.role_mappings.iter().flat_map(|m| &m.groups).collect();
        set.into_iter().cloned().collect()
    }

    /// The deactivation limit for a directory with `linked` linked users.
    pub fn deactivation_limit(&self, linked: usize) -> usize {
        self.max_deactivations
            .map_or_else(|| linked.div_ceil(10).max(10), |m| m as usize)
    }

    /// Whether a scope is set (`scope_groups`): only its groups' transitive members are
    /// provisioned.
    pub fn scoped(&self) -> bool {
        !self.scope_groups.is_empty()
    }

    /// Every group whose transitive members the sync reads: mapped groups and scope groups,
    /// sorted, no repeats.
    pub fn read_groups(&self) -> Vec<String> {
        let mut set: BTreeSet<String> = self.mapped_groups().into_iter().collect();
        set.extend(self.scope_groups.iter().cloned());
        set.into_iter().collect()
    }

    /// Every mapped role id, sorted.
    pub fn mapped_roles(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.role_mappings.iter().map(|m| &m.role).collect();
        set.into_iter().cloned().collect()
    }
}

/// The problems found in a configuration, all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}): ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}) {p}", i + 1)?;
        }
        Ok(())
    }
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex, any case).
pub fn is_guid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingJson {
    role: String,
    groups: Vec<String>,
}

/// Parses and checks the platform's key/value config. Values are trimmed; an empty value counts
/// as missing. Role ids are checked against ZenQMS separately ([`unknown_roles`]).
pub fn parse(pairs: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mut problems = Vec::new();
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    for (k, _) in pairs {
        if keys::spec(k).is_none() {
            problems.push(format!(
                "unknown key '{}' (known keys: {})",
                key_name(k),
                key_names().join(", ")
            ));
        }
    }
    let mut required = |key: &str| {
        let value = get(key);
        if value.is_none() {
            problems.push(format!("missing key '{key}'"));
        }
        value.unwrap_or_default()
    };
    let tenant_id = required("entra_tenant_id").to_ascii_lowercase();
    let client_id = required("entra_client_id").to_ascii_lowercase();
    let client_secret = Secret::new(required("entra_client_secret"));
    let zenqms_api_token = Secret::new(required("zenqms_api_token"));
    // Neither credential holds whitespace (Entra's client secrets and ZenQMS's tokens are
    // generated without): one that does is a paste gone wrong. Refused, because texts from
    // outside are cut for reading at whitespace (`failure::upstream::bounded`), and a cut
    // inside a credential would leave a part of it that no scrubber recognises.
    for (key, value) in [
        ("entra_client_secret", client_secret.expose()),
        ("zenqms_api_token", zenqms_api_token.expose()),
    ] {
        if value.chars().any(char::is_whitespace) {
            problems.push(format!(
                "'{key}' contains a space or a line break (credentials have none): paste it again"
            ));
        }
    }

    for (key, value) in [
        ("entra_tenant_id", &tenant_id),
        ("entra_client_id", &client_id),
    ] {
        if !value.is_empty() && !is_guid(value) {
            problems.push(format!(
                "'{key}' must be a GUID like 00000000-0000-0000-0000-000000000000 ({})",
                shape(value)
            ));
        }
    }
    let zenqms_environment = match get("zenqms_environment").map(|v| v.to_ascii_lowercase()) {
        None => ZenqmsEnvironment::Production,
        Some(v) if v == "production" => ZenqmsEnvironment::Production,
        Some(v) if v == "sandbox" => ZenqmsEnvironment::Sandbox,
        Some(_) => {
            problems.push("'zenqms_environment' must be production or sandbox".into());
            ZenqmsEnvironment::Production
        }
    };
    let base_url = get("zenqms_base_url");
    let zenqms_base_overridden = base_url.is_some();
    let zenqms_environment_given = get("zenqms_environment").is_some();
    let zenqms_base_url = match base_url.as_deref().map(check_base_url) {
        None => zenqms_environment.api_base().to_string(),
        Some(Ok(url)) => url,
        Some(Err(why)) => {
            problems.push(format!("'zenqms_base_url' {why}"));
            String::new()
        }
    };
    let role_mappings = match get("role_mappings") {
        None => Vec::new(),
        Some(text) => parse_mappings(&text, &mut problems),
    };
    let scope_groups = get("scope_groups")
        .map(|v| parse_guid_list("scope_groups", &v, &mut problems))
        .unwrap_or_default();
    let max_deactivations = get("max_deactivations").and_then(|v| match v.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            problems.push(format!(
                "'max_deactivations' must be a whole number of users from 0 to {} ({})",
                u32::MAX,
                shape(&v)
            ));
            None
        }
    });
    let mut flag = |key: &str| match get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            problems.push(format!("'{key}' must be true or false ({})", shape(v)));
            false
        }
    };
    let allow_mass_deactivation = flag("allow_mass_deactivation");
    let dry_run = flag("dry_run");
    let email_match_domains = get("email_match_domains").map(|v| parse_domains(&v, &mut problems));
    if problems.is_empty() {
        Ok(Config {
            tenant_id,
            client_id,
            client_secret,
            zenqms_environment,
            zenqms_base_url,
            zenqms_base_overridden,
            zenqms_environment_given,
            zenqms_api_token,
            role_mappings,
            scope_groups,
            max_deactivations,
            allow_mass_deactivation,
            dry_run,
            email_match_domains,
        })
    } else {
        Err(ConfigErrors(problems))
    }
}

/// Most groups `scope_groups` may list (each is one more membership read per call).
const MAX_SCOPE_GROUPS: usize = 50;

/// A comma-separated list of GUIDs (lowercase, sorted, no repeats). Problems name the item's
/// position, never its value.
fn parse_guid_list(key: &str, text: &str, problems: &mut Vec<String>) -> Vec<String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    if items.len() > MAX_SCOPE_GROUPS {
        problems.push(format!(
            "'{key}' lists {} groups; at most {MAX_SCOPE_GROUPS}",
            items.len()
        ));
        return Vec::new();
    }
    if items.is_empty() {
        // Only separators (`" , "`): an admin who meant a scope and left none would get the
        // whole tenant provisioned (a newcomer's find); an unset or empty value is the way to
        // say "every user".
        problems.push(format!(
            "'{key}' holds separators but no group id: leave it empty for every user of the tenant, or list group object ids"
        ));
    }
    let mut out = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        if is_guid(item) {
            out.insert(item.to_ascii_lowercase());
        } else {
            problems.push(format!(
                "'{key}' item {} is not a group object id (a GUID like 00000000-0000-0000-0000-000000000000; {})",
                i + 1,
                shape(item)
            ));
        }
    }
    out.into_iter().collect()
}

/// Most domains `email_match_domains` may list.
const MAX_MATCH_DOMAINS: usize = 500;

/// `email_match_domains`: comma-separated domain names (ASCII; an internationalised domain in
/// its `xn--` form), case-insensitive. Problems name the key and the item's position, never
/// the value (an admin may paste a secret into the wrong field).
fn parse_domains(text: &str, problems: &mut Vec<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let items: Vec<&str> = text.split(',').collect();
    if items.len() > MAX_MATCH_DOMAINS {
        problems.push(format!(
            "'email_match_domains' lists {} domains; at most {MAX_MATCH_DOMAINS}",
            items.len()
        ));
        return out;
    }
    for (i, item) in items.iter().enumerate() {
        let domain = item.trim().to_ascii_lowercase();
        if crate::domain::address::is_domain(&domain) {
            out.insert(domain);
        } else {
            problems.push(format!(
                "'email_match_domains' item {} is not a domain name: use comma-separated names like contoso.com, ASCII only (xn-- form for an internationalised domain), no @, no spaces inside",
                i + 1
            ));
        }
    }
    out
}

/// The override's base (origin and path, no trailing slash). Plain http only to loopback.
/// Errors never repeat the value (it might be a pasted secret).
fn check_base_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a valid URL: it {e}"))?;
    if url.scheme != "https" && !url.is_loopback() {
        return Err(
            "must use https (plain http only to a loopback test server: 127.x.x.x, [::1] or localhost)"
                .into(),
        );
    }
    if url.query.is_some() {
        return Err("must not have a query string".into());
    }
    let path = url.path.trim_end_matches('/');
    Ok(format!("{}{}", url.origin(), path))
}

fn parse_mappings(text: &str, problems: &mut Vec<String>) -> Vec<RoleMapping> {
    let raw: Vec<MappingJson> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!(
                "'role_mappings' is not valid JSON of the form [{{\"role\": \"<ZenQMS role id>\", \"groups\": [\"<Entra group id>\"]}}]: {}",
                crate::failure::upstream::json_problem(&e)
            ));
            return Vec::new();
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let role = m.role.trim().to_string();
        if role.is_empty() {
            problems.push(format!("'role_mappings'[{i}] has an empty role id"));
            continue;
        }
        if !seen.insert(role.clone()) {
            problems.push(format!(
                "'role_mappings'[{i}] maps a role an earlier entry maps: list all its groups in one entry"
            ));
            continue;
        }
        if m.groups.is_empty() {
            problems.push(format!("'role_mappings'[{i}] has no groups"));
        }
        let mut groups = BTreeSet::new();
        for (j, g) in m.groups.iter().enumerate() {
            let g = g.trim();
            if is_guid(g) {
                groups.insert(g.to_ascii_lowercase());
            } else {
                problems.push(format!(
                    "'role_mappings'[{i}].groups[{j}] is not a GUID ({})",
                    shape(g)
                ));
            }
        }
        out.push(RoleMapping {
            role,
            groups: groups.into_iter().collect(),
        });
    }
    out
}

/// Mapped role ids that ZenQMS does not know, as config problems (by position: the id may be
/// anything an admin pasted).
pub fn unknown_roles(config: &Config, known: &BTreeSet<String>) -> Vec<String> {
    config
        .role_mappings
        .iter()
        .enumerate()
        .filter(|(_, m)| !known.contains(&m.role))
        .map(|(i, _)| {
            format!(
                "'role_mappings'[{i}] names a role id that ZenQMS does not have (see GET /v2/roles)"
            )
        })
        .collect()
}

/// What is wrong with a value, without the value: its length and the kinds of characters in it.
/// An admin can tell a pasted secret (`40 characters: letters, digits, symbols`) from a typo,
/// and nothing of it shows.
fn shape(value: &str) -> String {
    let n = value.chars().count();
    let mut kinds = Vec::new();
    if value.chars().any(char::is_alphabetic) {
        kinds.push("letters");
    }
    if value.chars().any(|c| c.is_ascii_digit()) {
        kinds.push("digits");
    }
    if value.chars().any(char::is_whitespace) {
        kinds.push("spaces");
    }
    if value
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        kinds.push("symbols");
    }
    format!("the value given has {n} characters: {}", kinds.join(", "))
}

/// An unknown key as it may be shown: keys are names, but a pasted value can land in one, so a
/// key that does not look like a name is described instead.
fn key_name(key: &str) -> String {
    let name_like = !key.is_empty()
        && key.len() <= 40
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if name_like {
        key.to_string()
    } else {
        format!("<{}>", shape(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "11111111-2222-3333-4444-555555555555";
    const G: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        super::test_support::pairs(extra)
    }

    /// `scope_groups` of separators only is refused, not read as "every user" (a newcomer's
    /// find: `" , "` provisioned the whole tenant without a word); empty is every user.
    #[test]
    fn scope_groups_of_separators_only_is_refused() {
        for v in [",", " , ", ",,,"] {
            let e = parse(&pairs(&[("scope_groups", v)])).unwrap_err();
            assert!(e.to_string().contains("no group id"), "{v:?}: {e}");
        }
        assert!(
            parse(&pairs(&[("scope_groups", "  ")]))
                .unwrap()
                .scope_groups
                .is_empty()
        );
        let c = parse(&pairs(&[("scope_groups", &format!(" {G} , "))])).unwrap();
        assert_eq!(c.scope_groups, [G]);
    }

    #[test]
    fn valid_minimal_config() {
        let c = parse(&pairs(&[])).unwrap();
        assert_eq!(c.zenqms_base_url, "https://acme.zenqms.com");
        assert!(c.role_mappings.is_empty());
        assert_eq!(c.client_secret.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn every_problem_is_listed() {
        let p = vec![
            (
                "entra_tenant_id".to_string(),
                "contoso.onmicrosoft.com".to_string(),
            ),
            ("zenqms_base_url".into(), "http://acme.zenqms.com".into()),
            (
                "role_mappings".into(),
                "[{\"role\": \"r\", \"groups\": [\"nope\"]}]".into(),
            ),
            ("colour".into(), "blue".into()),
        ];
        let e = parse(&p).unwrap_err();
        let text = e.to_string();
        for needle in [
            "unknown key 'colour'",
            "missing key 'entra_client_id'",
            "missing key 'entra_client_secret'",
            "missing key 'zenqms_api_token'",
            "'entra_tenant_id' must be a GUID",
            "must use https",
            "'role_mappings'[0].groups[0] is not a GUID",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        assert_eq!(e.0.len(), 7, "{text}");
    }

    #[test]
    fn malformed_mapping_json() {
        let e = parse(&pairs(&[("role_mappings", "{not json")])).unwrap_err();
        assert!(e.to_string().contains("'role_mappings' is not valid JSON"));
        let e = parse(&pairs(&[(
            "role_mappings",
            "[{\"role\":\"r\",\"group\":[]}]",
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("'role_mappings'"));
    }

    #[test]
    fn mappings_normalised_and_duplicates_refused() {
        let json = format!(
            "[{{\"role\":\"r-qa\",\"groups\":[\"{}\", \" {G} \"]}}]",
            G.to_uppercase()
        );
        let c = parse(&pairs(&[("role_mappings", &json)])).unwrap();
        assert_eq!(c.role_mappings[0].groups, vec![G.to_string()]);
        let dup = format!(
            "[{{\"role\":\"r\",\"groups\":[\"{G}\"]}},{{\"role\":\"r\",\"groups\":[\"{G}\"]}}]"
        );
        assert!(parse(&pairs(&[("role_mappings", &dup)])).is_err());
    }

    #[test]
    fn unknown_roles_reported() {
        let json = format!("[{{\"role\":\"r-x\",\"groups\":[\"{G}\"]}}]");
        let c = parse(&pairs(&[("role_mappings", &json)])).unwrap();
        let known = BTreeSet::from(["r-qa".to_string()]);
        assert_eq!(unknown_roles(&c, &known).len(), 1);
    }

    #[test]
    fn loopback_http_allowed_for_local_testing() {
        let c = parse(&pairs(&[("zenqms_base_url", "http://127.0.0.1:8088")])).unwrap();
        assert_eq!(c.zenqms_base_url, "http://127.0.0.1:8088");
    }

    /// Plain http only for loopback: a host that is an IP address in 127.0.0.0/8 or `::1`
    /// (written plainly), or exactly `localhost`. Everything else of the kind is refused with
    /// an error that names the key and never echoes the value.
    #[test]
    fn plain_http_only_for_loopback_and_the_value_never_echoed() {
        for ok in [
            "http://127.0.0.1:8088",
            "http://127.255.3.4/zenqms",
            "http://localhost:9000",
            "http://LOCALHOST:9000/",
            "http://[::1]:8080",
            "https://acme.zenqms.com/",
            "https://public-api.zenqms.com",
        ] {
            assert!(
                parse(&pairs(&[("zenqms_base_url", ok)])).is_ok(),
                "{ok} refused"
            );
        }
        for bad in [
            "http://127.attacker.example",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.example",
            "http://localhost@evil.example",
            "http://127.0.0.1@evil.example",
            "http://evil.example@localhost",
            "http://localhost:8080@evil.example",
            "http://user:pass@localhost",
            "https://user:pass@acme.zenqms.com",
            "http://0x7f.1",
            "http://127.1",
            "http://2130706433",
            "http://0177.0.0.1",
            "http://127.000.000.001",
            "http://loc%61lhost",
            "http://127.0.0.1%2eevil.example",
            "http://localhost.",
            "http://127.0.0.1.",
            "http://[::ffff:127.0.0.1]",
            "http://[0:0:0:0:0:0:0:1]",
            "http://[::1].evil.example",
            "http://127.0.0.1\\@evil.example",
            "http:\\\\localhost",
            "http:/localhost",
            "http:localhost",
            "http://127.0.0.1 .evil.example",
            "http://127.0.0.1\t.evil.example",
            "http://127.0.0.1\n.evil.example",
            "http://\u{ff4c}ocalhost",
            "http://127.0.0.1#@evil.example",
            "http://127.0.0.1?@evil.example",
            "http://acme.zenqms.com",
            "ftp://localhost",
            "javascript:alert(1)",
            "//localhost",
        ] {
            let e = parse(&pairs(&[("zenqms_base_url", bad)])).unwrap_err();
            let text = e.to_string();
            assert_eq!(e.0.len(), 1, "{bad}: {text}");
            assert!(text.contains("'zenqms_base_url'"), "{bad}: {text}");
            assert!(
                !text.contains("evil") && !text.contains("attacker") && !text.contains(bad),
                "{bad}: value echoed in {text}"
            );
        }
    }

    #[test]
    fn zenqms_environment_maps_to_the_documented_hosts() {
        let without = |extra: &[(&str, &str)]| {
            let mut p = pairs(extra);
            p.retain(|(k, _)| k != "zenqms_base_url");
            parse(&p)
        };
        let c = without(&[]).unwrap();
        assert_eq!(c.zenqms_base_url, "https://public-api.zenqms.com");
        let c = without(&[("zenqms_environment", "production")]).unwrap();
        assert_eq!(c.zenqms_base_url, "https://public-api.zenqms.com");
        let c = without(&[("zenqms_environment", " Sandbox ")]).unwrap();
        assert_eq!(c.zenqms_base_url, "https://public-api-sandbox.zenqms.com");
        // The override wins (test servers; every scenario that sets it keeps working).
        let c = parse(&pairs(&[("zenqms_environment", "sandbox")])).unwrap();
        assert_eq!(c.zenqms_base_url, "https://acme.zenqms.com");
        for bad in ["staging", "https://app.zenqms.com", "PRODUCTIONS"] {
            let e = without(&[("zenqms_environment", bad)]).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("'zenqms_environment' must be production or sandbox")
                    && !text.contains(bad),
                "{text}"
            );
        }
    }

    #[test]
    fn deactivation_limit_defaults_to_ten_percent_at_least_ten() {
        let c = parse(&pairs(&[])).unwrap();
        assert_eq!(c.deactivation_limit(0), 10);
        assert_eq!(c.deactivation_limit(250), 25);
        assert_eq!(c.deactivation_limit(1001), 101);
        let c = parse(&pairs(&[
            ("max_deactivations", "3"),
            ("allow_mass_deactivation", "TRUE"),
        ]))
        .unwrap();
        assert_eq!(c.deactivation_limit(1000), 3);
        assert!(c.allow_mass_deactivation);
        let e = parse(&pairs(&[
            ("max_deactivations", "-1"),
            ("allow_mass_deactivation", "yes"),
        ]))
        .unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
    }

    /// Hostile inputs: a credential pasted into each key that shows its problem.
    #[test]
    fn a_pasted_secret_is_never_echoed() {
        const S: &str = "Zx9~q8Q~secretValueFromEntra.abcd1234";
        let json_type_error = format!("[{{\"role\": 5, \"groups\": [\"{S}\"]}}]");
        let json_string_error = format!("[{{\"role\": \"r\", \"groups\": \"{S}\"}}]");
        let json_syntax_error = format!("[{{\"role\": \"{S}\" \"groups\"}}]");
        let bad_group = format!("[{{\"role\": \"r\", \"groups\": [\"{S}\"]}}]");
        let cases: Vec<(&str, String)> = vec![
            ("entra_tenant_id", S.into()),
            ("entra_client_id", S.into()),
            ("zenqms_base_url", S.into()),
            ("zenqms_base_url", format!("https://acme.zenqms.com:{S}")),
            ("zenqms_base_url", format!("{S}://acme.zenqms.com")),
            ("zenqms_base_url", format!("http://{S}.example")),
            ("zenqms_base_url", format!("https://acme.zenqms.com/?{S}")),
            ("max_deactivations", S.into()),
            ("allow_mass_deactivation", S.into()),
            ("dry_run", S.into()),
            ("role_mappings", S.into()),
            ("role_mappings", json_type_error),
            ("role_mappings", json_string_error),
            ("role_mappings", json_syntax_error),
            ("role_mappings", bad_group),
            (S, "x".into()),
        ];
        for (key, value) in &cases {
            let e = parse(&pairs(&[(key, value)])).unwrap_err().to_string();
            assert!(!e.contains(S), "{key}: {e}");
            assert!(!e.contains("Zx9"), "{key}: {e}");
            if *key != S {
                assert!(e.contains(&format!("'{key}'")), "{key}: {e}");
            }
        }
        // A role id ZenQMS does not know is named by its position.
        let json = format!("[{{\"role\":\"{S}\",\"groups\":[\"{G}\"]}}]");
        let c = parse(&pairs(&[("role_mappings", &json)])).unwrap();
        let unknown = unknown_roles(&c, &BTreeSet::new());
        assert_eq!(unknown.len(), 1);
        assert!(!unknown[0].contains(S) && unknown[0].contains("'role_mappings'[0]"));
        // What is said instead: length and kinds of characters.
        let e = parse(&pairs(&[("max_deactivations", S)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("37 characters: letters, digits, symbols"), "{e}");
    }

    #[test]
    fn secrets_are_registered_from_raw_pairs_and_from_a_config() {
        let p = crate::testkit::Offline::default();
        register_secrets(&pairs(&[("entra_client_id", "not-a-secret")]), &p);
        assert_eq!(*p.secrets.borrow(), ["s3cret", "tok"]);
        let p = crate::testkit::Offline::default();
        parse(&pairs(&[])).unwrap().register_secrets(&p);
        assert_eq!(*p.secrets.borrow(), ["s3cret", "tok"]);
    }

    #[test]
    fn email_match_domains_are_validated_without_echoing_the_value() {
        let c = parse(&pairs(&[(
            "email_match_domains",
            " Contoso.com, fabrikam.example ",
        )]))
        .unwrap();
        assert_eq!(
            c.email_match_domains,
            Some(BTreeSet::from([
                "contoso.com".to_string(),
                "fabrikam.example".to_string()
            ]))
        );
        assert_eq!(parse(&pairs(&[])).unwrap().email_match_domains, None);
        for bad in [
            "contoso.com,,fabrikam.com",
            "@contoso.com",
            "s3cret-value",
            "cont oso.com",
            "k\u{212A}.example",
            "contoso.com\u{200B}",
        ] {
            let e = parse(&pairs(&[("email_match_domains", bad)])).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("'email_match_domains'"), "{text}");
            if !bad.contains(",,") {
                assert!(!text.contains(bad), "value echoed: {text}");
            }
        }
    }

    #[test]
    fn guid_check() {
        assert!(is_guid(T));
        assert!(is_guid(&T.to_uppercase()));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555g"));
        assert!(!is_guid(""));
    }
}

/// Test support.
#[cfg(test)]
pub mod test_support {
    use super::*;

    /// A valid configuration's key/value pairs with `extra` keys set (or replaced).
    pub fn pairs(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = [
            ("entra_tenant_id", "11111111-2222-3333-4444-555555555555"),
            ("entra_client_id", "11111111-2222-3333-4444-555555555555"),
            ("entra_client_secret", "s3cret"),
            ("zenqms_base_url", "https://acme.zenqms.com/"),
            ("zenqms_api_token", "tok"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs
    }

    /// A valid configuration with `extra` keys set (or replaced).
    pub fn with_keys(extra: &[(&str, &str)]) -> Config {
        parse(&pairs(extra)).expect("valid test configuration")
    }
}
