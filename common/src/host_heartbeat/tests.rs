use proptest::prelude::*;

use super::*;
use crate::application::{Activity, AppReport, Placement, PlacementReason, Version};
use crate::fencing::Proof;
use crate::membership::section::{FieldWriter, HeartbeatSection};
use crate::membership::{FailReason, HostState, PeerView, Section, WatchdogVerdict};
use crate::migration::MigrationMode;

/// A heartbeat of version 1 (header and every section), as an agent of this layout
/// wrote it: `fixtures/heartbeat-v1.bin`. Agents of later versions must keep reading it.
const FIXTURE_V1: &[u8] = include_bytes!("fixtures/heartbeat-v1.bin");

/// The same with header version 2 (the leave flag, set): `fixtures/heartbeat-v2.bin`.
const FIXTURE_V2: &[u8] = include_bytes!("fixtures/heartbeat-v2.bin");

fn header() -> Heartbeat {
    Heartbeat {
        interconnect: 1,
        watchdog: WatchdogVerdict::Slow {
            lateness_ms: 40,
            psi_percent: 12,
        },
        quorate: true,
        votes: 2,
        config_digest: [7; 16],
        domains_version: 9,
        view: vec![
            PeerView {
                node: 1,
                incarnation: 4,
                state: HostState::Up,
            },
            PeerView {
                node: 3,
                incarnation: 2,
                state: HostState::Failed(FailReason::Silent),
            },
        ],
        probe: vec![3],
        leaving: true,
        sections: Vec::new(),
    }
}

fn full() -> HostSections {
    HostSections {
        down: vec![DownRecord {
            target: 3,
            incarnation: 2,
            proof: Proof::PowerOff {
                devices: vec!["ipmi-h3".into()],
            },
            by: 2,
        }],
        guests: vec![GuestPresence {
            cluster: "db".into(),
            node_id: 1,
            node: "g1".into(),
            incarnation: 77,
        }],
        kill_orders: vec![KillOrder {
            id: 1,
            target_host: 1,
            cluster: "db".into(),
            node_id: 2,
        }],
        kill_answers: vec![KillAnswer {
            from_host: 1,
            id: 3,
            ok: true,
            detail: "destroyed".into(),
        }],
        domains: vec![DomainPresence {
            name: "db-g1".into(),
            uuid: "6f1c0e0a-1111-2222-3333-444455556666".into(),
            state: "Running".into(),
            memory_kib: 1 << 20,
            vcpus: 2,
        }],
        capacity: Some(HostCapacity {
            memory_kib: 16 << 20,
            cpus: 8,
        }),
        ha_plan: vec![HaAssignment {
            uuid: "u1".into(),
            name: "web".into(),
            host: 1,
        }],
        ha_failed: vec![HaFailure {
            uuid: "u2".into(),
            detail: "no room".into(),
        }],
        ha_lost: vec![HaLost {
            uuid: "u3".into(),
            name: "cache".into(),
            memory_kib: 1 << 19,
            vcpus: 1,
            priority: 2,
            from: 3,
        }],
        gossip: Gossip {
            placements: vec![Placement {
                version: Version {
                    epoch: 5,
                    issuer: 2,
                },
                target: Some(2),
                maintenance: false,
                clear: 1,
                reason: PlacementReason::HostFailure,
                last_online: Some(3),
            }],
            reports: vec![AppReport {
                activity: Activity::Offline,
                seen: Version {
                    epoch: 5,
                    issuer: 2,
                },
                fault: Some("start failed".into()),
                maintenance: false,
                leaving: false,
            }],
            held_down: vec![3],
        },
        migrations: vec![MigrationLock {
            name: "web".into(),
            uuid: "u1".into(),
            from: 2,
            to: 1,
            mode: MigrationMode::Live,
            ended: false,
            cluster: Some("db".into()),
        }],
        maintenance: true,
        failback: vec!["web".into()],
    }
}

fn encoded(sections: &HostSections) -> Vec<u8> {
    let mut hb = header();
    sections.write(&mut hb);
    postcard::to_allocvec(&hb).unwrap()
}

/// Rewrites the fixture: only when a new layout version is introduced, and then as a new
/// file beside the old one, which stays and keeps being read.
#[test]
#[ignore = "writes the fixture of the current layout"]
fn write_fixture() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/host_heartbeat/fixtures/heartbeat-v2.bin"
    );
    std::fs::write(path, encoded(&full())).unwrap();
}

#[test]
fn a_heartbeat_of_layout_1_still_decodes() {
    let hb: Heartbeat = postcard::from_bytes(FIXTURE_V1).unwrap();
    // A version 1 writer never leaves.
    assert_eq!(
        Heartbeat {
            sections: Vec::new(),
            ..hb.clone()
        },
        Heartbeat {
            leaving: false,
            ..header()
        }
    );
    assert_eq!(HostSections::read(&hb), (full(), Vec::new()));
}

