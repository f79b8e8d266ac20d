//! nft scripts, laid out the way `nft list ruleset` prints them.
//!
//! A script replaces only its own tables: `table ip NAME` + `delete table ip NAME`
//! first (the first line creates the table if it is missing, so the delete never
//! fails), then the new definition, all in one atomic `nft -f` transaction.

mod json;
mod parse;

pub use json::parse_json;
pub use parse::{parse, parse_with, Includes};

use std::fmt::Write;

use super::*;

fn ports(v: &[PortRange]) -> String {
    let one = |r: &PortRange| {
        if r.lo == r.hi {
            r.lo.to_string()
        } else {
            format!("{}-{}", r.lo, r.hi)
        }
    };
    if v.len() == 1 {
        one(&v[0])
    } else {
        format!("{{ {} }}", v.iter().map(one).collect::<Vec<_>>().join(", "))
    }
}

fn addr(a: &Addr) -> String {
    a.to_string()
}

fn family(f: Family) -> &'static str {
    f.name()
}

fn priority(kind: ChainType, hook: Hook, p: i32) -> String {
    // Print the standard names nft itself prints for the usual values.
    let name = match (kind, hook, p) {
        (_, _, priority::RAW) => Some("raw"),
        (_, _, priority::FILTER) => Some("filter"),
        (ChainType::Nat, Hook::Prerouting, priority::DSTNAT) => Some("dstnat"),
        (ChainType::Nat, Hook::Postrouting, priority::SRCNAT) => Some("srcnat"),
        _ => None,
    };
    name.map_or_else(|| p.to_string(), str::to_string)
}

/// nft strings have no escapes: a `"` becomes `'`, and a control character
/// (which would end the statement) a visible `<U+000A>`.
fn quote(s: &str) -> String {
    format!("\"{}\"", crate::name::comment(s).replace('"', "'"))
}

/// One rule's statement text (for an `ip` table).
pub fn rule_text(r: &Rule) -> String {
    rule_text_in(r, Family::Ip)
}

fn iface(i: &str) -> String {
    // iptables' `eth+` is nft's `eth*`.
    match i.strip_suffix('+') {
        Some(p) => quote(&format!("{p}*")),
        None => quote(i),
    }
}

fn addr_sel(a: &Addr, src: bool, fam: Family) -> String {
    let v6 = a.is_v6().unwrap_or(fam == Family::Ip6);
    let ip = if v6 { "ip6" } else { "ip" };
    let dir = if src { "saddr" } else { "daddr" };
    format!("{ip} {dir}")
}

fn proto_name(m: &Match) -> Option<String> {
    match m {
        Match::Proto(p) => Some(p.to_string()),
        Match::ProtoNum(58) => Some("icmpv6".into()),
        Match::ProtoNum(n) => Some(names::proto_name(*n)),
        _ => None,
    }
}

fn ct_states(states: &[CtState]) -> String {
    let mut names = Vec::new();
    for (st, n) in [
        (CtState::Established, "established"),
        (CtState::Related, "related"),
        (CtState::New, "new"),
        (CtState::Invalid, "invalid"),
        (CtState::Untracked, "untracked"),
    ] {
        if states.contains(&st) {
            names.push(n);
        }
    }
    names.join(",")
}

fn hex(v: u32) -> String {
    format!("0x{v:08x}")
}

fn tcp_flag_names(bits: u8) -> String {
    let names: Vec<&str> = [
        (tcp_flag::FIN, "fin"),
        (tcp_flag::SYN, "syn"),
        (tcp_flag::RST, "rst"),
        (tcp_flag::PSH, "psh"),
        (tcp_flag::ACK, "ack"),
        (tcp_flag::URG, "urg"),
        (tcp_flag::ECE, "ecn"),
        (tcp_flag::CWR, "cwr"),
    ]
    .iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| *n)
    .collect();
    match names.len() {
        0 => "0x0".into(),
        1 => names[0].into(),
        _ => format!("({})", names.join("|")),
    }
}

