//! The hvcluster lab: simulated hosts in network namespaces, faults, scenarios and
//! benchmarks, used by `hvlab`, the end-to-end tests and the demo.

pub mod bench;
pub mod cluster;
pub mod collector;
pub mod guests;
pub mod hypervisors;
pub mod interrupt;
pub mod keys;
pub mod lab;
pub mod rogue;
pub mod scenario;
pub mod vms;
