//! Microsoft Graph client: the client-credentials token and the reads the sync needs.
//!
//! Credentials only ever go to `login.microsoftonline.com` and `graph.microsoft.com` over https:
//! every link Graph hands back (`@odata.nextLink`, `@odata.deltaLink`) is checked when it arrives
//! ([`check_link`]), before it is followed or stored, and every URL again before the bearer token
//! is attached.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Config, Secret};
use crate::domain::entra::USER_SELECT;
use crate::domain::links::repeated_link;
use crate::domain::roles::Memberships;
use crate::failure::Failure;
use crate::failure::upstream;
use crate::log::Log;
use crate::platform::budget::{self, Step};
use crate::platform::url::{Url, encode, shown};
use crate::platform::{HttpResult, Method, Platform, Request, Response};

mod batch;
mod listings;
mod mail;

pub use batch::BATCH_MAX;
pub use listings::Listings;
pub use mail::{Holders, MailQuery};

pub const LOGIN_HOST: &str = "login.microsoftonline.com";
pub const GRAPH_HOST: &str = "graph.microsoft.com";
pub const GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0";

/// Page size for user pages: one page is one planner batch (the FAQ's "batches of 100").
pub const USER_PAGE: u32 = 100;
/// Page size for id-only listings, where bigger pages mean fewer round trips.
pub const ID_PAGE: u32 = 999;

/// The token request (form-encoded client-credentials grant).
pub fn token_request(config: &Config) -> Request {
    let body = format!(
        "client_id={}&scope={}&client_secret={}&grant_type=client_credentials",
        encode(&config.client_id),
        encode("https://graph.microsoft.com/.default"),
        encode(config.client_secret.expose()),
    );
    Request {
        method: Method::Post,
        url: format!(
            "https://{LOGIN_HOST}/{}/oauth2/v2.0/token",
            encode(&config.tenant_id)
        ),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
    }
}

#[derive(Deserialize)]
struct TokenOk {
    access_token: String,
}

/// Reads the token endpoint's answer. Errors name the OAuth error, the AADSTS code and what it
/// usually means, with the first line of `error_description` (bounded, see
/// [`upstream::oauth_error`]); a body that is not an OAuth error is described by its content
/// type and size only. The description can quote what was sent (the client id, even the secret):
/// the call's last filter ([`Platform::scrub`]) removes the secret before anything is shown.
pub fn parse_token(result: HttpResult) -> Result<Secret, Failure> {
    let resp = result.map_err(|e| Failure::http("Entra token endpoint", &e))?;
    if resp.is_success() {
        return serde_json::from_slice::<TokenOk>(&resp.body)
            .map(|t| Secret::new(t.access_token))
            .map_err(|_| Failure::transient("Entra token endpoint returned an unreadable token"));
    }
    let Some((error, first)) = upstream::oauth_error(&resp.body) else {
        return Err(Failure::status(
            "Entra token endpoint",
            resp.status,
            &upstream::opaque(&resp),
        ));
    };
    // The first line of error_description is "AADSTSnnnn: text"; the rest is trace noise.
    let code = first
        .split(':')
        .next()
        .and_then(upstream::code)
        .filter(|c| c.starts_with("AADSTS"))
        .unwrap_or_default();
    let hint = match code {
        "AADSTS7000215" => "the client secret is wrong: check entra_client_secret",
        "AADSTS7000222" => "the client secret has expired: create a new one",
        "AADSTS700016" => "no such application in this tenant: check entra_client_id",
        "AADSTS90002" => "no such tenant: check entra_tenant_id",
        _ => "see the Entra error text",
    };
    let mut failure = Failure::status(
        "Entra token endpoint",
        resp.status,
        &if code.is_empty() {
            format!("{error} ({hint}): {first}")
        } else {
            format!("{error} {code} ({hint}): {first}")
        },
    );
    failure.retryable = resp.status >= 500 || resp.status == 429;
    Err(failure)
}

/// Graph calls with an access token, refreshed if Graph answers 401 (expired token).
pub struct Graph<'a> {
    platform: &'a dyn Platform,
    token: RefCell<Secret>,
    /// The token request, to refresh with; none when refreshing is not possible.
    refresh: Option<Request>,
    /// When the token was last refreshed in this call.
    refreshed: Cell<Option<chrono::DateTime<chrono::Utc>>>,
}

