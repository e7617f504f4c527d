//! The wasmtime host: loads the component (compiled once per build, `compiled`) and runs its
//! calls over a network: the simulated world, or real HTTP for live runs (`tools::live`).

pub mod compiled;
pub mod driver;
pub mod runtime;
