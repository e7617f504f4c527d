//! The call's budget as the steps of long work see it: in rounds, not milliseconds.
//!
//! A call may end at most one round past its budget (the round in flight when it ran out).
//! So work is cut into steps whose size follows what is left: before each step, a loop asks
//! whether a step still fits ([`fits`]), and a step sizes itself to the rounds left
//! ([`items_that_fit`]). A round is measured, not assumed: [`Platform::rounds_left`] divides
//! the time left by the longest round of the call so far (`retry::Resilient` keeps it).
//!
//! Every call still does at least one small step (the first step of a loop always runs, at
//! its minimum size), so an instance makes progress at any budget; at budgets smaller than
//! that minimum (about 5 rounds) a call can overrun by the difference.

use crate::platform::Platform;

/// Rounds the smallest step of the full sync needs: a page read, the address look-up, the
/// writes and role calls of a few users (three requests each, at concurrency 1 too), one more.
pub const MIN_STEP_ROUNDS: u64 = 5;

/// Whether a step of `rounds` rounds still fits in the call's budget.
pub fn fits(p: &dyn Platform, rounds: u64) -> bool {
    p.rounds_left() >= rounds
}

/// How many items (users, role calls, deactivations) the next step may take, when each costs
/// `per_item` requests and the step has `fixed` rounds of its own (reads that do not grow
/// with the items): the waves left after `fixed`, times the platform's concurrency, divided
/// by `per_item`; never less than `min` (progress) nor more than `max` (the step's own cap).
pub fn items_that_fit(
    p: &dyn Platform,
    fixed: u64,
    per_item: usize,
    min: usize,
    max: usize,
) -> usize {
    let waves = p.rounds_left().saturating_sub(fixed);
    let requests = waves.saturating_mul(p.concurrency().max(1) as u64);
    let n = requests / per_item.max(1) as u64;
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .clamp(min, max.max(min))
}

/// Whether a step of one item still fits: its `fixed` rounds and the waves of that item's
/// `per_item` requests (see [`items_that_fit`]).
pub fn one_fits(p: &dyn Platform, fixed: u64, per_item: usize) -> bool {
    let waves = per_item.div_ceil(p.concurrency().max(1)) as u64;
    fits(p, fixed + waves)
}

/// What one step of long work says of what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More steps to do.
    More,
    /// The work is finished.
    Done,
    /// Stop for this call (the step found the budget spent, or a failure it recorded):
    /// the work goes on in a later call.
    Paused,
}

/// The one loop of the call's long work (the full sync's steps, the notification queue, the
/// delete's unlinking): runs `step` until it says done or paused, always once per call (so an
/// instance makes progress at any budget), then only while `next_fits` says another step
/// still fits the budget. Ok(true) when the work finished in this call.
///
/// Errors: the first `Err` a step returns ends the loop and is returned.
pub fn run_steps<E>(
    mut next_fits: impl FnMut() -> bool,
    mut step: impl FnMut() -> Result<Step, E>,
) -> Result<bool, E> {
    let mut first = true;
    loop {
        if !first && !next_fits() {
            return Ok(false);
        }
        first = false;
        match step()? {
            Step::More => {}
            Step::Done => return Ok(true),
            Step::Paused => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Offline;

    #[test]
    fn the_loop_runs_one_step_always_then_while_one_fits() {
        // Nothing fits: one step all the same.
        let mut n = 0;
        let r: Result<bool, ()> = run_steps(
            || false,
            || {
                n += 1;
                Ok(Step::More)
            },
        );
        assert_eq!((r, n), (Ok(false), 1));
        // Room for everything: runs to done.
        let mut left = 3;
        let r: Result<bool, ()> = run_steps(
            || true,
            || {
                left -= 1;
                Ok(if left == 0 { Step::Done } else { Step::More })
            },
        );
        assert_eq!((r, left), (Ok(true), 0));
        // Paused and failed end it at once.
        assert_eq!(run_steps::<()>(|| true, || Ok(Step::Paused)), Ok(false));
        assert_eq!(run_steps(|| true, || Err::<Step, _>("down")), Err("down"));
    }

    #[test]
    fn items_follow_the_rounds_left_within_their_bounds() {
        let left = Offline::with_rounds;
        // 10 rounds, 2 fixed: 8 waves of 8 = 64 requests, 2 each = 32 items.
        assert_eq!(items_that_fit(&left(10), 2, 2, 4, 100), 32);
        assert_eq!(items_that_fit(&left(1_000), 2, 2, 4, 100), 100);
        assert_eq!(items_that_fit(&left(0), 2, 2, 4, 100), 4);
        assert_eq!(items_that_fit(&Offline::default(), 0, 1, 1, 20), 20);
        assert!(fits(&left(5), MIN_STEP_ROUNDS));
        assert!(!fits(&left(4), MIN_STEP_ROUNDS));
        // 8 requests at concurrency 8: one wave after 6 fixed rounds.
        assert!(one_fits(&left(7), 6, 8));
        assert!(!one_fits(&left(6), 6, 8));
    }
}
