//! Scenarios: files that describe a cluster, a timeline of faults and expectations.

pub mod flood;
mod forge;
mod run;
mod slowloris;
pub mod spec;
mod timeline;

pub use run::{run, run_on, Check, Outcome, RunOptions};
pub use spec::{Scenario, Step, EMBEDDED};
