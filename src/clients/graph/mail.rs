//! Who holds an address in Entra: the linking rule's check that exactly one Entra user has a
//! candidate's address as its `mail` (README, "What the sync does").
//!
//! Addresses are asked up to [`IN_MAX`] to a `GET /users?$filter=mail in (…)&$select=id,mail`
//! (the user resource's `mail`: "Supports `$filter` (`eq`, `ne`, `not`, `ge`, `le`, `in`, …)";
//! learn.microsoft.com/graph/filter-query-parameter: "the in operator is limited to 15
//! expressions by default"), 20 of those to a `$batch`: one resource unit per 15 addresses
//! instead of one per address (06-throttling-and-batching.md). Each user returned is given to
//! the address its `mail` equals as Graph compares `mail` (ordinal, ignoring case: each
//! character's simple uppercase; 03-users-list.md). A read's later pages are followed: a
//! holder on a page not read would make an address look held by one user when it is not.
//! A user whose `mail` is none of the addresses asked (Graph compared otherwise than we do)
//! makes each address of that read asked alone with `mail eq`, which needs no attribution.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{GRAPH_BASE, Graph, IN_MAX, item_id, parse_page};
use crate::domain::address::Address;
use crate::domain::links::{self, repeated_link};
use crate::failure::Failure;
use crate::platform::HttpResult;
use crate::platform::url::encode;

/// Address -> ids (lowercase) of the Entra users whose `mail` it is.
pub type Holders = BTreeMap<String, BTreeSet<String>>;

/// The longest `$filter` clause one read carries (before URL-encoding): long addresses go
/// fewer to a read, so that no request URL nears the lengths servers refuse (Graph documents
/// none; 2,048 characters is the common limit of HTTP intermediaries).
const FILTER_MAX_CHARS: usize = 1_200;

/// Pages one read may take before it is an error (retryable). A read never needs many: an
/// address with two holders is decided and leaves the read (see [`Graph::finish_mail_queries`]),
/// so the pages left hold at most one holder of each address still asked.
const PAGES_MAX: u32 = 2 * IN_MAX as u32 + 10;

const WHAT: &str = "asking Graph which users have an email";

/// One read of who holds some addresses: `mail in (…)`, or `mail eq '…'` for one address
/// asked alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailQuery {
    pub addresses: Vec<Address>,
    pub url: String,
}

impl MailQuery {
    /// The reads that ask for `addresses`: at most [`IN_MAX`] each, and at most
    /// [`FILTER_MAX_CHARS`] of filter clause.
    pub fn all(addresses: &[Address]) -> Vec<MailQuery> {
        let mut out = Vec::new();
        let mut chunk: Vec<Address> = Vec::new();
        let mut chars = 0;
        for a in addresses {
            let literal = literal(a).len() + 2;
            if !chunk.is_empty() && (chunk.len() == IN_MAX || chars + literal > FILTER_MAX_CHARS) {
                out.push(Self::any_of(std::mem::take(&mut chunk)));
                chars = 0;
            }
            chars += literal;
            chunk.push(a.clone());
        }
        if !chunk.is_empty() {
            out.push(Self::any_of(chunk));
        }
        out
    }

    fn any_of(addresses: Vec<Address>) -> MailQuery {
        let list: Vec<String> = addresses.iter().map(literal).collect();
        let clause = format!("mail in ({})", list.join(","));
        MailQuery {
            url: format!(
                "{GRAPH_BASE}/users?$filter={}&$select=id,mail&$top=999",
                encode(&clause)
            ),
            addresses,
        }
    }

    /// One address asked alone (`mail eq`): every user returned holds it.
    pub fn alone(address: &Address) -> MailQuery {
        MailQuery {
            url: format!(
                "{GRAPH_BASE}/users?$filter={}&$select=id,mail&$top=999",
                encode(&address.mail_filter())
            ),
            addresses: vec![address.clone()],
        }
    }

    /// The URLs of `queries`, in order.
    pub fn urls(queries: &[MailQuery]) -> Vec<String> {
        queries.iter().map(|q| q.url.clone()).collect()
    }

    /// The holders of this read's addresses when its one `answer` decides them all: read,
    /// no later page, every user given to an address. Else none (the caller asks again).
    pub fn decided(&self, answer: HttpResult) -> Option<Holders> {
        let mut holders = Holders::new();
        match self.take_page(answer, &self.url, &mut holders) {
            Ok(Taken::Done) => Some(holders),
            _ => None,
        }
    }

