//! The call layer: the one place that runs every handler.
//!
//! It owns the call's state and its budget. It loads the stored state (lazily, once), hands
//! the handler a mutable [`Slot`], and afterwards returns the state to the platform whenever it
//! differs from what came in — for every outcome and every failure. No handler decides whether
//! to return state: a subscription renewed, a delta link advanced or a queue drained by a call
//! with nothing else to do is never lost (issue 12, "state that a call changed is lost").
//!
//! It also turns a transient failure that ran out of budget into a checkpoint (`pending`), says
//! `pending` whenever the state holds checkpointed work, and logs the call's one summary line.
//!
//! And it takes in the instance's inbox (WIT 0.2.0): before a serialized call's handler runs,
//! every inbox item is merged into the state's queue and reported `taken`; every state returned
//! carries the next revision. A webhook call reads the state but never changes it.

use crate::clients::retry::Resilient;
use crate::domain::inbox::InboxItem;
use crate::failure::Failure;
use crate::log::Log;
use crate::platform::{Platform, Response};
use crate::state::State;

/// A successful call's result, as the platform receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub response: Option<Response>,
    /// The new state (JSON text) when it differs from the stored one; `None` keeps the old.
    pub state: Option<String>,
    pub pending: bool,
    pub summary: String,
    /// A webhook's accepted items, for the platform to append to the inbox.
    pub inbox: Vec<String>,
    /// The inbox `seq`s this call took in.
    pub taken: Vec<u64>,
    /// The revision of `state`, when there is one.
    pub state_revision: Option<u64>,
    /// An admin action's result (a JSON object's text); `None` for every other call.
    pub result: Option<String>,
}

/// A failed call's result: the failure and the state to keep (when it changed).
#[derive(Debug, Clone, PartialEq)]
pub struct CallFailure {
    pub message: String,
    pub state: Option<String>,
    pub retryable: bool,
    /// The inbox `seq`s taken into the state (the stored one, or `state`).
    pub taken: Vec<u64>,
    pub state_revision: Option<u64>,
}

pub type CallResult = Result<Outcome, CallFailure>;

/// What a handler returns: the webhook reply, whether it left work it knows of, and the
/// summary line. The state travels in the [`Slot`], not here.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub response: Option<Response>,
    pub pending: bool,
    pub summary: String,
    /// A webhook's accepted items for the inbox.
    pub inbox: Vec<String>,
    /// An admin action's result (a JSON object's text).
    pub result: Option<String>,
    /// The work checkpointed in state waits for a change the platform cannot make happen
    /// (`dry_run` set back to false): the call is not pending, whatever the state holds, so
    /// the platform does not resume it in a loop. The next tick or resume looks again.
    pub waits: bool,
}

impl Reply {
    /// A call that is done.
    pub fn done(summary: impl Into<String>) -> Self {
        Reply {
            response: None,
            pending: false,
            summary: summary.into(),
            inbox: Vec::new(),
            result: None,
            waits: false,
        }
    }

    /// A call that is done while checkpointed work waits (see [`Reply::waits`]).
    pub fn waiting(summary: impl Into<String>) -> Self {
        Reply {
            waits: true,
            ..Reply::done(summary)
        }
    }

    /// A call that checkpointed work and wants `resume`.
    pub fn pending(summary: impl Into<String>) -> Self {
        Reply {
            pending: true,
            ..Reply::done(summary)
        }
    }

    /// The same reply, answering the webhook caller with `response`.
    pub fn answering(mut self, response: Response) -> Self {
        self.response = Some(response);
        self
    }
}

/// How to treat stored state that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Refuse the call (events: never act on state we do not understand).
    Refuse,
    /// Start from a fresh state, with a warning (a redeploy starts over anyway).
    StartOver,
    /// Start from a fresh state silently (delete: finds the links in ZenQMS, not in state).
    Ignore,
}

/// The call's state: loaded from the stored text on first use; what the call layer returns.
pub struct Slot<'a> {
    stored: Option<&'a str>,
    unreadable: Unreadable,
    state: Option<State>,
    /// The loaded state as it came in, serialised; `None` when the stored text was unreadable
    /// (then whatever the call leaves differs from it).
    baseline: Option<String>,
}

impl<'a> Slot<'a> {
    pub fn new(stored: Option<&'a str>, unreadable: Unreadable) -> Self {
        Slot {
            stored,
            unreadable,
            state: None,
            baseline: None,
        }
    }

