//! The host link's heartbeat sections: the guests linked to the sender, its kill orders
//! to other hosts and its answers to theirs, and the domains that may run on it.

use super::{DomainPresence, GuestPresence, KillAnswer, KillOrder};
use crate::membership::section::record_list_section;

/// Guests linked to the sender: who runs where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guests(pub Vec<GuestPresence>);

/// Orders to other hosts to destroy one of their guests, until answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillOrders(pub Vec<KillOrder>);

/// Answers to other hosts' kill orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillAnswers(pub Vec<KillAnswer>);

/// Domains that may run on the sender (not off, not crashed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Domains(pub Vec<DomainPresence>);

record_list_section!(Guests, 2, "guests");
record_list_section!(KillOrders, 3, "kill_orders");
record_list_section!(KillAnswers, 4, "kill_answers");
record_list_section!(Domains, 5, "domains");
