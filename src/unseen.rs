//! The leaver check of a full sync without a second listing of Entra: which linked, active
//! ZenQMS users the sync has not yet met in Graph's user pages.
//!
//! The set travels in the checkpoint, so it must stay small: it is kept as ranges of ZenQMS ids
//! (inclusive) over the directory's id order, and membership is "linked, active, and inside a
//! range". Meeting a user splits its range around it. Our own creates take ascending ids in
//! Graph's page order, so a re-sync's set stays one range; a scattered directory costs at most a
//! range per user left.
//!
//! A user who becomes linked mid-sync inside a range (a notification linked it) counts as a
//! candidate it need not be: harmless, because every candidate is confirmed with its own Graph
//! read (404) before it is deactivated. The reverse, a leaver outside every range, cannot
//! happen: ranges only shrink around users met.

use std::ops::Bound::{Excluded, Included};

use serde::{Deserialize, Serialize};

use crate::plan::{Directory, link_of};
use crate::zenqms::api::ZUser;

/// Linked, active ZenQMS users not met yet, as inclusive ranges of ZenQMS ids, ascending and
/// disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unseen(Vec<(String, String)>);

/// Whether a user can be a leaver at all.
fn eligible(z: &ZUser) -> bool {
    z.is_active && link_of(z).is_some()
}

impl Unseen {
    /// Every linked, active user of `dir`: the set at the start of a sync.
    pub fn all(dir: &Directory) -> Self {
        let mut users = dir.users().filter(|z| eligible(z));
        let Some(first) = users.next() else {
            return Unseen::default();
        };
        let last = users.last().unwrap_or(first);
        Unseen(vec![(first.id.clone(), last.id.clone())])
    }

    /// Takes the user with ZenQMS id `id` out of the set (met in Graph's listing).
    pub fn met(&mut self, dir: &Directory, id: &str) {
        // The last range starting at or before `id` is the only one that can hold it.
        let Some(i) = self
            .0
            .partition_point(|(from, _)| from.as_str() <= id)
            .checked_sub(1)
        else {
            return;
        };
        if id > self.0[i].1.as_str() {
            return;
        }
        let (from, to) = self.0.remove(i);
        let before = dir
            .between(Included(&from), Excluded(id))
            .rev()
            .find(|z| eligible(z));
        let after = dir
            .between(Excluded(id), Included(&to))
            .find(|z| eligible(z));
        let mut parts = Vec::new();
        if let Some(b) = before {
            parts.push((from.clone(), b.id.clone()));
        }
        if let Some(a) = after {
            parts.push((a.id.clone(), to.clone()));
        }
        self.0.splice(i..i, parts);
    }

    /// The users still not met: the leaver candidates once every page has been read.
    pub fn candidates<'d>(&self, dir: &'d Directory) -> Vec<&'d ZUser> {
        self.0
            .iter()
            .flat_map(|(from, to)| {
                dir.between(Included(from), Included(to))
                    .filter(|z| eligible(z))
            })
            .collect()
    }

    /// How many ranges the set is kept as (what the checkpoint carries).
    pub fn ranges(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, linked: bool, active: bool) -> ZUser {
        ZUser {
            id: id.into(),
            email: format!("{id}@example.com"),
            first_name: "A".into(),
            last_name: "B".into(),
            title: "T".into(),
            is_active: active,
            external_id: linked.then(|| format!("00000000-0000-0000-0000-{:0>12}", &id[2..])),
            roles: Vec::new(),
        }
    }

    fn ids(v: Vec<&ZUser>) -> Vec<&str> {
        v.into_iter().map(|z| z.id.as_str()).collect()
    }

    #[test]
    fn meeting_users_leaves_the_others() {
        let dir = Directory::new([
            user("u-01", true, true),
            user("u-02", false, true),
            user("u-03", true, false),
            user("u-04", true, true),
            user("u-05", true, true),
            user("u-06", true, true),
        ]);
        let mut unseen = Unseen::all(&dir);
        assert_eq!(
            ids(unseen.candidates(&dir)),
            ["u-01", "u-04", "u-05", "u-06"]
        );
        unseen.met(&dir, "u-05");
        assert_eq!(ids(unseen.candidates(&dir)), ["u-01", "u-04", "u-06"]);
        assert_eq!(unseen.ranges(), 2);
        unseen.met(&dir, "u-01");
        unseen.met(&dir, "u-06");
        unseen.met(&dir, "u-02"); // not a candidate: no change
        assert_eq!(ids(unseen.candidates(&dir)), ["u-04"]);
        unseen.met(&dir, "u-04");
        assert!(unseen.candidates(&dir).is_empty());
        assert_eq!(unseen.ranges(), 0);
    }

    #[test]
    fn meeting_in_page_order_keeps_one_range() {
        let dir = Directory::new((10..60).map(|i| user(&format!("u-{i}"), true, true)));
        let mut unseen = Unseen::all(&dir);
        for i in 10..40 {
            unseen.met(&dir, &format!("u-{i}"));
            assert_eq!(unseen.ranges(), 1);
        }
        assert_eq!(unseen.candidates(&dir).len(), 20);
    }

    #[test]
    fn empty_directory_and_stale_ranges_are_harmless() {
        let empty = Directory::default();
        let mut unseen = Unseen::all(&empty);
        unseen.met(&empty, "u-1");
        assert!(unseen.candidates(&empty).is_empty());
        // A checkpoint whose ids are gone, or reversed, yields nothing and never panics.
        let stale = Unseen(vec![("u-9".into(), "u-1".into()), ("x".into(), "y".into())]);
        let dir = Directory::new([user("u-05", true, true)]);
        assert!(stale.candidates(&dir).is_empty());
        let mut s = stale.clone();
        s.met(&dir, "u-5");
        s.met(&dir, "x");
    }
}
