//! Change-notification subscriptions for `users` and `groups`: create, renew, reauthorize,
//! delete, read. An expired subscription is gone (404, not listed, no longer a duplicate), as in
//! Graph.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::FakeGraph;
use super::odata::{Ctx, GraphError, GraphResult, Url, guid, json_body, parse_query};
use crate::sim::http_types::{HttpRequest, HttpResponse};

/// Maximum lifetime for directory resources (just under 29 days).
const MAX_MINUTES: i64 = 41_760;
/// Shorter requested lifetimes are raised to this.
const MIN_MINUTES: i64 = 45;
const MAX_CLIENT_STATE: usize = 128;

const CREATE_PROPS: &[&str] = &[
    "@odata.type",
    "changeType",
    "clientState",
    "encryptionCertificate",
    "encryptionCertificateId",
    "expirationDateTime",
    "includeResourceData",
    "latestSupportedTlsVersion",
    "lifecycleNotificationUrl",
    "notificationUrl",
    "notificationUrlAppId",
    "resource",
];

#[derive(Debug, Clone)]
pub(super) struct Subscription {
    id: String,
    resource: String,
    change_type: String,
    notification_url: String,
    lifecycle_url: Option<String>,
    expiration: DateTime<Utc>,
    client_state: Option<String>,
    tls: String,
    application_id: String,
}

impl Subscription {
    pub(super) fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expiration > now
    }

    /// The fields the harness reads.
    pub(super) fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": format_time(self.expiration),
            "clientState": self.client_state,
        })
    }

    /// The subscription as Graph returns it.
    fn to_json(&self) -> Value {
        let mut value = self.summary();
        let extra = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "applicationId": self.application_id,
            "creatorId": guid(0xc4ea_7040),
            "includeResourceData": false,
            "latestSupportedTlsVersion": self.tls,
            "encryptionCertificate": null,
            "encryptionCertificateId": null,
            "notificationQueryOptions": null,
            "notificationUrlAppId": null,
            "notificationContentType": null,
        });
        if let (Value::Object(map), Value::Object(extra)) = (&mut value, extra) {
            map.extend(extra);
        }
        value
    }

    /// Duplicate detection key: resource without a leading `/`, set of change types.
    fn combination(&self) -> (String, Vec<String>) {
        combination(&self.resource, &self.change_type)
    }
}

impl FakeGraph {
    pub(super) fn subscriptions_route(
        &mut self,
        req: &HttpRequest,
        url: &Url,
        rest: &[&str],
        ctx: &Ctx,
    ) -> GraphResult<HttpResponse> {
        parse_query(url, &[])?;
        match (req.method.as_str(), rest) {
            ("GET", []) => {
                let value: Vec<Value> = self
                    .subscriptions
                    .values()
                    .filter(|s| s.is_active(ctx.now))
                    .map(Subscription::to_json)
                    .collect();
                let context = "https://graph.microsoft.com/v1.0/$metadata#subscriptions";
                Ok(ctx.json(200, &json!({ "@odata.context": context, "value": value })))
            }
            ("POST", []) => self.create_subscription(req, ctx),
            ("GET", [id]) => Ok(ctx.json(200, &self.active(id, ctx.now)?.to_json())),
            ("PATCH", [id]) => self.renew_subscription(req, id, ctx),
            ("DELETE", [id]) => {
                self.active(id, ctx.now)?;
                self.subscriptions.remove(*id);
                Ok(ctx.empty(204))
            }
            ("POST", [id, action])
                if action.trim_start_matches("microsoft.graph.") == "reauthorize" =>
            {
                reauthorize_body(req)?;
                self.active(id, ctx.now)?;
                Ok(ctx.empty(204))
            }
            (_, [_, action]) if action.trim_start_matches("microsoft.graph.") == "reauthorize" => {
                Err(GraphError::method_not_allowed())
            }
            (_, [] | [_]) => Err(GraphError::method_not_allowed()),
            (_, [_, extra, ..]) => Err(GraphError::segment(extra)),
        }
    }

