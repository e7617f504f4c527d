//! Fault injection: a seeded, deterministic share of requests to Graph (and its token endpoint)
//! or ZenQMS fails with 429, 503 or a timeout, so tests can show the component converges anyway.

use serde::Deserialize;
use serde_json::json;

use crate::sim::http_types::HttpResponse;
use crate::sim::http_types::Target;

/// The scenario's `faults` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Share of eligible requests that fail, 0..=1.
    pub rate: f64,
    #[serde(default)]
    pub seed: u64,
    /// Any of "429", "503", "timeout".
    #[serde(default = "all_kinds")]
    pub kinds: Vec<String>,
    /// Any of "graph" (Graph and the token endpoint), "zenqms".
    #[serde(default = "all_targets")]
    pub targets: Vec<String>,
}

fn all_kinds() -> Vec<String> {
    vec!["429".into(), "503".into(), "timeout".into()]
}

fn all_targets() -> Vec<String> {
    vec!["graph".into(), "zenqms".into()]
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The service refuses it unprocessed with this response.
    Refuse(HttpResponse),
    /// No response arrives; `processed` says whether the service acted on it anyway.
    Timeout { processed: bool },
}

/// splitmix64's output function: a well-spread 64-bit value from a counter.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seeded generator and its settings.
#[derive(Debug, Clone)]
pub struct Faults {
    spec: FaultSpec,
    state: u64,
    pub injected: u64,
}

impl Faults {
    pub fn new(spec: FaultSpec) -> Self {
        Faults {
            state: spec.seed ^ 0x9E37_79B9_7F4A_7C15,
            spec,
            injected: 0,
        }
    }

    /// splitmix64: small, fast, and the same sequence for the same seed everywhere.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// The scenario's seed (the base of the guest's seeded random source too: see
    /// `World::next_random_seed`).
    pub fn seed(&self) -> u64 {
        self.spec.seed
    }

    fn chance(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Draws the fate of one request to `target`.
    pub fn draw(&mut self, target: Target) -> Option<Fault> {
        let name = match target {
            Target::Login | Target::Graph => "graph",
            Target::Zenqms => "zenqms",
            Target::Denied => return None,
        };
        if !self.spec.targets.iter().any(|t| t == name) || self.spec.kinds.is_empty() {
            return None;
        }
        if self.chance() >= self.spec.rate {
            return None;
        }
        self.injected += 1;
        let pick = (self.next() % self.spec.kinds.len() as u64) as usize;
        let kind = self.spec.kinds[pick].clone();
        let body = |code: &str, message: &str| match name {
            "graph" => json!({"error": {"code": code, "message": message}}),
            _ => json!({"error": {"code": code.to_ascii_lowercase(), "message": message}}),
        };
        Some(match kind.as_str() {
            "429" => {
                let mut r =
                    HttpResponse::json(429, &body("TooManyRequests", "Please retry again later."));
                let secs = 1 + self.next() % 5;
                r.headers.push(("Retry-After".into(), secs.to_string()));
                Fault::Refuse(r)
            }
            "503" => Fault::Refuse(HttpResponse::json(
                503,
                &body(
                    "ServiceUnavailable",
                    "The service is temporarily unavailable.",
                ),
            )),
            _ => Fault::Timeout {
                processed: self.next().is_multiple_of(2),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: f64, seed: u64) -> FaultSpec {
        FaultSpec {
            rate,
            seed,
            kinds: all_kinds(),
            targets: vec!["zenqms".into()],
        }
    }

    #[test]
    fn rate_and_determinism() {
        let mut a = Faults::new(spec(0.2, 7));
        let mut b = Faults::new(spec(0.2, 7));
        let draws: Vec<bool> = (0..10_000)
            .map(|_| a.draw(Target::Zenqms).is_some())
            .collect();
        let again: Vec<bool> = (0..10_000)
            .map(|_| b.draw(Target::Zenqms).is_some())
            .collect();
        assert_eq!(draws, again);
        let n = draws.iter().filter(|x| **x).count();
        assert!((1_700..2_300).contains(&n), "{n}");
        assert!(a.draw(Target::Graph).is_none(), "graph not targeted");
    }
}