#[test]
fn a_heartbeat_of_layout_2_still_decodes() {
    let hb: Heartbeat = postcard::from_bytes(FIXTURE_V2).unwrap();
    assert!(hb.leaving);
    assert_eq!(
        Heartbeat {
            sections: Vec::new(),
            ..hb.clone()
        },
        header()
    );
    assert_eq!(HostSections::read(&hb), (full(), Vec::new()));
    // This build still writes header version 2: the same bytes, which differ from
    // version 1's by the version, the header's length and the appended flag only.
    assert_eq!(encoded(&full()), FIXTURE_V2);
    assert_eq!(FIXTURE_V2.len(), FIXTURE_V1.len() + 1);
}

#[test]
fn section_ids_are_distinct() {
    let mut ids: Vec<SectionId> = HOST_SECTIONS.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), HOST_SECTIONS.len());
}

#[test]
fn an_empty_share_is_a_header_alone() {
    let mut hb = header();
    HostSections::default().write(&mut hb);
    assert!(hb.sections.is_empty());
    full().write(&mut hb);
    HostSections::default().write(&mut hb);
    assert!(hb.sections.is_empty(), "emptied sections are left out");
}

#[test]
fn an_unknown_section_is_skipped_and_reported() {
    let mut hb = header();
    full().write(&mut hb);
    hb.sections.insert(
        2,
        Section {
            id: 4000,
            version: 7,
            bytes: vec![0xff; 9],
        },
    );
    let hb: Heartbeat = postcard::from_bytes(&postcard::to_allocvec(&hb).unwrap()).unwrap();
    let (read, issues) = HostSections::read(&hb);
    assert_eq!(read, full());
    assert_eq!(
        issues,
        vec![SectionIssue::Unknown {
            id: 4000,
            version: 7
        }]
    );
}

#[test]
fn a_broken_section_drops_only_itself() {
    let mut hb = header();
    full().write(&mut hb);
    let guests = hb.sections.iter_mut().find(|s| s.id == Guests::ID).unwrap();
    guests.bytes.truncate(guests.bytes.len() - 3);
    let locks = hb.sections.iter_mut().find(|s| s.id == Locks::ID).unwrap();
    // A record whose mode is a variant nobody defined.
    let mut w = FieldWriter::default();
    w.records(&[("web", "u1", 1u32, 2u32, 9u8)]);
    locks.bytes = w.into_bytes();
    let (read, issues) = HostSections::read(&hb);
    assert_eq!(
        read,
        HostSections {
            guests: Vec::new(),
            migrations: Vec::new(),
            ..full()
        }
    );
    assert_eq!(
        issues,
        vec![
            SectionIssue::Dropped {
                name: "guests",
                version: 1,
                error: SectionError::TooLong
            },
            SectionIssue::Dropped {
                name: "migrations",
                version: 1,
                error: SectionError::BadField
            },
        ]
    );
}

/// A newer agent appended a field to each DOWN record and one to the section, and one
/// to the membership header: this build reads what it knows.
#[test]
fn a_newer_layout_with_appended_fields_decodes() {
    let record = &full().down[0];
    let mut w = FieldWriter::default();
    w.records(&[(record, "a field of version 2")])
        .field(&"a section field of version 2");
    let mut hb = header();
    hb.sections.push(Section {
        id: Downs::ID,
        version: 2,
        bytes: w.into_bytes(),
    });
    let mut bytes = postcard::to_allocvec(&hb).unwrap();
    // Header version 2: the same fields and one more, and the header's length grows.
    let header_len = bytes[1] as usize;
    assert!(header_len < 100, "a one-byte length in this test");
    bytes[0] = 2;
    bytes[1] = (header_len + 1) as u8;
    bytes.insert(2 + header_len, 42);
    // And something after the section list.
    bytes.extend_from_slice(b"later");
    let decoded: Heartbeat = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(
        Heartbeat {
            sections: Vec::new(),
            ..decoded.clone()
        },
        header()
    );
    let (read, issues) = HostSections::read(&decoded);
    assert!(issues.is_empty());
    assert_eq!(read.down, full().down);
}

/// A field of layout 1 is required: a section cut short is dropped, not defaulted.
#[test]
fn a_section_cut_short_is_dropped() {
    let mut hb = header();
    let mut w = FieldWriter::default();
    w.field(&true);
    hb.sections.push(Section {
        id: Maintenance::ID,
        version: 1,
        bytes: w.into_bytes(),
    });
    let (read, issues) = HostSections::read(&hb);
    assert!(!read.maintenance);
    assert_eq!(
        issues,
        vec![SectionIssue::Dropped {
            name: "maintenance",
            version: 1,
            error: SectionError::Truncated
        }]
    );
}

#[test]
fn membership_imports_no_capability() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/membership");
    let mut files = vec![std::path::PathBuf::from(dir)];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for capability in [
            "application",
            "fencing",
            "hostlink",
            "vmha",
            "migration",
            "maintenance",
            "host_heartbeat",
            "heartbeat_budget",
        ] {
            assert!(
                !text.contains(&format!("crate::{capability}")),
                "{} names crate::{capability}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} files read");
}

