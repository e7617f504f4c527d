//! The CLI's tools over the layers below: bench, fuzz, live runs, the native build, package,
//! progress output, serve.

pub mod bench;
pub mod fuzz;
pub mod live;
pub mod native;
pub mod package;
pub mod progress;
pub mod serve;
