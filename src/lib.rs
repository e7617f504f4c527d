//! Microsoft Entra ID -> ZenQMS user provisioning, as a WebAssembly component.
//!
//! The modules, in layers (lowest first; `host-test/tests/all/architecture.rs` checks that no
//! module imports from a layer above its own and that no two import each other):
//! - [`platform`], [`failure`], [`log`]: what the platform lends a call (HTTP rounds, the budget
//!   in rounds, URLs), what a failure is, and the one way text leaves (scrubbed, escaped).
//! - [`config`], [`state`], [`domain`]: the instance's settings, its checkpoint, and the pure
//!   provisioning rules (Entra user, plan, roles, scope, the one guard, the inbox). ZenQMS's
//!   data shapes (`clients::zenqms::api`, no I/O) count as this layer: the domain plans over
//!   them.
//! - [`clients`]: Graph, ZenQMS, subscriptions and retries, over the platform.
//! - [`write`]: the one path that writes to ZenQMS (live or dry run), with its audit lines.
//! - [`sync`]: the full sync's lifecycle, the notification queue and the delta round.
//! - [`call`]: the one place that loads state, runs a handler within the budget and returns
//!   the changed state on every outcome.
//! - [`handlers`]: deploy, webhook, schedule, resume, delete; [`actions`]: the admin actions.
//! - `wasm` (wasm32 only): the WIT glue.

pub mod actions;
pub mod call;
pub mod clients;
pub mod config;
pub mod domain;
pub mod failure;
pub mod handlers;
pub mod log;
pub mod platform;
pub mod state;
pub mod sync;
pub mod write;

#[cfg(test)]
mod testkit;

#[cfg(target_arch = "wasm32")]
mod wasm;
