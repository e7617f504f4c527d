//! Look-ups of users by id, `userPrincipalName` and `mail`, so that a `$filter` on `/users`
//! (`id in (…)`, `mail eq`, `mail in (…)`: see `filter.rs`) and `/users/{id or UPN}` cost what
//! they match, not a scan of the directory. Test equipment only: the answers are those of the
//! scans they replace (every candidate is still checked with `UserFilter::matches`); at
//! N = 10,000 those scans were most of a benchmark's CPU, whose noise then hid the component's
//! own (docs/performance.md). Built on first use and dropped whenever a user changes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::filter::{UserFilter, fold};

#[derive(Debug, Default)]
pub(super) struct UserIndex {
    /// Lowercased id -> the stored ids (a fixture may hold ids differing only in case).
    by_id: BTreeMap<String, BTreeSet<String>>,
    /// Lowercased userPrincipalName -> ids.
    by_upn: BTreeMap<String, BTreeSet<String>>,
    /// `mail` folded as `$filter` compares it ([`fold`]) -> ids.
    by_mail: BTreeMap<String, BTreeSet<String>>,
}

impl UserIndex {
    pub(super) fn new(users: &BTreeMap<String, Map<String, Value>>) -> Self {
        let mut index = UserIndex::default();
        for (id, user) in users {
            index
                .by_id
                .entry(id.to_ascii_lowercase())
                .or_default()
                .insert(id.clone());
            let text = |k: &str| user.get(k).and_then(Value::as_str);
            if let Some(upn) = text("userPrincipalName") {
                index
                    .by_upn
                    .entry(upn.to_ascii_lowercase())
                    .or_default()
                    .insert(id.clone());
            }
            if let Some(mail) = text("mail") {
                index
                    .by_mail
                    .entry(fold(mail))
                    .or_default()
                    .insert(id.clone());
            }
        }
        index
    }

    /// The ids of the users `filter` may match, in id order (a superset: callers check each).
    pub(super) fn candidates(&self, filter: &UserFilter) -> BTreeSet<String> {
        let mails = |wanted: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
            wanted
                .filter_map(|w| self.by_mail.get(&fold(w)))
                .flatten()
                .cloned()
                .collect()
        };
        match filter {
            UserFilter::MailEq(w) => mails(&mut std::iter::once(w)),
            UserFilter::MailIn(ws) => mails(&mut ws.iter()),
            UserFilter::IdIn(ids) => ids
                .iter()
                .filter_map(|x| self.by_id.get(&x.to_ascii_lowercase()))
                .flatten()
                .cloned()
                .collect(),
        }
    }

    /// The first user in id order whose id or userPrincipalName is `key` (ASCII case ignored).
    pub(super) fn find(&self, key: &str) -> Option<&String> {
        let key = key.to_ascii_lowercase();
        let by_id = self.by_id.get(&key).and_then(BTreeSet::first);
        let by_upn = self.by_upn.get(&key).and_then(BTreeSet::first);
        by_id.into_iter().chain(by_upn).min()
    }
}
