//! The host heartbeat's size budget: a heartbeat is one frame, one datagram, whatever
//! the guests do.
//!
//! A frame holds at most [`MAX_PAYLOAD`] bytes of payload (65 000 bytes in all, under
//! the 65 507 bytes of a UDP datagram over IPv4). The sections guests can make grow
//! have caps of their own ([`MAX_KILL_ORDERS`], [`MAX_KILL_ANSWERS`], [`MAX_GUESTS`],
//! each detail at most [`MAX_DETAIL`] bytes): at their caps, with names as long as a
//! configuration allows, they take at most [`GUEST_SECTIONS_MAX`] bytes, which leaves
//! the rest for what the host itself reports (membership, its domains, VM HA,
//! applications, migrations). Should the whole still not fit, [`fit`] leaves sections
//! out, those guests drive first, down to the membership header and the DOWN records,
//! which always fit: the host's heartbeats never stop, and the caller raises the alarm.

use crate::fencing::Downs;
use crate::host_heartbeat::HostSections;
use crate::hostlink::{Guests, KillAnswers, KillOrders};
use crate::membership::section::{HeartbeatSection, SectionId};
use crate::membership::Heartbeat;
use crate::wire::MAX_PAYLOAD;

/// Kill orders a heartbeat carries.
pub const MAX_KILL_ORDERS: usize = 64;
/// Kill answers a heartbeat carries.
pub const MAX_KILL_ANSWERS: usize = 64;
/// Linked guests a heartbeat carries.
pub const MAX_GUESTS: usize = 128;
/// Bytes of a kill answer's detail.
pub const MAX_DETAIL: usize = 160;
/// The most the guest-driven sections take at their caps, bytes (checked by a test).
pub const GUEST_SECTIONS_MAX: usize = 46_000;

/// What [`fit`] did to a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fitted {
    /// Entries left out by the per-section caps, by section.
    pub capped: Vec<(&'static str, usize)>,
    /// Whole sections left out because the heartbeat was still too large.
    pub dropped: Vec<&'static str>,
    /// The encoded size, bytes.
    pub size: usize,
}

/// Applies the per-section caps to `sections`, writes them into `hb` and, while it is
/// larger than `budget` bytes encoded, leaves out whole sections: the guest-driven ones,
/// then everything but the membership header and the DOWN records. Returns what it did.
pub fn fit(hb: &mut Heartbeat, sections: &mut HostSections, budget: usize) -> Fitted {
    let mut out = Fitted::default();
    for a in &mut sections.kill_answers {
        truncate(&mut a.detail, MAX_DETAIL);
    }
    let mut cap = |name: &'static str, over: usize| {
        if over > 0 {
            out.capped.push((name, over));
        }
    };
    cap(
        "kill_orders",
        cut(&mut sections.kill_orders, MAX_KILL_ORDERS),
    );
    cap(
        "kill_answers",
        cut(&mut sections.kill_answers, MAX_KILL_ANSWERS),
    );
    cap("guests", cut(&mut sections.guests, MAX_GUESTS));
    sections.write(hb);
    let steps: [(&str, &[SectionId]); 4] = [
        ("kill_answers", &[KillAnswers::ID]),
        ("kill_orders", &[KillOrders::ID]),
        ("guests", &[Guests::ID]),
        ("all but the membership", &[]),
    ];
    out.size = size(hb);
    for (name, leave_out) in steps {
        if out.size <= budget {
            break;
        }
        if leave_out.is_empty() {
            hb.retain(&[Downs::ID]);
        } else {
            leave_out.iter().for_each(|id| hb.remove(*id));
        }
        out.dropped.push(name);
        out.size = size(hb);
    }
    out
}

/// The budget of a host heartbeat's payload: what one frame holds.
pub const BUDGET: usize = MAX_PAYLOAD;

fn size(hb: &Heartbeat) -> usize {
    postcard::to_allocvec(hb).map_or(usize::MAX, |v| v.len())
}

fn cut<T>(list: &mut Vec<T>, max: usize) -> usize {
    let over = list.len().saturating_sub(max);
    list.truncate(max);
    over
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests;
