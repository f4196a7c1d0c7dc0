//! The typed experiment configuration.
//!
//! These types are the single source of truth: serde reads and writes them, schemars turns
//! their doc comments, defaults and ranges into `schema/runner.schema.json`, and `runner init`
//! writes starter files from that schema. Nothing here knows about burn or any backend.

mod experiment;
mod hardware;
mod job;
mod sections;

pub use experiment::*;
pub use hardware::*;
pub use job::*;
pub use sections::*;
