//! The guest-cluster steps of a scenario: application placement and state, guest node
//! states, and the time from a fault to an application Online elsewhere.

use std::time::{Duration, Instant};

use hvcluster_common::admin::{AppLine, GuestNodeState, GuestStatus};
use hvcluster_common::application::AppState;

use super::{Runner, POLL};

/// What `expect-app` wants an observer to see.
#[derive(Debug, Clone)]
pub(super) struct AppView {
    /// Guest it is Online on; `none` for nowhere.
    pub online_on: Option<String>,
    /// Guest whose state of the application is checked.
    pub node: Option<String>,
    /// That state.
    pub state: Option<AppState>,
    /// Maintenance on or off.
    pub maintenance: Option<bool>,
}

impl AppView {
    fn describe(&self, app: &str) -> String {
        let mut parts = Vec::new();
        match self.online_on.as_deref() {
            Some("none") => parts.push(format!("{app} Online nowhere")),
            Some(g) => parts.push(format!("{app} Online on {g}")),
            None => {}
        }
        if let Some(st) = self.state {
            let node = self.node.as_deref().unwrap_or("its node");
            parts.push(format!("{app} {st} on {node}"));
        }
        if let Some(m) = self.maintenance {
            parts.push(format!(
                "{app} maintenance {}",
                if m { "on" } else { "off" }
            ));
        }
        if parts.is_empty() {
            parts.push(format!("{app} known"));
        }
        parts.join(", ")
    }

    fn matches(&self, apps: &[AppLine], app: &str) -> bool {
        let Some(a) = apps.iter().find(|a| a.name == app) else {
            return false;
        };
        let online_ok = match self.online_on.as_deref() {
            None => true,
            Some("none") => a.online_on.is_none(),
            Some(g) => a.online_on.as_deref() == Some(g),
        };
        let state_ok = match (self.state, self.node.as_deref()) {
            (None, _) => true,
            (Some(st), Some(node)) => a.nodes.iter().any(|n| n.node == node && n.state == st),
            (Some(st), None) => a.state == st,
        };
        online_ok && state_ok && self.maintenance.is_none_or(|m| a.maintenance == m)
    }
}

/// One line about an application as an observer sees it, for failure details.
fn brief_app(apps: &[AppLine], app: &str) -> String {
    match apps.iter().find(|a| a.name == app) {
        None => format!("no application {app}"),
        Some(a) => {
            let nodes: Vec<String> = a
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "{}={}{}",
                        n.node,
                        n.state,
                        n.fault
                            .as_ref()
                            .map(|f| format!(" ({f})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "{} online_on={} maintenance={} [{}]",
                a.state,
                a.online_on.as_deref().unwrap_or("none"),
                a.maintenance,
                nodes.join(" ")
            )
        }
    }
}

impl Runner<'_> {
    /// Polls every observer's guest status until `f` holds for all, or the time limit;
    /// returns what the disagreeing observers saw.
    fn wait_for_guests(
        &self,
        observers: &[String],
        within: Duration,
        f: impl Fn(&GuestStatus) -> bool,
        brief: impl Fn(&GuestStatus) -> String,
    ) -> Result<(), String> {
        super::poll_observers(
            observers,
            within,
            |o| self.cluster.guest_status(o),
            f,
            brief,
        )
    }

    /// Like [`Runner::wait_for_guests`] on the applications an observer reports: a
    /// guest's, or a host's host-side applications.
    fn wait_for_apps(
        &self,
        observers: &[String],
        within: Duration,
        f: impl Fn(&[AppLine]) -> bool,
        brief: impl Fn(&[AppLine]) -> String,
    ) -> Result<(), String> {
        let hosts = self.cluster.hosts();
        super::poll_observers(
            observers,
            within,
            |o| match hosts.iter().any(|h| h == o) {
                true => self.cluster.status(o).map(|s| s.applications),
                false => self.cluster.guest_status(o).map(|s| s.applications),
            },
            |apps| f(apps),
            |apps| brief(apps),
        )
    }

    /// `expect-app`.
    pub(super) fn expect_app(
        &mut self,
        observers: &[String],
        app: &str,
        want: &AppView,
        within: Duration,
        measure: Option<&str>,
    ) {
        let text = format!("{} see {}", observers.join(", "), want.describe(app));
        let res = self.wait_for_apps(
            observers,
            within,
            |s| want.matches(s, app),
            |s| brief_app(s, app),
        );
        let seen_us = super::unix_us();
        if let (Ok(()), Some(phase)) = (&res, measure) {
            let on = want.online_on.as_deref().filter(|g| *g != "none");
            // A VM guest's events do not reach the lab: its status, polled, tells.
            let polled = on
                .filter(|g| self.cluster.is_vm(g))
                .map(|_| seen_us.saturating_sub(self.last_fault_us) as f64 / 1000.0);
            match polled.or_else(|| on.and_then(|g| self.measure_app_online(g, app))) {
                Some(ms) => {
                    self.measures.insert(phase.to_string(), ms);
                }
                None => self.check(
                    format!("{phase} measured from events"),
                    false,
                    "no app_state event to Online by the guest named in online_on".into(),
                ),
            }
        }
        self.check(text, res.is_ok(), res.err().unwrap_or_default());
    }

    /// `expect-app-stays`.
    pub(super) fn expect_app_stays(
        &mut self,
        observers: &[String],
        app: &str,
        online_on: &str,
        period: Duration,
    ) {
        let want = AppView {
            online_on: Some(online_on.to_string()),
            node: None,
            state: None,
            maintenance: None,
        };
        let text = format!(
            "{} see {} for {} s",
            observers.join(", "),
            want.describe(app),
            period.as_secs_f64()
        );
        let deadline = Instant::now() + period;
        let mut res = Ok(());
        while Instant::now() < deadline && res.is_ok() {
            res = self.wait_for_apps(
                observers,
                Duration::ZERO,
                |s| want.matches(s, app),
                |s| brief_app(s, app),
            );
            std::thread::sleep(POLL);
        }
        self.check(text, res.is_ok(), res.err().unwrap_or_default());
    }

    /// `expect-node`.
    pub(super) fn expect_node(
        &mut self,
        observers: &[String],
        node: &str,
        state: GuestNodeState,
        within: Duration,
    ) {
        let text = format!("{} see guest {node} {state:?}", observers.join(", "));
        let res = self.wait_for_guests(
            observers,
            within,
            |s| s.nodes.iter().any(|n| n.name == node && n.state == state),
            |s| {
                s.nodes
                    .iter()
                    .map(|n| format!("{}={:?}", n.name, n.state))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        self.check(text, res.is_ok(), res.err().unwrap_or_default());
    }

    /// Time from the last fault until `guest` recorded `app` Online, in ms.
    fn measure_app_online(&self, guest: &str, app: &str) -> Option<f64> {
        let since = self.last_fault_us;
        self.search_events(|events| {
            let at = events.iter().find(|e| {
                e.unix_us >= since
                    && e.observer == guest
                    && e.kind == "app_state"
                    && e.subject.as_deref() == Some(app)
                    && e.detail["state"]["to"] == "Online"
            })?;
            Some((at.unix_us - since) as f64 / 1000.0)
        })
    }
}