    /// The call's state, loaded on first use.
    ///
    /// Errors: the stored state is unreadable or from a newer version, and this call refuses
    /// such state ([`Unreadable::Refuse`]).
    pub fn get(&mut self, log: &Log) -> Result<&mut State, Failure> {
        if self.state.is_none() {
            let (state, baseline) = match State::parse(self.stored) {
                Ok(s) => {
                    let baseline = s.to_json();
                    (s, Some(baseline))
                }
                Err(f) => match self.unreadable {
                    Unreadable::Refuse => return Err(f),
                    Unreadable::StartOver => {
                        log.warn(
                            "stored state ignored on redeploy",
                            &[("reason", &f.message)],
                        );
                        (State::fresh(), None)
                    }
                    Unreadable::Ignore => (State::fresh(), None),
                },
            };
            self.state = Some(state);
            self.baseline = baseline;
        }
        Ok(self.state.as_mut().expect("loaded above"))
    }

    /// The state to return, and its revision: the loaded state when it differs from what came
    /// in, one revision higher than the stored state.
    fn changed(&mut self) -> Option<(String, u64)> {
        let state = self.state.as_mut()?;
        let now = state.to_json();
        if self.baseline.as_deref() == Some(now.as_str()) {
            return None;
        }
        let stored = self
            .baseline
            .as_deref()
            .and_then(|b| State::parse(Some(b)).ok())
            .map_or(0, |s| s.revision);
        state.revision = stored.max(state.revision) + 1;
        Some((state.to_json(), state.revision))
    }

    /// Merges the inbox into the state's queue; the `seq`s taken (an unreadable item too:
    /// logged and dropped, so it is not offered again).
    ///
    /// Errors: the stored state cannot be read (nothing is taken then).
    fn take_inbox(&mut self, log: &Log, inbox: &[(u64, String)]) -> Result<Vec<u64>, Failure> {
        if inbox.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.get(log)?;
        // A delete in progress, or an instance not deployed (a delete finished): nothing may
        // be re-linked, so the items are dropped.
        let closed = state.deleting.is_some() || state.tenant_id.is_none();
        let mut taken = Vec::with_capacity(inbox.len());
        let mut items = Vec::new();
        for (seq, text) in inbox {
            taken.push(*seq);
            let item = match InboxItem::decode(text) {
                Ok(item) => item,
                Err(why) => {
                    log.warn(
                        "inbox item unreadable, dropped",
                        &[("seq", &seq.to_string()), ("reason", &why)],
                    );
                    continue;
                }
            };
            if closed {
                log.info(
                    "inbox item dropped: the instance is being deleted or is not deployed",
                    &[("seq", &seq.to_string())],
                );
                continue;
            }
            items.push(item);
        }
        // The writes these lead to name every notification that asked for them.
        if let Some(cause) = crate::domain::inbox::cause_of(&items.iter().collect::<Vec<_>>()) {
            state.queue.add_cause(cause);
        }
        for item in items {
            item.merge_into(&mut state.queue);
        }
        Ok(taken)
    }

    /// Whether the loaded state holds checkpointed work (`resume` must be called).
    pub fn has_work(&self) -> bool {
        self.state.as_ref().is_some_and(State::has_work)
    }
}

