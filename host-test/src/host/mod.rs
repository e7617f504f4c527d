//! The wasmtime host: loads the component and runs its calls over a network (the simulated
//! world).

pub mod driver;
pub mod runtime;
