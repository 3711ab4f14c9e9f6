//! Migration's heartbeat section: the migrations the sender runs (and ran in the last
//! seconds), so that a domain present on both of its hosts meanwhile is no double run.

use super::MigrationLock;
use crate::membership::section::record_list_section;

/// The migration locks the sender publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locks(pub Vec<MigrationLock>);

record_list_section!(Locks, 11, "migrations");
