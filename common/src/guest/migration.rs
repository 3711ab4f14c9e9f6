//! Migrations of this guest and of its partners, as the guest cluster lives them.
//!
//! Before moving a guest, its host asks it ([`LinkMessage::MigrationPrepare`]). The
//! guest refuses while an application of its cluster is between two states; else it
//! accepts and, in every heartbeat until the move is over, tells its partners how much
//! longer it may take. Meanwhile every node of the cluster holds its switchovers, and
//! the partners do not take the moving guest's silence (its pause) for a failure. The
//! move is over when the guest links from another host (it moved), when its host says
//! the migration ended (it did not move), or when the announced time has passed (its
//! host restarted midway): every hold lifts by itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{Effect, GuestCore};
use crate::config::NodeId;
use crate::hostlink::LinkMessage;

/// What this guest knows of migrations in its cluster.
#[derive(Debug, Default)]
pub(super) struct Migrations {
    /// This guest is being moved: the migration and until when at most.
    own: Option<(u64, Duration)>,
    /// The host that is moving it.
    from: Option<String>,
    /// Partners being moved, until when at most.
    peers: BTreeMap<NodeId, Duration>,
    /// Whether the engine's switchovers are held now.
    holding: bool,
}

impl Migrations {
    /// What this guest's heartbeats say at `now`: ms left of its own move (0: none).
    pub(super) fn own_ms_left(&self, now: Duration) -> u64 {
        self.own.map_or(0, |(_, until)| {
            until.saturating_sub(now).as_millis().max(1) as u64
        })
    }
}

impl GuestCore {
    /// The host asks whether this guest may be moved.
    pub(super) fn on_migration_prepare(&mut self, now: Duration, id: u64, hold_ms: u64) {
        let node = self.own_name();
        let refusal = self.engine.transition().or_else(|| {
            let moving = self.migrations.peers.keys().next()?;
            Some(format!("{} is being moved already", self.name(*moving)))
        });
        let (ok, detail) = match refusal {
            Some(why) => (false, format!("{node} cannot be moved now: {why}")),
            None => {
                let until = now + Duration::from_millis(hold_ms);
                self.migrations.own = Some((id, until));
                self.migrations.from = self.link.host.clone();
                self.record(
                    Some(node.clone()),
                    "migration_hold",
                    format!(
                        "{node} is about to be moved to another host: switchovers held and \
                         its silence forgiven for up to {} s",
                        hold_ms / 1000
                    ),
                    json!({ "id": id, "hold_ms": hold_ms }),
                );
                self.update_migration_hold(now);
                // The partners hold before the host begins.
                self.send_heartbeats();
                (true, format!("{node} is ready to be moved"))
            }
        };
        if self.has_link {
            let answer = LinkMessage::MigrationAnswer { id, ok, detail };
            self.out.push(Effect::SendLink(answer));
        }
    }

    /// The host says the migration `id` ended without moving this guest.
    pub(super) fn on_migration_end(&mut self, now: Duration, id: u64) {
        if self.migrations.own.is_some_and(|(own, _)| own == id) {
            self.end_own_migration(now, "its host says the migration ended; it stays there");
        }
    }

    /// This guest linked from host `host`; it moved when that is not the host that was
    /// moving it.
    pub(super) fn migration_linked(&mut self, now: Duration, host: &str) {
        let from = self.migrations.from.as_deref();
        if self.migrations.own.is_some() && from.is_some_and(|f| f != host) {
            self.end_own_migration(now, &format!("it now runs on {host}"));
        }
    }

    fn end_own_migration(&mut self, now: Duration, how: &str) {
        self.migrations.own = None;
        let node = self.own_name();
        self.record(
            Some(node.clone()),
            "migration_over",
            format!("{node}: the move is over ({how}): switchovers released"),
            json!({}),
        );
        self.update_migration_hold(now);
        self.send_heartbeats();
    }

    /// A heartbeat of partner `from` says it is being moved for `ms` more (0: not).
    pub(super) fn migration_heard(&mut self, now: Duration, from: NodeId, ms: u64) {
        if ms == 0 {
            if self.migrations.peers.remove(&from).is_some() {
                self.membership.relax(from, None);
                self.update_migration_hold(now);
            }
            return;
        }
        let fresh = !self.migrations.peers.contains_key(&from);
        let until = now + Duration::from_millis(ms);
        self.migrations.peers.insert(from, until);
        self.membership.relax(from, Some(until));
        if fresh {
            let name = self.name(from);
            self.record(
                Some(name.clone()),
                "migration_hold",
                format!(
                    "{name} is being moved to another host: switchovers held and its silence \
                     forgiven for up to {} s",
                    ms / 1000
                ),
                json!({ "node": name, "hold_ms": ms }),
            );
            self.update_migration_hold(now);
        }
    }

    /// Lifts the holds whose time has passed, and gives the engine the hold of now.
    pub(super) fn update_migration_hold(&mut self, now: Duration) {
        let m = &mut self.migrations;
        if m.own.is_some_and(|(_, until)| until <= now) {
            m.own = None;
        }
        let expired: Vec<NodeId> = m
            .peers
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(n, _)| *n)
            .collect();
        for n in expired {
            self.migrations.peers.remove(&n);
            self.membership.relax(n, None);
        }
        let moving = match (self.migrations.own, self.migrations.peers.keys().next()) {
            (Some(_), _) => Some(self.own_name()),
            (None, Some(n)) => Some(self.name(*n)),
            (None, None) => None,
        };
        if moving.is_some() != self.migrations.holding {
            self.migrations.holding = moving.is_some();
            let why = moving.map(|n| format!("{n} is being moved to another host"));
            self.engine.set_switch_hold(why);
        }
    }

    /// Whether this guest holds its switchovers for a migration now.
    pub fn migration_hold(&self) -> bool {
        self.migrations.holding
    }
}
