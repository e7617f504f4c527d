//! Scenarios: the file format (a public contract, `fixtures/README.md`), the runner that
//! plays the platform through them, and the report.

mod format;
pub mod report;
pub mod runner;

pub use format::*;
