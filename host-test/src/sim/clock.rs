//! The virtual clock: the guest's wall and monotonic clocks read it, and simulated round trips
//! advance it, so time-dependent behaviour is deterministic and measured without noise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Shared handle; clones see the same time.
#[derive(Clone, Debug)]
pub struct VirtualClock {
    start: DateTime<Utc>,
    /// Nanoseconds since `start`.
    elapsed_ns: Arc<AtomicU64>,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        VirtualClock {
            start,
            elapsed_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ns.load(Ordering::SeqCst) / 1_000_000
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.start + TimeDelta::nanoseconds(self.elapsed_ns.load(Ordering::SeqCst) as i64)
    }

    pub fn advance_ms(&self, ms: u64) {
        self.elapsed_ns.fetch_add(ms * 1_000_000, Ordering::SeqCst);
    }

    /// Moves the clock forward to `to`; moving backwards is an error.
    pub fn set(&self, to: DateTime<Utc>) -> anyhow::Result<()> {
        let now = self.now();
        anyhow::ensure!(to >= now, "cannot move the clock back from {now} to {to}");
        let delta = (to - self.start).num_nanoseconds().unwrap_or(i64::MAX);
        self.elapsed_ns.store(delta as u64, Ordering::SeqCst);
        Ok(())
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        let t = VirtualClock::now(self);
        Duration::new(t.timestamp() as u64, t.timestamp_subsec_nanos())
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.elapsed_ns.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_and_refuses_going_back() {
        let c = VirtualClock::new("2026-11-28T12:00:00Z".parse().unwrap());
        c.advance_ms(1500);
        assert_eq!(c.now().to_rfc3339(), "2026-11-28T12:00:01.500+00:00");
        assert!(c.set("2026-11-28T11:00:00Z".parse().unwrap()).is_err());
        c.set("2026-11-29T12:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(c.elapsed_ms(), 86_400_000);
        assert_eq!(HostMonotonicClock::now(&c), 86_400_000_000_000);
    }
}
