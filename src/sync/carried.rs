//! Group members carried between calls (`state::MembersCarry`): the full sync's mapped and
//! scope groups (`FullSync::members`), and the groups of a queued group change
//! (`Queue::members`).
//!
//! Without it, each call reads the members whole before the users they decide. Two costs
//! follow: a read longer than a call's budget (groups whose members span more pages than a
//! call has round trips) either runs past the budget or never ends, and every call of a run
//! pays the read again. The read is now checkpointed — in part, or whole once done — while it
//! fits [`MEMBERS_CARRIED_MAX`], and the next call goes on from it: a read that outlasts a
//! call spans calls, and a run reads its members once.
//!
//! The members are as fresh as the per-call read was relative to what the component knows: a
//! group change it learns of drops them (the queue's groups, applied between a run's calls;
//! another change queued while one is applied), and a run's delta links predate its start,
//! so a change the carried members miss is replayed after the run.

use super::Engine;
use crate::clients::graph::{Graph, Listings};
use crate::domain::roles::Memberships;
use crate::failure::Failure;
use crate::platform::{Platform, budget};
use crate::state::{
    CarriedMembers, CarriedRead, FullSync, MEMBERS_CARRIED_MAX, MembersCarry, memberships_bytes,
};

/// How [`read_within`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadEnd {
    /// Read to its end.
    Done,
    /// The budget ran out first: the read is to go on in the next call (checkpointed when it
    /// fits the checkpoint).
    Stopped,
}

/// Reads `listings` on, a round at a time, while a round and `after` more rounds fit the
/// budget. When they no longer do:
/// - a read that fits the checkpoint (`carry_ok`), begun while the budget had room for a
///   round, reads on while a round fits (at least one
///   round in each call, so that every call moves it on), then stops ([`ReadEnd::Stopped`])
///   unless it is done; it stops too when it grew past the checkpoint, if `stop_anyway`;
/// - else it stops when `stop_anyway` (the caller's choice), or reads to its end whatever it
///   takes (a pause would not help: the next call would need the same rounds).
///
/// Errors: a page failed after its retries, or a listing repeated a link or did not end.
pub(super) fn read_within(
    platform: &dyn Platform,
    graph: &Graph<'_>,
    listings: &mut Listings,
    after: u64,
    carry_ok: bool,
    stop_anyway: bool,
) -> Result<ReadEnd, Failure> {
    let round = |l: &mut Listings| -> Result<(), Failure> {
        let urls = l.urls()?;
        let results = graph.get_all(&urls)?;
        l.take(results, true)
    };
    let fits_carry = |l: &Listings| carry_ok && l.carried_bytes() <= MEMBERS_CARRIED_MAX;
    // A read that begins with the budget already spent (by reads each call makes before it)
    // is not carried: each call would move it on by a round and run past its budget doing so.
    // One that begins with a round still left is: each call moves it on within its budget
    // (a red team's world: a leaver walk's 404 checks at concurrency 1 left 5 rounds of 15,
    // and the members' 22 pages read whole ran 1.9 s past the budget).
    let had_room = budget::fits(platform, 1);
    while !listings.done() {
        if !budget::fits(platform, 1 + after) {
            let mut stop = stop_anyway;
            if had_room && fits_carry(listings) {
                while !listings.done() && (listings.pages_now() == 0 || budget::fits(platform, 1)) {
                    round(listings)?;
                }
                // Only while the checkpoint holds what was read (else the next call would
                // start over, and stop at the same place, again and again).
                stop |= fits_carry(listings);
            }
            if stop && !listings.done() {
                return Ok(ReadEnd::Stopped);
            }
            break;
        }
        round(listings)?;
    }
    while !listings.done() {
        round(listings)?;
    }
    Ok(ReadEnd::Done)
}

/// The members' read of `groups` to go on with: the one `carry` holds, if it was begun for
/// these groups (`None`: a fresh one, or `carry` says to read them whole).
pub(super) fn resumed(carry: &mut MembersCarry, groups: &[String]) -> Option<Listings> {
    let carried = carry.read.take().filter(|m| m.groups == groups)?;
    if carry.whole {
        return None;
    }
    Graph::members_resume(groups, carried.read)
}

