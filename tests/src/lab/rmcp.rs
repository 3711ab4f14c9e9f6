//! The RMCP/ASF presence ping: the cheapest question a BMC answers, used to tell when a
//! freshly started `ipmi_sim` is listening without opening an IPMI session.
//!
//! Layout (DMTF ASF 2.0, section 3.2.4): a 4-byte RMCP header (version 6, reserved,
//! sequence 0xff meaning "no RMCP ack", class 6 = ASF), then the ASF header: IANA
//! enterprise 4542 (0x000011be), message type (0x80 ping, 0x40 pong), a tag echoed back,
//! a reserved byte and the data length.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// UDP port of RMCP and IPMI over LAN.
pub const PORT: u16 = 623;

const PING: u8 = 0x80;
const PONG: u8 = 0x40;

/// The 12-byte presence ping carrying `tag`.
pub fn ping_packet(tag: u8) -> [u8; 12] {
    [
        0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, PING, tag, 0x00, 0x00,
    ]
}

/// Whether `packet` is the presence pong answering the ping with `tag`.
pub fn is_pong(packet: &[u8], tag: u8) -> bool {
    packet.len() >= 12
        && packet[..4] == [0x06, 0x00, 0xff, 0x06]
        && packet[4..8] == [0x00, 0x00, 0x11, 0xbe]
        && packet[8] == PONG
        && packet[9] == tag
}

/// Sends one presence ping to `to` and waits up to `wait` for the pong.
///
/// Must run on a thread inside a lab namespace; an ICMP "port unreachable" (nobody
/// listening yet) counts as no answer, not as an error.
pub fn presence_ping(to: SocketAddr, tag: u8, wait: Duration) -> io::Result<bool> {
    let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.connect(to)?;
    sock.send(&ping_packet(tag))?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) if is_pong(&buf[..n], tag) => return Ok(true),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_must_echo_the_tag() {
        let mut pong = ping_packet(7).to_vec();
        pong[8] = PONG;
        pong.extend_from_slice(&[0u8; 16]);
        assert!(is_pong(&pong, 7));
        assert!(!is_pong(&pong, 8));
        assert!(!is_pong(&ping_packet(7), 7));
        assert!(!is_pong(&pong[..10], 7));
    }
}