    /// What one page of this read says, added to `holders` (each address asked has an entry,
    /// empty until a holder is read).
    ///
    /// Errors: the read failed, or its page is unreadable.
    fn take_page(
        &self,
        result: HttpResult,
        url: &str,
        holders: &mut Holders,
    ) -> Result<Taken, Failure> {
        let resp = Graph::ok(result, WHAT)?;
        let page = parse_page(&resp.body, url, WHAT)?;
        for a in &self.addresses {
            holders.entry(a.as_str().to_string()).or_default();
        }
        for item in &page.items {
            let Some(id) = item_id(item) else {
                return Err(Failure::transient(format!("{WHAT}: a user without an id")));
            };
            let owner = if self.addresses.len() == 1 {
                // Asked alone: Graph's own comparison decided it.
                self.addresses.first()
            } else {
                let mail = item.get("mail").and_then(Value::as_str).unwrap_or_default();
                self.addresses.iter().find(|a| same_mail(mail, a.as_str()))
            };
            let Some(owner) = owner else {
                return Ok(Taken::Unattributed);
            };
            holders
                .entry(owner.as_str().to_string())
                .or_default()
                .insert(id);
        }
        Ok(match page.next {
            Some(next) => Taken::More(super::check_link(&next, url, "@odata.nextLink", WHAT)?),
            None => Taken::Done,
        })
    }
}

/// What a page of a [`MailQuery`] left to do.
enum Taken {
    Done,
    /// The next page's URL.
    More(String),
    /// A user whose `mail` is none of the addresses asked: ask each alone.
    Unattributed,
}

/// The OData string literal of an address (an apostrophe doubled).
fn literal(a: &Address) -> String {
    format!("'{}'", a.as_str().replace('\'', "''"))
}

/// Whether Graph's comparison of `mail` finds `mail` equal to `address`: ordinal ignoring
/// case, each character's simple uppercase (a character without a one-character uppercase
/// compares as it is; U+212A KELVIN SIGN is not `k`).
fn same_mail(mail: &str, address: &str) -> bool {
    fn upper(c: char) -> char {
        let mut up = c.to_uppercase();
        match (up.next(), up.next()) {
            (Some(u), None) => u,
            _ => c,
        }
    }
    mail.chars().count() == address.chars().count()
        && mail
            .chars()
            .zip(address.chars())
            .all(|(x, y)| upper(x) == upper(y))
}

/// Where one read stands: its query, what it read so far, and its next page.
struct Reading {
    query: MailQuery,
    next: String,
    followed: Vec<u64>,
    pages: u32,
}