fn text() -> impl Strategy<Value = String> {
    "[a-zé0-9-]{0,20}"
}

fn round_trip<S: HeartbeatSection + PartialEq + std::fmt::Debug>(value: S) {
    let mut hb = Heartbeat::default();
    hb.put(&value);
    let hb: Heartbeat = postcard::from_bytes(&postcard::to_allocvec(&hb).unwrap()).unwrap();
    assert_eq!(hb.read::<S>(), Some(Ok(value)));
}

proptest! {
    #[test]
    fn downs_round_trip(
        list in prop::collection::vec(
            (any::<u32>(), any::<u64>(), prop::collection::vec(text(), 0..3), 0u8..3, any::<u32>()),
            0..8,
        )
    ) {
        round_trip(Downs(list.into_iter().map(|(target, incarnation, devices, kind, by)| DownRecord {
            target,
            incarnation,
            proof: match kind {
                0 => Proof::PowerOff { devices },
                1 => Proof::KdumpNotice,
                _ => Proof::Operator,
            },
            by,
        }).collect()));
    }

    #[test]
    fn host_link_sections_round_trip(
        guests in prop::collection::vec((text(), any::<u32>(), text(), any::<u64>()), 0..8),
        orders in prop::collection::vec((any::<u64>(), any::<u32>(), text(), any::<u32>()), 0..8),
        answers in prop::collection::vec((any::<u32>(), any::<u64>(), any::<bool>(), text()), 0..8),
        domains in prop::collection::vec((text(), text(), text(), any::<u64>(), any::<u32>()), 0..8),
    ) {
        round_trip(Guests(guests.into_iter().map(|(cluster, node_id, node, incarnation)| GuestPresence { cluster, node_id, node, incarnation }).collect()));
        round_trip(KillOrders(orders.into_iter().map(|(id, target_host, cluster, node_id)| KillOrder { id, target_host, cluster, node_id }).collect()));
        round_trip(KillAnswers(answers.into_iter().map(|(from_host, id, ok, detail)| KillAnswer { from_host, id, ok, detail }).collect()));
        round_trip(Domains(domains.into_iter().map(|(name, uuid, state, memory_kib, vcpus)| DomainPresence { name, uuid, state, memory_kib, vcpus }).collect()));
    }

    #[test]
    fn vm_ha_sections_round_trip(
        memory_kib in any::<u64>(),
        cpus in any::<u32>(),
        plan in prop::collection::vec((text(), text(), any::<u32>()), 0..8),
        failed in prop::collection::vec((text(), text()), 0..8),
        lost in prop::collection::vec((text(), text(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()), 0..8),
    ) {
        round_trip(Capacity(HostCapacity { memory_kib, cpus }));
        round_trip(HaPlan(plan.into_iter().map(|(uuid, name, host)| HaAssignment { uuid, name, host }).collect()));
        round_trip(HaFailures(failed.into_iter().map(|(uuid, detail)| HaFailure { uuid, detail }).collect()));
        round_trip(HaLostDomains(lost.into_iter().map(|(uuid, name, memory_kib, vcpus, priority, from)| HaLost { uuid, name, memory_kib, vcpus, priority, from }).collect()));
    }

    #[test]
    fn migration_and_maintenance_round_trip(
        locks in prop::collection::vec((text(), text(), any::<u32>(), any::<u32>(), 0u8..3, any::<bool>(), prop::option::of(text())), 0..8),
        on in any::<bool>(),
        failback in prop::collection::vec(text(), 0..8),
    ) {
        round_trip(Locks(locks.into_iter().map(|(name, uuid, from, to, mode, ended, cluster)| MigrationLock {
            name, uuid, from, to,
            mode: [MigrationMode::Live, MigrationMode::Offline, MigrationMode::Export][mode as usize],
            ended, cluster,
        }).collect()));
        round_trip(Maintenance { on, failback });
    }

    #[test]
    fn gossip_round_trips(held_down in prop::collection::vec(any::<u32>(), 0..8), epoch in any::<u64>()) {
        let mut gossip = full().gossip;
        gossip.held_down = held_down;
        gossip.placements[0].version.epoch = epoch;
        round_trip(gossip);
    }

    /// Whatever the bytes of a known section, reading it never panics and a failure
    /// drops that section alone.
    #[test]
    fn any_section_bytes_are_read_or_dropped(id in 1u16..=12, bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut hb = header();
        full().write(&mut hb);
        hb.sections.iter_mut().find(|s| s.id == id).unwrap().bytes = bytes;
        let (read, issues) = HostSections::read(&hb);
        prop_assert!(issues.len() <= 1);
        let mut again = header();
        read.write(&mut again);
        for s in hb.sections.iter().filter(|s| s.id != id) {
            prop_assert!(again.sections.contains(s), "section {} lost", s.id);
        }
    }
}
