//! The scenario tests: one binary (as wasmtime's own crates lay theirs out), so the component
//! is compiled by wasmtime once per `cargo test` rather than once per test file.

mod common;

mod address_props;
mod admin_actions;
mod architecture;
mod email_trust;
mod faults;
mod fuzz_props;
mod inbox;
mod initial_sync;
mod lifecycle;
mod live;
mod log_safety;
mod operator;
mod package;
mod performance;
mod platform_contract;
mod realtime;
mod redact_props;
mod reliability;
mod robustness;
mod roles_props;
mod scale;
mod scenario_format;
mod scope;
mod sync_lifecycle;
mod urls;
mod webhook_flood;
