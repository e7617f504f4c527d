//! `on-delete`: clear every external_id link this tenant made, and change nothing else.
//!
//! The links are found by searching ZenQMS (not from our state), so links made by an earlier
//! deployment are cleared too: a walk over the accounts with an external_id, a budget at a
//! time, from a cursor the checkpoint keeps (see [`Walk`]). The clearing writes take the one write path ([`Applier`]):
//! logged with cause and before -> after, simulated in a dry run. Resumable and idempotent: a
//! repeated delete finds nothing left.

use serde_json::Value;

use crate::call::Reply;
use crate::clients::zenqms::Zenqms;
use crate::clients::zenqms::api::{self, ZUser};
use crate::config::Config;
use crate::domain::plan::{self, Change, Directory, WriteKind, link_of};
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::Platform;
use crate::platform::budget::{self, Step};
use crate::state::State;
use crate::write::{Applier, Write};

/// Most links cleared in one step (one `send-all`); fewer when fewer rounds are left.
const CHUNK: usize = 100;

/// The write that clears `u`'s link.
fn unlink_write(u: &ZUser) -> Write {
    let ext = u.external_id.clone().unwrap_or_default();
    let changes = vec![Change {
        field: "external_id",
        before: Value::String(ext.clone()),
        after: Value::Null,
    }];
    Write {
        call: api::update_user(&u.id, plan::patch_fields(&changes)),
        entra_id: ext,
        upn: String::new(),
        zenqms_id: Some(u.id.clone()),
        kind: WriteKind::Unlink,
        changes,
    }
}

/// Search pages read before the one where the walk's next account is expected: accounts
/// unlinked since the positions were counted (by hand, or by a write whose answer was lost)
/// move later ones back, a page's worth at most before the walk notices and starts over.
const SLACK_PAGES: u64 = 1;

/// Longest cursor the checkpoint keeps, bytes (the state is at most 64 KiB). After an account
/// whose ZenQMS id is longer, the walk keeps no cursor and goes on by position alone, passing
/// the page it reads again a second time (harmless: a link cleared is no longer found). (A
/// cursor cut short sorted before every account sharing its prefix, and a page of those made
/// the walk start over for ever: a red team's find.)
const CURSOR_MAX: usize = 1024;

/// The walk over the accounts with an external_id (`has_external_id`, in ZenQMS id order,
/// as `docs/zenqms-api.md` says ZenQMS serves a search) for one call: read a few search pages
/// at a time from where the checkpoint says the next account is, clear the links among them
/// as the budget takes, checkpoint the last account passed. Reading only what the call can
/// clear keeps every call within its budget whatever the directory's size (the walk before
/// read every linked account in every call: at 20,000 users and 2 s calls, each call 600 ms
/// over, one link cleared a call).
struct Walk {
    /// The last account passed (its link, if any, cleared).
    after: Option<String>,
    /// The search page where the account after `after` is expected (1-based).
    page: u64,
    /// Accounts read, in id order (all after `after`); those from `at` on are not passed yet.
    ahead: Vec<ZUser>,
    at: usize,
    /// Position (0-based, in the search's order) of the first account not passed (the one at
    /// `at`, or the one after the read once every account read is passed).
    next_pos: u64,
    /// The last read reached the search's last page.
    to_end: bool,
    /// Accounts with an external_id, as the last search page said.
    total: u64,
    /// The walk's read has not begun in this call.
    unread: bool,
    /// The second pass (see `state::Deleting::checking`).
    checking: bool,
}

impl Walk {
    fn from_state(state: &State) -> Walk {
        let (after, page, checking) = state.deleting.as_ref().map_or((None, 1, false), |d| {
            (d.after.clone(), d.page.max(1), d.checking)
        });
        Walk {
            after,
            page,
            ahead: Vec::new(),
            at: 0,
            next_pos: 0,
            to_end: false,
            total: 0,
            unread: true,
            checking,
        }
    }

    /// The walk reached the last account: a first pass starts the second from the start (a
    /// real delete; a dry run, which clears nothing, would find the same links again);
    /// true when the walk is over.
    fn ended(&mut self, dry_run: bool) -> bool {
        if self.checking || dry_run {
            return true;
        }
        self.checking = true;
        self.after = None;
        self.page = 1;
        self.next_pos = 0;
        self.to_end = false;
        false
    }

    /// Rounds the next step takes at least: a read (when nothing read is left) and a write.
    fn next_step_rounds(&self, concurrency: usize) -> u64 {
        if self.exhausted() {
            (SLACK_PAGES + 1).div_ceil(concurrency.max(1) as u64) + 1
        } else {
            1
        }
    }

