//! The audit record of an operator command: who asked (uid and pid of the peer, from
//! the socket's credentials), when, through what, and the request itself. One JSON
//! line each, appended to the agent's audit log before the command is carried out.

use serde::{Deserialize, Serialize};

use super::Request;

/// Whether `request` is an operator command that goes to the audit log. Reads (status,
/// events, fence history, fence check) do not.
pub fn is_audited(request: &Request) -> bool {
    !matches!(
        request,
        Request::Status | Request::Events { .. } | Request::FenceHistory | Request::FenceCheck
    )
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the command arrived, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The agent that received it (host or guest node name).
    pub agent: String,
    /// How it came: `socket` (the admin socket) or `port` (the virtio-serial admin
    /// port, whose peer is root on the hypervisor).
    pub via: String,
    /// User id of the caller; absent when the transport does not tell.
    pub uid: Option<u32>,
    /// Process id of the caller; absent when the transport does not tell.
    pub pid: Option<i32>,
    /// The command as it was asked.
    pub request: Request,
}

impl AuditRecord {
    /// The record as one line, line end included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_audited_commands_are() {
        let table = [
            (r#"{"cmd":"status"}"#, false),
            (r#"{"cmd":"events","follow":true}"#, false),
            (r#"{"cmd":"fence-history"}"#, false),
            (r#"{"cmd":"fence-check"}"#, false),
            (r#"{"cmd":"fence","host":"h2"}"#, true),
            (r#"{"cmd":"confirm-down","host":"h2"}"#, true),
            (r#"{"cmd":"node-down","node":"g1"}"#, true),
        ];
        for (text, audited) in table {
            let request: Request = serde_json::from_str(text).unwrap();
            assert_eq!(is_audited(&request), audited, "{text}");
        }
    }

    #[test]
    fn a_record_is_one_json_line_with_uid_and_pid() {
        let r = AuditRecord {
            unix_ms: 1_800_000_000_000,
            agent: "h1".into(),
            via: "socket".into(),
            uid: Some(0),
            pid: Some(4242),
            request: serde_json::from_str(r#"{"cmd":"fence","host":"h2"}"#).unwrap(),
        };
        let line = r.to_line();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let back: AuditRecord = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, r);
        assert!(
            line.contains(r#""uid":0"#) && line.contains(r#""pid":4242"#),
            "{line}"
        );
    }
}
