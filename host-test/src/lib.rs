//! host-test: the platform simulator. wasmtime runs the real component; a simulated Entra
//! tenant (Graph) and a simulated ZenQMS answer its HTTP; scenarios drive it on a virtual clock.
#![cfg(not(target_arch = "wasm32"))]

pub mod bench;
pub mod clock;
pub mod fake_graph;
pub mod fake_zenqms;
pub mod faults;
pub mod fuzz;
pub mod http_types;
pub mod live;
pub mod native;
pub mod package;
pub mod progress;
pub mod report;
pub mod runner;
pub mod runtime;
pub mod scenario;
pub mod serve;
pub mod world;
