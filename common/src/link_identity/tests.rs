use super::*;

fn erp() -> GuestClusterEntry {
    GuestClusterEntry {
        name: "erp".into(),
        key_file: "erp.key".into(),
        members: vec![
            GuestMember {
                node: "db1".into(),
                node_id: 1,
                domain: "vm-db1".into(),
                address: Some("198.18.32.11".parse().unwrap()),
            },
            GuestMember {
                node: "db2".into(),
                node_id: 2,
                domain: "vm-db2".into(),
                address: None,
            },
        ],
    }
}

fn tcp(a: &str) -> Arrival {
    Arrival::Tcp {
        source: a.parse().unwrap(),
    }
}

fn channel(d: &str) -> Arrival {
    Arrival::Channel { domain: d.into() }
}

fn claim(node: &'static str, node_id: NodeId, domain: Option<&'static str>) -> Claim<'static> {
    Claim {
        node,
        node_id,
        domain,
    }
}

/// Each row: how the guest arrived, what it claims, and the domain the host gives it
/// (or the start of the refusal).
#[test]
fn registrations_get_the_members_domain_or_are_refused() {
    let rows: &[(Arrival, Claim<'_>, Result<&str, &str>)] = &[
        // Members as configured, by either transport.
        (tcp("198.18.32.11"), claim("db1", 1, None), Ok("vm-db1")),
        (tcp("::ffff:198.18.32.11"), claim("db1", 1, Some("vm-db1")), Ok("vm-db1")),
        (tcp("198.18.32.99"), claim("db2", 2, None), Ok("vm-db2")),
        (channel("vm-db2"), claim("db2", 2, Some("vm-db2")), Ok("vm-db2")),
        (channel("vm-db1"), claim("db1", 1, None), Ok("vm-db1")),
        // Another guest cluster's domain, or a partner's.
        (tcp("198.18.32.99"), claim("db2", 2, Some("vm-crm1")), Err("db2 of erp claims domain vm-crm1")),
        (tcp("198.18.32.11"), claim("db1", 1, Some("vm-db2")), Err("db1 of erp claims domain vm-db2")),
        // A partner's node name under another id, or a stranger's.
        (tcp("198.18.32.99"), claim("db1", 2, None), Err("db1 (node 2) is not a member of guest cluster erp")),
        (tcp("198.18.32.99"), claim("crm1", 3, None), Err("crm1 (node 3) is not a member")),
        // The wrong channel or address.
        (channel("vm-db1"), claim("db2", 2, None), Err("db2 of erp (domain vm-db2) registered on the channel of domain vm-db1")),
        (channel("vm-crm1"), claim("db2", 2, None), Err("db2 of erp (domain vm-db2) registered on the channel")),
        (tcp("198.18.32.12"), claim("db1", 1, None), Err("db1 of erp linked from 198.18.32.12, but its member entry says address 198.18.32.11")),
    ];
    for (arrival, c, want) in rows {
        let got = establish(&erp(), arrival, *c);
        match (want, &got) {
            (Ok(domain), Ok(id)) => {
                assert_eq!(
                    (
                        id.cluster.as_str(),
                        id.node.as_str(),
                        id.node_id,
                        id.domain.as_str()
                    ),
                    ("erp", c.node, c.node_id, *domain),
                    "{arrival:?} {c:?}"
                );
            }
            (Err(start), Err(e)) => {
                assert!(e.to_string().starts_with(start), "{arrival:?} {c:?}: {e}")
            }
            _ => panic!("{arrival:?} {c:?}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_guest_cluster_without_members_takes_no_registration() {
    let mut none = erp();
    none.members.clear();
    let e = establish(&none, &tcp("198.18.32.11"), claim("db1", 1, None)).unwrap_err();
    assert!(e.to_string().contains("[[guest_cluster.member]]"), "{e}");
}

#[test]
fn kills_are_allowed_for_the_askers_partners_only() {
    let db1 = establish(&erp(), &tcp("198.18.32.11"), claim("db1", 1, None)).unwrap();
    let cluster = erp();
    assert_eq!(
        kill_target(&cluster, &db1, "erp", 2).map(|m| m.domain.as_str()),
        Ok("vm-db2")
    );
    assert_eq!(
        kill_target(&cluster, &db1, "erp", 1),
        Err(KillRefused::Itself)
    );
    assert!(matches!(
        kill_target(&cluster, &db1, "crm", 1),
        Err(KillRefused::OtherCluster { .. })
    ));
    assert!(matches!(
        kill_target(&cluster, &db1, "erp", 7),
        Err(KillRefused::NotMember { node_id: 7, .. })
    ));
    let mut crm = erp();
    crm.name = "crm".into();
    assert!(
        matches!(
            kill_target(&crm, &db1, "erp", 2),
            Err(KillRefused::OtherCluster { .. })
        ),
        "the members of another guest cluster are never the asker's"
    );
}

#[test]
fn a_domain_off_here_proves_death_only_when_nothing_says_it_lives() {
    assert!(not_running_proves_dead(false, false, false));
    assert!(
        !not_running_proves_dead(true, false, false),
        "reported running elsewhere"
    );
    assert!(!not_running_proves_dead(false, true, false), "being moved");
    assert!(
        !not_running_proves_dead(false, false, true),
        "its guest is linked right now"
    );
}