/// Checkpoints a read stopped by [`read_within`] (`Listings::carried`), or one done
/// (`whole`), into `carry`, while it fits [`MEMBERS_CARRIED_MAX`]. Members that turned out
/// larger make the rest of the work read them whole in each call (`MembersCarry::whole`): a
/// read that stops to be carried, then cannot be, would cost a call each time for nothing.
pub(super) fn checkpoint(
    carry: &mut MembersCarry,
    groups: Vec<String>,
    partial: Option<&Listings>,
    whole: Option<&Memberships>,
) {
    carry.read = None;
    if carry.whole {
        return;
    }
    let read = match (whole, partial.filter(|l| !l.done())) {
        (Some(m), _) if memberships_bytes(m) <= MEMBERS_CARRIED_MAX => CarriedRead {
            read: m.clone(),
            ..Default::default()
        },
        (None, Some(l)) if l.carried_bytes() <= MEMBERS_CARRIED_MAX => l.carried(),
        (None, None) => return,
        _ => {
            carry.whole = true;
            return;
        }
    };
    carry.read = Some(CarriedMembers { groups, read });
}

/// The members of `groups`, read within the budget with `after` rounds left after the read
/// ([`read_within`]), going on from where `carry` says an earlier call stopped: `Some` once
/// read to the end (kept in `carry` too, for a next call, while they fit), `None` when the
/// budget ran out first (the read checkpointed in `carry`; the caller pauses).
///
/// Errors: a member page failed after its retries, or a listing repeated a link.
pub(super) fn members_within(
    platform: &dyn Platform,
    graph: &Graph<'_>,
    groups: Vec<String>,
    carry: &mut MembersCarry,
    after: u64,
) -> Result<Option<Memberships>, Failure> {
    let mut listings = resumed(carry, &groups).unwrap_or_else(|| Graph::members_listings(&groups));
    if read_within(platform, graph, &mut listings, after, !carry.whole, false)? == ReadEnd::Stopped
    {
        checkpoint(carry, groups, Some(&listings), None);
        return Ok(None);
    }
    let members = listings.into_memberships();
    checkpoint(carry, groups, None, Some(&members));
    Ok(Some(members))
}

impl Engine<'_> {
    /// Takes in the members the last call carried, if they were read for the groups this
    /// configuration reads: whole (nothing is read this call), or in part (the read goes on
    /// from where it stopped). A checkpoint that does not fit is ignored (read afresh).
    ///
    /// Errors: a scope group is gone (as for a fresh read: see [`Engine::set_members`]).
    pub(super) fn resume_members(&mut self, sync: &mut FullSync) -> Result<(), Failure> {
        self.members_carried_ok = !sync.members.whole;
        let groups = self.config.read_groups();
        if groups.is_empty() {
            sync.members.read = None;
            return Ok(());
        }
        let complete = sync
            .members
            .read
            .as_ref()
            .is_some_and(|m| m.complete() && m.groups == groups);
        if complete {
            let carried = sync.members.read.take().expect("checked above");
            let members: Memberships = carried.read.read;
            self.set_members(&members)?;
        } else {
            self.members_read = resumed(&mut sync.members, &groups);
        }
        Ok(())
    }

    /// What the next call goes on from (see [`checkpoint`]). `ok`: the call's steps ended
    /// without a failure. A read in part is carried only then: one a failed page cut short
    /// could look finished, and its groups' members would then be missing (a red team saw
    /// mapped roles removed from members that way). Members read whole are whole either way.
    pub(super) fn carry_members(&self, sync: &mut FullSync, ok: bool) {
        let whole = self.members_whole_read.as_ref();
        if !self.members_carried_ok || (!ok && whole.is_none()) {
            sync.members.read = None;
            return;
        }
        // Members read whole but too large to keep: the rest of the run reads them whole in
        // each call, without stopping a read to carry it.
        let large = self.members.is_some() && whole.is_none();
        if large {
            sync.members.read = None;
            sync.members.whole = true;
            return;
        }
        checkpoint(
            &mut sync.members,
            self.config.read_groups(),
            self.members_read.as_ref(),
            whole,
        );
    }

    /// The members read whole, kept for the checkpoint while they fit it.
    pub(super) fn keep_whole_read(&mut self, members: &Memberships) {
        self.members_whole_read = (self.members_carried_ok
            && memberships_bytes(members) <= MEMBERS_CARRIED_MAX)
            .then(|| members.clone());
    }
}
