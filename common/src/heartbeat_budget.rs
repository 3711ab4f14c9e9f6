//! The host heartbeat's size budget: a heartbeat is one frame, one datagram, whatever
//! the guests do.
//!
//! A frame holds at most [`MAX_PAYLOAD`] bytes of payload (65 000 bytes in all, under
//! the 65 507 bytes of a UDP datagram over IPv4). The sections guests can make grow
//! have caps of their own ([`MAX_KILL_ORDERS`], [`MAX_KILL_ANSWERS`], [`MAX_GUESTS`],
//! each detail at most [`MAX_DETAIL`] bytes): at their caps, with names as long as a
//! configuration allows, they take at most [`GUEST_SECTIONS_MAX`] bytes, which leaves
//! the rest for what the host itself reports (membership, its domains, VM HA,
//! applications, migrations). Should the whole still not fit, [`fit`] drops sections,
//! those guests drive first, down to the membership alone, which always fits: the
//! host's heartbeats never stop, and the caller raises the alarm.

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

/// Applies the per-section caps to `hb` and, while it is larger than `budget` bytes
/// encoded, drops whole sections: the guest-driven ones, then everything but the
/// membership. Returns what it did.
pub fn fit(hb: &mut Heartbeat, budget: usize) -> Fitted {
    let mut out = Fitted::default();
    for a in &mut hb.kill_answers {
        truncate(&mut a.detail, MAX_DETAIL);
    }
    let mut cap = |name: &'static str, len: &mut dyn FnMut(usize) -> usize, max: usize| {
        let over = len(max);
        if over > 0 {
            out.capped.push((name, over));
        }
    };
    cap(
        "kill_orders",
        &mut |m| cut(&mut hb.kill_orders, m),
        MAX_KILL_ORDERS,
    );
    cap(
        "kill_answers",
        &mut |m| cut(&mut hb.kill_answers, m),
        MAX_KILL_ANSWERS,
    );
    cap("guests", &mut |m| cut(&mut hb.guests, m), MAX_GUESTS);
    let steps: [(&str, LeaveOut); 4] = [
        ("kill_answers", |h| h.kill_answers.clear()),
        ("kill_orders", |h| h.kill_orders.clear()),
        ("guests", |h| h.guests.clear()),
        ("all but the membership", |h| *h = membership_only(h)),
    ];
    out.size = size(hb);
    for (name, drop) in steps {
        if out.size <= budget {
            break;
        }
        drop(hb);
        out.dropped.push(name);
        out.size = size(hb);
    }
    out
}

/// Leaves a section out of a heartbeat.
type LeaveOut = fn(&mut Heartbeat);

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

/// What the failure detector needs, and nothing else.
fn membership_only(hb: &Heartbeat) -> Heartbeat {
    Heartbeat {
        interconnect: hb.interconnect,
        watchdog: hb.watchdog,
        quorate: hb.quorate,
        votes: hb.votes,
        config_digest: hb.config_digest,
        domains_version: hb.domains_version,
        view: hb.view.clone(),
        down: hb.down.clone(),
        ..Heartbeat::default()
    }
}

#[cfg(test)]
mod tests;
