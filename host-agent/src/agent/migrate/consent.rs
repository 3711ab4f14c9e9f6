//! The guest cluster's consent to a migration: the guests in the domain are asked
//! (`MigrationPrepare`), answer, are asked again on a new link, are released when it
//! does not happen; and the destination's list of guests to greet on their channel.

use std::time::Instant;

use hvcluster_common::admin::Response;
use hvcluster_common::hostlink::LinkMessage;
use serde_json::json;

use super::state::{Preparing, ASK_LIMIT};
use crate::agent::Agent;

impl Agent {
    /// Keeps the host link's list of domains migrating here (with their guest cluster)
    /// as the other hosts' locks say.
    pub(in crate::agent) fn note_incoming(&mut self) {
        let me = self.member.me;
        let now: std::collections::BTreeMap<String, String> = self
            .migrations
            .all()
            .into_iter()
            .filter(|l| l.to == me && !l.ended)
            .filter_map(|l| Some((l.name, l.cluster?)))
            .collect();
        let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        if *incoming != now {
            *incoming = now;
        }
    }

    /// A guest answered whether it may be moved.
    pub(in crate::agent) fn on_migration_answer(
        &mut self,
        conn: u64,
        id: u64,
        ok: bool,
        detail: String,
    ) {
        let Some(p) = self.migrations.preparing.as_mut().filter(|p| p.id == id) else {
            return;
        };
        if !ok {
            let p = self.migrations.preparing.take().expect("checked above");
            return self.call_off(p, detail);
        }
        p.waiting.retain(|c| *c != conn);
        p.agreed += 1;
        if p.waiting.is_empty() {
            let p = self.migrations.preparing.take().expect("checked above");
            self.begin_migration(p.id, p.lock, p.job, p.reply, p.conns, p.maintenance);
        }
    }

    /// Gives up a migration whose guests did not answer in time.
    pub(in crate::agent) fn migration_tick(&mut self) {
        if let Some(p) = self.migrations.preparing.as_mut() {
            // A guest whose link broke while it was asked (it registered again) is asked
            // on its new link; a closed link cannot answer.
            let mut open = self
                .core
                .links()
                .conns_of_domain(&p.lock.name, &p.lock.uuid);
            open.retain(|c| !p.conns.contains(c));
            for conn in open {
                if let Some(tx) = self.link_tx.get(&conn) {
                    let ask = LinkMessage::MigrationPrepare {
                        id: p.id,
                        hold_ms: p.hold_ms,
                    };
                    let _ = tx.try_send(ask);
                    p.conns.push(conn);
                    p.waiting.push(conn);
                    p.deadline = p.deadline.max(Instant::now() + ASK_LIMIT);
                }
            }
            p.waiting.retain(|c| self.link_tx.contains_key(c));
            if p.waiting.is_empty() && p.agreed > 0 {
                let p = self.migrations.preparing.take().expect("checked above");
                self.begin_migration(p.id, p.lock, p.job, p.reply, p.conns, p.maintenance);
                return;
            }
        }
        if self
            .migrations
            .preparing
            .as_ref()
            .is_some_and(|p| Instant::now() >= p.deadline)
        {
            let p = self.migrations.preparing.take().expect("checked above");
            let why = format!(
                "the guest in {} did not answer within {} s whether it may be moved (is \
                 hv-guestd running in it?)",
                p.lock.name,
                ASK_LIMIT.as_secs()
            );
            self.call_off(p, why);
        }
    }

    /// A prepared migration does not happen: the guests are released, the operator told.
    pub(super) fn call_off(&mut self, p: Preparing, why: String) {
        for conn in &p.conns {
            if let Some(tx) = self.link_tx.get(conn) {
                let _ = tx.try_send(LinkMessage::MigrationEnd { id: p.id });
            }
        }
        let name = p.lock.name.clone();
        let to = self.name(p.lock.to);
        self.member.events.record(
            Some(&name),
            "migration_refused",
            format!("{name} is not moved to {to}: {why}"),
            json!({ "domain": name, "to": to }),
        );
        let message = format!("{why}; nothing was done");
        if let Some(reply) = p.reply {
            let _ = reply.send(Response::Refused { message });
        }
        if p.maintenance {
            self.maintenance_moved(&name, Err(why));
        }
    }
}
