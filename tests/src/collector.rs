//! Gathers the events of every agent of a lab as they happen, so a scenario can be
//! judged and timed after the fact, even for agents that have since died.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hvcluster_common::admin::{EventRecord, Response};
use hvctl::client::Connection;

/// Shared store of the events of all agents.
#[derive(Debug, Clone, Default)]
pub struct EventCollector {
    events: Arc<Mutex<Vec<EventRecord>>>,
    stop: Arc<AtomicBool>,
}

impl EventCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows the events of the agent at `socket` until its connection closes (the
    /// agent stopped or lost power).
    pub fn follow(&self, host: &str, socket: PathBuf) {
        let events = self.events.clone();
        let stop = self.stop.clone();
        let host = host.to_string();
        let _ = std::thread::Builder::new()
            .name(format!("events-{host}"))
            .spawn(move || {
                let Ok(mut conn) = Connection::follow_events(&socket) else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    match conn.receive() {
                        Ok(Some(Response::Event(e))) => {
                            events.lock().unwrap_or_else(|p| p.into_inner()).push(e)
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => return,
                    }
                }
            });
        // Give the follower a moment to connect before the caller injects anything.
        std::thread::sleep(Duration::from_millis(20));
    }

    /// A copy of everything gathered so far, in time order.
    pub fn snapshot(&self) -> Vec<EventRecord> {
        let mut v = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by_key(|e| e.unix_us);
        v
    }

    /// Stops the followers (they end at their next event or when the agent goes away).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
