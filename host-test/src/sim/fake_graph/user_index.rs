//! Look-ups of users by id, `userPrincipalName` and `mail`, so that a `$filter` on `/users`
//! (`id in (…)`, `mail eq`, `mail in (…)`: see `filter.rs`) and `/users/{id or UPN}` cost what
//! they match, not a scan of the directory. Test equipment only: the answers are those of the
//! scans they replace (every candidate is still checked with `UserFilter::matches`); at
//! N = 10,000 those scans were most of a benchmark's CPU, whose noise then hid the component's
//! own (docs/performance.md). Built on first use, then kept in step with every change of a
//! user (rebuilding it after each change made a run that alternates changes and look-ups
//! slower than the scans).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::filter::{UserFilter, fold};

/// Which look-up a key belongs to.
#[derive(Debug, Clone, Copy)]
enum Field {
    Id,
    Upn,
    Mail,
}

#[derive(Debug, Default, PartialEq, Eq)]
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
            index.add(id, user);
        }
        index
    }

    /// The keys `user` (stored under `id`) is found by: its id, UPN and mail as indexed.
    fn keys(id: &str, user: &Map<String, Value>) -> [(Field, Option<String>); 3] {
        let text = |k: &str| user.get(k).and_then(Value::as_str);
        [
            (Field::Id, Some(id.to_ascii_lowercase())),
            (
                Field::Upn,
                text("userPrincipalName").map(str::to_ascii_lowercase),
            ),
            (Field::Mail, text("mail").map(fold)),
        ]
    }

    fn map(&mut self, field: Field) -> &mut BTreeMap<String, BTreeSet<String>> {
        match field {
            Field::Id => &mut self.by_id,
            Field::Upn => &mut self.by_upn,
            Field::Mail => &mut self.by_mail,
        }
    }

    /// Indexes `user`, stored under `id`.
    pub(super) fn add(&mut self, id: &str, user: &Map<String, Value>) {
        for (field, key) in Self::keys(id, user) {
            if let Some(key) = key {
                self.map(field)
                    .entry(key)
                    .or_default()
                    .insert(id.to_string());
            }
        }
    }

    /// Forgets `user` (as it was indexed), stored under `id`.
    pub(super) fn remove(&mut self, id: &str, user: &Map<String, Value>) {
        for (field, key) in Self::keys(id, user) {
            let Some(key) = key else { continue };
            let map = self.map(field);
            if let Some(ids) = map.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    map.remove(&key);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, upn: &str, mail: Option<&str>) -> Map<String, Value> {
        let mut u = json!({"id": id, "userPrincipalName": upn});
        if let Some(m) = mail {
            u["mail"] = json!(m);
        }
        u.as_object().unwrap().clone()
    }

    /// Kept in step change by change, the index equals one built afresh from the users.
    #[test]
    fn an_index_kept_in_step_equals_one_built_afresh() {
        let mut users: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (id, upn, mail) in [
            ("a1", "a@x.com", Some("Shared@x.com")),
            ("A1", "b@x.com", Some("shared@X.com")),
            ("c3", "c@x.com", None),
        ] {
            users.insert(id.into(), user(id, upn, mail));
        }
        let mut index = UserIndex::new(&users);
        // A changed mail and UPN, a new user sharing a UPN, a removed user.
        let changes: Vec<(&str, Option<Map<String, Value>>)> = vec![
            ("a1", Some(user("a1", "A@X.COM", Some("other@x.com")))),
            ("d4", Some(user("d4", "c@x.com", Some("\u{212A}@x.com")))),
            ("A1", None),
            ("c3", Some(user("c3", "c@x.com", Some("k@x.com")))),
            ("a1", None),
        ];
        for (id, change) in changes {
            let old = match change {
                Some(u) => users.insert(id.into(), u),
                None => users.remove(id),
            };
            if let Some(old) = &old {
                index.remove(id, old);
            }
            if let Some(new) = users.get(id) {
                index.add(id, new);
            }
            assert_eq!(index, UserIndex::new(&users), "after {id}");
        }
    }
}
