//! Protocols and port ranges: the value types every layer speaks, from the
//! Amanda settings up to the rulesets and the simulator.
//!
//! A leaf, so the netfilter IR and the simulator can name a port range without
//! depending on the deployment model.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An inclusive port range, as Amanda writes it (`int,int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const fn new(lo: u16, hi: u16) -> Self {
        PortRange { lo, hi }
    }
    pub const fn single(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }
    pub fn count(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
    pub fn covers(&self, other: &PortRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }
    /// Privileged ports are below 1024; Amanda's `reserved-*-port` must lie there.
    pub fn is_privileged(&self) -> bool {
        self.hi < 1024
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Sort and merge overlapping or adjacent ranges.
pub fn merge_ranges(mut v: Vec<PortRange>) -> Vec<PortRange> {
    v.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => last.hi = last.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
}

/// Linux's default `net.ipv4.ip_local_port_range` (32768-60999, since kernel
/// 3.x; `Documentation/networking/ip-sysctl.rst`): where a connect without a
/// bound source port comes from. `check` walks such flows over all of it, and
/// `explain` assumes it when no source port is given.
pub const EPHEMERAL: PortRange = PortRange::new(32768, 60999);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merge_joins_adjacent_and_overlapping() {
        let m = merge_ranges(vec![
            PortRange::new(10, 20),
            PortRange::single(21),
            PortRange::new(5, 12),
            PortRange::single(30),
        ]);
        assert_eq!(m, vec![PortRange::new(5, 21), PortRange::single(30)]);
    }

    proptest! {
        /// Merging keeps exactly the same set of ports, sorted and disjoint.
        #[test]
        fn merge_preserves_ports(v in prop::collection::vec((1u16..200, 0u16..20), 0..12)) {
            let ranges: Vec<PortRange> = v.iter().map(|(lo, w)| PortRange::new(*lo, lo + w)).collect();
            let merged = merge_ranges(ranges.clone());
            for p in 1u16..230 {
                let before = ranges.iter().any(|r| r.contains(p));
                let after = merged.iter().any(|r| r.contains(p));
                prop_assert_eq!(before, after, "port {}", p);
            }
            for w in merged.windows(2) {
                prop_assert!(u32::from(w[0].hi) + 1 < u32::from(w[1].lo));
            }
        }
    }
}
