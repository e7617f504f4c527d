//! The platform's loop around one command: call the handler, then `resume` while the component
//! says `pending`; a call that failed retryably is called again, as a platform would, when the
//! policy allows it. The one driver of the simulator (`scenario::runner`), the native build
//! (`tools::native`) and live runs (`tools::live`).

/// Bound on the calls of one command, so a component that never finishes fails the command.
pub const MAX_CALLS_PER_STEP: u32 = 10_000;

/// How one call ended, seen from the platform.
pub enum CallEnd<O> {
    /// The handler returned an outcome.
    Done(O),
    /// It failed (or trapped: never retryable); `message` says how.
    Failed { message: String, retryable: bool },
}

/// What a platform allows around the calls of one command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Calls of the same handler again after a retryable failure (0: none).
    pub retries: u32,
    /// Stop after this many calls, leaving work pending (a scenario step's `calls`).
    pub max_calls: Option<u32>,
}

/// How a command ended.
pub struct Driven<O> {
    /// The first outcome (the webhook reply is in it).
    pub first: Option<O>,
    /// Why it stopped short: the last failure, or "still pending after …".
    pub error: Option<String>,
    /// Stopped at `max_calls` with work pending.
    pub pending: bool,
    /// Calls made, retries included.
    pub calls: u32,
}

/// Runs `start`, then `resume` while `pending(outcome)`, by `call`; `before_retry` runs before
/// each retry (a platform's wait).
pub fn drive<H: Clone, O>(
    start: H,
    resume: H,
    policy: Policy,
    pending: impl Fn(&O) -> bool,
    mut call: impl FnMut(&H) -> CallEnd<O>,
    mut before_retry: impl FnMut(),
) -> Driven<O> {
    let mut out = Driven {
        first: None,
        error: None,
        pending: false,
        calls: 0,
    };
    let mut current = start;
    let mut retries = 0;
    loop {
        out.calls += 1;
        let outcome = match call(&current) {
            CallEnd::Done(o) => o,
            CallEnd::Failed { message, retryable } => {
                if retryable
                    && retries < policy.retries
                    && policy.max_calls.is_none_or(|k| out.calls < k)
                {
                    retries += 1;
                    before_retry();
                    continue;
                }
                out.error = Some(message);
                return out;
            }
        };
        let more = pending(&outcome);
        if out.first.is_none() {
            out.first = Some(outcome);
        }
        if !more {
            return out;
        }
        if policy.max_calls.is_some_and(|k| out.calls >= k) {
            out.pending = true;
            return out;
        }
        if out.calls >= MAX_CALLS_PER_STEP {
            out.error = Some(format!("still pending after {MAX_CALLS_PER_STEP} calls"));
            return out;
        }
        current = resume.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component scripted call by call: `Ok(pending)` or `Err(retryable)`.
    fn run(
        script: &[Result<bool, bool>],
        policy: Policy,
    ) -> (Driven<bool>, Vec<&'static str>, u32) {
        let mut calls = Vec::new();
        let mut waits = 0;
        let mut next = script.iter();
        let driven = drive(
            "start",
            "resume",
            policy,
            |pending: &bool| *pending,
            |h| {
                calls.push(*h);
                match next.next().expect("scripted") {
                    Ok(pending) => CallEnd::Done(*pending),
                    Err(retryable) => CallEnd::Failed {
                        message: "failed".into(),
                        retryable: *retryable,
                    },
                }
            },
            || waits += 1,
        );
        (driven, calls, waits)
    }

    #[test]
    fn resumes_while_pending_and_keeps_the_first_outcome() {
        let (d, calls, _) = run(&[Ok(true), Ok(true), Ok(false)], Policy::default());
        assert_eq!(calls, ["start", "resume", "resume"]);
        assert_eq!(
            (d.first, d.error, d.pending, d.calls),
            (Some(true), None, false, 3)
        );
    }

    #[test]
    fn retries_only_retryable_failures_within_the_policy() {
        let policy = Policy {
            retries: 1,
            max_calls: None,
        };
        let (d, calls, waits) = run(&[Err(true), Ok(false)], policy);
        assert_eq!((calls, waits, d.error), (vec!["start", "start"], 1, None));
        let (d, _, _) = run(&[Err(true), Err(true)], policy);
        assert_eq!(d.error.as_deref(), Some("failed"));
        let (d, calls, _) = run(&[Err(false)], policy);
        assert_eq!((calls.len(), d.error.is_some()), (1, true));
        let (d, calls, _) = run(&[Err(true)], Policy::default());
        assert_eq!((calls.len(), d.error.is_some()), (1, true));
    }

    #[test]
    fn stops_at_max_calls_with_work_pending() {
        let policy = Policy {
            retries: 0,
            max_calls: Some(2),
        };
        let (d, calls, _) = run(&[Ok(true), Ok(true), Ok(true)], policy);
        assert_eq!(calls.len(), 2);
        assert!(d.pending && d.error.is_none());
    }
}