    /// Reads the search pages from the one before `page`, side by side: as many as the links
    /// the call can still clear fill (one page more in a dry run, which writes nothing: a
    /// round's worth), and keeps the accounts after the cursor.
    ///
    /// Errors: a search failed.
    fn read(&mut self, zen: &Zenqms, p: &dyn Platform, dry_run: bool) -> Result<(), Failure> {
        self.unread = false;
        let from = self.page.saturating_sub(SLACK_PAGES).max(1);
        let before = self.page - from;
        let concurrency = p.concurrency().max(1) as u64;
        let wanted = if dry_run {
            concurrency
        } else {
            let links = budget::items_that_fit(p, 1, 1, 1, usize::MAX) as u64;
            links.div_ceil(u64::from(api::SEARCH_PAGE_SIZE))
        };
        let pages = before + wanted.min(concurrency.saturating_sub(before)).max(1);
        let requests = (from..from + pages)
            .map(|n| zen.request(&api::search_users(api::linked(), n)))
            .collect();
        let mut items = Vec::new();
        for answer in p.send_all(requests) {
            let page = Zenqms::read_page(answer)?;
            self.total = page.total;
            items.extend(page.data);
        }
        let read = items.len() as u64;
        api::in_id_order(&mut items);
        let size = u64::from(api::SEARCH_PAGE_SIZE);
        self.to_end = (from + pages - 1) * size >= self.total;
        if !self.to_end && read < pages * size {
            // A page short of a full one before the last: ZenQMS changed under the read, or
            // served less than it said. Read again (by the next step or call), never passed
            // over as if those accounts were not there.
            return Err(Failure::transient(format!(
                "searching ZenQMS users: the read came back short ({read} accounts in {pages} pages of {size}); it is read again"
            )));
        }
        let start = (from - 1) * size;
        if from > 1
            && let Some(after) = &self.after
            && items.first().is_none_or(|u| u.id.as_str() > after.as_str())
        {
            // Nothing read at or before the cursor: accounts before it moved later ones back
            // by more than the slack since the positions were counted. From the start again
            // (accounts up to the cursor are passed over unread by the filter below).
            self.page = 1;
            self.next_pos = 0;
            self.to_end = false;
            return Ok(());
        }
        let passed = items
            .iter()
            .take_while(|u| {
                self.after
                    .as_ref()
                    .is_some_and(|a| u.id.as_str() <= a.as_str())
            })
            .count();
        self.next_pos = start + passed as u64;
        items.drain(..passed);
        self.ahead = items;
        self.at = 0;
        Ok(())
    }

    /// Every account read is passed.
    fn exhausted(&self) -> bool {
        self.at >= self.ahead.len()
    }

    /// Where the next read begins, once the accounts read are passed.
    fn page_of_next(&self) -> u64 {
        self.next_pos / u64::from(api::SEARCH_PAGE_SIZE) + 1
    }

    /// Accounts with an external_id after the walk's position, as the last read counted them.
    fn left(&self) -> u64 {
        self.total.saturating_sub(self.next_pos)
    }
}

/// The cursor kept after the account `id`: none for an id longer than [`CURSOR_MAX`].
fn cursor(id: &str) -> Option<String> {
    (id.len() <= CURSOR_MAX).then(|| id.to_string())
}