fn icmp_value(t: &IcmpType, v6: bool) -> Option<(String, String)> {
    let p = if v6 { "icmpv6" } else { "icmp" };
    match (t.ty, t.code) {
        (Some(ty), None) => Some((
            format!("{p} type"),
            names::icmp_type_nft(ty, v6).map_or_else(|| ty.to_string(), str::to_string),
        )),
        (None, Some(c)) => Some((format!("{p} code"), c.to_string())),
        _ => None,
    }
}

fn ct_tuple(t: CtTuple) -> (&'static str, &'static str) {
    match t {
        CtTuple::OrigSrc => ("original", "saddr"),
        CtTuple::OrigDst => ("original", "daddr"),
        CtTuple::ReplSrc => ("reply", "saddr"),
        CtTuple::ReplDst => ("reply", "daddr"),
    }
}

/// A match as nft's `SELECTOR VALUE`, when it has that shape. `proto` names
/// the transport header for ports (`th` when the rule has none).
fn sel_val(m: &Match, fam: Family, proto: &str) -> Option<(String, String)> {
    let one_range = |v: &[PortRange]| (v.len() == 1).then(|| ports(v));
    Some(match m {
        Match::InIface(i) => ("iifname".into(), iface(i)),
        Match::OutIface(i) => ("oifname".into(), iface(i)),
        Match::Src(a) => (addr_sel(a, true, fam), addr(a)),
        Match::Dst(a) => (addr_sel(a, false, fam), addr(a)),
        Match::Proto(_) | Match::ProtoNum(_) => ("meta l4proto".into(), proto_name(m)?),
        Match::IpVersion(v) => ("meta nfproto".into(), format!("ipv{v}")),
        Match::SPort(v) => (format!("{proto} sport"), one_range(v)?),
        Match::DPort(v) => (format!("{proto} dport"), one_range(v)?),
        Match::CtState(s) if s.len() == 1 => ("ct state".into(), ct_states(s)),
        Match::Mark { value, mask } if *mask == u32::MAX => ("meta mark".into(), hex(*value)),
        Match::ConnMark { value, mask } if *mask == u32::MAX => ("ct mark".into(), hex(*value)),
        Match::PktType(t) => (
            "meta pkttype".into(),
            match t {
                PktType::Unicast => "host",
                PktType::Broadcast => "broadcast",
                PktType::Multicast => "multicast",
            }
            .into(),
        ),
        Match::Owner(Owner::Uid(a, b)) | Match::Owner(Owner::Gid(a, b)) => {
            let sel = if matches!(m, Match::Owner(Owner::Uid(..))) {
                "meta skuid"
            } else {
                "meta skgid"
            };
            let v = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            (sel.into(), v)
        }
        Match::Length(a, b) => (
            "meta length".into(),
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            },
        ),
        Match::Icmp(t) => icmp_value(t, false)?,
        Match::Icmp6(t) => icmp_value(t, true)?,
        Match::CtDirection(d) => (
            "ct direction".into(),
            match d {
                CtDirection::Original => "original",
                CtDirection::Reply => "reply",
            }
            .into(),
        ),
        Match::CtAddr(t, a) => {
            let (d, k) = ct_tuple(*t);
            let ip = if a.is_v6() == Some(true) { "ip6" } else { "ip" };
            (format!("ct {d} {ip} {k}"), addr(a))
        }
        Match::CtPort(t, p) => {
            let (d, k) = ct_tuple(*t);
            let k = if k == "saddr" {
                "proto-src"
            } else {
                "proto-dst"
            };
            (format!("ct {d} {k}"), ports(std::slice::from_ref(p)))
        }
        Match::CtProto(n) => ("ct original protocol".into(), names::proto_name(*n)),
        Match::MacSrc(m) => ("ether saddr".into(), m.clone()),
        Match::Ttl(Cmp::Eq, v) => {
            let sel = if fam == Family::Ip6 {
                "ip6 hoplimit"
            } else {
                "ip ttl"
            };
            (sel.into(), v.to_string())
        }
        _ => return None,
    })
}