/// A token refreshed less than this long ago is not refreshed again on a 401 (Graph's access
/// tokens live 60–90 minutes; a 401 that soon after is not an expiry, and refreshing again
/// would loop).
const REFRESH_AGAIN_MINUTES: i64 = 30;

/// Checks that a URL may receive the Graph bearer token.
pub fn check_graph_url(url: &str) -> Result<(), Failure> {
    let parsed = Url::parse(url)
        .map_err(|e| Failure::fatal(format!("refusing a Graph URL that {e}: {}", shown(url))))?;
    if parsed.scheme != "https" || parsed.host != GRAPH_HOST || parsed.port.is_some() {
        return Err(Failure::fatal(format!(
            "refusing to send the Graph token to {}",
            parsed.origin()
        )));
    }
    Ok(())
}

/// Checks a link Graph handed out in answer to `request` (`key`: `@odata.nextLink` or
/// `@odata.deltaLink`) before it is followed or stored: printable ASCII only (no CR/LF, space,
/// control or non-ASCII character), origin `https://graph.microsoft.com`, path under `/v1.0/`,
/// and the same resource path as the request (compared ignoring ASCII case and a trailing
/// `()`). Returns the link as the URL standard writes it: what is then sent and stored.
/// A bad link fails the read, not retryable (a retry gets the same link), with a message
/// naming what was wrong and the link escaped and cut to 120 characters.
pub fn check_link(link: &str, request: &str, key: &str, what: &str) -> Result<String, Failure> {
    link_problem(link, request).map_err(|why| {
        Failure::fatal(format!(
            "{what}: Graph sent an {key} that is refused ({why}): {}",
            shown(link)
        ))
    })
}

fn link_problem(link: &str, request: &str) -> Result<String, String> {
    let url = Url::parse(link).map_err(|e| format!("it {e}"))?;
    if url.scheme != "https" || url.host != GRAPH_HOST || url.port.is_some() {
        return Err(format!(
            "refusing to send the Graph token to {}",
            url.origin()
        ));
    }
    if !url.path.starts_with("/v1.0/") {
        return Err("its path is not under /v1.0/".into());
    }
    let resource = |path: &str| {
        path.trim_end_matches('/')
            .trim_end_matches("()")
            .to_string()
    };
    let expected = Url::parse(request)
        .map(|u| resource(&u.path))
        .unwrap_or_default();
    if !resource(&url.path).eq_ignore_ascii_case(&expected) {
        return Err(format!(
            "its path does not continue {expected}, the resource the request read"
        ));
    }
    Ok(url.as_str().to_string())
}

/// A page of a Graph collection.
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    /// Required: a page without `value` was cut short, and must not read as "no items".
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

/// The `code: message` of a Graph error body (bounded, see [`upstream::json_error`]), or
/// `unknown: no error details (N bytes)` for any other body: never the body itself.
pub fn error_text(body: &[u8]) -> String {
    match upstream::json_error(body) {
        Some((code, message)) => format!("{code}: {message}"),
        None => format!("unknown: no error details ({} bytes)", body.len()),
    }
}

impl<'a> Graph<'a> {
    /// A client for `token`; with `config`, it can refresh the token. The token (and the
    /// configured credentials) are registered as the call's secrets.
    pub fn new(platform: &'a dyn Platform, token: Secret, config: Option<&Config>) -> Self {
        platform.add_secret(token.expose());
        if let Some(c) = config {
            c.register_secrets(platform);
        }
        Graph {
            platform,
            token: RefCell::new(token),
            refresh: config.map(token_request),
            refreshed: Cell::new(None),
        }
    }

    fn auth(&self) -> (String, String) {
        let token = self.token.borrow();
        (
            "authorization".to_string(),
            format!("Bearer {}", token.expose()),
        )
    }

    /// Gets a new token (at most once per [`REFRESH_AGAIN_MINUTES`]: a call can outlive more
    /// than one token); true if it did.
    pub(crate) fn refresh_token(&self) -> bool {
        let now = self.platform.now();
        let recent = self
            .refreshed
            .get()
            .is_some_and(|t| now - t < chrono::TimeDelta::minutes(REFRESH_AGAIN_MINUTES));
        let Some(req) = self.refresh.clone().filter(|_| !recent) else {
            return false;
        };
        self.refreshed.set(Some(now));
        match parse_token(self.platform.send(req)) {
            Ok(t) => {
                self.platform.add_secret(t.expose());
                *self.token.borrow_mut() = t;
                Log::new(self.platform).info("Graph access token refreshed after a 401", &[]);
                true
            }
            Err(_) => false,
        }
    }

