//! The simulated services and network: a virtual clock, faults, the fake Graph and ZenQMS,
//! and the world that routes requests between them. Built from seed types ([`seed`]), never
//! from the scenario format above it.

pub mod clock;
pub mod delivery;
pub mod fake_graph;
pub mod fake_zenqms;
pub mod faults;
pub mod http_types;
pub mod seed;
pub mod world;