/// A match that is not `SELECTOR VALUE`, as nft prints it.
fn special(m: &Match, fam: Family, proto: &str) -> String {
    let (m, neg) = m.positive();
    let ne = if neg { "!= " } else { "" };
    let eq = if neg { "!=" } else { "==" };
    match m {
        Match::SPort(v) => format!("{proto} sport {ne}{}", ports(v)),
        Match::DPort(v) => format!("{proto} dport {ne}{}", ports(v)),
        Match::CtState(s) => format!("ct state {ne}{}", ct_states(s)),
        Match::CtStatus(s) => {
            let names: Vec<&str> = s
                .iter()
                .map(|s| match s {
                    CtStatus::None => "none",
                    CtStatus::Expected => "expected",
                    CtStatus::SeenReply => "seen-reply",
                    CtStatus::Assured => "assured",
                    CtStatus::Confirmed => "confirmed",
                    CtStatus::Snat => "snat",
                    CtStatus::Dnat => "dnat",
                })
                .collect();
            format!("ct status {ne}{}", names.join(","))
        }
        Match::Mark { value, mask } => {
            format!("meta mark & {} {eq} {}", hex(*mask), hex(*value))
        }
        Match::ConnMark { value, mask } => {
            format!("ct mark & {} {eq} {}", hex(*mask), hex(*value))
        }
        Match::TcpFlags { mask, set } => format!(
            "tcp flags & {} {eq} {}",
            tcp_flag_names(*mask),
            tcp_flag_names(*set)
                .trim_matches(['(', ')'])
                .replace('|', ",")
        ),
        Match::Ttl(c, v) => {
            let sel = if fam == Family::Ip6 {
                "ip6 hoplimit"
            } else {
                "ip ttl"
            };
            let op = match (c, neg) {
                (Cmp::Lt, false) => "<",
                (Cmp::Lt, true) => ">=",
                (Cmp::Gt, false) => ">",
                (Cmp::Gt, true) => "<=",
                (Cmp::Eq, _) => eq,
            };
            format!("{sel} {op} {v}")
        }
        Match::Fragment => format!("ip frag-off & 0x1fff {} 0", if neg { "==" } else { "!=" }),
        Match::AddrType {
            dir,
            types,
            limit_iface,
        } => {
            let d = if *dir == Dir::Src { "saddr" } else { "daddr" };
            let lim = match limit_iface {
                Some(Dir::Src) => " . iif",
                Some(Dir::Dst) => " . oif",
                None => "",
            };
            let names: Vec<String> = names::ADDR_TYPES
                .iter()
                .filter(|(t, _)| types.contains(t))
                .map(|(_, n)| n.to_ascii_lowercase())
                .collect();
            let v = if names.len() == 1 {
                names[0].clone()
            } else {
                format!("{{ {} }}", names.join(", "))
            };
            format!("fib {d}{lim} type {ne}{v}")
        }
        Match::RpFilter(flags) => {
            let mark = if flags.iter().any(|f| f == "validmark") {
                " . mark"
            } else {
                ""
            };
            let iif = if flags.iter().any(|f| f == "loose") {
                ""
            } else {
                " . iif"
            };
            format!(
                "fib saddr{mark}{iif} oif {}",
                if neg { "missing" } else { "exists" }
            )
        }
        Match::AnyOf(alts) => {
            let parts: Option<Vec<Vec<(String, String)>>> = alts
                .iter()
                .map(|alt| alt.iter().map(|m| sel_val(m, fam, proto)).collect())
                .collect();
            let sels = parts.as_ref().and_then(|p| {
                let first: Vec<&String> = p.first()?.iter().map(|(s, _)| s).collect();
                p.iter()
                    .all(|alt| alt.iter().map(|(s, _)| s).eq(first.iter().copied()))
                    .then_some(first)
            });
            match (sels, &parts) {
                (Some(sels), Some(parts)) => {
                    let sel = sels
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" . ");
                    let vals: Vec<String> = parts
                        .iter()
                        .map(|alt| {
                            alt.iter()
                                .map(|(_, v)| v.as_str())
                                .collect::<Vec<_>>()
                                .join(" . ")
                        })
                        .collect();
                    format!("{sel} {ne}{{ {} }}", vals.join(", "))
                }
                _ => format!("unsupported-match({m:?})"),
            }
        }
        Match::Stateful { module, args } => format!("{module} {}", args.join(" ")),
        Match::Unknown { text } => text.clone(),
        other => match sel_val(other, fam, proto) {
            Some((s, v)) => format!("{s} {ne}{v}"),
            None => format!("unsupported-match({other:?})"),
        },
    }
}

