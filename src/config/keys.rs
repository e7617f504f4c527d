//! The configuration keys, one table: the parser ([`super::parse`]) accepts exactly these keys,
//! registers the `secret` ones as the call's secrets, and `describe` publishes the same table
//! as JSON Schema for the platform's wizard. A key added here is known everywhere at once.

/// The shape of a key's value (all values reach the component as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A GUID such as `00000000-0000-0000-0000-000000000000`.
    Guid,
    /// Free text (a credential).
    Text,
    /// One of the listed words (case-insensitive).
    Choice(&'static [&'static str]),
    /// An absolute URL (https, or plain http to loopback).
    Url,
    /// `true` or `false` (case-insensitive).
    Boolean,
    /// A whole number from 0 to 4,294,967,295.
    Count,
    /// Comma-separated GUIDs.
    GuidList,
    /// Comma-separated ASCII domain names.
    DomainList,
    /// JSON text: `[{"role": "<ZenQMS role id>", "groups": ["<Entra group id>", ...]}, ...]`.
    RoleMappings,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    /// The wizard's label.
    pub title: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// A credential: never logged, returned or stored; the wizard shows it write-only.
    pub secret: bool,
    /// The value used when the key is absent or empty (as its string form).
    pub default: Option<&'static str>,
}

const fn key(
    name: &'static str,
    title: &'static str,
    kind: Kind,
    description: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        title,
        description,
        kind,
        required: false,
        secret: false,
        default: None,
    }
}

const fn required(mut k: KeySpec) -> KeySpec {
    k.required = true;
    k
}

const fn secret(mut k: KeySpec) -> KeySpec {
    k.secret = true;
    k
}

const fn default(mut k: KeySpec, value: &'static str) -> KeySpec {
    k.default = Some(value);
    k
}

/// Every key the component reads, in the wizard's order.
pub const SPECS: &[KeySpec] = &[
    required(key(
        "entra_tenant_id",
        "Directory (tenant) ID",
        Kind::Guid,
        "The Entra tenant's id (Entra admin center > Overview). It may not change while the instance is deployed: delete the instance (with this tenant set), then deploy with the new one.",
    )),
    required(key(
        "entra_client_id",
        "Application (client) ID",
        Kind::Guid,
        "The app registration's id. It needs the Graph application permissions User.Read.All, Group.Read.All and GroupMember.Read.All with admin consent.",
    )),
    required(secret(key(
        "entra_client_secret",
        "Client secret",
        Kind::Text,
        "A client secret of the app registration (its value, not its id).",
    ))),
    default(
        key(
            "zenqms_environment",
            "ZenQMS environment",
            Kind::Choice(&["production", "sandbox"]),
            "production: https://public-api.zenqms.com, sandbox: https://public-api-sandbox.zenqms.com (ZenQMS's public API). The API token must belong to the same environment.",
        ),
        "production",
    ),
    key(
        "zenqms_base_url",
        "ZenQMS API base URL override",
        Kind::Url,
        "Test servers only: sends the ZenQMS API token to this URL instead of the environment's API (https, or plain http to loopback). A deploy warns when it is not a documented ZenQMS API host.",
    ),
    required(secret(key(
        "zenqms_api_token",
        "ZenQMS API token",
        Kind::Text,
        "A ZenQMS API token (Settings > API Settings; a dedicated token is recommended).",
    ))),
    key(
        "role_mappings",
        "Group to role mappings",
        Kind::RoleMappings,
        "JSON: [{\"role\": \"<ZenQMS role id>\", \"groups\": [\"<Entra group id>\", ...]}, ...]. A role is held by the transitive members of at least one of its groups; roles not listed are never changed.",
    ),
    key(
        "scope_groups",
        "Scope groups",
        Kind::GuidList,
        "Comma-separated Entra group ids. When set, only transitive members of these groups are provisioned; a linked user who leaves them is deactivated (link kept) and reactivated on return. Empty: every user of the tenant.",
    ),
    key(
        "max_deactivations",
        "Most deactivations per run",
        Kind::Count,
        "The most deactivations one full sync, or notifications within 24 hours, may make; more are held for an admin's approval. Default: 10% of linked users, at least 10.",
    ),
    default(
        key(
            "allow_mass_deactivation",
            "Allow one mass deactivation on the next deploy",
            Kind::Boolean,
            "Lets the next deploy's full sync exceed the deactivation limit once.",
        ),
        "false",
    ),
    default(
        key(
            "dry_run",
            "Dry run",
            Kind::Boolean,
            "Read everything, write nothing: log the plan instead.",
        ),
        "false",
    ),
    key(
        "email_match_domains",
        "Email domains for linking",
        Kind::DomainList,
        "Comma-separated domains in which an existing ZenQMS account may be linked by email. Default: the tenant's verified domains, learned from member users' sign-in names.",
    ),
];

/// The key named `name`, if the component reads it.
pub fn spec(name: &str) -> Option<&'static KeySpec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Every key's name, in the table's order.
pub fn names() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.name).collect()
}
