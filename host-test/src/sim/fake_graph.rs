//! A simulated Microsoft identity platform token endpoint and Microsoft Graph v1.0, in memory.
//!
//! Faithful on purpose: strict about requests (auth, query options, bodies), realistic error
//! bodies, paging with opaque skiptokens, `$select` semantics. What it does not simulate answers
//! with an error that says so, never with a silent 200.
//!
//! Layout: this file holds the state, the public API and the top-level routing;
//! `fake_graph/token.rs` the token endpoint, `fake_graph/directory.rs` users, groups and
//! membership, `fake_graph/member_of.rs` memberOf/transitiveMemberOf,
//! `fake_graph/delta.rs` the change log and `/users/delta`, `/groups/delta`,
//! `fake_graph/subscriptions.rs` change-notification subscriptions, `fake_graph/batch.rs` JSON
//! batching (`$batch`),
//! `fake_graph/odata.rs` shared URL/query/error/paging helpers, `fake_graph/filter.rs` the
//! `$filter=mail eq '…'` clause on `/users`, `fake_graph/group_list.rs` `GET /groups` (with
//! `$search`), `fake_graph/permissions.rs` which application permission each request needs
//! (`entra.permissions`; a request that lacks one answers 403, `$batch` items included).
//!
//! Soft delete, as in Entra ID: a soft-deleted user answers 404, is left out of every listing
//! (`/users`, `/members`, `/transitiveMembers`, `checkMemberGroups`, ...) but KEEPS its direct
//! group memberships, hidden; `upsert_user` with its id restores it, memberships included. The
//! group delta never reports a soft delete or a restore as a membership removal (the delta
//! docs: "soft-deleted users keep their group memberships and don't show as removed until
//! permanently deleted"); see `delta.rs` for how a restore shows up.
//!
//! Permanent deletes (`purge_user`, `delete_group`) are final: 404, out of every listing and
//! membership (each reported as a removal in the group delta), `@removed: deleted` in the delta,
//! the id never reused. Directory objects that are neither users nor groups (devices, service
//! principals, org contacts: `entra.objects`) exist only as group members, listed with their
//! `@odata.type`. `expire_delta` makes every delta token issued so far answer like an expired one.

mod batch;
mod delta;
#[cfg(test)]
mod delta_tests;
mod directory;
mod filter;
mod group_list;
mod member_of;
mod odata;
mod permissions;
#[cfg(test)]
mod removal_tests;
mod subscriptions;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod token;
mod user_index;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::sim::http_types::{HttpRequest, HttpResponse};
use crate::sim::seed::{EntraSpec, ObjectType};
use delta::{Change, ChangeKind};
use directory::Kind;
use odata::{Ctx, GraphError, GraphResult, Url};
use subscriptions::Subscription;

pub struct FakeGraph {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    /// Which of User.Read.All, Group.Read.All, GroupMember.Read.All the app holds
    /// (`entra.permissions`, super-permissions expanded); see `permissions.rs`.
    reads: BTreeSet<&'static str>,
    /// Live users by id (a soft-deleted user is moved to `deleted_users`).
    users: BTreeMap<String, Map<String, Value>>,
    /// Soft-deleted users by id: restorable, and still in their groups' `members` (hidden).
    deleted_users: BTreeMap<String, Map<String, Value>>,
    groups: BTreeMap<String, Group>,
    /// Directory objects that are neither users nor groups (`entra.objects`), by id: members
    /// of groups, never listed by `/users`.
    objects: BTreeMap<String, (ObjectType, Map<String, Value>)>,
    /// Permanently deleted users: their ids are never reused.
    purged: BTreeSet<String>,
    /// Delta tokens issued by a request numbered at most this are refused (`expire_delta`).
    delta_floor: u64,
    /// Issued access tokens and when each expires.
    tokens: Vec<(String, DateTime<Utc>)>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Drives request ids, token text and subscription ids.
    seq: u64,
    /// Every directory change since construction, in order (feeds delta queries).
    changes: Vec<Change>,
    /// Virtual time stamped on changes: the latest of `set_now` and the last `handle` call.
    clock: Option<DateTime<Utc>>,
    /// `entra.page_max`: the most objects on one page of a listing, whatever `$top` asks.
    page_max: Option<usize>,
    /// `users` by id, UPN and mail, built when first needed and kept in step with every change
    /// of a user (see `user_index.rs`).
    user_index: std::cell::OnceCell<user_index::UserIndex>,
}

struct Group {
    display_name: String,
    /// Direct member ids (users or groups; ids of objects that do not exist are skipped).
    members: BTreeSet<String>,
}