fn nat_to(spec: &NatSpec, fam: Family) -> String {
    let mut s = String::new();
    if let Some((a, b)) = spec.addrs {
        let bracket = a.is_ipv6() && spec.ports.is_some();
        let one = |x: std::net::IpAddr| {
            if bracket {
                format!("[{x}]")
            } else {
                x.to_string()
            }
        };
        if fam == Family::Inet {
            s.push_str(if a.is_ipv6() { "ip6 " } else { "ip " });
        }
        s.push_str("to ");
        s.push_str(&one(a));
        if a != b {
            write!(s, "-{}", one(b)).unwrap();
        }
    } else if spec.ports.is_some() {
        s.push_str("to ");
    }
    if let Some(p) = spec.ports {
        write!(s, ":{}", ports(&[p])).unwrap();
    }
    let flags: Vec<&str> = spec
        .flags
        .iter()
        .map(|f| match f {
            NatFlag::Random => "random",
            NatFlag::RandomFully => "fully-random",
            NatFlag::Persistent => "persistent",
        })
        .collect();
    if !flags.is_empty() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&flags.join(","));
    }
    s
}

fn with_arg(kw: &str, arg: String) -> String {
    if arg.is_empty() {
        kw.to_string()
    } else {
        format!("{kw} {arg}")
    }
}

fn action_text(a: &Action, fam: Family) -> Option<String> {
    Some(match a {
        Action::Accept => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Return => "return".into(),
        Action::Continue => return None,
        Action::Jump(c) => format!("jump {c}"),
        Action::Goto(c) => format!("goto {c}"),
        Action::Reject(None) => "reject".into(),
        Action::Reject(Some(w)) => format!("reject with {w}"),
        Action::Dnat(to) => format!("dnat to {to}"),
        Action::Masquerade => "masquerade".into(),
        Action::CtHelper(h) => format!("ct helper set {}", quote(h)),
        Action::Notrack => "notrack".into(),
        Action::Log { prefix, args, .. } => {
            let mut s = String::from("log");
            if let Some(p) = prefix {
                write!(s, " prefix {}", quote(p)).unwrap();
            }
            for a in args {
                write!(s, " {a}").unwrap();
            }
            s
        }
        Action::Mark { value, mask } if *mask == u32::MAX => {
            format!("meta mark set {}", hex(*value))
        }
        Action::ConnMark(ConnMarkOp::Set { value, mask }) if *mask == u32::MAX => {
            format!("ct mark set {}", hex(*value))
        }
        Action::ConnMark(ConnMarkOp::Save { nfmask, ctmask })
            if *nfmask == u32::MAX && *ctmask == u32::MAX =>
        {
            "ct mark set meta mark".into()
        }
        Action::ConnMark(ConnMarkOp::Restore { nfmask, ctmask })
            if *nfmask == u32::MAX && *ctmask == u32::MAX =>
        {
            "meta mark set ct mark".into()
        }
        Action::DnatTo(spec) => with_arg("dnat", nat_to(spec, fam)),
        Action::Snat(spec) => with_arg("snat", nat_to(spec, fam)),
        Action::MasqueradeTo(spec) => with_arg("masquerade", nat_to(spec, fam)),
        Action::Redirect(spec) => with_arg("redirect", nat_to(spec, fam)),
        Action::Passthrough { target, args } if target == "nft" => args.join(" "),
        Action::Unknown { text } => text.clone(),
        other => format!("unsupported-action({other:?})"),
    })
}