impl Graph<'_> {
    /// For each address, the ids (lowercase) of the Entra users whose `mail` it is (see the
    /// module's docs), every page read. A read that failed fails the call: it never counts as
    /// "nobody holds it".
    ///
    /// Errors: a read failed after its retries, a page is unreadable, or a read did not end.
    pub fn mail_holders(&self, addresses: &[Address]) -> Result<Holders, Failure> {
        let queries = MailQuery::all(addresses);
        let answers = self.get_all(&MailQuery::urls(&queries))?;
        self.finish_mail_queries(queries, answers, false)
    }

    /// The holders of every address of `queries`, from their first pages' `answers` (sent in
    /// a round of the caller's): the later pages are read, and a read whose first answer failed
    /// is asked again, with the retries [`Graph::get_all`] gives, when `retry`; an address
    /// whose read returned a user it cannot be given to is asked alone.
    ///
    /// Errors: as [`Graph::mail_holders`]; when not `retry`, a first answer that failed.
    pub fn finish_mail_queries(
        &self,
        queries: Vec<MailQuery>,
        answers: Vec<HttpResult>,
        retry: bool,
    ) -> Result<Holders, Failure> {
        let mut holders = Holders::new();
        let mut again = Vec::new();
        let mut reading = Vec::new();
        for (query, answer) in queries.into_iter().zip(answers) {
            self.step(
                query,
                answer,
                None,
                &mut holders,
                &mut reading,
                &mut again,
                retry,
            )?;
        }
        let mut rounds = 0;
        while !reading.is_empty() || !again.is_empty() {
            rounds += 1;
            if rounds > 2 * PAGES_MAX {
                return Err(Failure::fatal(format!("{WHAT}: the reads are not ending")));
            }
            // First pages asked again, and later pages, side by side in one round.
            let due: Vec<(MailQuery, Option<Reading>)> = std::mem::take(&mut again)
                .into_iter()
                .map(|q| (q, None))
                .chain(
                    std::mem::take(&mut reading)
                        .into_iter()
                        .map(|r| (r.query.clone(), Some(r))),
                )
                .collect();
            let urls: Vec<String> = due
                .iter()
                .map(|(q, at)| at.as_ref().map_or(q.url.clone(), |r| r.next.clone()))
                .collect();
            for ((query, at), answer) in due.into_iter().zip(self.get_all(&urls)?) {
                self.step(
                    query,
                    answer,
                    at,
                    &mut holders,
                    &mut reading,
                    &mut again,
                    false,
                )?;
            }
        }
        Ok(holders)
    }

    /// Takes in one answer of a read: its first page (`at` none) or a later one.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        query: MailQuery,
        answer: HttpResult,
        at: Option<Reading>,
        holders: &mut Holders,
        reading: &mut Vec<Reading>,
        again: &mut Vec<MailQuery>,
        retry: bool,
    ) -> Result<(), Failure> {
        let url = at.as_ref().map_or(query.url.clone(), |r| r.next.clone());
        let failed = !answer
            .as_ref()
            .is_ok_and(|r| (200..300).contains(&r.status));
        if failed && retry && at.is_none() {
            again.push(query);
            return Ok(());
        }
        match query.take_page(answer, &url, holders)? {
            Taken::Done => {}
            Taken::More(next) => {
                // Two holders decide an address (it is not linked, whoever else holds it):
                // those leave the read, and the rest are asked afresh without them. An address
                // many users share then costs a page or two, not all of its holders' pages.
                let (decided, open): (Vec<&Address>, Vec<&Address>) = query
                    .addresses
                    .iter()
                    .partition(|a| holders.get(a.as_str()).is_some_and(|h| h.len() >= 2));
                if open.is_empty() {
                    return Ok(());
                }
                if !decided.is_empty() {
                    let rest: Vec<Address> = open.into_iter().cloned().collect();
                    again.extend(MailQuery::all(&rest));
                    return Ok(());
                }
                let (mut followed, pages) = at.map_or((vec![links::fingerprint(&url)], 1), |r| {
                    (r.followed, r.pages)
                });
                if followed.contains(&links::fingerprint(&next)) {
                    return Err(repeated_link(WHAT));
                }
                if pages >= PAGES_MAX {
                    return Err(Failure::transient(format!(
                        "{WHAT}: Graph's pages of users with these addresses do not end"
                    )));
                }
                followed.push(links::fingerprint(&next));
                reading.push(Reading {
                    query,
                    next,
                    followed,
                    pages: pages + 1,
                });
            }
            Taken::Unattributed => {
                // Whatever this read gave is set aside: each address is asked alone.
                for a in &query.addresses {
                    holders.remove(a.as_str());
                }
                if query.addresses.len() == 1 {
                    return Err(Failure::transient(format!(
                        "{WHAT}: an answer that cannot be read"
                    )));
                }
                again.extend(query.addresses.iter().map(MailQuery::alone));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        crate::domain::address::parse(s).unwrap()
    }

    #[test]
    fn addresses_go_fifteen_to_a_read_and_fewer_when_long() {
        let short: Vec<Address> = (0..31)
            .map(|i| addr(&format!("u{i}@contoso.com")))
            .collect();
        let q = MailQuery::all(&short);
        assert_eq!(
            q.iter().map(|q| q.addresses.len()).collect::<Vec<_>>(),
            vec![15, 15, 1]
        );
        assert!(
            q[0].url
                .contains("$filter=mail%20in%20%28%27u0%40contoso.com%27%2C"),
            "{}",
            q[0].url
        );
        let long: Vec<Address> = (0..15)
            .map(|i| {
                let label = "d".repeat(60);
                addr(&format!(
                    "{}{i}@{label}.{label}.{label}.com",
                    "a".repeat(60)
                ))
            })
            .collect();
        let q = MailQuery::all(&long);
        assert!(
            q.len() > 2 && q.iter().all(|q| q.addresses.len() <= 5),
            "{q:?}"
        );
        assert_eq!(MailQuery::all(&[]), vec![]);
    }

    #[test]
    fn mail_is_compared_as_graph_compares_it() {
        assert!(same_mail("User1@Contoso.COM", "user1@contoso.com"));
        assert!(!same_mail("\u{212A}@x.com", "k@x.com"));
        assert!(
            same_mail("\u{17F}am@x.com", "sam@x.com"),
            "long s uppercases to S"
        );
        assert!(!same_mail("user1@contoso.com ", "user1@contoso.com"));
    }
}