    fn active(&self, id: &str, now: DateTime<Utc>) -> GraphResult<&Subscription> {
        self.subscriptions
            .get(id)
            .filter(|s| s.is_active(now))
            .ok_or_else(|| {
                GraphError::new(
                    404,
                    "ResourceNotFound",
                    format!("The object was not found. Subscription '{id}' does not exist."),
                )
            })
    }

    fn create_subscription(&mut self, req: &HttpRequest, ctx: &Ctx) -> GraphResult<HttpResponse> {
        let body = json_body(req)?;
        if let Some(k) = body.keys().find(|k| !CREATE_PROPS.contains(&k.as_str())) {
            return Err(unknown_property(k));
        }
        let change_type = required_string(&body, "changeType")?;
        let notification_url = required_string(&body, "notificationUrl")?;
        let resource = required_string(&body, "resource")?;
        let expiration = required_string(&body, "expirationDateTime")?;
        validate_change_type(&change_type)?;
        validate_resource(&resource)?;
        validate_https("notificationUrl", &notification_url)?;
        let lifecycle_url = optional_string(&body, "lifecycleNotificationUrl")?;
        if let Some(u) = &lifecycle_url {
            validate_https("lifecycleNotificationUrl", u)?;
        }
        let client_state = optional_string(&body, "clientState")?;
        if client_state
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_CLIENT_STATE)
        {
            return Err(invalid(format!(
                "'clientState' must be at most {MAX_CLIENT_STATE} characters."
            )));
        }
        if body
            .get("includeResourceData")
            .is_some_and(|v| v != &json!(false) && !v.is_null())
        {
            return Err(invalid(
                "Azure Active Directory workload is not enabled for rich notifications.",
            ));
        }
        let tls =
            optional_string(&body, "latestSupportedTlsVersion")?.unwrap_or_else(|| "v1_2".into());
        if !["v1_0", "v1_1", "v1_2", "v1_3"].contains(&tls.as_str()) {
            return Err(invalid(format!(
                "Invalid 'latestSupportedTlsVersion' value: '{tls}'."
            )));
        }
        let expiration = effective_expiration(&expiration, ctx.now)?;
        let wanted = combination(&resource, &change_type);
        if let Some(existing) = self
            .subscriptions
            .values()
            .find(|s| s.is_active(ctx.now) && s.combination() == wanted)
        {
            return Err(GraphError::new(
                409,
                "ExtensionError",
                format!(
                    "Subscription Id {} already exists for the requested combination",
                    existing.id
                ),
            ));
        }
        let sub = Subscription {
            id: guid(0x5ab0_0000_0000 ^ self.seq),
            resource,
            change_type,
            notification_url,
            lifecycle_url,
            expiration,
            client_state,
            tls,
            application_id: self.client_id.clone(),
        };
        let body = sub.to_json();
        self.subscriptions.insert(sub.id.clone(), sub);
        Ok(ctx.json(201, &body))
    }

    fn renew_subscription(
        &mut self,
        req: &HttpRequest,
        id: &str,
        ctx: &Ctx,
    ) -> GraphResult<HttpResponse> {
        self.active(id, ctx.now)?;
        let body = json_body(req)?;
        if let Some(k) = body
            .keys()
            .find(|k| !["expirationDateTime", "notificationUrl"].contains(&k.as_str()))
        {
            return Err(if CREATE_PROPS.contains(&k.as_str()) {
                invalid(format!(
                    "'{k}' cannot be updated; only expirationDateTime and notificationUrl can."
                ))
            } else {
                unknown_property(k)
            });
        }
        if body.is_empty() {
            return Err(invalid(
                "The request must update 'expirationDateTime' or 'notificationUrl'.",
            ));
        }
        let expiration = optional_string(&body, "expirationDateTime")?
            .map(|e| effective_expiration(&e, ctx.now))
            .transpose()?;
        let url = optional_string(&body, "notificationUrl")?;
        if let Some(u) = &url {
            validate_https("notificationUrl", u)?;
        }
        let sub = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| GraphError::not_found(id))?;
        if let Some(e) = expiration {
            sub.expiration = e;
        }
        if let Some(u) = url {
            sub.notification_url = u;
        }
        Ok(ctx.json(200, &sub.to_json()))
    }
}

