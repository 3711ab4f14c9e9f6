//! Network faults as nftables rules inside a host's own namespace.
//!
//! Each host's faults are kept as a small set and the whole `inet hvlab` table is
//! re-rendered and replaced in one `nft -f` transaction on every change. That makes
//! removing one fault trivial (drop it from the set) and never leaves a half-applied
//! table behind. Every rule carries a comment naming the fault it implements.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Name of the per-namespace table.
pub const TABLE: &str = "hvlab";

/// The network faults active on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSet {
    /// Interconnects whose interface drops everything in and out.
    pub cut: BTreeSet<usize>,
    /// All lab interfaces drop everything in and out.
    pub isolated: bool,
    /// Sources dropped on input: sending host name and its addresses (one-way cuts).
    pub drop_from: BTreeMap<String, Vec<IpAddr>>,
    /// Random loss in percent on all lab interfaces, both directions.
    pub loss: Option<u8>,
}

impl FaultSet {
    /// True when no fault is active, i.e. the table can be removed.
    pub fn is_empty(&self) -> bool {
        self.cut.is_empty() && !self.isolated && self.drop_from.is_empty() && self.loss.is_none()
    }
}

fn if_set(ifaces: &[String]) -> String {
    let quoted: Vec<String> = ifaces.iter().map(|i| format!("\"{i}\"")).collect();
    format!("{{ {} }}", quoted.join(", "))
}

fn addr_set(addrs: &[IpAddr]) -> (String, String) {
    // An inet table needs the family named in the match; lab addresses are all v4 today
    // but a v6 source would otherwise be rejected by nft.
    let v4: Vec<String> = addrs
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|a| a.to_string())
        .collect();
    let v6: Vec<String> = addrs
        .iter()
        .filter(|a| a.is_ipv6())
        .map(|a| a.to_string())
        .collect();
    (v4.join(", "), v6.join(", "))
}

/// The complete `nft -f` script that makes the table match `faults`.
///
/// `ifaces` are the host's lab interfaces; loopback is never touched, so local
/// processes of a host keep talking to each other whatever the fault.
pub fn render(faults: &FaultSet, ifaces: &[String]) -> String {
    // Declaring then deleting the table makes the delete succeed whether or not it existed.
    let mut s = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
    if faults.is_empty() {
        return s;
    }
    let mut input = String::new();
    let mut output = String::new();
    if faults.isolated {
        let set = if_set(ifaces);
        let _ = writeln!(input, "    iifname {set} drop comment \"isolate\"");
        let _ = writeln!(output, "    oifname {set} drop comment \"isolate\"");
    }
    for k in &faults.cut {
        let _ = writeln!(
            input,
            "    iifname \"ic{k}\" drop comment \"cut-link ic{k}\""
        );
        let _ = writeln!(
            output,
            "    oifname \"ic{k}\" drop comment \"cut-link ic{k}\""
        );
    }
    for (from, addrs) in &faults.drop_from {
        let (v4, v6) = addr_set(addrs);
        if !v4.is_empty() {
            let _ = writeln!(
                input,
                "    ip saddr {{ {v4} }} drop comment \"one-way-cut from {from}\""
            );
        }
        if !v6.is_empty() {
            let _ = writeln!(
                input,
                "    ip6 saddr {{ {v6} }} drop comment \"one-way-cut from {from}\""
            );
        }
    }
    if let Some(p) = faults.loss {
        let set = if_set(ifaces);
        let _ = writeln!(
            input,
            "    iifname {set} numgen random mod 100 < {p} drop comment \"loss {p}%\""
        );
        let _ = writeln!(
            output,
            "    oifname {set} numgen random mod 100 < {p} drop comment \"loss {p}%\""
        );
    }
    let _ = write!(
        s,
        "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{input}  }}\n  \
         chain output {{\n    type filter hook output priority 0; policy accept;\n{output}  }}\n}}\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifaces() -> Vec<String> {
        vec!["ic0".into(), "ic1".into()]
    }

    #[test]
    fn empty_set_only_removes_the_table() {
        let s = render(&FaultSet::default(), &ifaces());
        assert_eq!(s, "table inet hvlab {}\ndelete table inet hvlab\n");
    }

    #[test]
    fn cut_link_drops_both_directions_on_one_interface() {
        let f = FaultSet {
            cut: [1].into(),
            ..Default::default()
        };
        let s = render(&f, &ifaces());
        assert!(
            s.contains("iifname \"ic1\" drop comment \"cut-link ic1\""),
            "{s}"
        );
        assert!(
            s.contains("oifname \"ic1\" drop comment \"cut-link ic1\""),
            "{s}"
        );
        assert!(!s.contains("\"ic0\""), "{s}");
    }

    #[test]
    fn isolate_drops_on_every_lab_interface() {
        let f = FaultSet {
            isolated: true,
            ..Default::default()
        };
        let s = render(&f, &ifaces());
        assert!(
            s.contains("iifname { \"ic0\", \"ic1\" } drop comment \"isolate\""),
            "{s}"
        );
        assert!(
            s.contains("oifname { \"ic0\", \"ic1\" } drop comment \"isolate\""),
            "{s}"
        );
    }

    #[test]
    fn one_way_cut_matches_sender_addresses_on_input_only() {
        let addrs = vec!["198.18.0.1".parse().unwrap(), "198.18.1.1".parse().unwrap()];
        let f = FaultSet {
            drop_from: [("h1".to_string(), addrs)].into(),
            ..Default::default()
        };
        let s = render(&f, &ifaces());
        assert!(
            s.contains("ip saddr { 198.18.0.1, 198.18.1.1 } drop comment \"one-way-cut from h1\""),
            "{s}"
        );
        let output_chain = &s[s.find("chain output").unwrap()..];
        assert!(!output_chain.contains("saddr"), "{s}");
    }

    #[test]
    fn loss_uses_random_numgen_both_ways() {
        let f = FaultSet {
            loss: Some(30),
            ..Default::default()
        };
        let s = render(&f, &ifaces());
        assert!(
            s.contains(
                "iifname { \"ic0\", \"ic1\" } numgen random mod 100 < 30 drop comment \"loss 30%\""
            ),
            "{s}"
        );
        assert!(
            s.contains("oifname { \"ic0\", \"ic1\" } numgen random mod 100 < 30 drop"),
            "{s}"
        );
    }

    #[test]
    fn table_has_hooked_input_and_output_chains() {
        let f = FaultSet {
            isolated: true,
            ..Default::default()
        };
        let s = render(&f, &ifaces());
        assert!(
            s.contains("chain input {\n    type filter hook input priority 0; policy accept;\n")
        );
        assert!(
            s.contains("chain output {\n    type filter hook output priority 0; policy accept;\n")
        );
        assert!(s.starts_with("table inet hvlab {}\ndelete table inet hvlab\ntable inet hvlab {\n"));
    }
}
