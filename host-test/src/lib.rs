//! host-test: the platform simulator. wasmtime runs the real component; a simulated Entra
//! tenant (Graph) and a simulated ZenQMS answer its HTTP; scenarios drive it on a virtual clock.
#![cfg(not(target_arch = "wasm32"))]

// Layers, lowest first: sim < host < scenario < tools; each imports only from those below it
// (`tests/all/architecture.rs` checks it).
pub mod host;
pub mod scenario;
pub mod sim;
pub mod tools;

// The paths these modules had before the layers (used by tests and tools outside the crate).
pub use host::runtime;
pub use scenario::{report, runner};
pub use sim::{clock, fake_graph, fake_zenqms, faults, http_types, world};
pub use tools::{bench, fuzz, live, native, package, progress, serve};
