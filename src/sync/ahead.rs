//! The user listing's reads ahead: a page's rounds also carry the reads the next pages' steps
//! need, so that Graph's sequential paging, the ZenQMS look-ups and Graph's address check (who
//! holds a link candidate's mail) overlap with the writes instead of waiting in rounds of
//! their own.
//!
//! In the round of page p's writes (and in p's own address check, when p needs one), at most:
//! - Graph asked who holds the addresses of page p+1's link candidates (its look-ups came in
//!   an earlier round, so its candidates are known);
//! - the look-ups of page p+1 (when not done yet) and of page p+2 (read in an earlier round);
//! - the read of the first page after those not read yet (p+1, p+2 or p+3).
//!
//! Every read ahead is an optimisation only: one that failed, or whose answer is out of date
//! by the time its page is worked (the page's candidates changed with the writes between), is
//! done again by the page's own step, in a round of its own, as without the pipeline. An
//! address check asked ahead is one round older when its page is planned than one asked in
//! the page's own step; both predate the writes they allow.

use std::collections::{BTreeMap, BTreeSet};

use super::{Engine, lookup_filters, page_users};
use crate::clients::graph::{Graph, MailQuery, Page};
use crate::clients::zenqms::api;
use crate::domain::address::{Address, Domains};
use crate::domain::entra::EntraUser;
use crate::domain::plan;
use crate::failure::Failure;
use crate::platform::round::{Answers, Round, Slot};
use crate::platform::{Method, budget};
use crate::state::FullSync;

/// What [`Engine::add_ahead`] put in a round, to be taken back by [`Engine::take_ahead`].
#[derive(Default)]
pub(super) struct AheadSlots {
    /// A user page read ahead: its URL.
    read: Option<(String, Slot)>,
    /// Look-ups of a page's users: the page's URL.
    lookups: Vec<(String, Vec<Slot>)>,
    /// The address check of a page's link candidates: the page's URL and the addresses asked.
    holders: Option<(String, Vec<MailQuery>, Vec<Slot>)>,
}

