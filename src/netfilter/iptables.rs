//! iptables-restore / iptables-save text: [`emit`] and [`parse`].
//!
//! `emit` writes exactly the canonical form `iptables-save` prints for the same
//! rules (match order, `-m tcp`, `/32` suffixes, `RELATED,ESTABLISHED`), so that
//! loading a file and saving it again gives the same rule lines — a kernel test
//! checks this. `parse` reads what `iptables-save` and `ip6tables-save` print
//! (and what people write for `iptables-restore`) into the same IR.

mod ext;
mod parse;

pub use super::{ChainInfo, Parsed};
pub use parse::parse;

use std::fmt::Write;

use super::*;

/// `multiport` takes at most 15 ports, a range counting as two (iptables-extensions(8)).
pub const MULTIPORT_MAX: usize = 15;

fn ports(v: &[PortRange]) -> String {
    v.iter()
        .map(|r| {
            if r.lo == r.hi {
                r.lo.to_string()
            } else {
                format!("{}:{}", r.lo, r.hi)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn addr(a: &Addr) -> String {
    match a {
        Addr::Net(n) => format!("{}/{}", n.addr(), n.prefix_len()),
        Addr::Net6(n) => format!("{}/{}", n.addr(), n.prefix_len()),
        Addr::Set(s) => s.clone(),
        Addr::Range(a, b) => format!("{a}-{b}"),
    }
}

/// Conntrack and NETMAP print a host without its prefix length.
fn short_addr(a: &Addr) -> String {
    match a {
        Addr::Net(n) if n.prefix_len() == 32 => n.addr().to_string(),
        Addr::Net6(n) if n.prefix_len() == 128 => n.addr().to_string(),
        a => addr(a),
    }
}

/// An iprange range as its two ends.
fn as_range(a: &Addr) -> Option<(IpAddr, IpAddr)> {
    match a {
        Addr::Net(n) => Some((n.network().into(), n.broadcast().into())),
        Addr::Net6(n) => Some((n.network().into(), n.broadcast().into())),
        Addr::Range(a, b) => Some((*a, *b)),
        Addr::Set(_) => None,
    }
}

fn policy(p: Policy) -> &'static str {
    match p {
        Policy::Accept => "ACCEPT",
        Policy::Drop => "DROP",
    }
}

/// Comments are quoted the way iptables-save does: only when they contain
/// something other than letters, digits and a few safe characters (or would
/// read as an option).
fn quote(s: &str) -> String {
    if !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/,".contains(c))
    {
        s.to_string()
    } else {
        // A control character would end the line (and the rule) in the middle.
        let s = crate::name::comment(s);
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// An interface name as one argument. Names amwall plans are validated
/// (`name::interface`); this guards the rest (a parsed ruleset, a bug): a
/// space, quote or control character is quoted and escaped instead of
/// splitting the line. Plain names (`eth0`, `eth+`) print as iptables-save does.
fn iface(i: &str) -> String {
    if !i.is_empty()
        && !i
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '\\')
    {
        i.to_string()
    } else {
        quote(i)
    }
}

/// Option arguments kept as written: a word that starts an option or the
/// value that follows it; values that do not re-tokenize as themselves are quoted.
fn args_text(args: &[String]) -> String {
    let mut out = String::new();
    for a in args {
        out.push(' ');
        // Options (`--name`) and negations as they are; values quoted when
        // they would not read back as one value (`-x` would end the module).
        if a == "!"
            || (a.starts_with("--")
                && a.len() > 2
                && !a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\'))
        {
            out.push_str(a);
        } else {
            out.push_str(&quote(a));
        }
    }
    out
}

fn ct_state_names(states: &[CtState]) -> String {
    // iptables-save's order.
    let mut names = Vec::new();
    for (st, n) in [
        (CtState::Invalid, "INVALID"),
        (CtState::New, "NEW"),
        (CtState::Related, "RELATED"),
        (CtState::Established, "ESTABLISHED"),
        (CtState::Untracked, "UNTRACKED"),
        (CtState::Snat, "SNAT"),
        (CtState::Dnat, "DNAT"),
    ] {
        if states.contains(&st) {
            names.push(n);
        }
    }
    names.join(",")
}

pub(crate) fn ct_status_name(s: CtStatus) -> &'static str {
    match s {
        CtStatus::None => "NONE",
        CtStatus::Expected => "EXPECTED",
        CtStatus::SeenReply => "SEEN_REPLY",
        CtStatus::Assured => "ASSURED",
        CtStatus::Confirmed => "CONFIRMED",
        // Only reachable from nft input: iptables has these as --ctstate.
        CtStatus::Snat => "SNAT",
        CtStatus::Dnat => "DNAT",
    }
}

/// Flag names in the order libxt_tcp prints them.
pub(crate) const TCP_FLAGS: [(u8, &str); 8] = [
    (tcp_flag::FIN, "FIN"),
    (tcp_flag::SYN, "SYN"),
    (tcp_flag::RST, "RST"),
    (tcp_flag::PSH, "PSH"),
    (tcp_flag::ACK, "ACK"),
    (tcp_flag::URG, "URG"),
    (tcp_flag::ECE, "ECE"),
    (tcp_flag::CWR, "CWR"),
];

fn tcp_flags(bits: u8) -> String {
    if bits == 0 {
        return "NONE".into();
    }
    TCP_FLAGS
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn icmp(t: &IcmpType) -> String {
    match (t.ty, t.code) {
        (None, _) => "any".into(),
        (Some(ty), None) => ty.to_string(),
        (Some(ty), Some(c)) => format!("{ty}/{c}"),
    }
}

fn ct_tuple(t: CtTuple) -> (&'static str, u8) {
    match t {
        CtTuple::OrigSrc => ("orig", 2),
        CtTuple::OrigDst => ("orig", 3),
        CtTuple::ReplSrc => ("repl", 4),
        CtTuple::ReplDst => ("repl", 5),
    }
}

fn ct_tuple_dir(t: CtTuple) -> &'static str {
    match t {
        CtTuple::OrigSrc | CtTuple::ReplSrc => "src",
        CtTuple::OrigDst | CtTuple::ReplDst => "dst",
    }
}

fn hex_mask(value: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("0x{value:x}")
    } else {
        format!("0x{value:x}/0x{mask:x}")
    }
}

/// One match printed inside an `-m MODULE` group. Consecutive matches of one
/// module share the `-m` unless an option would repeat; `order` is the
/// module's own print order.
struct ModOpt {
    /// Empty: printed without `-m` (a second generic option, or kept text).
    module: String,
    key: &'static str,
    order: u8,
    text: String,
    /// Never shares its `-m` with another match.
    solo: bool,
}

fn opt(module: &str, key: &'static str, order: u8, text: String) -> ModOpt {
    ModOpt {
        module: module.to_string(),
        key,
        order,
        text,
        solo: false,
    }
}

fn solo(module: &str, text: String) -> ModOpt {
    ModOpt {
        module: module.to_string(),
        key: "",
        order: 0,
        text,
        solo: true,
    }
}

fn port_text(key: &'static str, p: &PortRange) -> String {
    if p.lo == p.hi {
        format!(" --{key} {}", p.lo)
    } else {
        format!(" --{key} {}:{}", p.lo, p.hi)
    }
}

/// How iptables-save prints a match: the generic options here, every
/// extension's in `ext`. Exhaustive, so a new match cannot go unprinted.
fn module_opt(m: &Match, fam: Family, proto: &str) -> ModOpt {
    let (m, neg) = m.positive();
    let cx = ext::Cx {
        proto,
        v6: fam == Family::Ip6,
        neg,
    };
    let mut o = match m {
        Match::Src(Addr::Set(_)) | Match::Dst(Addr::Set(_)) | Match::IpSet { .. } => {
            ext::set::emit(m, &cx)
        }
        // A second prefix prints as a second `-s`/`-d`, which iptables
        // refuses: it cannot have come from iptables-save.
        Match::Src(a @ (Addr::Net(_) | Addr::Net6(_))) => solo("", format!(" -s {}", addr(a))),
        Match::Dst(a @ (Addr::Net(_) | Addr::Net6(_))) => solo("", format!(" -d {}", addr(a))),
        Match::Src(_) | Match::Dst(_) => ext::iprange::emit(m, &cx),
        Match::InIface(i) => solo("", format!(" -i {}", iface(i))),
        Match::OutIface(i) => solo("", format!(" -o {}", iface(i))),
        Match::Proto(p) => solo("", format!(" -p {p}")),
        Match::ProtoNum(n) => solo("", format!(" -p {}", names::proto_name(*n))),
        Match::Fragment => solo("", " -f".into()),
        Match::SPort(v) | Match::DPort(v) if v.len() == 1 && !proto.is_empty() => {
            ext::ports::emit(m, &cx)
        }
        Match::TcpFlags { .. } => ext::ports::emit(m, &cx),
        Match::SPort(_) | Match::DPort(_) | Match::Port(_) => ext::multiport::emit(m, &cx),
        Match::CtState(_)
        | Match::CtProto(_)
        | Match::CtAddr(..)
        | Match::CtPort(..)
        | Match::CtStatus(_)
        | Match::CtDirection(_) => ext::conntrack::emit(m, &cx),
        Match::Mark { .. } | Match::ConnMark { .. } => ext::mark::emit(m, &cx),
        Match::AddrType { .. } => ext::addrtype::emit(m, &cx),
        Match::Icmp(_) | Match::Icmp6(_) => ext::icmp::emit(m, &cx),
        Match::MacSrc(_) => ext::mac::emit(m, &cx),
        Match::PktType(_) => ext::pkttype::emit(m, &cx),
        Match::Owner(_) => ext::owner::emit(m, &cx),
        Match::Ttl(..) => ext::ttl::emit(m, &cx),
        Match::Length(..) => ext::length::emit(m, &cx),
        Match::RpFilter(flags) => {
            let mut t: String = flags.iter().map(|f| format!(" --{f}")).collect();
            if neg {
                t.push_str(" --invert");
            }
            let mut o = opt("rpfilter", "rpfilter", 0, t);
            o.text.insert(0, '\u{0}');
            o
        }
        Match::Stateful { module, args } => solo(module, args_text(args)),
        Match::Unknown { text } => solo("", format!(" {text}")),
        Match::Not(inner) => return module_opt(inner, fam, proto),
        // nft-only: no iptables spelling; printed so that iptables-restore
        // refuses it rather than silently dropping a condition.
        Match::AnyOf(_) | Match::IpVersion(_) => {
            solo("", format!(" -m nft-only --match {:?}", format!("{m:?}")))
        }
    };
    // Negation goes before the option; matches that print their own `!`
    // (or, like rpfilter, spell it differently) are marked with a NUL.
    if let Some(t) = o.text.strip_prefix('\u{0}') {
        o.text = t.to_string();
    } else if neg {
        o.text.insert_str(0, " !");
    }
    o
}

/// One rule as the arguments after `-A CHAIN`.
pub fn rule_args(r: &Rule) -> String {
    rule_args_in(r, Family::Ip)
}

/// One rule as the arguments after `-A CHAIN`, for an `iptables` (Ip) or
/// `ip6tables` (Ip6) table.
pub fn rule_args_in(r: &Rule, fam: Family) -> String {
    let mut out = matches_args(r, fam);
    out.push_str(&target(&r.action, fam));
    out
}

/// The matches (and comment) of a rule, without its target.
fn matches_args(r: &Rule, fam: Family) -> String {
    let mut out = String::new();
    let mut used = vec![false; r.matches.len()];
    let mut take = |f: &dyn Fn(&Match) -> bool| -> Option<(&Match, bool)> {
        let i = r
            .matches
            .iter()
            .enumerate()
            .position(|(i, m)| !used[i] && f(m.positive().0))?;
        used[i] = true;
        Some(r.matches[i].positive())
    };
    let bang = |neg: bool| if neg { " !" } else { "" };
    // iptables-save prints the generic matches first, in this order.
    if let Some((Match::Src(a), neg)) =
        take(&|m| matches!(m, Match::Src(Addr::Net(_) | Addr::Net6(_))))
    {
        write!(out, "{} -s {}", bang(neg), addr(a)).unwrap();
    }
    if let Some((Match::Dst(a), neg)) =
        take(&|m| matches!(m, Match::Dst(Addr::Net(_) | Addr::Net6(_))))
    {
        write!(out, "{} -d {}", bang(neg), addr(a)).unwrap();
    }
    if let Some((Match::InIface(i), neg)) = take(&|m| matches!(m, Match::InIface(_))) {
        write!(out, "{} -i {}", bang(neg), iface(i)).unwrap();
    }
    if let Some((Match::OutIface(i), neg)) = take(&|m| matches!(m, Match::OutIface(_))) {
        write!(out, "{} -o {}", bang(neg), iface(i)).unwrap();
    }
    let mut proto = String::new();
    match take(&|m| matches!(m, Match::Proto(_) | Match::ProtoNum(_))) {
        Some((Match::Proto(p), neg)) => {
            write!(out, "{} -p {p}", bang(neg)).unwrap();
            proto = p.to_string();
        }
        Some((Match::ProtoNum(n), neg)) => {
            let name = names::proto_name(*n);
            write!(out, "{} -p {name}", bang(neg)).unwrap();
            // The module that has --sport/--dport for this protocol, if any.
            if matches!(*n, 132 | 33 | 136) {
                proto = name;
            }
        }
        _ => {}
    }
    if let Some((_, neg)) = take(&|m| matches!(m, Match::Fragment)) {
        write!(out, "{} -f", bang(neg)).unwrap();
    }
    // Options kept as text that belong to no module go before any `-m`,
    // where no module can take them for its own.
    for (i, m) in r.matches.iter().enumerate() {
        if let Match::Unknown { text } = m {
            if !used[i] && text.starts_with("--") {
                used[i] = true;
                write!(out, " {text}").unwrap();
            }
        }
    }
    // The rest in rule order, consecutive options of one module under one `-m`.
    let mut group: Vec<ModOpt> = Vec::new();
    let flush = |group: &mut Vec<ModOpt>, out: &mut String| {
        if let Some(first) = group.first() {
            if !first.module.is_empty() {
                write!(out, " -m {}", first.module).unwrap();
            }
            group.sort_by_key(|o| o.order);
            for o in group.iter() {
                out.push_str(&o.text);
            }
        }
        group.clear();
    };
    for (i, m) in r.matches.iter().enumerate() {
        if used[i] {
            continue;
        }
        let o = module_opt(m, fam, &proto);
        let joins = !o.solo
            && group.first().is_some_and(|g| {
                !g.solo && g.module == o.module && group.iter().all(|x| x.key != o.key)
            });
        if !joins {
            flush(&mut group, &mut out);
        }
        group.push(o);
    }
    flush(&mut group, &mut out);
    if let Some(c) = &r.comment {
        write!(out, " -m comment --comment {}", quote(c)).unwrap();
    }
    out
}

fn nat_spec(spec: &NatSpec) -> String {
    let mut s = String::new();
    let bracket = spec.ports.is_some() && spec.addrs.is_some_and(|(a, _)| a.is_ipv6());
    if let Some((a, b)) = spec.addrs {
        let one = |x: IpAddr| {
            if bracket {
                format!("[{x}]")
            } else {
                x.to_string()
            }
        };
        s.push_str(&one(a));
        if a != b {
            s.push('-');
            s.push_str(&one(b));
        }
    }
    if let Some(p) = spec.ports {
        if spec.addrs.is_some() {
            s.push(':');
        }
        if p.lo == p.hi {
            write!(s, "{}", p.lo).unwrap();
        } else {
            write!(s, "{}-{}", p.lo, p.hi).unwrap();
        }
    }
    s
}

fn nat_flags(spec: &NatSpec) -> String {
    spec.flags
        .iter()
        .map(|f| match f {
            NatFlag::Random => " --random",
            NatFlag::RandomFully => " --random-fully",
            NatFlag::Persistent => " --persistent",
        })
        .collect()
}

fn target(a: &Action, _fam: Family) -> String {
    match a {
        Action::Accept => " -j ACCEPT".into(),
        Action::Drop => " -j DROP".into(),
        Action::Return => " -j RETURN".into(),
        Action::Continue => String::new(),
        Action::Jump(c) => format!(" -j {c}"),
        Action::Goto(c) => format!(" -g {c}"),
        Action::Dnat(to) => format!(" -j DNAT --to-destination {to}"),
        Action::Masquerade => " -j MASQUERADE".into(),
        Action::CtHelper(h) => format!(" -j CT --helper {}", quote(h)),
        Action::Notrack => " -j CT --notrack".into(),
        Action::Reject(None) => " -j REJECT".into(),
        Action::Reject(Some(w)) => format!(" -j REJECT --reject-with {}", quote(w)),
        Action::Log { kind, prefix, args } => {
            let (t, p) = match kind {
                LogKind::Log => ("LOG", "--log-prefix"),
                LogKind::NfLog => ("NFLOG", "--nflog-prefix"),
                LogKind::ULog => ("ULOG", "--ulog-prefix"),
            };
            let mut s = format!(" -j {t}");
            if let Some(pre) = prefix {
                write!(s, " {p} {}", quote(pre)).unwrap();
            }
            s.push_str(&args_text(args));
            s
        }
        Action::Mark { value, mask } => format!(" -j MARK --set-xmark 0x{value:x}/0x{mask:x}"),
        Action::ConnMark(op) => match op {
            ConnMarkOp::Set { value, mask } => {
                format!(" -j CONNMARK --set-xmark 0x{value:x}/0x{mask:x}")
            }
            ConnMarkOp::Save { nfmask, ctmask } => {
                format!(" -j CONNMARK --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}")
            }
            ConnMarkOp::Restore { nfmask, ctmask } => {
                format!(" -j CONNMARK --restore-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}")
            }
        },
        Action::DnatTo(spec) => format!(
            " -j DNAT --to-destination {}{}",
            nat_spec(spec),
            nat_flags(spec)
        ),
        Action::Snat(spec) => format!(" -j SNAT --to-source {}{}", nat_spec(spec), nat_flags(spec)),
        Action::MasqueradeTo(spec) | Action::Redirect(spec) => {
            let t = if matches!(a, Action::Redirect(_)) {
                "REDIRECT"
            } else {
                "MASQUERADE"
            };
            let mut s = format!(" -j {t}");
            if spec.ports.is_some() {
                write!(s, " --to-ports {}", nat_spec(spec)).unwrap();
            }
            s.push_str(&nat_flags(spec));
            s
        }
        Action::Netmap(to) => format!(" -j NETMAP --to {}", addr(to)),
        Action::Passthrough { target, args } => format!(" -j {target}{}", args_text(args)),
        Action::Unknown { text } => format!(" {text}"),
    }
}

/// The whole ruleset as an iptables-restore file. `header` lines become `#`
/// comments. IPv6 tables get an `ip6tables-save` marker line, so the parser
/// knows their family even when no rule names an address.
pub fn emit(rs: &Ruleset, header: &[String]) -> String {
    let mut out = String::new();
    for h in header {
        // Defence in depth: a header line can never become a rule line.
        writeln!(out, "# {}", crate::name::comment(h)).unwrap();
    }
    for t in &rs.tables {
        if t.family == Family::Ip6 {
            writeln!(out, "# Generated by ip6tables-save").unwrap();
        }
        writeln!(out, "*{}", t.name).unwrap();
        for c in &t.chains {
            let p = c.base.as_ref().map_or("-", |b| policy(b.policy));
            writeln!(out, ":{} {} [0:0]", c.name, p).unwrap();
        }
        for c in &t.chains {
            for r in &c.rules {
                // iptables has one target per rule: an nft rule's statements
                // before its verdict become rules of their own, same matches.
                for e in &r.effects {
                    let m = matches_args(r, t.family);
                    writeln!(out, "-A {}{m}{}", c.name, target(e, t.family)).unwrap();
                }
                if let Some(n) = &r.counters {
                    write!(out, "[{}:{}] ", n.packets, n.bytes).unwrap();
                }
                writeln!(out, "-A {}{}", c.name, rule_args_in(r, t.family)).unwrap();
            }
        }
        writeln!(out, "COMMIT").unwrap();
    }
    out
}

/// Split a port list so each piece fits one multiport match.
pub fn multiport_chunks(v: &[PortRange]) -> Vec<Vec<PortRange>> {
    let mut out: Vec<Vec<PortRange>> = Vec::new();
    let mut cur: Vec<PortRange> = Vec::new();
    let mut used = 0;
    for r in v {
        let cost = if r.lo == r.hi { 1 } else { 2 };
        if used + cost > MULTIPORT_MAX {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(*r);
        used += cost;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defence in depth behind `name::interface`: an interface name or a
    /// comment with a newline never becomes a line of its own.
    #[test]
    fn hostile_text_stays_in_its_rule() {
        let r = Rule::new(
            vec![Match::InIface("eth0\n-A INPUT -j ACCEPT\n\t".into())],
            Action::Accept,
        )
        .with_comment("x\nCOMMIT");
        let rs = Ruleset {
            tables: vec![Table {
                family: Family::Ip,
                name: "filter".into(),
                sets: vec![],
                ct_helpers: vec![],
                chains: vec![Chain {
                    name: "INPUT".into(),
                    base: None,
                    rules: vec![r],
                }],
            }],
        };
        let text = emit(&rs, &["from a\nCOMMIT".into()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("-A ")).count(),
            1,
            "{text}"
        );
        assert_eq!(
            lines.iter().filter(|l| **l == "COMMIT").count(),
            1,
            "{text}"
        );
        // Our parser, like iptables-restore, refuses the escaped name: a bad
        // file, never a different ruleset.
        if let Ok(p) = parse("t.rules", &text) {
            assert_eq!(p.ruleset.rules().count(), 1);
        }
    }

    #[test]
    fn canonical_rule_text() {
        let r = Rule::new(
            vec![
                Match::Proto(Proto::Udp),
                Match::InIface("eth0".into()),
                Match::Src(Addr::Net("192.0.2.2/32".parse().unwrap())),
                Match::SPort(vec![PortRange::new(840, 860)]),
                Match::DPort(vec![PortRange::single(10080)]),
            ],
            Action::Accept,
        )
        .with_comment("amanda check,backup");
        assert_eq!(
            rule_args(&r),
            " -s 192.0.2.2/32 -i eth0 -p udp -m udp --sport 840:860 --dport 10080 -m comment --comment \"amanda check,backup\" -j ACCEPT"
        );
    }

    #[test]
    fn multiport_when_several_ports() {
        let r = Rule::new(
            vec![
                Match::Proto(Proto::Tcp),
                Match::SPort(vec![PortRange::new(512, 1023)]),
                Match::DPort(vec![PortRange::single(10082), PortRange::single(10083)]),
            ],
            Action::Accept,
        );
        assert_eq!(
            rule_args(&r),
            " -p tcp -m tcp --sport 512:1023 -m multiport --dports 10082,10083 -j ACCEPT"
        );
    }

    #[test]
    fn ports_without_a_known_protocol_use_multiport() {
        // Found by fuzzing: `-p pcp` is kept as unknown text, and a port
        // match then has no protocol module to print under.
        let r = Rule::new(
            vec![
                Match::Unknown {
                    text: "-p pcp".into(),
                },
                Match::DPort(vec![PortRange::single(22)]),
            ],
            Action::Accept,
        );
        assert_eq!(rule_args(&r), " -p pcp -m multiport --dports 22 -j ACCEPT");
        // And `-p icmp -m tcp --sport 80` (iptables would refuse it, the
        // parser does not): icmp has no --sport.
        let r = Rule::new(
            vec![
                Match::ProtoNum(1),
                Match::SPort(vec![PortRange::single(80)]),
            ],
            Action::Accept,
        );
        assert_eq!(rule_args(&r), " -p icmp -m multiport --sports 80 -j ACCEPT");
    }

    #[test]
    fn chunks_respect_multiport_limit() {
        let v: Vec<PortRange> = (0..10)
            .map(|i| PortRange::new(1000 + i * 10, 1001 + i * 10))
            .collect();
        let c = multiport_chunks(&v);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].len(), 7);
        assert_eq!(c.concat(), v);
    }
}
