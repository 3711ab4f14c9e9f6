//! The fence_kdump panic notice: `{u32 magic 0x1B302A40, u32 version 1}` in the sender's
//! byte order, sent over UDP (port 7410 by default) by a host's crash kernel.

/// fence_kdump's magic number.
pub const KDUMP_MAGIC: u32 = 0x1B30_2A40;
/// The only message version defined.
pub const KDUMP_VERSION: u32 = 1;

/// Why a datagram on the kdump port is not a panic notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KdumpError {
    /// Not 8 bytes long.
    #[error("a panic notice is 8 bytes, got {0}")]
    Length(usize),
    /// Wrong magic.
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    /// Unsupported version.
    #[error("unsupported version {0}")]
    Version(u32),
}

/// Parses a notice. The sender writes host byte order; both orders are accepted so a
/// crash kernel of another endianness is understood too.
pub fn parse_notice(buf: &[u8]) -> Result<(), KdumpError> {
    if buf.len() != 8 {
        return Err(KdumpError::Length(buf.len()));
    }
    let le = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (magic, version) = (le(0), le(4));
    let (magic, version) = if magic == KDUMP_MAGIC {
        (magic, version)
    } else if magic.swap_bytes() == KDUMP_MAGIC {
        (magic.swap_bytes(), version.swap_bytes())
    } else {
        return Err(KdumpError::Magic(magic));
    };
    debug_assert_eq!(magic, KDUMP_MAGIC);
    if version != KDUMP_VERSION {
        return Err(KdumpError::Version(version));
    }
    Ok(())
}

/// A notice as this host's crash kernel would send it.
pub fn notice_bytes() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&KDUMP_MAGIC.to_ne_bytes());
    out[4..].copy_from_slice(&KDUMP_VERSION.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_byte_orders() {
        assert_eq!(parse_notice(&notice_bytes()), Ok(()));
        let mut be = [0u8; 8];
        be[..4].copy_from_slice(&KDUMP_MAGIC.to_be_bytes());
        be[4..].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(parse_notice(&be), Ok(()));
    }

    #[test]
    fn rejects_bad_notices() {
        assert_eq!(parse_notice(&[0; 7]), Err(KdumpError::Length(7)));
        assert!(matches!(parse_notice(&[0; 8]), Err(KdumpError::Magic(0))));
        let mut v2 = notice_bytes();
        v2[4..].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(parse_notice(&v2), Err(KdumpError::Version(2)));
    }
}
