use super::*;

const HOST_KEY: &[u8] = b"the host cluster key, 32 bytes!!";
const GUEST_KEY: &[u8] = b"the guest cluster key, 32 bytes!";

fn binding(guest_nonce: u64) -> SessionBinding {
    SessionBinding {
        cluster_id: 0xE7,
        node_id: 2,
        host_nonce: 0x1234,
        guest_nonce,
    }
}

fn host_down(epoch: u64) -> LinkMessage {
    LinkMessage::HostDown {
        epoch,
        host: "h3".into(),
        proof: "power-off".into(),
        guests: vec![(1, 42)],
    }
}

fn pair(guest_nonce: u64) -> (Sealer, Opener) {
    let key = HostSigningKey::derive(HOST_KEY);
    let public = key.public();
    (
        Sealer::new(key, binding(guest_nonce)),
        Opener::new(public, binding(guest_nonce)),
    )
}

#[test]
fn every_host_derives_the_same_key_and_its_text_round_trips() {
    let a = HostSigningKey::derive(HOST_KEY).public();
    assert_eq!(a, HostSigningKey::derive(HOST_KEY).public());
    assert_ne!(a, HostSigningKey::derive(GUEST_KEY).public());
    let text = a.to_string();
    assert!(
        text.starts_with("ed25519:") && text.len() == 8 + 64,
        "{text}"
    );
    assert_eq!(text.parse::<HostPublicKey>(), Ok(a));
    assert_eq!(format!(" {text}\n").parse::<HostPublicKey>(), Ok(a));
    // The same derivation by an independent HKDF-SHA256 and Ed25519 implementation.
    assert_eq!(
        text,
        "ed25519:06d5ad3a458350ac9c7145d375cdb69ca1a176530c07bca8ad9c802bb68e919b"
    );
    assert!(!format!("{:?}", HostSigningKey::derive(HOST_KEY)).contains("secret"));
}

#[test]
fn malformed_public_keys_are_refused_with_the_expected_form() {
    let good = HostSigningKey::derive(HOST_KEY).public().to_string();
    for bad in [
        "",
        "ed25519:",
        &good[8..],
        &good[..70],
        &format!("{good}00"),
        &good.replace("ed25519:", "rsa:"),
        &format!("ed25519:{}", "zz".repeat(32)),
    ] {
        let e = bad.parse::<HostPublicKey>().unwrap_err();
        assert_eq!(e, PublicKeyError::Format, "{bad:?}");
        assert!(e.to_string().contains("hvctl config host-link-key"));
    }
}

#[test]
fn sealed_messages_open_in_order() {
    let (mut sealer, mut opener) = pair(7);
    for epoch in 1..=3 {
        let sealed = sealer.seal(&host_down(epoch));
        assert_eq!(opener.open(sealed), Ok(host_down(epoch)));
    }
    let keepalive = sealer.seal(&LinkMessage::Keepalive);
    assert_eq!(opener.open(keepalive), Ok(LinkMessage::Keepalive));
}

/// A guest holds its guest cluster's key, so it can make host-link frames; it cannot
/// make a HostDown that its partner takes from a host.
#[test]
fn a_guest_cannot_forge_a_host_down() {
    let (_, mut opener) = pair(7);
    assert_eq!(
        opener.open(host_down(1)),
        Err(SealError::Unsealed("HostDown")),
        "a plain HostDown, as any holder of the guest cluster key can frame it"
    );
    // Its best forgeries: a key of its own, one derived from the key it holds, the
    // public key as a secret, or a signature of the right size.
    let public = HostSigningKey::derive(HOST_KEY).public();
    for key in [
        HostSigningKey::derive(GUEST_KEY),
        HostSigningKey::derive(&public.0.to_bytes()),
        HostSigningKey(SigningKey::from_bytes(&public.0.to_bytes())),
    ] {
        let sealed = Sealer::new(key, binding(7)).seal(&host_down(1));
        assert_eq!(opener.open(sealed), Err(SealError::BadSignature));
    }
    for signature in [vec![], vec![0u8; 64], vec![0xff; 64], vec![1; 63]] {
        let forged = LinkMessage::Sealed {
            sequence: 1,
            message: host_down(1).to_payload(),
            signature,
        };
        assert_eq!(opener.open(forged), Err(SealError::BadSignature));
    }
    let (mut sealer, mut opener) = pair(7);
    assert_eq!(opener.open(sealer.seal(&host_down(1))), Ok(host_down(1)));
}

/// A notice recorded on one session (or meant for another guest) is refused on
/// another; on its own session it is refused a second time.
#[test]
fn a_recorded_seal_is_refused_on_another_session_or_twice() {
    let (mut sealer, mut opener) = pair(7);
    let recorded = sealer.seal(&host_down(1));
    assert!(opener.open(recorded.clone()).is_ok());
    assert_eq!(
        opener.open(recorded.clone()),
        Err(SealError::Replayed { got: 1, last: 1 })
    );
    let public = HostSigningKey::derive(HOST_KEY).public();
    let other_sessions = [
        binding(8),
        SessionBinding {
            host_nonce: 1,
            ..binding(7)
        },
        SessionBinding {
            node_id: 1,
            ..binding(7)
        },
        SessionBinding {
            cluster_id: 1,
            ..binding(7)
        },
    ];
    for other in other_sessions {
        let mut opener = Opener::new(public, other);
        assert_eq!(
            opener.open(recorded.clone()),
            Err(SealError::BadSignature),
            "{other:?}"
        );
    }
    // Out of order: a later one kept back and an earlier one delivered after it.
    let (mut sealer, mut opener) = pair(7);
    let first = sealer.seal(&host_down(1));
    let second = sealer.seal(&host_down(2));
    assert!(opener.open(second).is_ok());
    assert_eq!(
        opener.open(first),
        Err(SealError::Replayed { got: 1, last: 2 })
    );
}

#[test]
fn tampered_or_nested_seals_are_refused() {
    let (mut sealer, mut opener) = pair(7);
    let LinkMessage::Sealed {
        sequence,
        message,
        signature,
    } = sealer.seal(&host_down(1))
    else {
        panic!("not sealed");
    };
    let mut altered = message.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    for (sequence, message) in [(sequence + 1, message.clone()), (sequence, altered)] {
        let forged = LinkMessage::Sealed {
            sequence,
            message,
            signature: signature.clone(),
        };
        assert_eq!(opener.open(forged), Err(SealError::BadSignature));
    }
    let inner = sealer.seal(&host_down(1));
    let nested = sealer.seal(&inner);
    assert_eq!(opener.open(nested), Err(SealError::Unreadable));
    let garbage = LinkMessage::Sealed {
        sequence: 9,
        message: vec![0xff; 5],
        signature: vec![],
    };
    assert_eq!(opener.open(garbage), Err(SealError::BadSignature));
}