    fn reauthorize(&self, mut req: Request) -> Request {
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        req.headers.insert(0, self.auth());
        req
    }

    /// Sends one request; on a Graph 401 refreshes the token once and resends.
    pub fn send(&self, req: Request) -> HttpResult {
        let result = self.platform.send(req.clone());
        if matches!(&result, Ok(r) if r.status == 401) && self.refresh_token() {
            return self.platform.send(self.reauthorize(req));
        }
        result
    }

    /// Sends requests side by side (Graph's and others'); Graph 401s are resent once with a
    /// refreshed token.
    pub fn send_all(&self, reqs: Vec<Request>) -> Vec<HttpResult> {
        self.send_wave(reqs, 0)
    }

    /// [`Graph::send_all`] for one wave of a round that goes out a wave at a time, with
    /// `waves_after` more waves of it to go (see [`Platform::send_all_before`]).
    pub fn send_wave(&self, reqs: Vec<Request>, waves_after: u64) -> Vec<HttpResult> {
        let mut results = self.platform.send_all_before(reqs.clone(), waves_after);
        let unauthorized: Vec<usize> = results
            .iter()
            .zip(&reqs)
            .enumerate()
            .filter(|(_, (r, q))| {
                matches!(r, Ok(resp) if resp.status == 401)
                    && Url::parse(&q.url).is_ok_and(|u| u.host == GRAPH_HOST)
            })
            .map(|(i, _)| i)
            .collect();
        if !unauthorized.is_empty() && self.refresh_token() {
            let again = unauthorized
                .iter()
                .map(|i| self.reauthorize(reqs[*i].clone()))
                .collect();
            for (i, r) in unauthorized.iter().zip(self.platform.send_all(again)) {
                results[*i] = r;
            }
        }
        results
    }

    pub fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Request, Failure> {
        check_graph_url(url)?;
        let mut headers = vec![self.auth()];
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        Ok(Request {
            method,
            url: url.to_string(),
            headers,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        })
    }

    fn ok(result: HttpResult, what: &str) -> Result<Response, Failure> {
        let resp = result.map_err(|e| Failure::http("Microsoft Graph", &e))?;
        if resp.is_success() {
            Ok(resp)
        } else {
            let mut f = Failure::status("Microsoft Graph", resp.status, &upstream::describe(&resp));
            f.message = format!("{what}: {}", f.message);
            Err(f)
        }
    }

    /// Reads the answer to a page request for `url` sent by the caller (e.g. in a shared
    /// round); its nextLink is checked ([`check_link`]).
    pub fn read_page(result: HttpResult, url: &str, what: &str) -> Result<Page, Failure> {
        let resp = Self::ok(result, what)?;
        parse_page(&resp.body, url, what)
    }

    /// Reads one page of a collection from a full URL (a first-page URL or a nextLink).
    pub fn page(&self, url: &str, what: &str) -> Result<Page, Failure> {
        let req = self.request(Method::Get, url, None)?;
        let resp = Self::ok(self.send(req), what)?;
        parse_page(&resp.body, url, what)
    }

    /// The first page URL of the user listing the sync plans from.
    pub fn users_url() -> String {
        format!("{GRAPH_BASE}/users?$select={USER_SELECT}&$top={USER_PAGE}")
    }

    /// Each user read alone (`GET /users/{id}?$select=…`, batched, side by side): the user
    /// as Graph has it, or `None` when Graph answers 404 (it no longer has the user).
    ///
    /// Errors: any other failed or unreadable answer (never read as "gone").
    pub fn users_read(&self, ids: &[String]) -> Result<Vec<Option<Value>>, Failure> {
        let urls: Vec<String> = ids
            .iter()
            .map(|id| format!("{GRAPH_BASE}/users/{}?$select={USER_SELECT}", encode(id)))
            .collect();
        self.get_all(&urls)?
            .into_iter()
            .map(|r| match r {
                Ok(resp) if resp.status == 404 => Ok(None),
                other => {
                    let resp = Self::ok(other, "checking a user")?;
                    serde_json::from_slice(&resp.body).map(Some).map_err(|e| {
                        Failure::transient(format!(
                            "checking a user: unreadable Graph answer: {}",
                            upstream::json_problem(&e)
                        ))
                    })
                }
            })
            .collect()
    }

