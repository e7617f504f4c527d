//! The directory change log and the delta queries built on it: `GET /users/delta` and
//! `GET /groups/delta` (docs: delta-query-overview, delta-query-users, delta-query-groups).
//!
//! Rounds and tokens. A round is the initial request (or a deltaLink) plus every nextLink after
//! it. Nothing is stored server-side: the opaque `$skiptoken`/`$deltatoken` carry the resource,
//! the `$select`ed properties, the change-log window and a timestamp, sealed with a checksum.
//! A round covers the log up to the sequence number current when it began; objects are
//! rendered as they are when each page is served, so a change made mid-round may show up both
//! in this round and in the next one (Graph's documented "replays"). Pages hold 100 objects,
//! in id order; a page has either `@odata.nextLink` or `@odata.deltaLink`, never both. Every
//! token expires 7 days (virtual time) after the response that issued it (skiptokens: after
//! the round began): `400 syncStateNotFound`, as do tokens from a future the log never reached
//! and tokens issued (each carries the number of the request that issued it) before the last
//! `expire_delta`.
//!
//! Users. Initial round: every live user. Later rounds: each user with a change in the window
//! at most once, as it is now: the full selected representation for a created, restored or
//! updated user; `{"id", "@removed": {"reason": "changed"}}` for a soft-deleted one,
//! `{"id", "@removed": {"reason": "deleted"}}` for a permanently deleted (purged) one. An update
//! surfaces a user only if a changed property is tracked (the `$select`ed ones, or the default
//! set without `$select`), as in Graph.
//!
//! Groups. `members` is tracked when `$select`ed, and without `$select` (then the default group
//! properties are returned too). Initial round: every group; with `members@delta` listing its
//! current direct live members when it has any. Later rounds: the groups whose direct
//! membership changed, each member once with the net effect (added: no annotation; removed:
//! `"@removed": {"reason": "deleted"}`; added and removed again, or the reverse: left out).
//! A group deleted in the window is `{"id", "@removed": {"reason": "deleted"}}` (security groups
//! are deleted permanently), tracked members or not, and the groups that contained it report it
//! removed from their `members@delta`; a purged user is removed from its groups the same way.
//! A soft delete is not a membership change (docs: soft-deleted users keep their memberships
//! and are not shown as removed until permanently deleted). DECISION (docs silent): a restore,
//! which makes the hidden membership visible in `/members` again, is reported as an addition,
//! and an addition whose member is soft-deleted right now is held back until the restore, so a
//! client that replays deltas ends up with what `/members` says. The fake cannot change group
//! properties, so without `members` tracked a later round is always empty. One group's members
//! are split across repeated group objects of at most 100 members each (as Graph does for large
//! groups).
//!
//! Not simulated (400 that says so): `$filter=id eq '...'`, changing `$select` on a deltaLink,
//! `$select=manager`. `Prefer: return=minimal` is ignored (all selected properties returned).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::FakeGraph;
use super::directory::{GROUP_PROPS, Kind, USER_DEFAULT, collection_select, render};
use super::odata::{
    Ctx, GRAPH_ROOT, GraphError, GraphResult, Selection, Url, find_name, parse_query, seal, unseal,
};
use crate::sim::http_types::HttpResponse;

const PAGE_SIZE: usize = 100;
const MEMBERS_PER_OBJECT: usize = 100;
const TOKEN_LIFETIME_DAYS: i64 = 7;
const DELTA_PREFIX: &str = "oEcOySpF";
const SKIP_PREFIX: &str = "oEBwdSP6";
const SEP: char = '\u{1f}';

/// One entry of the change log.
pub(super) struct Change {
    pub(super) seq: u64,
    pub(super) at: Option<DateTime<Utc>>,
    pub(super) what: ChangeKind,
}

pub(super) enum ChangeKind {
    /// A new user, or a soft-deleted one restored.
    UserCreated(String),
    /// An existing user with these properties changed.
    UserUpdated(String, BTreeSet<String>),
    /// A soft delete.
    UserDeleted(String),
    /// A permanent delete (`@removed: deleted`).
    UserPurged(String),
    /// A group deleted (security groups: permanently).
    GroupDeleted(String),
    /// A direct member added to or removed from a group.
    Member {
        group: String,
        member: String,
        kind: Kind,
        added: bool,
    },
}

