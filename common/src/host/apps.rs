//! Host-side applications' resource results: a start or stop of a resource on a host with
//! a hypervisor changes what runs there, so its result reaches the application engine
//! only after a fresh listing of the domains (the engine must not judge on the listing
//! from before the operation). The driver lists the domains; the engine stays in
//! [`crate::application`].

use std::collections::BTreeSet;

use crate::application::{AppAction, OpKind};

/// What to do with a resource operation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultRoute {
    /// List the domains first, then give the engine the result with the listing.
    ListFirst,
    /// Give it to the engine now.
    ReportNow,
}

/// Operations whose result waits for a fresh listing.
#[derive(Debug, Default)]
pub struct ResultGate {
    relist: BTreeSet<u64>,
}

impl ResultGate {
    /// `actions` are about to be performed on a host with (`hypervisor`) or without a
    /// hypervisor: its starts and stops wait for a listing when they end.
    pub fn running(&mut self, actions: &[AppAction], hypervisor: bool) {
        if !hypervisor {
            return;
        }
        self.relist.extend(actions.iter().filter_map(|a| match a {
            AppAction::Run(op) if op.kind != OpKind::Check => Some(op.id),
            _ => None,
        }));
    }

    /// Operation `id` ended: where its result goes.
    pub fn ended(&mut self, id: u64) -> ResultRoute {
        if self.relist.remove(&id) {
            ResultRoute::ListFirst
        } else {
            ResultRoute::ReportNow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::ResourceOp;

    fn run(id: u64, kind: OpKind) -> AppAction {
        AppAction::Run(ResourceOp {
            id,
            app: 0,
            resource: 0,
            kind,
            reason: None,
            auto_recover: false,
        })
    }

    #[test]
    fn starts_and_stops_on_a_hypervisor_host_wait_for_a_listing_checks_do_not() {
        let mut g = ResultGate::default();
        let ops = [
            run(1, OpKind::Start),
            run(2, OpKind::Stop),
            run(3, OpKind::Check),
        ];
        g.running(&ops, true);
        assert_eq!(g.ended(1), ResultRoute::ListFirst);
        assert_eq!(g.ended(1), ResultRoute::ReportNow, "once");
        assert_eq!(g.ended(2), ResultRoute::ListFirst);
        assert_eq!(g.ended(3), ResultRoute::ReportNow);
        let mut none = ResultGate::default();
        none.running(&ops, false);
        assert_eq!(
            none.ended(1),
            ResultRoute::ReportNow,
            "no hypervisor to list"
        );
    }
}