    /// The ids among `groups` that do not exist (Graph answers 404 to `GET /groups/{id}`).
    ///
    /// Errors: any other failed read (a group that cannot be read is not declared missing).
    pub fn missing_groups(&self, groups: &[String]) -> Result<Vec<String>, Failure> {
        let urls: Vec<String> = groups.iter().map(|g| group_url(g)).collect();
        let mut gone = Vec::new();
        for (g, r) in groups.iter().zip(self.get_all(&urls)?) {
            match r {
                Ok(resp) if resp.status == 404 => gone.push(g.clone()),
                other => {
                    Self::ok(other, "checking a configured group")?;
                }
            }
        }
        Ok(gone)
    }

    /// Requests checking that each group exists, 20 to a `$batch` (for a round shared with
    /// other reads); unpack the answers with [`Graph::unpack_all`], then read each with
    /// [`Graph::read_group_exists`].
    pub fn group_requests(&self, groups: &[String]) -> Result<Vec<Request>, Failure> {
        let urls: Vec<String> = groups.iter().map(|g| group_url(g)).collect();
        self.batch_requests(&urls)
    }

    /// Whether a group request's answer says the group exists (false only on 404).
    ///
    /// Errors: any other failed read.
    pub fn read_group_exists(result: HttpResult) -> Result<bool, Failure> {
        match result {
            Ok(r) if r.status == 404 => Ok(false),
            other => Self::ok(other, "checking a configured group").map(|_| true),
        }
    }

    /// Transitive user members of each group (a group that is gone has no entry), in rounds
    /// of their own.
    ///
    /// Errors: a page failed after its retries, or a listing repeated a link.
    pub fn transitive_members(&self, groups: &[String]) -> Result<Memberships, Failure> {
        self.finish_listings(Self::members_listings(groups))
    }

    /// The read of `groups`' transitive members (user ids, lowercased), not begun: its rounds
    /// are the caller's ([`Listings::urls`], [`Listings::take`], [`Graph::finish_listings`]).
    /// `GET /groups/{id}/transitiveMembers?$select=id&$top=999` (05-membership.md, 5 RU a
    /// page less 1 for `$select`).
    pub fn members_listings(groups: &[String]) -> Listings {
        let cursors = groups
            .iter()
            .map(|g| {
                let url = format!(
                    "{GRAPH_BASE}/groups/{}/transitiveMembers?$select=id&$top={ID_PAGE}",
                    encode(g)
                );
                (g.clone(), url)
            })
            .collect();
        Listings::new(cursors, "reading members of group", is_user)
    }

    /// The members' read of `groups` checkpointed by an earlier call, going on. `None` when the
    /// checkpoint does not fit `groups` (a key is neither read nor listed, or is not one of
    /// them) or holds a URL that is not a link of its group's listing
    /// ([`check_link`]): the read then starts again.
    pub fn members_resume(
        groups: &[String],
        carried: crate::state::CarriedRead,
    ) -> Option<Listings> {
        let fresh = Self::members_listings(groups);
        let first: BTreeMap<&String, &String> =
            fresh.first_urls().iter().map(|(g, u)| (g, u)).collect();
        let listed: BTreeSet<&String> = carried.cursors.iter().map(|(g, _)| g).collect();
        let fits = carried
            .read
            .keys()
            .chain(listed.iter().copied())
            .all(|g| first.contains_key(g))
            && listed.iter().all(|g| carried.read.contains_key(*g))
            && carried.cursors.iter().all(|(g, u)| {
                first
                    .get(g)
                    .is_some_and(|f| check_link(u, f, "@odata.nextLink", "").is_ok())
            });
        fits.then(|| Listings::resume(carried, "reading members of group", is_user))
    }

    /// The groups that contain each group, transitively (to find mapped groups above a nested one).
    pub fn transitive_member_of(&self, groups: &[String]) -> Result<Memberships, Failure> {
        let cursors = groups
            .iter()
            .map(|g| {
                let url = format!(
                    "{GRAPH_BASE}/groups/{}/transitiveMemberOf?$select=id&$top={ID_PAGE}",
                    encode(g)
                );
                (g.clone(), url)
            })
            .collect();
        self.finish_listings(Listings::new(
            cursors,
            "reading the groups containing group",
            is_group,
        ))
    }