/// Runs one handler: over a retrying platform that counts the call's budget, with the state in
/// a [`Slot`]. Returns the state whenever it changed, on success and on failure alike.
///
/// `config` is the instance's raw configuration: its secrets are registered before anything
/// runs, so every log line, summary and failure message of the call is scrubbed of them.
#[allow(clippy::too_many_arguments)]
pub fn run(
    p: &dyn Platform,
    config: &[(String, String)],
    stored: Option<&str>,
    inbox: &[(u64, String)],
    unreadable: Unreadable,
    budget_ms: u32,
    what: &str,
    handler: impl FnOnce(&dyn Platform, &mut Slot) -> Result<Reply, Failure>,
) -> CallResult {
    let resilient = Resilient::new(p, budget_ms);
    crate::config::register_secrets(config, &resilient);
    let mut slot = Slot::new(stored, unreadable);
    // A webhook call never reads the inbox (it may run beside the call that does); an admin
    // action leaves it to the work calls (it answers the admin, it does not sync).
    let inbox = if what == "webhook" || what == "action" {
        &[][..]
    } else {
        inbox
    };
    let (taken, result) = match slot.take_inbox(&Log::new(&resilient), inbox) {
        Ok(taken) => (taken, handler(&resilient, &mut slot)),
        Err(f) => (Vec::new(), Err(f)),
    };
    let changed = slot.changed();
    let state_revision = changed.as_ref().map(|(_, r)| *r);
    let state = changed.map(|(s, _)| s);
    let result = match result {
        Ok(reply) => Ok(Outcome {
            // A webhook is pending when it accepted items for the inbox, and only then
            // (world.wit): one that accepted nothing must not make the platform resume work
            // left by a failed call (a red team: unauthenticated POSTs retried a failed
            // delete at once, each time, past the platform's retry schedule).
            pending: reply.pending || (slot.has_work() && !reply.waits && what != "webhook"),
            response: reply.response,
            state,
            summary: reply.summary,
            inbox: reply.inbox,
            taken,
            state_revision,
            result: reply.result.map(|r| clean_result(&resilient, &r)),
        }),
        // A transient failure that ran out of budget with work checkpointed: continue on
        // resume instead of failing.
        // (A webhook does no work, so never gets here.)
        // (An admin action answers with its own result or fails: it pauses nothing.)
        Err(f)
            if f.retryable && resilient.out_of_budget() && slot.has_work() && what != "action" =>
        {
            Ok(Outcome {
                response: None,
                state,
                pending: true,
                summary: format!(
                    "{what}: paused, budget spent waiting on a transient failure ({}); continues on resume",
                    f.message
                ),
                inbox: Vec::new(),
                taken,
                state_revision,
                result: None,
            })
        }
        Err(f) => Err(CallFailure {
            message: f.message,
            state,
            retryable: f.retryable,
            taken,
            state_revision,
        }),
    };
    // Nothing leaves with a secret in it: summaries and failure messages are scrubbed like
    // every log line (which the call's platform scrubs and escapes itself).
    let result = match result {
        Ok(mut o) => {
            o.summary = resilient.scrub(&o.summary);
            // Every webhook reply says what it is and must not be sniffed as anything else.
            if let Some(r) = o.response.as_mut()
                && r.header("x-content-type-options").is_none()
            {
                r.headers
                    .push(("X-Content-Type-Options".into(), "nosniff".into()));
            }
            Ok(o)
        }
        Err(mut f) => {
            f.message = resilient.scrub(&f.message);
            Err(f)
        }
    };
    let log = Log::new(&resilient);
    if result.is_ok() && resilient.retries() > 0 {
        log.info(
            "transient failures retried",
            &[
                ("call", what),
                ("retries", &resilient.retries().to_string()),
            ],
        );
    }
    match &result {
        Ok(o) => log.info(&o.summary, &[("call", what), ("status", "ok")]),
        Err(f) => log.error(
            &format!("{what} failed: {}", f.message),
            &[
                ("call", what),
                ("status", "failed"),
                ("retryable", if f.retryable { "true" } else { "false" }),
            ],
        ),
    }
    result
}