/// Clears the links, as many as the call's budget takes, walking the accounts with an
/// external_id from the checkpoint's cursor (`state.deleting`: `after`, `page`, and `cleared`
/// counting the links cleared across calls). A dry run logs each as a plan line, writes
/// nothing and reads what one call's budget takes.
///
/// Errors: a search failed (retryable), or links could not be cleared (retryable, naming the
/// accounts: the next call of the delete tries them again).
pub fn run(p: &dyn Platform, config: &Config, state: &mut State) -> Result<Reply, Failure> {
    let zen = Zenqms::new(p, config);
    let cause = if config.dry_run {
        "delete (dry run)"
    } else {
        "delete"
    };
    let mut out = Applier::new(zen, Log::new(p), cause, Directory::default());
    out.dry_run = config.dry_run;
    let concurrency = p.concurrency();
    let walk = std::cell::RefCell::new(Walk::from_state(state));
    let result = budget::run_steps(
        || budget::fits(p, walk.borrow().next_step_rounds(concurrency)),
        || {
            let mut walk = walk.borrow_mut();
            if walk.exhausted() {
                if !walk.to_end {
                    walk.read(&out.zen, p, out.dry_run).map_err(|f| Failure {
                        message: format!("delete: {}", f.message),
                        retryable: f.retryable,
                    })?;
                }
                if walk.exhausted() {
                    if walk.to_end {
                        return Ok(if walk.ended(out.dry_run) {
                            Step::Done
                        } else {
                            Step::More
                        });
                    }
                    // Everything read was passed already (accounts linked by hand before the
                    // cursor moved the rest later): on from the read's end.
                    walk.page = walk.page_of_next();
                    return Ok(Step::More);
                }
            }
            let n = if out.dry_run {
                usize::MAX
            } else {
                budget::items_that_fit(p, 0, 1, 1, CHUNK)
            };
            let from = walk.at;
            let mut chunk = Vec::new();
            while chunk.len() < n && walk.at < walk.ahead.len() {
                let u = &walk.ahead[walk.at];
                if link_of(u).is_some() {
                    chunk.push(u.clone());
                }
                walk.at += 1;
            }
            let taken = walk.at - from;
            let writes = chunk.iter().map(unlink_write).collect();
            // The writer's directory holds only the step's users (what a dry run simulates
            // from), so memory does not grow with the tenant.
            out.dir = Directory::new(chunk);
            let unlinked = out.counts.unlinked;
            let written = out.write(writes);
            let cleared = if out.dry_run {
                0
            } else {
                u64::from(out.counts.unlinked - unlinked)
            };
            if written.is_err() {
                // A failing ZenQMS stops here: the accounts of this step are read again from
                // the cursor (those cleared are no longer found). An account ZenQMS refuses
                // alone is passed (named in the call's failure), and tried again by the second
                // pass.
                walk.ahead.clear();
                walk.at = 0;
                walk.to_end = false;
                walk.page = walk.page_of_next();
                return Ok(Step::Paused);
            }
            walk.next_pos = walk.next_pos + taken as u64 - cleared;
            if taken > 0 {
                walk.after = cursor(&walk.ahead[walk.at - 1].id);
            }
            if walk.exhausted() {
                walk.page = walk.page_of_next();
            }
            Ok(Step::More)
        },
    );
    let mut walk = walk.into_inner();
    if config.dry_run {
        // A dry run changes no checkpoint (a dry-run call during a real delete moved its
        // cursor past links it never cleared: a red team's find).
        let finished = result? || (walk.to_end && walk.exhausted());
        let planned = out.counts.unlinked;
        return Ok(Reply::done(if finished {
            format!(
                "dry run delete (nothing written): would clear {planned} external_id links and remove the Graph subscriptions"
            )
        } else {
            format!(
                "dry run delete (nothing written): would clear at least {planned} external_id links and remove the Graph subscriptions ({} more accounts with an external_id not read within this call's budget)",
                walk.left()
            )
        }));
    }
    let finished = result.as_ref().is_ok_and(|f| *f);
    if finished && !out.failed.is_empty() {
        // Ended with accounts ZenQMS refused to unlink: the second pass again, from the start,
        // by the retry (never "complete" while they hold their links).
        walk.checking = true;
        walk.after = None;
        walk.page = 1;
    }
    // Saved whatever happened (a search that failed after links were cleared included).
    if let Some(d) = state.deleting.as_mut() {
        d.cleared += out.counts.unlinked;
        d.after = walk.after.clone();
        d.page = walk.page;
        d.checking = walk.checking;
    }
    result?;
    let cleared = state.deleting.as_ref().map_or(0, |d| d.cleared);
    if !out.failed.is_empty() {
        // (Each once: the second pass may have tried one again.)
        let failed: std::collections::BTreeSet<&str> =
            out.failed.iter().map(String::as_str).collect();
        let sample: Vec<&str> = failed.iter().take(20).copied().collect();
        return Err(Failure::transient(format!(
            "delete: {} ZenQMS users could not be unlinked ({}); retry the delete to finish",
            failed.len(),
            sample.join(", ")
        )));
    }
    if !finished {
        let left = if walk.unread {
            String::new()
        } else if walk.checking {
            format!(
                ", checking again: about {} accounts with an external_id left to read",
                walk.left()
            )
        } else {
            format!(
                ", about {} accounts with an external_id left to check",
                walk.left()
            )
        };
        return Ok(Reply::pending(format!(
            "delete pending: {cleared} links cleared so far{left}"
        )));
    }
    // Done: the instance starts over as a fresh one.
    *state = State::fresh();
    Ok(Reply::done(format!(
        "delete complete: {cleared} external_id links cleared, nothing else changed"
    )))
}