    /// Reads `listings` (begun or not: see [`Graph::members_listings`]) to their end in rounds
    /// of their own: each round fetches the next page of every listing that has one (20 to a
    /// `$batch`, with `get_all`'s retries), so rounds = the longest listing's pages left.
    ///
    /// Errors: a page failed after its retries, or a listing repeated a link.
    pub fn finish_listings(&self, mut listings: Listings) -> Result<Memberships, Failure> {
        while !listings.done() {
            let urls = listings.urls()?;
            let results = self.get_all(&urls)?;
            listings.take(results, true)?;
        }
        Ok(listings.into_memberships())
    }

    /// Users by id, 15 to a `GET /users?$filter=id in (…)&$select=…` (Graph's limit on an
    /// `in` clause: learn.microsoft.com/graph/filter-query-parameter) and 20 of those to a
    /// `$batch`: 300 users per HTTP request. Only each filter's first page is read; a user
    /// not returned is then read alone ([`Graph::users_read`]): what this returns lacks only
    /// the users Graph answered 404 for, and ids that are not GUIDs.
    /// Ids are GUIDs (lowercased by the caller); an apostrophe would be doubled as OData asks.
    ///
    /// Errors: a read failed (never read as "gone").
    pub fn users_by_ids(
        &self,
        ids: &[String],
        what: &str,
    ) -> Result<BTreeMap<String, Value>, Failure> {
        // Entra object ids are GUIDs; anything else cannot name a user (and would make Graph
        // refuse the whole `in` clause), so it reads as gone.
        let ids: Vec<&String> = ids.iter().filter(|id| crate::config::is_guid(id)).collect();
        let urls: Vec<String> = ids
            .chunks(IN_MAX)
            .map(|chunk| {
                let list: Vec<String> = chunk
                    .iter()
                    .map(|id| format!("'{}'", id.replace('\'', "''")))
                    .collect();
                let clause = format!("id in ({})", list.join(","));
                format!(
                    "{GRAPH_BASE}/users?$filter={}&$select={USER_SELECT}",
                    encode(&clause)
                )
            })
            .collect();
        let mut out = BTreeMap::new();
        for (url, result) in urls.iter().zip(self.get_all(&urls)?) {
            let resp = Self::ok(result, what)?;
            let page = parse_page(&resp.body, url, what)?;
            for item in page.items {
                if let Some(id) = item_id(&item) {
                    out.insert(id, item);
                }
            }
        }
        // A user a filter did not return is read alone: absent only when Graph answers 404.
        // (Graph may serve a filter's matches over more than one page, and only the first is
        // read: a user missing from it is not gone. Read as gone, a red team's burst of
        // notifications deactivated enabled users, and the full sync's leaver walk left
        // disabled ones active.)
        let absent: Vec<String> = ids
            .iter()
            .filter(|id| !out.contains_key(id.as_str()))
            .map(|id| (*id).clone())
            .collect();
        if !absent.is_empty() {
            let read = self.users_read(&absent)?;
            for (id, user) in absent.into_iter().zip(read) {
                if let Some(u) = user {
                    out.insert(id, u);
                }
            }
        }
        Ok(out)
    }

    /// Requests reading one user each (for notification follow-up).
    pub fn user_requests(&self, ids: &[String]) -> Result<Vec<Request>, Failure> {
        ids.iter()
            .map(|id| {
                let url = format!("{GRAPH_BASE}/users/{}?$select={USER_SELECT}", encode(id));
                self.request(Method::Get, &url, None)
            })
            .collect()
    }

    /// Reads the answer to a user request: the user, or `None` when Graph says 404.
    pub fn read_user(result: HttpResult) -> Result<Option<Value>, Failure> {
        match result {
            Ok(r) if r.status == 404 => Ok(None),
            other => {
                let resp = Self::ok(other, "reading a user")?;
                serde_json::from_slice(&resp.body).map(Some).map_err(|e| {
                    Failure::transient(format!(
                        "unreadable Graph user: {}",
                        upstream::json_problem(&e)
                    ))
                })
            }
        }
    }

