//! Paged id listings followed side by side (a group's transitive members, the groups above a
//! group): each round asks every unfinished listing for its next page, so a read takes as
//! many rounds as its longest listing has pages (`@odata.nextLink` is sequential: a page's
//! link comes with the page before it). See 05-membership.md (transitiveMembers, `$top=999`).
//!
//! The rounds are the caller's: [`Graph::finish_listings`] sends them alone (with retries), and
//! the sync engine sends them beside its own requests ([`Listings::urls`], [`Listings::take`]).
//! A read the engine cannot finish within a call is checkpointed ([`Listings::carried`]) and
//! resumed by the next call ([`Listings::resume`]).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Graph, item_id, parse_page};
use crate::domain::links::{self, repeated_link};
use crate::domain::roles::Memberships;
use crate::failure::Failure;
use crate::platform::HttpResult;
use crate::state::{CarriedRead, memberships_bytes};

/// Where a side-by-side read of id listings stands: the ids read so far by key (a group id),
/// and each unfinished listing's next URL.
pub struct Listings {
    /// What is read, for messages ("reading members of group").
    what: &'static str,
    /// Which items count (users, or groups).
    keep: fn(&Value) -> bool,
    /// Unfinished listings: key, next page's URL.
    cursors: Vec<(String, String)>,
    /// Fingerprints ([`links::fingerprint`]) of every URL asked so far, in order: a listing
    /// that hands one back again would never end. A resumed read starts with the last
    /// [`links::RECENT`] of the calls before.
    followed: Vec<u64>,
    /// Pages asked for so far, over all listings and calls: past [`links::MAX_PAGES`] the
    /// read is not ending (an error).
    pages: u32,
    /// Pages asked for by this call (a resumed read starts at 0).
    pages_now: u32,
    out: Memberships,
    /// A page failed in a round without retries ([`Listings::take`] with `strict` false): the
    /// read is left to [`Graph::finish_listings`], which retries.
    stalled: bool,
}

impl Listings {
    /// `cursors`: each listing's key and first page URL.
    pub fn new(
        cursors: Vec<(String, String)>,
        what: &'static str,
        keep: fn(&Value) -> bool,
    ) -> Self {
        let out = cursors
            .iter()
            .map(|(k, _)| (k.clone(), BTreeSet::new()))
            .collect();
        Listings {
            what,
            keep,
            cursors,
            followed: Vec::new(),
            pages: 0,
            pages_now: 0,
            out,
            stalled: false,
        }
    }

    /// A read checkpointed by an earlier call ([`Listings::carried`]) going on: the ids read
    /// so far by key, the unfinished listings' next URLs, the last links followed and the
    /// pages asked for so far.
    pub fn resume(carried: CarriedRead, what: &'static str, keep: fn(&Value) -> bool) -> Self {
        Listings {
            what,
            keep,
            cursors: carried.cursors,
            followed: carried.recent,
            pages: carried.pages,
            pages_now: 0,
            out: carried.read,
            stalled: false,
        }
    }

    /// Where the read stands, for a checkpoint ([`Listings::resume`] goes on from it).
    pub fn carried(&self) -> CarriedRead {
        let keep_from = self.followed.len().saturating_sub(links::RECENT);
        CarriedRead {
            read: self.out.clone(),
            cursors: self.cursors.clone(),
            recent: self.followed[keep_from..].to_vec(),
            pages: self.pages,
        }
    }

    /// Pages this call has asked for (a resumed read's earlier pages not counted).
    pub fn pages_now(&self) -> u32 {
        self.pages_now
    }

    /// About how many bytes the read takes in a JSON checkpoint ([`Listings::carried`]):
    /// its ids, keys and URLs with their quotes and separators.
    pub fn carried_bytes(&self) -> usize {
        memberships_bytes(&self.out)
            + self
                .cursors
                .iter()
                .map(|(k, u)| k.len() + u.len() + 8)
                .sum::<usize>()
            + links::RECENT * 21
    }
    /// Each unfinished listing's key and next URL (for a fresh read: its first).
    pub fn first_urls(&self) -> &[(String, String)] {
        &self.cursors
    }