/// An admin action's result (JSON text) as it may leave the component: every string scrubbed
/// and escaped ([`crate::log::clean_strings`]). A result that is not JSON (none is) is
/// withheld rather than cut as text.
fn clean_result(p: &dyn Platform, text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut v) => {
            crate::log::clean_strings(p, &mut v);
            v.to_string()
        }
        Err(_) => serde_json::json!({ "error": crate::log::redact::REDACTED }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Response;
    use crate::testkit::Offline;

    const SECRET: &str = "zq-token-4711";

    fn config() -> Vec<(String, String)> {
        vec![("zenqms_api_token".into(), SECRET.into())]
    }

    fn call(
        p: &Offline,
        stored: Option<&str>,
        unreadable: Unreadable,
        handler: impl FnOnce(&dyn Platform, &mut Slot) -> Result<Reply, Failure>,
    ) -> CallResult {
        run(
            p,
            &config(),
            stored,
            &[],
            unreadable,
            20_000,
            "resume",
            handler,
        )
    }

    fn stored_with_queue() -> String {
        let mut s = State::fresh();
        s.queue.users.push("u1".into());
        s.to_json()
    }

    #[test]
    fn a_state_the_handler_changed_is_returned_and_an_unchanged_one_is_not() {
        let p = Offline::default();
        let stored = State::fresh().to_json();
        let o = call(&p, Some(&stored), Unreadable::Refuse, |p, slot| {
            slot.get(&Log::new(p))?.queue.delta_round = true;
            Ok(Reply::done("changed"))
        })
        .unwrap();
        assert!(o.state.as_deref().unwrap().contains("delta_round"));
        // Work left in the state makes the call pending whatever the handler said.
        assert!(o.pending);

        let o = call(&p, Some(&stored), Unreadable::Refuse, |p, slot| {
            slot.get(&Log::new(p))?;
            Ok(Reply::done("read only"))
        })
        .unwrap();
        assert_eq!(o.state, None);
        assert!(!o.pending);
    }

    #[test]
    fn a_failure_keeps_what_the_call_changed_before_it() {
        let p = Offline::default();
        let stored = State::fresh().to_json();
        let f = call(&p, Some(&stored), Unreadable::Refuse, |p, slot| {
            slot.get(&Log::new(p))?.queue.users.push("u9".into());
            Err(Failure::fatal("broke after a change"))
        })
        .unwrap_err();
        assert!(f.state.as_deref().unwrap().contains("u9"));
        assert!(!f.retryable);
    }

    #[test]
    fn unreadable_state_is_refused_or_started_over_as_the_call_asks() {
        let p = Offline::default();
        let f = call(&p, Some("{not json"), Unreadable::Refuse, |p, slot| {
            slot.get(&Log::new(p))?;
            Ok(Reply::done("never"))
        })
        .unwrap_err();
        assert!(f.message.contains("unreadable"), "{}", f.message);
        assert_eq!(f.state, None, "the stored text is left as it is");

        let o = call(&p, Some("{not json"), Unreadable::StartOver, |p, slot| {
            slot.get(&Log::new(p))?;
            Ok(Reply::done("fresh"))
        })
        .unwrap();
        assert!(
            o.state.is_some(),
            "a fresh state replaces the unreadable one"
        );
        assert!(
            p.log_text().contains("stored state ignored"),
            "{}",
            p.log_text()
        );
    }

    #[test]
    fn the_inbox_is_taken_in_merged_once_per_id_and_dropped_while_deleting() {
        let item = |users: &[&str], n: &str| -> String {
            serde_json::json!({"users": users, "notifications": [n], "received_at": "20261128T120000Z"})
                .to_string()
        };
        let inbox = vec![
            (7, item(&["u1", "u2"], "n-1")),
            (8, "not an item".to_string()),
            (9, item(&["u2", "u3"], "n-2")),
        ];
        let p = Offline::default();
        let take = |stored: &str, what: &str| {
            run(
                &p,
                &config(),
                Some(stored),
                &inbox,
                Unreadable::Refuse,
                20_000,
                what,
                |_, _| Ok(Reply::done("nothing else")),
            )
            .unwrap()
        };
        let mut deployed = State::fresh();
        deployed.tenant_id = Some("t".into());
        let o = take(&deployed.to_json(), "resume");
        assert_eq!(o.taken, vec![7, 8, 9], "the unreadable one too");
        let state = State::parse(o.state.as_deref()).unwrap();
        assert_eq!(state.queue.users, vec!["u1", "u2", "u3"]);
        assert_eq!(state.queue.cause, "notification n-1,n-2");
        assert_eq!(o.state_revision, Some(1));
        assert!(p.log_text().contains("inbox item unreadable, dropped"));

        // While a delete is in progress nothing is queued (nothing may be re-linked).
        let mut deleting = deployed.clone();
        deleting.deleting = Some(crate::state::Deleting {
            started_at: "2026-11-28T12:00:00Z".into(),
            ..Default::default()
        });
        let o = take(&deleting.to_json(), "resume");
        assert_eq!(o.taken, vec![7, 8, 9]);
        assert!(o.state.is_none(), "nothing queued: the state is unchanged");
        // A webhook call never takes the inbox.
        let o = take(&deleting.to_json(), "webhook");
        assert!(o.taken.is_empty() && o.state.is_none());
    }

    #[test]
    fn a_transient_failure_out_of_budget_with_work_checkpointed_is_a_pause() {
        let p = Offline::default();
        let stored = stored_with_queue();
        let o = run(
            &p,
            &config(),
            Some(&stored),
            &[],
            Unreadable::Refuse,
            1_000,
            "resume",
            |p, slot| {
                slot.get(&Log::new(p))?;
                // A retry wait that does not fit marks the call out of budget.
                assert!(!p.can_wait(5_000));
                Err(Failure::transient("ZenQMS answered 503"))
            },
        )
        .unwrap();
        assert!(o.pending);
        assert!(o.response.is_none());
        assert!(o.summary.contains("paused"), "{}", o.summary);
    }

    #[test]
    fn secrets_never_leave_in_a_summary_or_a_failure_and_replies_are_nosniff() {
        let p = Offline::default();
        let o = call(&p, None, Unreadable::Refuse, |_, _| {
            Ok(
                Reply::done(format!("token {SECRET} echoed")).answering(Response::text(
                    200,
                    "text/plain",
                    "ok",
                )),
            )
        })
        .unwrap();
        assert!(!o.summary.contains(SECRET), "{}", o.summary);
        let reply = o.response.unwrap();
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        let f = call(&p, None, Unreadable::Refuse, |_, _| {
            Err(Failure::fatal(format!("ZenQMS refused {SECRET}")))
        })
        .unwrap_err();
        assert!(!f.message.contains(SECRET), "{}", f.message);
        assert!(!p.log_text().contains(SECRET), "{}", p.log_text());
    }
}
