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
use std::time::{Duration, Instant};

use hvcluster_common::config::NodeId;
use hvcluster_common::hostlink::LinkMessage;
use serde_json::json;

use super::Agent;

/// What this guest knows of migrations in its cluster.
#[derive(Debug, Default)]
pub(super) struct Migrations {
    /// This guest is being moved: the migration and until when at most.
    own: Option<(u64, Instant)>,
    /// The host that is moving it.
    from: Option<String>,
    /// Partners being moved, until when at most.
    peers: BTreeMap<NodeId, Instant>,
    /// Whether the engine's switchovers are held now.
    holding: bool,
}

impl Agent {
    /// The host asks whether this guest may be moved.
    pub(super) fn on_migration_prepare(&mut self, id: u64, hold_ms: u64) {
        let node = self.member.own_name.clone();
        let refusal = self.apps.engine.transition().or_else(|| {
            let moving = self.migrations.peers.keys().next()?;
            Some(format!("{} is being moved already", self.name(*moving)))
        });
        let (ok, detail) = match refusal {
            Some(why) => (false, format!("{node} cannot be moved now: {why}")),
            None => {
                let until = Instant::now() + Duration::from_millis(hold_ms);
                self.migrations.own = Some((id, until));
                self.migrations.from = self.linked_to.clone();
                self.member.events.record(
                    Some(&node),
                    "migration_hold",
                    format!(
                        "{node} is about to be moved to another host: switchovers held and \
                         its silence forgiven for up to {} s",
                        hold_ms / 1000
                    ),
                    json!({ "id": id, "hold_ms": hold_ms }),
                );
                self.update_migration_hold();
                // The partners hold before the host begins.
                self.send_heartbeats();
                (true, format!("{node} is ready to be moved"))
            }
        };
        if let Some(link) = &self.link {
            let _ = link.try_send(LinkMessage::MigrationAnswer { id, ok, detail });
        }
    }

    /// The host says the migration `id` ended without moving this guest.
    pub(super) fn on_migration_end(&mut self, id: u64) {
        if self.migrations.own.is_some_and(|(own, _)| own == id) {
            self.end_own_migration("its host says the migration ended; it stays there");
        }
    }

    /// This guest linked from host `host`; it moved when that is not the host that was
    /// moving it.
    pub(super) fn migration_linked(&mut self, host: &str) {
        let from = self.migrations.from.as_deref();
        if self.migrations.own.is_some() && from.is_some_and(|f| f != host) {
            self.end_own_migration(&format!("it now runs on {host}"));
        }
    }

    fn end_own_migration(&mut self, how: &str) {
        self.migrations.own = None;
        let node = self.member.own_name.clone();
        self.member.events.record(
            Some(&node),
            "migration_over",
            format!("{node}: the move is over ({how}): switchovers released"),
            json!({}),
        );
        self.update_migration_hold();
        self.send_heartbeats();
    }

    /// A heartbeat of partner `from` says it is being moved for `ms` more (0: not).
    pub(super) fn migration_heard(&mut self, now: Duration, from: NodeId, ms: u64) {
        if ms == 0 {
            if self.migrations.peers.remove(&from).is_some() {
                self.membership.relax(from, None);
                self.update_migration_hold();
            }
            return;
        }
        let fresh = !self.migrations.peers.contains_key(&from);
        let until = Instant::now() + Duration::from_millis(ms);
        self.migrations.peers.insert(from, until);
        self.membership
            .relax(from, Some(now + Duration::from_millis(ms)));
        if fresh {
            let name = self.name(from);
            self.member.events.record(
                Some(&name),
                "migration_hold",
                format!(
                    "{name} is being moved to another host: switchovers held and its silence \
                     forgiven for up to {} s",
                    ms / 1000
                ),
                json!({ "node": name, "hold_ms": ms }),
            );
            self.update_migration_hold();
        }
    }

    /// Lifts the holds whose time has passed, and gives the engine the hold of now.
    pub(super) fn update_migration_hold(&mut self) {
        let now = Instant::now();
        if self.migrations.own.is_some_and(|(_, until)| until <= now) {
            self.migrations.own = None;
        }
        let expired: Vec<NodeId> = self
            .migrations
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
            (Some(_), _) => Some(self.member.own_name.clone()),
            (None, Some(n)) => Some(self.name(*n)),
            (None, None) => None,
        };
        if moving.is_some() != self.migrations.holding {
            self.migrations.holding = moving.is_some();
            let why = moving.map(|n| format!("{n} is being moved to another host"));
            self.apps.engine.set_switch_hold(why);
        }
    }

    /// What this guest's heartbeats say: ms left of its own move (0: none).
    pub(super) fn migrating_ms(&self) -> u64 {
        self.migrations.own.map_or(0, |(_, until)| {
            until
                .saturating_duration_since(Instant::now())
                .as_millis()
                .max(1) as u64
        })
    }
}
