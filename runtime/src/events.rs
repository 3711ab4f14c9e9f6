//! The event log: a bounded history plus a broadcast of new events for `hvctl events`
//! and the lab.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hvcluster_common::admin::EventRecord;
use tokio::sync::broadcast;

/// Events kept for clients that connect later.
const HISTORY: usize = 10_000;

/// Shared handle to the event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<EventRecord>,
    observer: String,
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    history: VecDeque<EventRecord>,
}

impl EventLog {
    /// An empty log of host `observer`.
    pub fn new(observer: &str) -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventLog {
            inner: Arc::new(Mutex::new(Inner {
                next_seq: 1,
                history: VecDeque::new(),
            })),
            tx,
            observer: observer.to_string(),
        }
    }

    /// Records an event, logs it and broadcasts it.
    pub fn record(
        &self,
        subject: Option<&str>,
        kind: &str,
        message: String,
        detail: serde_json::Value,
    ) {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let rec = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let rec = EventRecord {
                seq: inner.next_seq,
                unix_us,
                observer: self.observer.clone(),
                subject: subject.map(str::to_string),
                kind: kind.to_string(),
                message,
                detail,
            };
            inner.next_seq += 1;
            if inner.history.len() == HISTORY {
                inner.history.pop_front();
            }
            inner.history.push_back(rec.clone());
            rec
        };
        tracing::info!(kind = %rec.kind, subject = rec.subject.as_deref().unwrap_or("-"), "{}", rec.message);
        let _ = self.tx.send(rec);
    }

    /// Subscribes to new events, then returns the history after `since`; together they
    /// have no gap (duplicates are filtered by sequence number by the caller).
    pub fn subscribe_with_history(
        &self,
        since: u64,
    ) -> (broadcast::Receiver<EventRecord>, Vec<EventRecord>) {
        let rx = self.tx.subscribe();
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let hist = inner
            .history
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect();
        (rx, hist)
    }
}
