//! The host link as a byte stream, read the way both agents read it: cut into frames
//! (`hostlink::FrameSplitter`), each authenticated (`wire::decode`), checked against
//! replays and parsed (`LinkMessage::from_payload`). The first byte chooses how the
//! stream arrives (in reads of 1 to 64 bytes, or whole), the second who sent it:
//! - even: anyone (no key): the bytes as they are;
//! - odd: a holder of the guest cluster's key: the rest is cut into payloads (a length
//!   byte, then that many bytes), each signed into a frame, so messages are reached.
//!
//! Nothing panics; signed frames come out whole, in order, and authentic.

#![no_main]

use hvcluster_common::hostlink::{FrameSplitter, LinkMessage};
use hvcluster_common::wire::{self, Header, Kind, ReplayWindow};
use hvcluster_fuzz::{CLUSTER_ID, KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [chunk, who, rest @ ..] = data else {
        return;
    };
    let mut sent = Vec::new();
    let stream = if who % 2 == 0 {
        rest.to_vec()
    } else {
        let mut stream = Vec::new();
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let (payload, tail) = tail.split_at(usize::from(len).min(tail.len()));
            rest = tail;
            let header = Header {
                kind: Kind::HostLink,
                cluster_id: CLUSTER_ID,
                sender: 2,
                incarnation: 1,
                sequence: sent.len() as u64 + 1,
            };
            let frame = wire::encode(&header, payload, KEY).expect("small payloads fit");
            stream.extend_from_slice(&frame);
            sent.push(frame);
        }
        stream
    };
    let chunk = match chunk % 65 {
        0 => stream.len().max(1),
        n => usize::from(n),
    };

    let mut splitter = FrameSplitter::default();
    let mut window = ReplayWindow::default();
    let mut received = Vec::new();
    'stream: for piece in stream.chunks(chunk) {
        splitter.push(piece);
        loop {
            match splitter.next_frame() {
                Ok(Some(raw)) => {
                    received.push(raw.clone());
                    let Ok(frame) = wire::decode(&raw, KEY, CLUSTER_ID) else {
                        break 'stream;
                    };
                    if frame.header.kind != Kind::HostLink {
                        break 'stream;
                    }
                    if window
                        .accept(frame.header.incarnation, frame.header.sequence)
                        .is_err()
                    {
                        break 'stream;
                    }
                    if let Ok(message) = LinkMessage::from_payload(frame.payload) {
                        let again = message.to_payload();
                        assert_eq!(LinkMessage::from_payload(&again).ok(), Some(message));
                    }
                }
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    if who % 2 == 1 {
        assert_eq!(received, sent, "signed frames come out whole and in order");
    }
});