impl Change {
    /// For `FakeGraph::change_log`.
    pub(super) fn to_json(&self) -> Value {
        let at = self
            .at
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        let mut value = match &self.what {
            ChangeKind::UserCreated(id) => json!({"change": "userCreated", "id": id}),
            ChangeKind::UserUpdated(id, props) => {
                json!({"change": "userUpdated", "id": id, "properties": props})
            }
            ChangeKind::UserDeleted(id) => json!({"change": "userDeleted", "id": id}),
            ChangeKind::UserPurged(id) => json!({"change": "userPurged", "id": id}),
            ChangeKind::GroupDeleted(id) => json!({"change": "groupDeleted", "id": id}),
            ChangeKind::Member {
                group,
                member,
                added,
                ..
            } => json!({
                "change": if *added { "memberAdded" } else { "memberRemoved" },
                "group": group, "member": member,
            }),
        };
        value["seq"] = json!(self.seq);
        value["at"] = json!(at);
        value
    }
}

/// Names of the properties that differ (a missing property equals `null`).
pub(super) fn changed_props(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> BTreeSet<String> {
    old.keys()
        .chain(new.keys())
        .filter(|k| old.get(*k).unwrap_or(&Value::Null) != new.get(*k).unwrap_or(&Value::Null))
        .cloned()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Users,
    Groups,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Users => "users",
            Resource::Groups => "groups",
        }
    }
}

/// The state of a round, as carried by its tokens.
struct Round {
    resource: Resource,
    /// Canonical `$select`ed names; `None` without `$select`.
    select: Option<Vec<String>>,
    /// `None`: the initial round (current state); else changes after this sequence number.
    since: Option<u64>,
    /// The last change sequence number the round covers.
    until: u64,
    started: DateTime<Utc>,
    /// The last (object id, slice) served.
    cursor: Option<(String, usize)>,
}

type Items = Vec<((String, usize), Value)>;

impl FakeGraph {
    pub(super) fn users_delta(&self, url: &Url, ctx: &Ctx) -> GraphResult<HttpResponse> {
        self.delta(Resource::Users, url, ctx)
    }

    pub(super) fn groups_delta(&self, url: &Url, ctx: &Ctx) -> GraphResult<HttpResponse> {
        self.delta(Resource::Groups, url, ctx)
    }