/// `reauthorize` is an action without parameters: no body (or an empty JSON object).
fn reauthorize_body(req: &HttpRequest) -> GraphResult<()> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let body = json_body(req)?;
    match body.keys().next() {
        Some(k) => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "The parameter '{k}' in the request payload is not a valid parameter for the operation 'reauthorize'."
            ),
        )),
        None => Ok(()),
    }
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::bad_request("InvalidRequest", message)
}

fn unknown_property(name: &str) -> GraphError {
    GraphError::bad_request(
        "BadRequest",
        format!(
            "The property '{name}' does not exist on type 'microsoft.graph.subscription'. Make sure to only use property names that are defined by the type or mark the type as open type."
        ),
    )
}

fn required_string(body: &Map<String, Value>, name: &str) -> GraphResult<String> {
    optional_string(body, name)?.ok_or_else(|| {
        invalid(format!(
            "'{name}' is a required property for subscription creation."
        ))
    })
}

fn optional_string(body: &Map<String, Value>, name: &str) -> GraphResult<Option<String>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(GraphError::bad_request(
            "BadRequest",
            format!(
                "Cannot convert the literal '{other}' to the expected type 'Edm.String' for '{name}'."
            ),
        )),
    }
}

fn validate_change_type(change_type: &str) -> GraphResult<()> {
    for part in change_type.split(',') {
        if !matches!(part.trim(), "updated" | "deleted") {
            return Err(invalid(format!(
                "Invalid 'changeType' attribute: '{}'.",
                part.trim()
            )));
        }
    }
    Ok(())
}

fn validate_resource(resource: &str) -> GraphResult<()> {
    let bare = resource
        .strip_prefix('/')
        .unwrap_or(resource)
        .to_ascii_lowercase();
    match bare.as_str() {
        "users" | "groups" => Ok(()),
        r if r.starts_with("users/") || r.starts_with("groups/") => Err(invalid(format!(
            "The fake Graph implements subscriptions on 'users' and 'groups' only, not '{resource}'."
        ))),
        _ => Err(invalid(format!(
            "Resource '{resource}' is not supported for change notifications."
        ))),
    }
}

fn validate_https(name: &str, url: &str) -> GraphResult<()> {
    let host = url
        .strip_prefix("https://")
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(h) if !h.is_empty() && !h.contains(' ') => Ok(()),
        _ => Err(invalid(format!(
            "The '{name}' must be an absolute URL using the https scheme; got '{url}'."
        ))),
    }
}

/// Parses `expirationDateTime`, rejects more than 41,760 minutes ahead, raises anything under
/// 45 minutes to now + 45 minutes.
fn effective_expiration(text: &str, now: DateTime<Utc>) -> GraphResult<DateTime<Utc>> {
    let requested = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            GraphError::bad_request(
                "BadRequest",
                format!(
                    "Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'."
                ),
            )
        })?;
    if requested > now + Duration::minutes(MAX_MINUTES) {
        return Err(invalid(format!(
            "Subscription expiration can only be {MAX_MINUTES} minutes in the future."
        )));
    }
    Ok(requested.max(now + Duration::minutes(MIN_MINUTES)))
}

fn combination(resource: &str, change_type: &str) -> (String, Vec<String>) {
    let resource = resource
        .strip_prefix('/')
        .unwrap_or(resource)
        .to_ascii_lowercase();
    let mut types: Vec<String> = change_type
        .split(',')
        .map(|t| t.trim().to_string())
        .collect();
    types.sort();
    types.dedup();
    (resource, types)
}

/// Graph writes seven fractional digits: `2016-11-20T18:23:45.9356913Z`.
fn format_time(t: DateTime<Utc>) -> String {
    let micros = t.to_rfc3339_opts(SecondsFormat::Micros, true);
    micros.replace('Z', "0Z")
}
