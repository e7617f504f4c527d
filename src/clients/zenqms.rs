//! ZenQMS client: turns [`api::Call`]s into authenticated requests and reads the answers.

pub mod api;

use serde_json::Value;

use crate::config::{Config, Secret};
use crate::failure::Failure;
use crate::platform::{HttpError, HttpResult, Platform, Request};
use api::{Call, Role, ZUser};

/// Why one write failed (the sync logs it and goes on with the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub status: Option<u16>,
    pub message: String,
    /// True when ZenQMS may have made the write: the request timed out or broke off after it
    /// was sent, or ZenQMS answered 5xx (a gateway can answer 502/504 for a write the service
    /// behind it made). False when the answer says it was not made (4xx, 429) or it was never
    /// sent (the platform denied it, a dry run).
    pub outcome_unknown: bool,
}

impl WriteError {
    /// True when the failure is the whole service's, not this user's (credentials, outage).
    pub fn is_systemic(&self) -> bool {
        matches!(
            self.status,
            None | Some(401) | Some(403) | Some(429) | Some(500..)
        )
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "ZenQMS answered {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

pub struct Zenqms<'a> {
    platform: &'a dyn Platform,
    base_url: String,
    token: Secret,
}

impl<'a> Zenqms<'a> {
    /// The platform its requests go through (for the budget: see [`crate::platform::budget`]).
    pub fn platform(&self) -> &'a dyn Platform {
        self.platform
    }

    /// A client for the configured ZenQMS; its API token is registered as the call's secret.
    pub fn new(platform: &'a dyn Platform, config: &Config) -> Self {
        platform.add_secret(config.zenqms_api_token.expose());
        Zenqms {
            platform,
            base_url: config.zenqms_base_url.clone(),
            token: config.zenqms_api_token.clone(),
        }
    }