impl Engine<'_> {
    /// The page read ahead for `url`, if any.
    pub(super) fn prefetched_page(&self, url: &str) -> Option<&Page> {
        self.prefetched
            .iter()
            .find(|(u, _)| u == url)
            .map(|(_, p)| p)
    }

    /// The domains the linking rule trusts for `users`' step: those configured, those learned
    /// before this run and by it so far, and those `users` will teach it (see [`Engine::trust`]).
    pub(super) fn domains_for(&self, users: &[EntraUser], sync: &FullSync) -> Domains {
        let mut kept = sync.email_domains.clone();
        for domain in users.iter().filter_map(EntraUser::member_domain) {
            crate::domain::address::learn(&mut kept, domain);
        }
        let learned = self.learned_domains.union(&kept).cloned().collect();
        Domains {
            configured: self.config.email_match_domains.clone(),
            learned,
        }
    }

    /// Adds to `round` the reads ahead for the pages after the current one (`next`: the
    /// listing's next page, `None` when this step does not finish its page or the listing
    /// ends). Nothing is sent that is already known or asked.
    ///
    /// Errors: a URL failed the Graph URL check.
    pub(super) fn add_ahead(
        &self,
        round: &mut Round,
        next: Option<&str>,
        sync: &FullSync,
    ) -> Result<AheadSlots, Failure> {
        let mut slots = AheadSlots::default();
        let Some(q1) = next else {
            return Ok(slots);
        };
        let Some(page1) = self.prefetched_page(q1) else {
            slots.read = Some((q1.to_string(), self.add_read(round, q1)?));
            return Ok(slots);
        };
        let users1 = page_users(&page1.items);
        if !self.looked_up.contains(q1) {
            slots
                .lookups
                .push((q1.to_string(), self.add_lookups(round, &users1)));
        } else if !self.holders_ahead.iter().any(|(u, _)| u == q1) {
            let domains = self.domains_for(&users1, sync);
            let candidates: Vec<Address> = plan::link_candidates(&users1, &self.out.dir, &domains)
                .into_iter()
                .collect();
            if !candidates.is_empty() {
                let queries = MailQuery::all(&candidates);
                let reqs = self.graph.get_requests(&MailQuery::urls(&queries))?;
                slots.holders = Some((q1.to_string(), queries, round.add_all(reqs)));
            }
        }
        let Some(q2) = page1.next.as_deref() else {
            return Ok(slots);
        };
        let Some(page2) = self.prefetched_page(q2) else {
            slots.read = Some((q2.to_string(), self.add_read(round, q2)?));
            return Ok(slots);
        };
        if !self.looked_up.contains(q2) {
            let users2 = page_users(&page2.items);
            slots
                .lookups
                .push((q2.to_string(), self.add_lookups(round, &users2)));
        }
        if let Some(q3) = page2.next.as_deref()
            && self.prefetched_page(q3).is_none()
        {
            slots.read = Some((q3.to_string(), self.add_read(round, q3)?));
        }
        Ok(slots)
    }

    /// Adds to `round` Graph's address check for the page at `url` from the look-up keys the
    /// last call kept (`FullSync::next_keys`), before the page is read again or looked up:
    /// who holds each of its match addresses in a verified domain (those this run knows; a
    /// domain the page itself would teach is asked by its step). A superset of the page's
    /// link candidates (which need the look-ups' answers), so that its writes can go in the
    /// round after the call's first reads; [`Engine::trust`] keeps only the candidates'
    /// answers and asks what is missing. None when nothing is to be asked.
    ///
    /// Errors: a URL failed the Graph URL check.
    pub(super) fn add_holders_from_keys(
        &self,
        round: &mut Round,
        url: &str,
        addresses: &[String],
        sync: &FullSync,
    ) -> Result<AheadSlots, Failure> {
        let domains = self.domains_for(&[], sync);
        let asked: Vec<Address> = addresses
            .iter()
            .filter_map(|a| crate::domain::address::parse(a).ok())
            .filter(|a| domains.verified(a.domain()))
            .collect();
        let mut slots = AheadSlots::default();
        if !asked.is_empty() {
            let queries = MailQuery::all(&asked);
            let reqs = self.graph.get_requests(&MailQuery::urls(&queries))?;
            slots.holders = Some((url.to_string(), queries, round.add_all(reqs)));
        }
        Ok(slots)
    }

    /// Requests [`Engine::add_holders_from_keys`] would add for `addresses`.
    pub(super) fn holders_requests(&self, addresses: &[String], sync: &FullSync) -> usize {
        let mut round = Round::new();
        self.add_holders_from_keys(&mut round, "", addresses, sync)
            .map_or(usize::MAX, |_| round.len())
    }

    /// Whether the page at `url`, read and looked up, still needs Graph's address check: a
    /// link candidate of it that no answer asked ahead covers.
    pub(super) fn needs_holders(&self, url: &str, sync: &FullSync) -> bool {
        let Some(page) = self.prefetched_page(url) else {
            return true;
        };
        let users = page_users(&page.items);
        let domains = self.domains_for(&users, sync);
        let asked = self.holders_ahead.iter().find(|(u, _)| u == url);
        plan::link_candidates(&users, &self.out.dir, &domains)
            .iter()
            .any(|a| asked.is_none_or(|(_, h)| !h.contains_key(a.as_str())))
    }

    /// Whether the reads ahead in `round` fit the budget beside `others` requests of the same
    /// round: they must not make it run past the call's budget (at concurrency 1 each is a
    /// round trip of its own). When they do not, the next step reads its page itself.
    pub(super) fn ahead_fits(&self, round: &Round, others: usize) -> bool {
        let waves = (round.len() + others).div_ceil(self.concurrency());
        round.is_empty() || budget::fits(self.platform, waves as u64)
    }

    fn add_read(&self, round: &mut Round, url: &str) -> Result<Slot, Failure> {
        Ok(round.add(self.graph.request(Method::Get, url, None)?))
    }

    /// Adds the ZenQMS look-ups of `users` (see `lookup_filters`) to `round`.
    pub(super) fn add_lookups(&self, round: &mut Round, users: &[EntraUser]) -> Vec<Slot> {
        round.add_all(
            lookup_filters(users)
                .into_iter()
                .map(|f| self.out.zen.request(&api::search_users(f, 1))),
        )
    }

    /// Takes in the answers to what [`Engine::add_ahead`] sent. Call it before the round's
    /// writes are taken in: what a look-up read of a user the round wrote is older than the
    /// write's answer (see `learn_users`). A read that failed is simply not kept.
    pub(super) fn take_ahead(&mut self, answers: &mut Answers, slots: AheadSlots) {
        if let Some((url, slot)) = slots.read
            && let Ok(p) = Graph::read_page(answers.take(slot), &url, "listing users")
        {
            self.prefetched.push((url, p));
        }
        for (url, s) in slots.lookups {
            if self.learn_lookups(answers.take_all(&s)) {
                self.looked_up.insert(url);
            }
        }
        if let Some((url, queries, s)) = slots.holders {
            let results = Graph::get_answers(queries.len(), answers.take_all(&s));
            let mut asked = BTreeMap::new();
            for (query, r) in queries.iter().zip(results) {
                // Only an answer that decides its addresses whole is kept; the page's step
                // asks the others again (and follows their later pages).
                if let Some(holders) = query.decided(r) {
                    asked.extend(holders);
                }
            }
            self.holders_ahead.push((url, asked));
        }
    }

    /// The address check asked ahead for the page at `url`, if any (taken: the step that plans
    /// with it keeps what its candidates were answered for the page's later slices, see
    /// `Engine::keep_holders`).
    pub(super) fn take_holders_ahead(&mut self, url: &str) -> BTreeMap<String, BTreeSet<String>> {
        match self.holders_ahead.iter().position(|(u, _)| u == url) {
            Some(i) => self.holders_ahead.remove(i).1,
            None => BTreeMap::new(),
        }
    }
}