    /// `checkMemberGroups` requests for one user: the mapped groups in chunks of 20 (Graph's limit).
    pub fn member_group_requests(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<Vec<Request>, Failure> {
        groups
            .chunks(20)
            .map(|chunk| {
                let url = format!("{GRAPH_BASE}/users/{}/checkMemberGroups", encode(user));
                self.request(Method::Post, &url, Some(json!({ "groupIds": chunk })))
            })
            .collect()
    }

    /// The group ids in a `checkMemberGroups` answer, or `None` when Graph answered 404 (the
    /// user is not found: gone, or not replicated yet). The caller decides what a 404 means
    /// from the user's own read: a user Graph returned is never "member of nothing".
    pub fn read_member_groups(result: HttpResult) -> Result<Option<BTreeSet<String>>, Failure> {
        match result {
            Ok(r) if r.status == 404 => Ok(None),
            other => {
                let resp = Self::ok(other, "checking group membership")?;
                // An answer cut short is an error, never "member of nothing".
                let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
                    Failure::transient(format!(
                        "unreadable checkMemberGroups answer: {}",
                        upstream::json_problem(&e)
                    ))
                })?;
                let ids = v["value"].as_array().ok_or_else(|| {
                    Failure::transient("checkMemberGroups answer without a value list")
                })?;
                Ok(Some(
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_lowercase)
                        .collect(),
                ))
            }
        }
    }

    /// Delta links "from now" for users and for group membership (`$deltatoken=latest`).
    pub fn delta_latest(&self) -> Result<(String, String), Failure> {
        let urls = [
            format!("{GRAPH_BASE}/users/delta?$select={USER_SELECT}&$deltatoken=latest"),
            format!("{GRAPH_BASE}/groups/delta?$select=members&$deltatoken=latest"),
        ];
        let reqs = urls
            .iter()
            .map(|u| self.request(Method::Get, u, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut links = Vec::new();
        for (result, url) in self.send_all(reqs).into_iter().zip(&urls) {
            let what = "starting delta tracking";
            let resp = Self::ok(result, what)?;
            let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            let link = v["@odata.deltaLink"]
                .as_str()
                .ok_or_else(|| Failure::transient("Graph returned no deltaLink"))?;
            links.push(check_link(link, url, "@odata.deltaLink", what)?);
        }
        let groups = links.pop().unwrap_or_default();
        let users = links.pop().unwrap_or_default();
        Ok((users, groups))
    }

    /// One delta round from a stored link: its pages, then the next link. `Ok(None)` when the
    /// token has expired (Graph: 410 Gone, `syncStateNotFound` or `resyncRequired`) and a full
    /// sync must take over. The round stops early when the next page no longer fits with
    /// a step's reserve for what the caller does with the round (`budget::MIN_STEP_ROUNDS`
    /// rounds left): then the link returned is the round's `@odata.nextLink` (where the next
    /// call continues) and `complete` is false.
    ///
    /// Errors: a failed read, a page with neither link, or a link that repeats a page of the
    /// round (a loop).
    pub fn delta_round(&self, link: &str) -> Result<Option<DeltaRound>, Failure> {
        self.delta_round_from(link, None)
    }

    /// The users and the groups delta rounds, their first pages read in one round (a quiet
    /// tick is then two rounds: the token, and both deltas). The groups round is read only
    /// when the users round is complete (its first page is read all the same, and dropped:
    /// the next call reads it again from the stored link). `None` for users: expired.
    ///
    /// Errors: as [`Graph::delta_round`].
    pub fn delta_rounds(
        &self,
        users_link: &str,
        groups_link: &str,
    ) -> Result<(Option<DeltaRound>, Option<Option<DeltaRound>>), Failure> {
        let mut round = crate::platform::round::Round::new();
        let users_first = round.add(self.request(Method::Get, users_link, None)?);
        let groups_first = round.add(self.request(Method::Get, groups_link, None)?);
        let mut answers = round.send(|reqs| self.send_all(reqs));
        let users = self.delta_round_from(users_link, Some(answers.take(users_first)))?;
        match users {
            Some(u) if u.complete => {
                let groups =
                    self.delta_round_from(groups_link, Some(answers.take(groups_first)))?;
                Ok((Some(u), Some(groups)))
            }
            other => Ok((other, None)),
        }
    }

    /// A delta round from `link`, its first page's answer given when it was sent beforehand.
    /// A page a step (`budget::run_steps`): the first always, then while a page and the
    /// reserve of a queued step fit. None: the delta link expired (a full sync takes over).
    ///
    /// Errors: a page failed, was unreadable, or a link repeated within the call.
    fn delta_round_from(
        &self,
        link: &str,
        mut first: Option<HttpResult>,
    ) -> Result<Option<DeltaRound>, Failure> {
        let mut items = Vec::new();
        let mut url = link.to_string();
        let mut followed = BTreeSet::new();
        let mut ended: Option<Option<DeltaRound>> = None;
        let what = "reading delta changes";
        let finished = budget::run_steps(
            || budget::fits(self.platform, 1 + budget::MIN_STEP_ROUNDS),
            || {
                if !followed.insert(url.clone()) {
                    return Err(repeated_link(what));
                }
                let result = match first.take() {
                    Some(answer) => answer,
                    None => self.send(self.request(Method::Get, &url, None)?),
                };
                if let Ok(r) = &result {
                    let code = error_text(&r.body).to_ascii_lowercase();
                    let expired =
                        code.starts_with("syncstatenotfound") || code.starts_with("resyncrequired");
                    if r.status == 410 || (r.status >= 400 && r.status < 500 && expired) {
                        ended = Some(None);
                        return Ok(Step::Done);
                    }
                }
                let resp = Self::ok(result, what)?;
                let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
                    Failure::transient(format!(
                        "unreadable delta page: {}",
                        upstream::json_problem(&e)
                    ))
                })?;
                if let Some(page) = v["value"].as_array() {
                    items.extend(page.iter().cloned());
                }
                if let Some(next) = v["@odata.nextLink"].as_str() {
                    url = check_link(next, link, "@odata.nextLink", what)?;
                    // A link that repeats is an error now, before the budget is asked: a round
                    // paused at it would start there again in every call and never end.
                    if followed.contains(&url) {
                        return Err(repeated_link(what));
                    }
                    Ok(Step::More)
                } else if let Some(delta) = v["@odata.deltaLink"].as_str() {
                    ended = Some(Some(DeltaRound {
                        items: std::mem::take(&mut items),
                        link: check_link(delta, link, "@odata.deltaLink", what)?,
                        complete: true,
                        pages: followed.len() as u32,
                    }));
                    Ok(Step::Done)
                } else {
                    Err(Failure::transient(
                        "delta page without nextLink or deltaLink",
                    ))
                }
            },
        )?;
        if finished {
            return Ok(ended.flatten());
        }
        Ok(Some(DeltaRound {
            items,
            link: url,
            complete: false,
            pages: followed.len() as u32,
        }))
    }
}