    /// Every listing has been read to its end.
    pub fn done(&self) -> bool {
        self.cursors.is_empty()
    }

    /// A page failed in a round that does not retry (see [`Listings::take`]).
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// The requests a round of this read sends: one GET for a single listing, else one
    /// `$batch` per 20 listings ([`Graph::get_requests`]).
    pub fn requests_per_round(&self) -> usize {
        match self.cursors.len() {
            n @ 0..=1 => n,
            n => n.div_ceil(super::BATCH_MAX),
        }
    }

    /// Leaves the read to [`Graph::finish_listings`] (a round beside it could not be made).
    pub fn mark_stalled(&mut self) {
        self.stalled = true;
    }

    /// The next round's URLs, one per unfinished listing, in cursor order.
    ///
    /// Errors: a listing handed back a link it had already followed (fatal: it would never
    /// end).
    pub fn urls(&mut self) -> Result<Vec<String>, Failure> {
        let urls: Vec<String> = self.cursors.iter().map(|(_, u)| u.clone()).collect();
        for url in &urls {
            let f = links::fingerprint(url);
            if self.followed.contains(&f) {
                return Err(repeated_link(self.what));
            }
            if self.pages >= links::MAX_PAGES {
                return Err(Failure::fatal(format!(
                    "{}: more than {} pages; the listing is not ending",
                    self.what,
                    links::MAX_PAGES
                )));
            }
            self.followed.push(f);
            self.pages += 1;
            self.pages_now += 1;
        }
        Ok(urls)
    }

    /// Takes in the answers to the last [`Listings::urls`], in order. A 404 (the object is
    /// gone) leaves its key out of the answer: missing is not empty.
    ///
    /// `strict`: a page that failed or does not parse is an error (its retries were the
    /// caller's). Otherwise that listing keeps its cursor, the read is marked stalled, and
    /// [`Graph::finish_listings`] asks again with retries.
    ///
    /// Errors (`strict` only): a page failed, or is not a Graph page.
    pub fn take(&mut self, results: Vec<HttpResult>, strict: bool) -> Result<(), Failure> {
        let cursors = std::mem::take(&mut self.cursors);
        let mut results = results.into_iter();
        for (key, url) in cursors {
            let Some(result) = results.next() else {
                // No answer (a short round): asked again.
                self.unfollow(&url);
                self.stalled = true;
                self.cursors.push((key, url));
                continue;
            };
            if matches!(&result, Ok(r) if r.status == 404) {
                self.out.remove(&key);
                continue;
            }
            let what = format!("{} {key}", self.what);
            let page = Graph::ok(result, &what).and_then(|r| parse_page(&r.body, &url, &what));
            match page {
                Ok(page) => {
                    let set = self.out.entry(key.clone()).or_default();
                    set.extend(
                        page.items
                            .iter()
                            .filter(|i| (self.keep)(i))
                            .filter_map(item_id),
                    );
                    if let Some(n) = page.next {
                        self.cursors.push((key, n));
                    }
                }
                Err(e) if strict => return Err(e),
                Err(_) => {
                    self.unfollow(&url);
                    self.stalled = true;
                    self.cursors.push((key, url));
                }
            }
        }
        Ok(())
    }

    /// A page that was asked for but is to be asked again.
    fn unfollow(&mut self, url: &str) {
        let f = links::fingerprint(url);
        if let Some(i) = self.followed.iter().rposition(|x| *x == f) {
            self.followed.remove(i);
            self.pages = self.pages.saturating_sub(1);
            self.pages_now = self.pages_now.saturating_sub(1);
        }
    }

    /// The ids read, by key (complete only once [`Listings::done`]).
    pub fn into_memberships(self) -> Memberships {
        self.out
    }
}