/// One rule's statement text in a table of family `fam`, in the order
/// `nft list` prints what it was given in that order: interfaces, addresses,
/// protocol and ports, conntrack state, the rest, then statements.
pub fn rule_text_in(r: &Rule, fam: Family) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut used = vec![false; r.matches.len()];
    let proto_m = r.matches.iter().find(|m| proto_name(m).is_some());
    let proto = proto_m.and_then(proto_name).unwrap_or_else(|| "th".into());
    let section = |pred: &dyn Fn(&Match) -> bool, parts: &mut Vec<String>, used: &mut Vec<bool>| {
        for (i, m) in r.matches.iter().enumerate() {
            if !used[i] && pred(m.positive().0) {
                used[i] = true;
                parts.push(special(m, fam, &proto));
            }
        }
    };
    section(&|m| matches!(m, Match::InIface(_)), &mut parts, &mut used);
    section(&|m| matches!(m, Match::OutIface(_)), &mut parts, &mut used);
    section(&|m| matches!(m, Match::IpVersion(_)), &mut parts, &mut used);
    // Addresses first, a set of them (`ip6 saddr { a, b }`) too.
    section(
        &|m| match m {
            Match::Src(_) | Match::Dst(_) => true,
            Match::AnyOf(alts) => alts
                .iter()
                .all(|a| a.len() == 1 && matches!(a[0], Match::Src(_) | Match::Dst(_))),
            _ => false,
        },
        &mut parts,
        &mut used,
    );
    // The protocol is implied by a port, flag or ICMP match of the same rule
    // (an ICMP type set too: `icmpv6 type { ... }`).
    let implies = |m: &Match| {
        matches!(
            m,
            Match::SPort(_)
                | Match::DPort(_)
                | Match::TcpFlags { .. }
                | Match::Icmp(_)
                | Match::Icmp6(_)
        )
    };
    let implied = r.matches.iter().any(|m| match m.positive().0 {
        Match::AnyOf(alts) => alts
            .iter()
            .all(|alt| alt.len() == 1 && matches!(alt[0], Match::Icmp(_) | Match::Icmp6(_))),
        m => implies(m),
    });
    for (i, m) in r.matches.iter().enumerate() {
        let (inner, neg) = m.positive();
        if !used[i] && proto_name(inner).is_some() {
            if neg || !implied || Some(m) != proto_m {
                let sel = if fam == Family::Ip {
                    "ip protocol"
                } else {
                    "meta l4proto"
                };
                let ne = if neg { "!= " } else { "" };
                parts.push(format!("{sel} {ne}{}", proto_name(inner).expect("checked")));
            }
            used[i] = true;
        }
    }
    section(
        &|m| matches!(m, Match::SPort(_) | Match::DPort(_)),
        &mut parts,
        &mut used,
    );
    section(&|m| matches!(m, Match::CtState(_)), &mut parts, &mut used);
    section(&|_| true, &mut parts, &mut used);
    if let Some(c) = &r.counters {
        parts.push(format!("counter packets {} bytes {}", c.packets, c.bytes));
    }
    for e in &r.effects {
        parts.extend(action_text(e, fam));
    }
    parts.extend(action_text(&r.action, fam));
    if let Some(c) = &r.comment {
        parts.push(format!("comment {}", quote(c)));
    }
    parts.join(" ")
}