/// What one call read of a delta round.
#[derive(Debug, Clone)]
pub struct DeltaRound {
    /// The changed objects, as Graph sent them.
    pub items: Vec<Value>,
    /// Where the next round starts: the `@odata.deltaLink` when `complete`, else the
    /// `@odata.nextLink` this call stopped at.
    pub link: String,
    pub complete: bool,
    /// Pages read in this call (the caller bounds a round read over several calls).
    pub pages: u32,
}

fn group_url(id: &str) -> String {
    format!("{GRAPH_BASE}/groups/{}?$select=id", encode(id))
}

/// Values one `in` clause of a `$filter` may hold (Graph's default limit).
pub const IN_MAX: usize = 15;

fn parse_page(body: &[u8], url: &str, what: &str) -> Result<Page, Failure> {
    let raw: RawPage = serde_json::from_slice(body).map_err(|e| {
        Failure::transient(format!(
            "{what}: unreadable Graph page: {}",
            upstream::json_problem(&e)
        ))
    })?;
    let next = raw
        .next
        .map(|n| check_link(&n, url, "@odata.nextLink", what))
        .transpose()?;
    Ok(Page {
        items: raw.value,
        next,
    })
}

fn item_id(item: &Value) -> Option<String> {
    item.get("id")
        .and_then(Value::as_str)
        .map(|s| s.to_ascii_lowercase())
}

fn odata_type_is(item: &Value, t: &str) -> bool {
    item.get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(t))
}

/// Transitive members include groups and devices; only users hold roles.
pub fn is_user(item: &Value) -> bool {
    odata_type_is(item, "#microsoft.graph.user")
}