impl FakeGraph {
    /// `q` with its page size capped at `entra.page_max` (the page Graph serves; the nextLink
    /// still carries the `$top` asked).
    fn page_top(&self, mut q: odata::Query) -> odata::Query {
        if let Some(max) = self.page_max {
            q.top = Some(q.top.unwrap_or(100).min(max));
        }
        q
    }

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
                    display_name: g.display_name().to_string(),
                    members: g.members.iter().cloned().collect(),
                };
                (g.id.clone(), group)
            })
            .collect();
        FakeGraph {
            tenant_id: spec.tenant_id.clone(),
            client_id: spec.client_id.clone(),
            client_secret: spec.client_secret.clone(),
            reads: spec.read_permissions(),
            page_max: spec.page_max.map(|m| m.max(1)),
            users,
            deleted_users: BTreeMap::new(),
            groups,
            objects: spec
                .objects
                .iter()
                .map(|o| (o.id.clone(), (o.odata_type, o.properties.clone())))
                .collect(),
            purged: BTreeSet::new(),
            delta_floor: 0,
            tokens: Vec::new(),
            subscriptions: BTreeMap::new(),
            seq: 0,
            changes: Vec::new(),
            clock: None,
            user_index: Default::default(),
        }
    }

    /// The look-ups of `users` (see `user_index.rs`).
    fn user_index(&self) -> &user_index::UserIndex {
        self.user_index
            .get_or_init(|| user_index::UserIndex::new(&self.users))
    }

    /// Sets the virtual time stamped on the changes the mutation methods record. `handle` also
    /// sets it (to its `now`), so a harness that calls `set_now` before mutating, or mutates
    /// only after at least one request at the current virtual time, gets accurate stamps.
    /// Before either, changes carry no time. Delta-token expiry does not depend on it (a token
    /// expires 7 days after the response that issued it).
    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.clock = Some(now);
    }

    /// Answers a request whose URL host is login.microsoftonline.com or graph.microsoft.com.
    pub fn handle(&mut self, req: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
        self.seq += 1;
        self.clock = Some(now);
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

    /// Insert or replace a user by `id`; a soft-deleted user with that id is restored (with its
    /// group memberships). Records a change: "created" for a new or restored user, "updated"
    /// with the changed property names for an existing one (nothing if nothing changed).
    pub fn upsert_user(&mut self, user: Map<String, Value>) -> Result<()> {
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .context("user object needs a string \"id\"")?
            .to_string();
        if id.is_empty() {
            bail!("user id must not be empty");
        }
        if self.purged.contains(&id) {
            bail!("user {id:?} was permanently deleted: Entra never reuses an object id");
        }
        if self.groups.contains_key(&id) || self.objects.contains_key(&id) {
            bail!("{id:?} is the id of a group or another directory object");
        }
        let old = self.users.insert(id.clone(), user);
        if let Some(index) = self.user_index.get_mut() {
            if let Some(old) = &old {
                index.remove(&id, old);
            }
            index.add(&id, &self.users[&id]);
        }
        match old {
            Some(old) => {
                let changed = delta::changed_props(&old, &self.users[&id]);
                if !changed.is_empty() {
                    self.record(ChangeKind::UserUpdated(id, changed));
                }
            }
            None => {
                self.deleted_users.remove(&id);
                self.record(ChangeKind::UserCreated(id.clone()));
                // Memberships that were hidden (soft delete) or named in the fixture before the
                // user existed become visible in `/members`: the group delta reports them as
                // added, so a client replaying deltas converges on what `/members` says.
                let groups: Vec<String> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.members.contains(&id))
                    .map(|(gid, _)| gid.clone())
                    .collect();
                for group in groups {
                    self.record_member(&group, &id, Kind::User, true);
                }
            }
        }
        Ok(())
    }

    /// Soft delete: the user answers 404 from then on and drops out of every listing, but keeps
    /// its (hidden) group memberships, so the group delta shows nothing (see the module docs).
    /// Records a "deleted" change (`@removed: changed` in the users delta).
    pub fn delete_user(&mut self, id: &str) -> Result<()> {
        let Some(user) = self.users.remove(id) else {
            bail!("cannot delete user {id:?}: no such live user");
        };
        if let Some(index) = self.user_index.get_mut() {
            index.remove(id, &user);
        }
        self.deleted_users.insert(id.to_string(), user);
        self.record(ChangeKind::UserDeleted(id.to_string()));
        Ok(())
    }

    /// Permanent delete (a hard delete, or the purge of a soft-deleted user): the user answers
    /// 404, leaves every group (the group delta reports each membership `@removed`, as Graph
    /// does once a user is permanently deleted), the users delta reports it
    /// `@removed: {"reason": "deleted"}`, and its id can never be used again.
    pub fn purge_user(&mut self, id: &str) -> Result<()> {
        let live = self.users.remove(id);
        if let (Some(index), Some(user)) = (self.user_index.get_mut(), &live) {
            index.remove(id, user);
        }
        if live.is_none() && self.deleted_users.remove(id).is_none() {
            bail!("cannot purge user {id:?}: no such live or soft-deleted user");
        }
        self.purged.insert(id.to_string());
        let groups: Vec<String> = self
            .groups
            .iter_mut()
            .filter_map(|(gid, g)| g.members.remove(id).then(|| gid.clone()))
            .collect();
        for group in groups {
            self.record_member(&group, id, Kind::User, false);
        }
        self.record(ChangeKind::UserPurged(id.to_string()));
        Ok(())
    }

    /// Deletes a group. Every simulated group is a security group, which Entra deletes
    /// permanently (delta docs: "security group deletion ... reason: deleted"): it answers 404
    /// from then on, leaves the groups that contained it (each reported as a membership removal
    /// in the group delta), and the groups delta reports it `@removed: {"reason": "deleted"}`.
    pub fn delete_group(&mut self, id: &str) -> Result<()> {
        if self.groups.remove(id).is_none() {
            bail!("cannot delete group {id:?}: no such group");
        }
        let parents: Vec<String> = self
            .groups
            .iter_mut()
            .filter_map(|(gid, g)| g.members.remove(id).then(|| gid.clone()))
            .collect();
        for group in parents {
            self.record_member(&group, id, Kind::Group, false);
        }
        self.record(ChangeKind::GroupDeleted(id.to_string()));
        Ok(())
    }

    /// Graph refuses every delta token (`$deltatoken` and `$skiptoken`, `latest` ones included)
    /// issued so far, with the answer it gives an expired token (`400 syncStateNotFound`); the
    /// tokens of later requests are valid.
    pub fn expire_delta(&mut self) {
        self.delta_floor = self.seq;
    }

    /// Removes a subscription as if Graph had dropped it (test hook); false if there was none.
    pub fn remove_subscription(&mut self, id: &str) -> bool {
        self.subscriptions.remove(id).is_some()
    }

    /// Adds a direct member (a live user, a group or a directory object); a no-op, recording nothing, if it already
    /// is one. Records a membership change for the group delta.
    pub fn add_member(&mut self, group: &str, member: &str) -> Result<()> {
        let Some(kind) = self.kind_of(member) else {
            bail!(
                "cannot add {member:?} to group {group:?}: no such live user, group or directory object"
            );
        };
        let g = self
            .groups
            .get_mut(group)
            .with_context(|| format!("no such group {group:?}"))?;
        if g.members.insert(member.to_string()) {
            self.record_member(group, member, kind, true);
        }
        Ok(())
    }

    /// Removes a direct member and records a membership change for the group delta. A
    /// soft-deleted user's hidden membership cannot be removed (as in Entra ID, where the link is
    /// not reachable until the user is restored).
    pub fn remove_member(&mut self, group: &str, member: &str) -> Result<()> {
        if self.deleted_users.contains_key(member) {
            bail!(
                "cannot remove {member:?} from group {group:?}: the user is soft-deleted (its \
                 memberships are kept for a restore); restore it with upsert_user first"
            );
        }
        let kind = self.kind_of(member).unwrap_or(Kind::User);
        let g = self
            .groups
            .get_mut(group)
            .with_context(|| format!("no such group {group:?}"))?;
        if !g.members.remove(member) {
            bail!("{member:?} is not a direct member of group {group:?}");
        }
        self.record_member(group, member, kind, false);
        Ok(())
    }

    fn record_member(&mut self, group: &str, member: &str, kind: Kind, added: bool) {
        self.record(ChangeKind::Member {
            group: group.to_string(),
            member: member.to_string(),
            kind,
            added,
        });
    }

    /// Appends to the change log with the next sequence number and the current virtual time.
    fn record(&mut self, what: ChangeKind) {
        let seq = self.changes.last().map_or(1, |c| c.seq + 1);
        self.changes.push(Change {
            seq,
            at: self.clock,
            what,
        });
    }

    /// The latest change sequence number (0 before any change).
    fn change_seq(&self) -> u64 {
        self.changes.last().map_or(0, |c| c.seq)
    }

    /// The change log, oldest first, for reports and debugging: `{"seq", "at" (RFC 3339 or
    /// null), "change": "userCreated"|"userUpdated"|"userDeleted"|"userPurged"|"groupDeleted"|"memberAdded"|"memberRemoved",
    /// "id" | "group"+"member", "properties" (userUpdated)}`.
    pub fn change_log(&self) -> Vec<Value> {
        self.changes.iter().map(Change::to_json).collect()
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

    /// Routes a graph.microsoft.com request: version, then auth, then permissions, then the
    /// resource.
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
        self.authorize(req, rest)?;
        let resource = rest
            .first()
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        match resource.as_str() {
            "users" => self.users_route(req, url, &rest[1..], ctx),
            "groups" => self.groups_route(req, url, &rest[1..], ctx),
            "subscriptions" => self.subscriptions_route(req, url, &rest[1..], ctx),
            "$batch" if rest.len() == 1 => self.batch(req, ctx),
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