/// The script for `rs`. `header` lines become `#` comments.
pub fn emit(rs: &Ruleset, header: &[String]) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    for h in header {
        // Defence in depth: a header line can never become a statement.
        writeln!(out, "# {}", crate::name::comment(h)).unwrap();
    }
    for t in &rs.tables {
        let fam = family(t.family);
        writeln!(
            out,
            "\ntable {fam} {n}\ndelete table {fam} {n}\n",
            n = t.name
        )
        .unwrap();
        writeln!(out, "table {fam} {} {{", t.name).unwrap();
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push('\n');
            }
            first = false;
        };
        for h in &t.ct_helpers {
            sep(&mut out);
            writeln!(
                out,
                "\tct helper {} {{\n\t\ttype {} protocol {}\n\t\tl3proto {}\n\t}}",
                h.name,
                quote(&h.helper),
                h.proto,
                if t.family == Family::Ip6 { "ip6" } else { "ip" }
            )
            .unwrap();
        }
        for s in &t.sets {
            sep(&mut out);
            let ty = if s.v6 { "ipv6_addr" } else { "ipv4_addr" };
            writeln!(out, "\tset {} {{\n\t\ttype {ty}", s.name).unwrap();
            if s.needs_interval() {
                writeln!(out, "\t\tflags interval").unwrap();
            }
            let elems: Vec<String> = s.addrs().iter().map(addr).collect();
            writeln!(out, "\t\telements = {{ {} }}\n\t}}", elems.join(", ")).unwrap();
        }
        for c in &t.chains {
            sep(&mut out);
            writeln!(out, "\tchain {} {{", c.name).unwrap();
            if let Some(b) = &c.base {
                let kind = match b.kind {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                    ChainType::Route => "route",
                };
                let pol = match b.policy {
                    Policy::Accept => "accept",
                    Policy::Drop => "drop",
                };
                writeln!(
                    out,
                    "\t\ttype {kind} hook {} priority {}; policy {pol};",
                    b.hook.name(),
                    priority(b.kind, b.hook, b.priority)
                )
                .unwrap();
            }
            for r in &c.rules {
                writeln!(out, "\t\t{}", rule_text_in(r, t.family)).unwrap();
            }
            writeln!(out, "\t}}").unwrap();
        }
        writeln!(out, "}}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defence in depth behind `name::interface`: a header line (the
    /// topology's path), a comment or an interface name with a newline never
    /// puts a statement of its own into the script.
    #[test]
    fn hostile_text_stays_in_its_line() {
        let r = Rule::new(
            vec![Match::InIface("eth0\"\nflush ruleset\n".into())],
            Action::Accept,
        )
        .with_comment("x\"\nflush ruleset\n");
        let rs = Ruleset {
            tables: vec![Table {
                family: Family::Ip,
                name: "amwall".into(),
                sets: vec![],
                ct_helpers: vec![],
                chains: vec![Chain {
                    name: "input".into(),
                    base: None,
                    rules: vec![r],
                }],
            }],
        };
        let text = emit(&rs, &["from /tmp/x\nflush ruleset\n/t.toml".into()]);
        assert!(!text.lines().any(|l| l.trim() == "flush ruleset"), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.contains("flush ruleset")).count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn rule_with_set_and_ports() {
        let r = Rule::new(
            vec![
                Match::InIface("eth0".into()),
                Match::Src(Addr::Set("in_amrecover_hosts".into())),
                Match::Proto(Proto::Tcp),
                Match::DPort(vec![PortRange::single(10082), PortRange::new(50000, 50100)]),
            ],
            Action::Accept,
        );
        assert_eq!(
            rule_text(&r),
            "iifname \"eth0\" ip saddr @in_amrecover_hosts tcp dport { 10082, 50000-50100 } accept"
        );
    }
}
