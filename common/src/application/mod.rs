//! The userApplication engine, as a pure state machine.

pub mod outcome;
pub mod spec;

pub use outcome::{OfflineReason, OpKind, OpOutcome, ResourceState};
pub use spec::{AppSpec, ResourceSpec};