fn is_group(item: &Value) -> bool {
    odata_type_is(item, "#microsoft.graph.group")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_refuses_other_hosts() {
        assert!(check_graph_url("https://graph.microsoft.com/v1.0/users?$skiptoken=x").is_ok());
        for bad in [
            "https://evil.example/v1.0/users",
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com@evil.example/",
            "https://graph.microsoft.com:8443/v1.0/users",
        ] {
            assert!(check_graph_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_bodies_that_are_not_the_error_shape_are_never_copied() {
        let echo = "<html><pre>POST /token\r\nclient_secret=s3cret-4711&Authorization: Bearer eyJ0</pre></html>";
        let n = echo.len();
        let html = || Ok(Response::text(400, "text/html; charset=utf-8", echo));
        let f = parse_token(html()).unwrap_err();
        assert_eq!(
            f.message,
            format!("Entra token endpoint answered 400: no error details (text/html, {n} bytes)")
        );
        let f = Graph::ok(html(), "reading users").unwrap_err();
        assert_eq!(
            f.message,
            format!(
                "reading users: Microsoft Graph answered 400: no error details (text/html, {n} bytes)"
            )
        );
        assert_eq!(
            error_text(echo.as_bytes()),
            format!("unknown: no error details ({n} bytes)")
        );
        // The documented shape: code and a bounded message, nothing else of the body.
        let body = serde_json::json!({"error": {"code": "Request_BadRequest",
            "message": format!("bad {}", "word ".repeat(100)), "innerError": {"echo": "s3cret-4711"}}});
        let f = Graph::ok(
            Ok(Response::text(400, "application/json", body.to_string())),
            "reading users",
        )
        .unwrap_err();
        assert!(
            f.message.contains("Request_BadRequest: bad word"),
            "{}",
            f.message
        );
        assert!(
            !f.message.contains("s3cret") && f.message.len() < 400,
            "{}",
            f.message
        );
    }

    #[test]
    fn token_error_descriptions_keep_their_first_line_bounded() {
        let body = serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("AADSTS900144: {} client_secret=s3cret-4711\r\nTrace ID: x", "w ".repeat(200)),
        });
        let f = parse_token(Ok(Response::text(
            400,
            "application/json",
            body.to_string(),
        )))
        .unwrap_err();
        assert!(
            f.message.contains("invalid_request AADSTS900144"),
            "{}",
            f.message
        );
        assert!(
            !f.message.contains("s3cret") && !f.message.contains("Trace"),
            "{}",
            f.message
        );
        // A forged code is not taken for one.
        let body = serde_json::json!({"error": "invalid_client\nforged", "error_description": "x"});
        let f = parse_token(Ok(Response::text(
            401,
            "application/json",
            body.to_string(),
        )))
        .unwrap_err();
        assert!(f.message.contains("no error details"), "{}", f.message);
    }

    #[test]
    fn mail_filters_are_odata_quoted_and_url_encoded() {
        let a = crate::domain::address::parse("O'Brien+QA@Contoso.com").unwrap();
        let b = crate::domain::address::parse("b@contoso.com").unwrap();
        let alone = MailQuery::alone(&a).url;
        assert_eq!(
            alone,
            "https://graph.microsoft.com/v1.0/users?$filter=mail%20eq%20%27o%27%27brien%2Bqa%40contoso.com%27&$select=id,mail&$top=999"
        );
        let both = &MailQuery::all(&[a, b])[0].url;
        assert_eq!(
            both,
            "https://graph.microsoft.com/v1.0/users?$filter=mail%20in%20%28%27o%27%27brien%2Bqa%40contoso.com%27%2C%27b%40contoso.com%27%29&$select=id,mail&$top=999"
        );
        assert!(check_graph_url(&alone).is_ok() && check_graph_url(both).is_ok());
    }

    #[test]
    fn token_errors_name_the_aadsts_code() {
        let body = serde_json::json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x",
        });
        let resp = Response {
            status: 401,
            headers: vec![],
            body: body.to_string().into_bytes(),
            unanswered_before: None,
        };
        let f = parse_token(Ok(resp)).unwrap_err();
        assert!(f.message.contains("AADSTS7000215"), "{}", f.message);
        assert!(f.message.contains("client secret is wrong"));
        assert!(!f.retryable);
    }
}

#[cfg(test)]
mod listing_tests;
