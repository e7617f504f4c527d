//! A simulated Microsoft identity platform token endpoint and Microsoft Graph v1.0, in memory.
//!
//! Faithful on purpose: strict about requests (auth, query options, bodies), realistic error
//! bodies, paging with opaque skiptokens, `$select` semantics. What it does not simulate answers
//! with an error that says so, never with a silent 200.
//!
//! Layout: this file holds the state, the public API and the top-level routing;
//! `fake_graph/token.rs` the token endpoint, `fake_graph/directory.rs` users, groups and
//! membership, `fake_graph/subscriptions.rs` change-notification subscriptions,
//! `fake_graph/odata.rs` shared URL/query/error/paging helpers.

mod directory;
mod odata;
mod subscriptions;
#[cfg(test)]
mod tests;
mod token;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::http_types::{HttpRequest, HttpResponse};
use crate::scenario::EntraSpec;
use odata::{Ctx, GraphError, GraphResult, Url};
use subscriptions::Subscription;

pub struct FakeGraph {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    /// Live users by id (a soft-deleted user is removed).
    users: BTreeMap<String, Map<String, Value>>,
    groups: BTreeMap<String, Group>,
    /// Issued access tokens and when each expires.
    tokens: Vec<(String, DateTime<Utc>)>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Drives request ids, token text and subscription ids.
    seq: u64,
}

struct Group {
    display_name: String,
    /// Direct member ids (users or groups; ids of objects that do not exist are skipped).
    members: BTreeSet<String>,
}

impl FakeGraph {
    pub fn new(spec: &EntraSpec) -> Self {
        let users = spec
            .users
            .iter()
            .map(|u| {
                (
                    u.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    u.clone(),
                )
            })
            .collect();
        let groups = spec
            .groups
            .iter()
            .map(|g| {
                let group = Group {
                    display_name: g.display_name.clone(),
                    members: g.members.iter().cloned().collect(),
                };
                (g.id.clone(), group)
            })
            .collect();
        FakeGraph {
            tenant_id: spec.tenant_id.clone(),
            client_id: spec.client_id.clone(),
            client_secret: spec.client_secret.clone(),
            users,
            groups,
            tokens: Vec::new(),
            subscriptions: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Answers a request whose URL host is login.microsoftonline.com or graph.microsoft.com.
    pub fn handle(&mut self, req: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
        self.seq += 1;
        let ctx = Ctx::new(now, self.seq, req);
        let url = match odata::parse_url(&req.url) {
            Some(url) if url.scheme == "https" => url,
            _ => {
                let err = GraphError::bad_request(
                    "BadRequest",
                    format!("Invalid request URL '{}'.", req.url),
                );
                return ctx.error(&err);
            }
        };
        match url.host.as_str() {
            "login.microsoftonline.com" => self.token_endpoint(req, &url, &ctx),
            "graph.microsoft.com" => self
                .graph(req, &url, &ctx)
                .unwrap_or_else(|e| ctx.error(&e)),
            other => ctx.error(&GraphError::bad_request(
                "BadRequest",
                format!("The fake Graph does not serve host '{other}'."),
            )),
        }
    }

    /// Insert or replace a user by `id`; also un-deletes a soft-deleted user.
    pub fn upsert_user(&mut self, user: Map<String, Value>) -> Result<()> {
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .context("user object needs a string \"id\"")?;
        if id.is_empty() {
            bail!("user id must not be empty");
        }
        self.users.insert(id.to_string(), user);
        Ok(())
    }

    /// Soft delete: the user answers 404 from then on and leaves every group.
    pub fn delete_user(&mut self, id: &str) -> Result<()> {
        if self.users.remove(id).is_none() {
            bail!("cannot delete user {id:?}: no such live user");
        }
        for group in self.groups.values_mut() {
            group.members.remove(id);
        }
        Ok(())
    }

    pub fn add_member(&mut self, group: &str, member: &str) -> Result<()> {
        if !self.users.contains_key(member) && !self.groups.contains_key(member) {
            bail!("cannot add {member:?} to group {group:?}: no such user or group");
        }
        let g = self
            .groups
            .get_mut(group)
            .with_context(|| format!("no such group {group:?}"))?;
        g.members.insert(member.to_string());
        Ok(())
    }

    pub fn remove_member(&mut self, group: &str, member: &str) -> Result<()> {
        let g = self
            .groups
            .get_mut(group)
            .with_context(|| format!("no such group {group:?}"))?;
        if !g.members.remove(member) {
            bail!("{member:?} is not a direct member of group {group:?}");
        }
        Ok(())
    }

    /// Every access token issued so far (a test asserts none leaks into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.tokens.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Active subscriptions (not expired at `now`, not deleted): id, resource, changeType,
    /// notificationUrl, lifecycleNotificationUrl, expirationDateTime, clientState (raw).
    pub fn subscriptions(&self, now: DateTime<Utc>) -> Vec<Value> {
        self.subscriptions
            .values()
            .filter(|s| s.is_active(now))
            .map(Subscription::summary)
            .collect()
    }

    /// A subscription (same shape as `subscriptions`, so `["clientState"]` is its secret) by id,
    /// expired or not, as long as it was not deleted.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.subscriptions.get(id).map(Subscription::summary)
    }

    /// Routes a graph.microsoft.com request: version, then auth, then the resource.
    fn graph(&mut self, req: &HttpRequest, url: &Url, ctx: &Ctx) -> GraphResult<HttpResponse> {
        let segments: Vec<&str> = url.segments.iter().map(String::as_str).collect();
        match segments.first().copied() {
            Some("v1.0") => {}
            Some("beta") => {
                return Err(GraphError::not_implemented("the beta endpoint (use v1.0)"));
            }
            Some(v) if !v.is_empty() => {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    format!("Invalid version: {v}"),
                ));
            }
            _ => {
                return Err(GraphError::bad_request(
                    "BadRequest",
                    "Invalid version: (none)",
                ));
            }
        }
        self.authenticate(req, ctx)?;
        let rest = &segments[1..];
        let resource = rest
            .first()
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        match resource.as_str() {
            "users" => self.users_route(req, url, &rest[1..], ctx),
            "groups" => self.groups_route(req, url, &rest[1..], ctx),
            "subscriptions" => self.subscriptions_route(req, url, &rest[1..], ctx),
            "me" | "directoryobjects" | "$batch" | "$metadata" | "serviceprincipals"
            | "applications" | "organization" | "directory" | "devices" | "contacts" => {
                Err(GraphError::not_implemented(&format!("/v1.0/{}", rest[0])))
            }
            _ => Err(GraphError::segment(
                rest.first().copied().unwrap_or_default(),
            )),
        }
    }

    /// Requires `Authorization: Bearer <token>` with a token this fake issued and that has not
    /// expired at the virtual `now`.
    fn authenticate(&self, req: &HttpRequest, ctx: &Ctx) -> GraphResult<()> {
        let unauthorized =
            |message: &str| GraphError::new(401, "InvalidAuthenticationToken", message);
        let header = req.header("authorization").unwrap_or_default().trim();
        if header.is_empty() {
            return Err(unauthorized("Access token is empty."));
        }
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(unauthorized("Access token is empty.")),
        };
        match self.tokens.iter().find(|(t, _)| t == token) {
            None => Err(unauthorized(
                "Access token validation failure. Invalid audience.",
            )),
            Some((_, expires)) if *expires <= ctx.now => Err(unauthorized(
                "Lifetime validation failed, the token is expired.",
            )),
            Some(_) => Ok(()),
        }
    }
}