    fn delta(&self, resource: Resource, url: &Url, ctx: &Ctx) -> GraphResult<HttpResponse> {
        for (name, _, _) in &url.query {
            let option = name.to_ascii_lowercase();
            if ["$top", "$orderby", "$expand"].contains(&option.as_str()) {
                return Err(GraphError::bad_request(
                    "Request_UnsupportedQuery",
                    format!("The query option '{name}' is not supported with delta queries."),
                ));
            }
        }
        let q = parse_query(url, &["select", "skiptoken", "deltatoken"])?;
        let deltatoken = url
            .query
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case("$deltatoken"))
            .map(|(_, v, _)| v.as_str());
        let (round, first) = match (q.skiptoken.as_deref(), deltatoken) {
            (Some(_), Some(_)) => {
                return Err(GraphError::bad_request(
                    "Request_BadRequest",
                    "'$skiptoken' and '$deltatoken' cannot be combined.",
                ));
            }
            (Some(token), None) => {
                if q.select.is_some() {
                    return Err(GraphError::bad_request(
                        "Request_BadRequest",
                        "'$select' cannot be combined with '$skiptoken': the selection is part of the token.",
                    ));
                }
                (self.decode_skiptoken(resource, token, ctx.now)?, false)
            }
            (None, Some("latest")) => {
                let select = self.resolve_select(resource, q.select.as_ref())?;
                let mut body = Map::new();
                body.insert("@odata.context".into(), context(resource, &select, true));
                let link = delta_link(resource, &select, self.change_seq(), ctx.now, self.seq);
                body.insert("@odata.deltaLink".into(), json!(link));
                body.insert("value".into(), json!([]));
                return Ok(ctx.json(200, &Value::Object(body)));
            }
            (None, Some(token)) => {
                if q.select.is_some() {
                    return Err(GraphError::not_implemented(
                        "changing '$select' on a deltaLink (GET the deltaLink exactly as returned)",
                    ));
                }
                let (select, since) = self.decode_deltatoken(resource, token, ctx.now)?;
                let round = Round {
                    resource,
                    select,
                    since: Some(since),
                    until: self.change_seq(),
                    started: ctx.now,
                    cursor: None,
                };
                (round, false)
            }
            (None, None) => {
                let round = Round {
                    resource,
                    select: self.resolve_select(resource, q.select.as_ref())?,
                    since: None,
                    until: self.change_seq(),
                    started: ctx.now,
                    cursor: None,
                };
                (round, true)
            }
        };
        let items = match resource {
            Resource::Users => self.user_items(&round),
            Resource::Groups => self.group_items(&round),
        };
        let mut rest = items
            .into_iter()
            .filter(|(key, _)| round.cursor.as_ref().is_none_or(|c| key > c));
        let page: Items = rest.by_ref().take(PAGE_SIZE).collect();
        let more = rest.next().is_some();
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            context(resource, &round.select, first),
        );
        match page.last() {
            Some((last, _)) if more => {
                let link = skip_link(&round, last, self.seq);
                body.insert("@odata.nextLink".into(), json!(link));
            }
            _ => {
                let link = delta_link(resource, &round.select, round.until, ctx.now, self.seq);
                body.insert("@odata.deltaLink".into(), json!(link));
            }
        }
        let value: Vec<Value> = page.into_iter().map(|(_, v)| v).collect();
        body.insert("value".into(), Value::Array(value));
        Ok(ctx.json(200, &Value::Object(body)))
    }

    /// Validates `$select` for the resource; canonical names, `None` without `$select`.
    fn resolve_select(
        &self,
        resource: Resource,
        select: Option<&Vec<String>>,
    ) -> GraphResult<Option<Vec<String>>> {
        let sel = match resource {
            Resource::Users => {
                if let Some(names) = select
                    && names.iter().any(|n| n.eq_ignore_ascii_case("manager"))
                {
                    return Err(GraphError::not_implemented(
                        "tracking 'manager' in /users/delta",
                    ));
                }
                let sel = Selection::resolve(select, "user", |n| self.user_prop(n))?;
                collection_select(&sel)?;
                sel
            }
            Resource::Groups => Selection::resolve(select, "group", |n| {
                find_name(n, GROUP_PROPS.iter().copied().chain(["members"]))
            })?,
        };
        Ok(match sel {
            Selection::Default => None,
            Selection::Props(props) => Some(props),
        })
    }

    /// The users of a round (see the module docs), keyed by (id, 0).
    fn user_items(&self, round: &Round) -> Items {
        let sel = selection(&round.select, "");
        let Some(since) = round.since else {
            return self
                .users
                .iter()
                .map(|(id, u)| ((id.clone(), 0), render(u, Kind::User, &sel)))
                .collect();
        };
        let tracked: Vec<&str> = match &round.select {
            None => USER_DEFAULT.to_vec(),
            Some(props) => props.iter().map(String::as_str).collect(),
        };
        let is_tracked = |p: &String| tracked.iter().any(|t| t.eq_ignore_ascii_case(p));
        let mut surfaced = BTreeSet::new();
        for change in self.window(since, round.until) {
            match &change.what {
                ChangeKind::UserCreated(id)
                | ChangeKind::UserDeleted(id)
                | ChangeKind::UserPurged(id) => {
                    surfaced.insert(id.clone());
                }
                ChangeKind::UserUpdated(id, props) if props.iter().any(is_tracked) => {
                    surfaced.insert(id.clone());
                }
                _ => {}
            }
        }
        surfaced
            .into_iter()
            .map(|id| {
                let value = match self.users.get(&id) {
                    Some(user) => render(user, Kind::User, &sel),
                    None if self.purged.contains(&id) => {
                        json!({"id": id, "@removed": {"reason": "deleted"}})
                    }
                    None => json!({"id": id, "@removed": {"reason": "changed"}}),
                };
                ((id, 0), value)
            })
            .collect()
    }

    /// The groups of a round (see the module docs), keyed by (id, slice of members).
    fn group_items(&self, round: &Round) -> Items {
        let sel = selection(&round.select, "members");
        let track_members = round
            .select
            .as_ref()
            .is_none_or(|p| p.iter().any(|n| n == "members"));
        let mut deltas: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        // Groups deleted in the window: reported removed, whatever is tracked.
        let mut removed: Vec<String> = Vec::new();
        if let Some(since) = round.since {
            for change in self.window(since, round.until) {
                if let ChangeKind::GroupDeleted(id) = &change.what
                    && !self.groups.contains_key(id)
                {
                    removed.push(id.clone());
                }
            }
        }
        match round.since {
            None => {
                for gid in self.groups.keys() {
                    let members = if track_members {
                        self.direct_members(gid)
                            .into_iter()
                            .map(|(id, kind)| member_entry(&id, kind, false))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    deltas.insert(gid.clone(), members);
                }
            }
            Some(_) if !track_members => {}
            Some(since) => {
                // (group, member) -> (first change added?, last change added?, kind)
                let mut net: BTreeMap<(&str, &str), (bool, bool, Kind)> = BTreeMap::new();
                for change in self.window(since, round.until) {
                    if let ChangeKind::Member {
                        group,
                        member,
                        kind,
                        added,
                    } = &change.what
                    {
                        net.entry((group, member))
                            .and_modify(|e| e.1 = *added)
                            .or_insert((*added, *added, *kind));
                    }
                }
                for ((group, member), (first, last, kind)) in net {
                    // Equal first and last: a real change (different: back where it started).
                    // An addition waits while the member is soft-deleted (see module docs).
                    // A group deleted since is reported as removed, not with its members.
                    if first == last
                        && (!last || self.kind_of(member).is_some())
                        && self.groups.contains_key(group)
                    {
                        deltas
                            .entry(group.to_string())
                            .or_default()
                            .push(member_entry(member, kind, !last));
                    }
                }
            }
        }
        let mut items = Vec::new();
        for gid in removed {
            let value = json!({"id": gid, "@removed": {"reason": "deleted"}});
            items.push(((gid, 0), value));
        }
        for (gid, members) in deltas {
            let base = render(&self.group_object(&gid), Kind::Group, &sel);
            if members.is_empty() {
                items.push(((gid, 0), base));
                continue;
            }
            for (slice, chunk) in members.chunks(MEMBERS_PER_OBJECT).enumerate() {
                let mut value = base.clone();
                value["members@delta"] = Value::Array(chunk.to_vec());
                items.push(((gid.clone(), slice), value));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items
    }

    /// Changes with `since < seq <= until`.
    fn window(&self, since: u64, until: u64) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(move |c| c.seq > since && c.seq <= until)
    }

    fn decode_deltatoken(
        &self,
        resource: Resource,
        token: &str,
        now: DateTime<Utc>,
    ) -> GraphResult<(Option<Vec<String>>, u64)> {
        let invalid = || invalid_token("$deltatoken", token);
        let payload = unseal(token, DELTA_PREFIX).ok_or_else(invalid)?;
        let parts: Vec<&str> = payload.split(SEP).collect();
        let ["d", res, select, seq, issued, n] = parts.as_slice() else {
            return Err(invalid());
        };
        self.check_generation(n)?;
        if *res != resource.name() {
            return Err(invalid());
        }
        let seq: u64 = seq.parse().map_err(|_| invalid())?;
        let issued = parse_millis(issued).ok_or_else(invalid)?;
        self.check_state(seq, issued, now)?;
        Ok((parse_select(select), seq))
    }

    fn decode_skiptoken(
        &self,
        resource: Resource,
        token: &str,
        now: DateTime<Utc>,
    ) -> GraphResult<Round> {
        let invalid = || invalid_token("$skiptoken", token);
        let payload = unseal(token, SKIP_PREFIX).ok_or_else(invalid)?;
        let parts: Vec<&str> = payload.split(SEP).collect();
        let ["s", res, select, since, until, started, last, slice, n] = parts.as_slice() else {
            return Err(invalid());
        };
        self.check_generation(n)?;
        if *res != resource.name() {
            return Err(invalid());
        }
        let since = match *since {
            "-" => None,
            s => Some(s.parse().map_err(|_| invalid())?),
        };
        let until: u64 = until.parse().map_err(|_| invalid())?;
        let started = parse_millis(started).ok_or_else(invalid)?;
        let slice: usize = slice.parse().map_err(|_| invalid())?;
        self.check_state(until, started, now)?;
        Ok(Round {
            resource,
            select: parse_select(select),
            since,
            until,
            started,
            cursor: Some((last.to_string(), slice)),
        })
    }

    /// A token older than 7 days, or naming a change this fake never recorded, has no state.
    fn check_state(&self, seq: u64, issued: DateTime<Utc>, now: DateTime<Utc>) -> GraphResult<()> {
        if now - issued >= Duration::days(TOKEN_LIFETIME_DAYS) || seq > self.change_seq() {
            return Err(sync_state_not_found());
        }
        Ok(())
    }

    /// A token issued (by the request numbered `n`) before the last `expire_delta` has no state.
    fn check_generation(&self, n: &str) -> GraphResult<()> {
        match n.parse::<u64>() {
            Ok(n) if n > self.delta_floor => Ok(()),
            _ => Err(sync_state_not_found()),
        }
    }
}

/// The `Selection` to render with; `skip` is a name to leave out (`members`, a relationship).
fn selection(select: &Option<Vec<String>>, skip: &str) -> Selection {
    match select {
        None => Selection::Default,
        Some(props) => Selection::Props(props.iter().filter(|p| *p != skip).cloned().collect()),
    }
}

/// `users(a,b)` on a round's first response (relationships left out, like Graph's
/// `groups(displayName,description)` for `$select=displayName,description,members`); later
/// pages and rounds say just `users`.
fn context(resource: Resource, select: &Option<Vec<String>>, first: bool) -> Value {
    let suffix = match select {
        Some(props) if first => {
            let props: Vec<&str> = props
                .iter()
                .map(String::as_str)
                .filter(|p| *p != "members")
                .collect();
            if props.is_empty() {
                String::new()
            } else {
                format!("({})", props.join(","))
            }
        }
        _ => String::new(),
    };
    json!(format!(
        "{GRAPH_ROOT}/$metadata#{}{suffix}",
        resource.name()
    ))
}

fn member_entry(id: &str, kind: Kind, removed: bool) -> Value {
    let mut entry = json!({"@odata.type": kind.odata_type(), "id": id});
    if removed {
        entry["@removed"] = json!({"reason": "deleted"});
    }
    entry
}

fn select_text(select: &Option<Vec<String>>) -> String {
    select.as_ref().map_or_else(|| "*".into(), |p| p.join(","))
}

fn parse_select(text: &str) -> Option<Vec<String>> {
    (text != "*").then(|| {
        text.split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    })
}

fn parse_millis(text: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(text.parse().ok()?)
}

/// `n`: the number of the request that issues the link (see `FakeGraph::expire_delta`).
fn delta_link(
    resource: Resource,
    select: &Option<Vec<String>>,
    seq: u64,
    now: DateTime<Utc>,
    n: u64,
) -> String {
    let payload = [
        "d",
        resource.name(),
        &select_text(select),
        &seq.to_string(),
        &now.timestamp_millis().to_string(),
        &n.to_string(),
    ]
    .join(&SEP.to_string());
    format!(
        "{GRAPH_ROOT}/{}/delta?$deltatoken={}",
        resource.name(),
        seal(DELTA_PREFIX, &payload)
    )
}

fn skip_link(round: &Round, (last, slice): &(String, usize), n: u64) -> String {
    let since = round.since.map_or_else(|| "-".into(), |s| s.to_string());
    let payload = [
        "s",
        round.resource.name(),
        &select_text(&round.select),
        &since,
        &round.until.to_string(),
        &round.started.timestamp_millis().to_string(),
        last,
        &slice.to_string(),
        &n.to_string(),
    ]
    .join(&SEP.to_string());
    format!(
        "{GRAPH_ROOT}/{}/delta?$skiptoken={}",
        round.resource.name(),
        seal(SKIP_PREFIX, &payload)
    )
}

/// Graph's answer to a delta token whose sync state expired (delta-query-overview: "an expired
/// token yields a 4xx error with codes such as syncStateNotFound").
fn sync_state_not_found() -> GraphError {
    GraphError::bad_request(
        "syncStateNotFound",
        "The sync state is not found or has expired. Please restart the sync.",
    )
}

fn invalid_token(option: &str, token: &str) -> GraphError {
    GraphError::bad_request(
        "Request_BadRequest",
        format!("Invalid {option} value '{token}'."),
    )
}
