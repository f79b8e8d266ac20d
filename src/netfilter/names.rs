//! Names the tools print for numbers: IP protocols, ICMP types. Both
//! iptables and nft accept either; the emitters print the first name listed
//! for a number, which is what `iptables-save` / `nft list` print.

use super::AddrType;

/// `addrtype`'s type names, as both tools spell them (nft in lower case).
pub const ADDR_TYPES: [(AddrType, &str); 12] = [
    (AddrType::Unspec, "UNSPEC"),
    (AddrType::Unicast, "UNICAST"),
    (AddrType::Local, "LOCAL"),
    (AddrType::Broadcast, "BROADCAST"),
    (AddrType::Anycast, "ANYCAST"),
    (AddrType::Multicast, "MULTICAST"),
    (AddrType::Blackhole, "BLACKHOLE"),
    (AddrType::Unreachable, "UNREACHABLE"),
    (AddrType::Prohibit, "PROHIBIT"),
    (AddrType::Throw, "THROW"),
    (AddrType::Nat, "NAT"),
    (AddrType::Xresolve, "XRESOLVE"),
];

/// IP protocol numbers (`/etc/protocols`, IANA); iptables' spelling first.
const PROTOCOLS: &[(&str, u8)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("esp", 50),
    ("ah", 51),
    ("sctp", 132),
    ("udplite", 136),
    ("dccp", 33),
    ("gre", 47),
    ("igmp", 2),
    ("ipip", 4),
    ("ipencap", 4),
    ("ipv6", 41),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("mh", 135),
    ("ipv6-mh", 135),
    ("l2tp", 115),
    ("egp", 8),
    ("rsvp", 46),
    ("comp", 108),
];

pub fn proto_number(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    if let Ok(n) = lower.parse::<u8>() {
        return Some(n);
    }
    PROTOCOLS.iter().find(|(n, _)| *n == lower).map(|&(_, v)| v)
}

/// The iptables spelling, or the number.
pub fn proto_name(n: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|&&(_, v)| v == n)
        .map_or_else(|| n.to_string(), |(name, _)| (*name).to_string())
}

/// nft prints `icmpv6` where iptables prints `ipv6-icmp`.
pub fn proto_name_nft(n: u8) -> String {
    match n {
        58 => "ipv6-icmp".into(),
        _ => proto_name(n),
    }
}

/// (name, type, code) as libxt_icmp lists them; code `None` means any code.
const ICMP: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("TOS-network-unreachable", 3, Some(11)),
    ("TOS-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("TOS-network-redirect", 5, Some(2)),
    ("TOS-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

/// As libxt_icmp6 lists them.
const ICMP6: &[(&str, u8, Option<u8>)] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("communication-prohibited", 1, Some(1)),
    ("beyond-scope", 1, Some(2)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("failed-policy", 1, Some(5)),
    ("reject-route", 1, Some(6)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("ttl-exceeded", 3, None),
    ("ttl-zero-during-transit", 3, Some(0)),
    ("ttl-zero-during-reassembly", 3, Some(1)),
    ("parameter-problem", 4, None),
    ("bad-header", 4, Some(0)),
    ("unknown-header-type", 4, Some(1)),
    ("unknown-option", 4, Some(2)),
    ("echo-request", 128, None),
    ("ping", 128, None),
    ("echo-reply", 129, None),
    ("pong", 129, None),
    ("mld-listener-query", 130, None),
    ("mld-listener-report", 131, None),
    ("mld-listener-done", 132, None),
    ("mld-listener-reduction", 132, None),
    ("router-solicitation", 133, None),
    ("nd-router-solicit", 133, None),
    ("router-advertisement", 134, None),
    ("nd-router-advert", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("nd-neighbor-solicit", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
    ("nd-neighbor-advert", 136, None),
    ("redirect", 137, None),
    ("nd-redirect", 137, None),
    ("mld2-listener-report", 143, None),
];

/// ICMP type (and code) by name, for iptables `--icmp-type` / nft `icmp type`.
pub fn icmp_type(name: &str, v6: bool) -> Option<(u8, Option<u8>)> {
    let table = if v6 { ICMP6 } else { ICMP };
    table
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, t, c)| (t, c))
}

/// nft's name for an ICMP type (only types, nft prints codes separately).
pub fn icmp_type_nft(ty: u8, v6: bool) -> Option<&'static str> {
    let v4: &[(u8, &str)] = &[
        (0, "echo-reply"),
        (3, "destination-unreachable"),
        (4, "source-quench"),
        (5, "redirect"),
        (8, "echo-request"),
        (9, "router-advertisement"),
        (10, "router-solicitation"),
        (11, "time-exceeded"),
        (12, "parameter-problem"),
        (13, "timestamp-request"),
        (14, "timestamp-reply"),
        (15, "info-request"),
        (16, "info-reply"),
        (17, "address-mask-request"),
        (18, "address-mask-reply"),
    ];
    let v6t: &[(u8, &str)] = &[
        (1, "destination-unreachable"),
        (2, "packet-too-big"),
        (3, "time-exceeded"),
        (4, "parameter-problem"),
        (128, "echo-request"),
        (129, "echo-reply"),
        (130, "mld-listener-query"),
        (131, "mld-listener-report"),
        (132, "mld-listener-done"),
        (133, "nd-router-solicit"),
        (134, "nd-router-advert"),
        (135, "nd-neighbor-solicit"),
        (136, "nd-neighbor-advert"),
        (137, "nd-redirect"),
        (138, "router-renumbering"),
        // RFC 3122's inverse ND is 141/142 (139/140 are node information,
        // which nft prints as numbers), as nft 1.0.6 lists them back.
        (141, "ind-neighbor-solicit"),
        (142, "ind-neighbor-advert"),
        (143, "mld2-listener-report"),
    ];
    let t = if v6 { v6t } else { v4 };
    t.iter().find(|&&(n, _)| n == ty).map(|&(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!(proto_number("ICMP"), Some(1));
        assert_eq!(proto_number("ipv6-icmp"), Some(58));
        assert_eq!(proto_number("icmpv6"), Some(58));
        assert_eq!(proto_number("47"), Some(47));
        assert_eq!(proto_number("nonsense"), None);
        assert_eq!(proto_name(58), "ipv6-icmp");
        assert_eq!(proto_name(200), "200");
    }

    #[test]
    fn icmp_names() {
        assert_eq!(icmp_type("echo-request", false), Some((8, None)));
        assert_eq!(icmp_type("port-unreachable", false), Some((3, Some(3))));
        assert_eq!(icmp_type("neighbour-solicitation", true), Some((135, None)));
        assert_eq!(icmp_type_nft(135, true), Some("nd-neighbor-solicit"));
        assert_eq!(icmp_type_nft(141, true), Some("ind-neighbor-solicit"));
        assert_eq!(icmp_type_nft(142, true), Some("ind-neighbor-advert"));
        assert_eq!(icmp_type_nft(139, true), None);
    }
}