    pub fn request(&self, call: &Call) -> Request {
        let mut headers = vec![(
            "authorization".to_string(),
            format!("Bearer {}", self.token.expose()),
        )];
        let body = match &call.body {
            Some(b) => {
                headers.push(("content-type".into(), "application/json".into()));
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        Request {
            method: call.method,
            url: format!("{}{}", self.base_url, call.path),
            headers,
            body,
        }
    }

    /// Reads a response that ended a read, as a call failure.
    /// Reads one answered search page (its users and the search's `total`).
    ///
    /// Errors: the search failed or its answer is unreadable.
    pub fn read_page(result: HttpResult) -> Result<api::SearchPage, Failure> {
        api::parse_search(&Self::read_ok(result, "searching ZenQMS users")?)
            .map_err(Failure::transient)
    }

    fn read_ok(result: HttpResult, what: &str) -> Result<Vec<u8>, Failure> {
        let resp = result.map_err(|e| Failure::http("ZenQMS", &e))?;
        if resp.is_success() {
            return Ok(resp.body);
        }
        let mut f = Failure::status("ZenQMS", resp.status, &api::error_text(&resp));
        if resp.status == 401 {
            f.message.push_str(" (check zenqms_api_token)");
        }
        f.message = format!("{what}: {}", f.message);
        Err(f)
    }

    /// Parses the roles answer of a request sent by the caller (so it can share a round).
    pub fn parse_roles(result: HttpResult) -> Result<Vec<Role>, Failure> {
        let body = Self::read_ok(result, "listing ZenQMS roles")?;
        api::parse_roles(&body).map_err(Failure::transient)
    }

    /// Reads one search page sent by the caller (so lookups can share a round with other reads).
    pub fn read_search(result: HttpResult) -> Result<Vec<ZUser>, Failure> {
        let body = Self::read_ok(result, "searching ZenQMS users")?;
        Ok(api::parse_search(&body).map_err(Failure::transient)?.data)
    }

    /// How many users match `filter` (one request: page 1's `total`).
    pub fn count(&self, filter: Value) -> Result<u64, Failure> {
        let first = self
            .platform
            .send(self.request(&api::search_users(filter, 1)));
        let body = Self::read_ok(first, "counting ZenQMS users")?;
        Ok(api::parse_search(&body).map_err(Failure::transient)?.total)
    }

    /// Runs single-page searches side by side; each yields its first match, if any.
    pub fn search_each(&self, searches: &[Call]) -> Vec<Result<Option<ZUser>, Failure>> {
        let reqs = searches.iter().map(|c| self.request(c)).collect();
        self.platform
            .send_all(reqs)
            .into_iter()
            .map(|r| Self::read_search(r).map(|users| users.into_iter().next()))
            .collect()
    }

    /// The ZenQMS users linked to any of `ids` (in any form of `api::link_forms`): one search
    /// per 12 ids, side by side (a page holds 100, so one page each unless accounts share a
    /// link). Reads in proportion to
    /// `ids`, never to the directory.
    ///
    /// Errors: a search failed.
    pub fn linked_to(&self, ids: &[String]) -> Result<Vec<ZUser>, Failure> {
        let filters = ids
            .chunks(api::LINKS_PER_SEARCH)
            .map(api::with_links)
            .collect();
        self.search_many(filters)
    }

    /// Every user matching any of `filters` (duplicates kept once): the first pages of all in
    /// one round, then the remaining pages of all in one more.
    ///
    /// Errors: a search failed, or came back short.
    pub fn search_many(&self, filters: Vec<Value>) -> Result<Vec<ZUser>, Failure> {
        let firsts = self.first_pages(&filters)?;
        self.rest_pages(firsts)
    }

    /// The first page of each of `filters`' searches, side by side (one round), and the
    /// requests for the pages that follow them (see [`Zenqms::rest_pages`]).
    ///
    /// Errors: a search failed.
    pub fn first_pages(&self, filters: &[Value]) -> Result<FirstPages, Failure> {
        let firsts = filters
            .iter()
            .map(|f| self.request(&api::search_users(f.clone(), 1)))
            .collect();
        let mut out = FirstPages {
            users: Vec::new(),
            rest: Vec::new(),
            total: 0,
        };
        for (filter, answer) in filters.iter().zip(self.platform.send_all(firsts)) {
            let page = Self::read_page(answer)?;
            let pages = page.total.div_ceil(u64::from(api::SEARCH_PAGE_SIZE));
            out.total += page.total;
            out.users.extend(page.data);
            for p in 2..=pages {
                out.rest
                    .push(self.request(&api::search_users(filter.clone(), p)));
            }
        }
        Ok(out)
    }

    /// The users of searches whose first pages `firsts` holds: the pages that follow, side by
    /// side (one round).
    ///
    /// Errors: a search failed, or came back short.
    pub fn rest_pages(&self, firsts: FirstPages) -> Result<Vec<ZUser>, Failure> {
        let FirstPages {
            mut users,
            rest,
            total,
        } = firsts;
        for answer in self.platform.send_all(rest) {
            users.extend(Self::read_page(answer)?.data);
        }
        let read = users.len() as u64;
        api::in_id_order(&mut users);
        // A page that came back short is not "fewer users": read again.
        if read < total {
            return Err(Failure::transient(format!(
                "searching ZenQMS users: the read came back short ({read} of {total} users); it is read again"
            )));
        }
        Ok(users)
    }

    /// Every user matching `filter`: page 1 tells the total, the rest are fetched concurrently.
    pub fn search_all(&self, filter: Value) -> Result<Vec<ZUser>, Failure> {
        let first = self
            .platform
            .send(self.request(&api::search_users(filter.clone(), 1)));
        Ok(self.search_rest(filter, first, Vec::new())?.0)
    }

    /// Finishes a search whose first page (`first`, the answer to page 1 of `filter`) was sent
    /// beforehand, possibly beside other requests: the remaining pages go out together in one
    /// `send-all`, with `extra` (independent requests of the caller's, answered in order).
    pub fn search_rest(
        &self,
        filter: Value,
        first: HttpResult,
        extra: Vec<Request>,
    ) -> Result<(Vec<ZUser>, Vec<HttpResult>), Failure> {
        let what = "searching ZenQMS users";
        let page = api::parse_search(&Self::read_ok(first, what)?).map_err(Failure::transient)?;
        let mut users = page.data;
        let pages = page.total.div_ceil(u64::from(api::SEARCH_PAGE_SIZE));
        let n_extra = extra.len();
        let mut reqs = extra;
        reqs.extend((2..=pages).map(|p| self.request(&api::search_users(filter.clone(), p))));
        let mut answers = self.platform.send_all(reqs);
        let rest = answers.split_off(n_extra.min(answers.len()));
        for result in rest {
            let page =
                api::parse_search(&Self::read_ok(result, what)?).map_err(Failure::transient)?;
            users.extend(page.data);
        }
        // Pages fetched side by side can overlap if ZenQMS changed in between: keep one of each.
        api::in_id_order(&mut users);
        // Fewer users than page 1's total: a page came back short (or ZenQMS shifted under
        // the read). A directory with holes would plan duplicates for users it missed, and a
        // missing user is not an absent one: read again.
        if (users.len() as u64) < page.total {
            return Err(Failure::transient(format!(
                "{what}: the directory read came back short ({} of {} users); it is read again",
                users.len(),
                page.total
            )));
        }
        Ok((users, answers))
    }

    /// Sends independent writes concurrently; each answers with the user as ZenQMS now has it.
    pub fn write_all(&self, calls: &[Call]) -> Vec<Result<ZUser, WriteError>> {
        let reqs = calls.iter().map(|c| self.request(c)).collect();
        self.platform
            .send_all(reqs)
            .into_iter()
            .map(Self::read_write)
            .collect()
    }

    /// Reads the answer to a write: the user as ZenQMS now has it, or why it failed.
    pub fn read_write(r: HttpResult) -> Result<ZUser, WriteError> {
        match r {
            Err(e) => Err(WriteError {
                status: None,
                outcome_unknown: !matches!(e, HttpError::Denied(_)),
                message: e.to_string(),
            }),
            Ok(resp) if resp.is_success() => {
                // Made (a success), but its answer unreadable: the change is in ZenQMS.
                api::parse_user(&resp.body).map_err(|message| WriteError {
                    status: Some(resp.status),
                    message,
                    outcome_unknown: true,
                })
            }
            Ok(resp) => Err(WriteError {
                status: Some(resp.status),
                message: match &resp.unanswered_before {
                    Some(first) => format!(
                        "{} (after an attempt that went unanswered: {first}; the write may have been made)",
                        api::error_text(&resp)
                    ),
                    None => api::error_text(&resp),
                },
                outcome_unknown: resp.status >= 500 || resp.unanswered_before.is_some(),
            }),
        }
    }
}

/// The first pages of several searches ([`Zenqms::first_pages`]): their users, the requests for
/// the pages that follow, and how many users the searches said they match in all.
pub struct FirstPages {
    pub users: Vec<ZUser>,
    pub rest: Vec<Request>,
    pub total: u64,
}
