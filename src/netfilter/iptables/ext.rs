//! One section per iptables match extension: how iptables-restore reads its
//! options (`parse`) and how iptables-save prints them (`emit`), side by
//! side, so the two halves of one grammar are changed together and the
//! round trip `parse(emit(ir)) == ir` has one place to look per extension.
//! Generic options (`-s -d -i -o -p -f`) stay with the rule parser and the
//! rule printer; rpfilter's flags form one match and are read whole
//! (`RuleParser::rpfilter`).

use super::parse::{
    ct_tuple_of, err, parse_addr, parse_icmp, parse_mark, parse_port_range, parse_tcp_flags, plain,
    AddrError, Res, RuleParser,
};
use super::{
    as_range, ct_state_names, ct_status_name, ct_tuple, ct_tuple_dir, hex_mask, icmp, opt,
    port_text, ports, short_addr, solo, tcp_flags, ModOpt,
};
use crate::netfilter::names::{self, ADDR_TYPES};
use crate::netfilter::*;

/// Reads one option of the extension; `Ok(false)`: it has no such option.
pub(super) type Parse = fn(&mut RuleParser, &str, &str, usize, &mut bool) -> Res<bool>;

/// What printing a match needs beyond the match: the rule's protocol (whose
/// implicit module prints single ports), the table's family, and whether the
/// match is negated (for the extensions that print their own `!`).
pub(super) struct Cx<'a> {
    pub proto: &'a str,
    pub v6: bool,
    pub neg: bool,
}

/// Module name → its option reader.
pub(super) fn parser(module: &str) -> Option<Parse> {
    let p: Parse = match module {
        "tcp" | "udp" | "sctp" | "dccp" | "udplite" => ports::parse,
        "multiport" => multiport::parse,
        "state" | "conntrack" => conntrack::parse,
        "iprange" => iprange::parse,
        "set" => set::parse,
        "addrtype" => addrtype::parse,
        "mark" | "connmark" => mark::parse,
        "icmp" | "icmp6" => icmp::parse,
        "comment" => comment::parse,
        "mac" => mac::parse,
        "pkttype" => pkttype::parse,
        "owner" => owner::parse,
        "ttl" | "hl" => ttl::parse,
        "length" => length::parse,
        _ => return None,
    };
    Some(p)
}

/// A match that reached the wrong extension's printer: printed so that
/// iptables-restore refuses it, never silently dropped.
fn misplaced(m: &Match) -> ModOpt {
    super::solo("", format!(" -m nft-only --match {:?}", format!("{m:?}")))
}

/// The port modules (tcp, udp, sctp, dccp, udplite): one source or destination port range, and tcp's flags.
pub(super) mod ports {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        let ports_module = matches!(module, "tcp" | "udp" | "sctp" | "dccp" | "udplite");
        match (module, opt) {
            (_, "sport" | "source-port" | "dport" | "destination-port") if ports_module => {
                let (v, span) = p.value(opt_at, neg)?;
                let Some(r) = parse_port_range(&v, ':') else {
                    return p.bad_or_unknown(opt_at, &v, span, "expected PORT or PORT:PORT");
                };
                let m = if opt.starts_with('s') {
                    Match::SPort(vec![r])
                } else {
                    Match::DPort(vec![r])
                };
                p.push(m, *neg);
            }
            ("tcp", "tcp-flags") => {
                let (mask, span) = p.value(opt_at, neg)?;
                let Some(w) = p.next() else {
                    return err(span, "`--tcp-flags` needs MASK and SET", "only one follows");
                };
                let (set, span2) = (w.s.clone(), w.span.clone());
                let (Some(mask), Some(set)) = (parse_tcp_flags(&mask), parse_tcp_flags(&set))
                else {
                    return err(
                        span.start..span2.end,
                        "bad TCP flags",
                        "expected e.g. FIN,SYN,RST,ACK SYN",
                    );
                };
                p.push(Match::TcpFlags { mask, set }, *neg);
            }
            ("tcp", "syn") => {
                use tcp_flag::*;
                p.push(
                    Match::TcpFlags {
                        mask: FIN | SYN | RST | ACK,
                        set: SYN,
                    },
                    *neg,
                );
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, cx: &Cx) -> ModOpt {
        let proto = cx.proto;
        match m {
            // Without a known protocol, multiport still reads back the same.
            Match::SPort(v) if v.len() == 1 && !proto.is_empty() => {
                opt(proto, "sport", 0, port_text("sport", &v[0]))
            }
            Match::DPort(v) if v.len() == 1 && !proto.is_empty() => {
                opt(proto, "dport", 1, port_text("dport", &v[0]))
            }
            Match::TcpFlags { mask, set } => opt(
                "tcp",
                "tcp-flags",
                2,
                format!(" --tcp-flags {} {}", tcp_flags(*mask), tcp_flags(*set)),
            ),
            _ => misplaced(m),
        }
    }
}

/// Port lists (`--dports 1,2:3`), or a single range without a known protocol.
pub(super) mod multiport {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("multiport", "sports" | "source-ports" | "dports" | "destination-ports" | "ports") => {
                let (v, span) = p.value(opt_at, neg)?;
                let mut list = Vec::new();
                for part in v.split(',') {
                    match parse_port_range(part, ':') {
                        Some(r) => list.push(r),
                        None => {
                            return p.bad_or_unknown(
                                opt_at,
                                &v,
                                span,
                                "expected PORT[,PORT:PORT...]",
                            )
                        }
                    }
                }
                let m = match opt {
                    "ports" => Match::Port(list),
                    o if o.starts_with('s') => Match::SPort(list),
                    _ => Match::DPort(list),
                };
                p.push(m, *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::SPort(v) => opt("multiport", "multi", 0, format!(" --sports {}", ports(v))),
            Match::DPort(v) => opt("multiport", "multi", 0, format!(" --dports {}", ports(v))),
            Match::Port(v) => opt("multiport", "multi", 0, format!(" --ports {}", ports(v))),
            _ => misplaced(m),
        }
    }
}

/// `conntrack` and the older `state`: state, protocol, tuple addresses and ports, status, direction.
pub(super) mod conntrack {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("state", "state") | ("conntrack", "ctstate") => {
                let (v, span) = p.value(opt_at, neg)?;
                let mut states = Vec::new();
                for s in v.split(',') {
                    states.push(match s {
                        "INVALID" => CtState::Invalid,
                        "ESTABLISHED" => CtState::Established,
                        "RELATED" => CtState::Related,
                        "NEW" => CtState::New,
                        "UNTRACKED" => CtState::Untracked,
                        "SNAT" => CtState::Snat,
                        "DNAT" => CtState::Dnat,
                        _ => return err(
                            span,
                            format!("unknown state `{s}`"),
                            "expected NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED, SNAT or DNAT",
                        ),
                    });
                }
                states.sort();
                states.dedup();
                p.push(Match::CtState(states), *neg);
            }
            ("conntrack", "ctproto") => {
                let (v, _) = p.value(opt_at, neg)?;
                match names::proto_number(&v) {
                    Some(n) => p.push(Match::CtProto(n), *neg),
                    None => p.unknown_opt(opt_at),
                }
            }
            ("conntrack", "ctorigsrc" | "ctorigdst" | "ctreplsrc" | "ctrepldst") => {
                let (v, span) = p.value(opt_at, neg)?;
                let t = ct_tuple_of(opt);
                match parse_addr(&v) {
                    Ok(a) => {
                        if let Some(v6) = a.is_v6() {
                            p.note_family(v6, span);
                        }
                        p.push(Match::CtAddr(t, a), *neg);
                    }
                    Err(AddrError::Bad) => {
                        return err(
                            span,
                            format!("bad address `{v}`"),
                            "expected ADDRESS[/PREFIX]",
                        )
                    }
                    Err(_) => p.unknown_opt(opt_at),
                }
            }
            (
                "conntrack",
                "ctorigsrcport" | "ctorigdstport" | "ctreplsrcport" | "ctrepldstport",
            ) => {
                let (v, span) = p.value(opt_at, neg)?;
                let t = ct_tuple_of(&opt[..opt.len() - 4]);
                match parse_port_range(&v, ':') {
                    Some(r) => p.push(Match::CtPort(t, r), *neg),
                    None => {
                        return p.bad_or_unknown(opt_at, &v, span, "expected PORT or PORT:PORT")
                    }
                }
            }
            ("conntrack", "ctstatus") => {
                let (v, span) = p.value(opt_at, neg)?;
                let mut st = Vec::new();
                for s in v.split(',') {
                    st.push(match s {
                        "NONE" => CtStatus::None,
                        "EXPECTED" => CtStatus::Expected,
                        "SEEN_REPLY" => CtStatus::SeenReply,
                        "ASSURED" => CtStatus::Assured,
                        "CONFIRMED" => CtStatus::Confirmed,
                        _ => {
                            return err(
                                span,
                                format!("unknown status `{s}`"),
                                "expected NONE, EXPECTED, SEEN_REPLY, ASSURED or CONFIRMED",
                            )
                        }
                    });
                }
                st.sort();
                st.dedup();
                p.push(Match::CtStatus(st), *neg);
            }
            ("conntrack", "ctdir") => {
                let (v, span) = p.value(opt_at, neg)?;
                let d = match v.as_str() {
                    "ORIGINAL" => CtDirection::Original,
                    "REPLY" => CtDirection::Reply,
                    _ => return err(span, "bad direction", "expected ORIGINAL or REPLY"),
                };
                p.push(Match::CtDirection(d), *neg);
            }
            ("conntrack", "ctexpire") => {
                let (v, _) = p.value(opt_at, neg)?;
                let mut args = vec![];
                if *neg {
                    args.push("!".to_string());
                }
                args.extend(["--ctexpire".to_string(), v]);
                p.matches.push(Match::Stateful {
                    module: "conntrack".into(),
                    args,
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::CtState(states) => opt(
                "conntrack",
                "ctstate",
                0,
                format!(" --ctstate {}", ct_state_names(states)),
            ),
            Match::CtProto(n) => opt("conntrack", "ctproto", 1, format!(" --ctproto {n}")),
            Match::CtAddr(t, a) => {
                let (d, order) = ct_tuple(*t);
                let key = match t {
                    CtTuple::OrigSrc => "ctorigsrc",
                    CtTuple::OrigDst => "ctorigdst",
                    CtTuple::ReplSrc => "ctreplsrc",
                    CtTuple::ReplDst => "ctrepldst",
                };
                opt(
                    "conntrack",
                    key,
                    order,
                    format!(" --ct{d}{} {}", ct_tuple_dir(*t), short_addr(a)),
                )
            }
            Match::CtPort(t, p) => {
                let (d, order) = ct_tuple(*t);
                let key = match t {
                    CtTuple::OrigSrc => "ctorigsrcport",
                    CtTuple::OrigDst => "ctorigdstport",
                    CtTuple::ReplSrc => "ctreplsrcport",
                    CtTuple::ReplDst => "ctrepldstport",
                };
                let dir = ct_tuple_dir(*t);
                let text = if p.lo == p.hi {
                    format!(" --ct{d}{dir}port {}", p.lo)
                } else {
                    format!(" --ct{d}{dir}port {}:{}", p.lo, p.hi)
                };
                opt("conntrack", key, order + 4, text)
            }
            Match::CtStatus(v) => opt(
                "conntrack",
                "ctstatus",
                10,
                format!(
                    " --ctstatus {}",
                    v.iter()
                        .map(|s| ct_status_name(*s))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
            Match::CtDirection(d) => opt(
                "conntrack",
                "ctdir",
                12,
                match d {
                    CtDirection::Original => " --ctdir ORIGINAL".into(),
                    CtDirection::Reply => " --ctdir REPLY".into(),
                },
            ),
            _ => misplaced(m),
        }
    }
}

/// Address ranges.
pub(super) mod iprange {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("iprange", "src-range" | "dst-range") => {
                let (v, span) = p.value(opt_at, neg)?;
                let Some((a, b)) = v.split_once('-').and_then(|(a, b)| {
                    let a: IpAddr = a.parse().ok()?;
                    let b: IpAddr = b.parse().ok()?;
                    (a.is_ipv6() == b.is_ipv6()).then_some((a, b))
                }) else {
                    return err(span, format!("bad range `{v}`"), "expected ADDRESS-ADDRESS");
                };
                p.note_family(a.is_ipv6(), span);
                let r = Addr::Range(a, b);
                let m = if opt.starts_with('s') {
                    Match::Src(r)
                } else {
                    Match::Dst(r)
                };
                p.push(m, *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Src(a) => match as_range(a) {
                Some((x, y)) => opt("iprange", "src-range", 0, format!(" --src-range {x}-{y}")),
                None => solo("", String::new()),
            },
            Match::Dst(a) => match as_range(a) {
                Some((x, y)) => opt("iprange", "dst-range", 1, format!(" --dst-range {x}-{y}")),
                None => solo("", String::new()),
            },
            _ => misplaced(m),
        }
    }
}

/// Ipset matches.
pub(super) mod set {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("set", "match-set") => {
                let (name, span) = p.value(opt_at, neg)?;
                if !plain(&name) {
                    return err(span, format!("bad set name `{name}`"), "here");
                }
                let Some(w) = p.next() else {
                    return err(
                        p.end_span(),
                        "`--match-set` needs NAME and FLAGS",
                        "e.g. `src`",
                    );
                };
                let (flags, span) = (w.s.clone(), w.span.clone());
                let mut dirs = Vec::new();
                for f in flags.split(',') {
                    dirs.push(match f {
                        "src" => Dir::Src,
                        "dst" => Dir::Dst,
                        _ => {
                            return err(span, format!("bad set flag `{f}`"), "expected src or dst")
                        }
                    });
                }
                let m = match dirs.as_slice() {
                    [Dir::Src] => Match::Src(Addr::Set(name)),
                    [Dir::Dst] => Match::Dst(Addr::Set(name)),
                    _ => Match::IpSet { name, dirs },
                };
                p.push(m, *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Src(Addr::Set(s)) => opt("set", "match-set", 0, format!(" --match-set {s} src")),
            Match::Dst(Addr::Set(s)) => opt("set", "match-set", 0, format!(" --match-set {s} dst")),
            Match::IpSet { name, dirs } => {
                let d: Vec<&str> = dirs
                    .iter()
                    .map(|d| match d {
                        Dir::Src => "src",
                        Dir::Dst => "dst",
                    })
                    .collect();
                opt(
                    "set",
                    "match-set",
                    0,
                    format!(" --match-set {name} {}", d.join(",")),
                )
            }
            _ => misplaced(m),
        }
    }
}

/// Address types, optionally limited to the packet's interface.
pub(super) mod addrtype {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("addrtype", "src-type" | "dst-type") => {
                let (v, span) = p.value(opt_at, neg)?;
                let mut types = Vec::new();
                for t in v.split(',') {
                    match crate::netfilter::names::ADDR_TYPES
                        .iter()
                        .find(|(_, n)| n.eq_ignore_ascii_case(t))
                    {
                        Some((t, _)) => types.push(*t),
                        None => {
                            return err(
                                span,
                                format!("unknown address type `{t}`"),
                                "expected e.g. LOCAL, BROADCAST",
                            )
                        }
                    }
                }
                types.sort();
                types.dedup();
                let dir = if opt.starts_with('s') {
                    Dir::Src
                } else {
                    Dir::Dst
                };
                p.push(
                    Match::AddrType {
                        dir,
                        types,
                        limit_iface: None,
                    },
                    *neg,
                );
            }
            ("addrtype", "limit-iface-in" | "limit-iface-out") => {
                let d = if opt.ends_with("in") {
                    Dir::Src
                } else {
                    Dir::Dst
                };
                // Applies to the module's type matches; iptables-save prints it after them.
                let mut found = false;
                for m in p.matches.iter_mut().rev() {
                    let inner = match m {
                        Match::Not(b) => b.as_mut(),
                        m => m,
                    };
                    if let Match::AddrType { limit_iface, .. } = inner {
                        *limit_iface = Some(d);
                        found = true;
                        break;
                    }
                }
                if !found {
                    p.unknown_opt(opt_at);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, cx: &Cx) -> ModOpt {
        let bang = if cx.neg { " !" } else { "" };
        match m {
            Match::AddrType {
                dir,
                types,
                limit_iface,
            } => {
                let names: Vec<&str> = ADDR_TYPES
                    .iter()
                    .filter(|(t, _)| types.contains(t))
                    .map(|(_, n)| *n)
                    .collect();
                let (key, order, flag) = match dir {
                    Dir::Src => ("src-type", 0, "--src-type"),
                    Dir::Dst => ("dst-type", 1, "--dst-type"),
                };
                let mut text = format!("{bang} {flag} {}", names.join(","));
                match limit_iface {
                    Some(Dir::Src) => text.push_str(" --limit-iface-in"),
                    Some(Dir::Dst) => text.push_str(" --limit-iface-out"),
                    None => {}
                }
                let mut o = opt("addrtype", key, order, text);
                o.text.insert(0, '\u{0}');
                o
            }
            _ => misplaced(m),
        }
    }
}

/// Packet and connection marks.
pub(super) mod mark {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("mark" | "connmark", "mark") => {
                let (v, span) = p.value(opt_at, neg)?;
                let Some((value, mask)) = parse_mark(&v) else {
                    return err(span, format!("bad mark `{v}`"), "expected VALUE[/MASK]");
                };
                let m = if module == "mark" {
                    Match::Mark { value, mask }
                } else {
                    Match::ConnMark { value, mask }
                };
                p.push(m, *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Mark { value, mask } => opt(
                "mark",
                "mark",
                0,
                format!(" --mark {}", hex_mask(*value, *mask)),
            ),
            Match::ConnMark { value, mask } => opt(
                "connmark",
                "mark",
                0,
                format!(" --mark {}", hex_mask(*value, *mask)),
            ),
            _ => misplaced(m),
        }
    }
}

/// ICMP and ICMPv6 types.
pub(super) mod icmp {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("icmp", "icmp-type") | ("icmp6", "icmpv6-type") => {
                let v6 = module == "icmp6";
                let (v, span) = p.value(opt_at, neg)?;
                let Some(t) = parse_icmp(&v, v6) else {
                    return err(
                        span,
                        format!("unknown ICMP type `{v}`"),
                        "expected TYPE[/CODE] or a name",
                    );
                };
                p.note_family(v6, span);
                p.push(if v6 { Match::Icmp6(t) } else { Match::Icmp(t) }, *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Icmp(t) => opt("icmp", "icmp-type", 0, format!(" --icmp-type {}", icmp(t))),
            Match::Icmp6(t) => opt(
                "icmp6",
                "icmpv6-type",
                0,
                format!(" --icmpv6-type {}", icmp(t)),
            ),
            _ => misplaced(m),
        }
    }
}

/// A rule's comment: kept on the rule, printed with it.
pub(super) mod comment {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("comment", "comment") => {
                let (v, _) = p.value(opt_at, neg)?;
                p.comment = Some(match p.comment.take() {
                    Some(c) => format!("{c}; {v}"),
                    None => v,
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The source MAC address.
pub(super) mod mac {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("mac", "mac-source") => {
                let (v, span) = p.value(opt_at, neg)?;
                if !plain(&v) {
                    return err(span, format!("bad MAC address `{v}`"), "here");
                }
                p.push(Match::MacSrc(v.to_ascii_lowercase()), *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::MacSrc(m) => opt(
                "mac",
                "mac-source",
                0,
                format!(" --mac-source {}", m.to_ascii_uppercase()),
            ),
            _ => misplaced(m),
        }
    }
}

/// Link-layer packet type.
pub(super) mod pkttype {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("pkttype", "pkt-type") => {
                let (v, span) = p.value(opt_at, neg)?;
                let t = match v.to_ascii_lowercase().as_str() {
                    "unicast" | "host" => PktType::Unicast,
                    "broadcast" => PktType::Broadcast,
                    "multicast" => PktType::Multicast,
                    _ => {
                        return err(
                            span,
                            "bad packet type",
                            "expected unicast, broadcast or multicast",
                        )
                    }
                };
                p.push(Match::PktType(t), *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::PktType(t) => opt(
                "pkttype",
                "pkt-type",
                0,
                format!(
                    " --pkt-type {}",
                    match t {
                        PktType::Unicast => "unicast",
                        PktType::Broadcast => "broadcast",
                        PktType::Multicast => "multicast",
                    }
                ),
            ),
            _ => misplaced(m),
        }
    }
}

/// The local socket's owner (OUTPUT and POSTROUTING).
pub(super) mod owner {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("owner", "uid-owner" | "gid-owner") => {
                let (v, _) = p.value(opt_at, neg)?;
                let range = match v.split_once('-') {
                    Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
                    None => v.parse().ok().map(|a: u32| (a, a)),
                };
                match range {
                    Some((a, b)) if opt.starts_with('u') => {
                        p.push(Match::Owner(Owner::Uid(a, b)), *neg)
                    }
                    Some((a, b)) => p.push(Match::Owner(Owner::Gid(a, b)), *neg),
                    // A user or group name: resolved on the host, not here.
                    None => p.unknown_opt(opt_at),
                }
            }
            ("owner", "socket-exists") => p.push(Match::Owner(Owner::SocketExists), *neg),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Owner(o) => {
                let range = |a: u32, b: u32| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                };
                match o {
                    Owner::Uid(a, b) => {
                        opt("owner", "uid", 0, format!(" --uid-owner {}", range(*a, *b)))
                    }
                    Owner::Gid(a, b) => {
                        opt("owner", "gid", 1, format!(" --gid-owner {}", range(*a, *b)))
                    }
                    Owner::SocketExists => opt("owner", "socket", 2, " --socket-exists".into()),
                }
            }
            _ => misplaced(m),
        }
    }
}

/// IPv4 TTL and IPv6 hop limit.
pub(super) mod ttl {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("ttl", "ttl-eq" | "ttl-lt" | "ttl-gt") | ("hl", "hl-eq" | "hl-lt" | "hl-gt") => {
                let (v, span) = p.value(opt_at, neg)?;
                let Ok(n) = v.parse::<u8>() else {
                    return err(span, "bad TTL", "expected 0-255");
                };
                let cmp = match &opt[opt.len() - 2..] {
                    "eq" => Cmp::Eq,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Gt,
                };
                p.note_family(module == "hl", span);
                p.push(Match::Ttl(cmp, n), *neg);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, cx: &Cx) -> ModOpt {
        let v6 = cx.v6;
        match m {
            Match::Ttl(cmp, v) => {
                let (module, key) = if v6 { ("hl", "hl") } else { ("ttl", "ttl") };
                let op = match cmp {
                    Cmp::Eq => "eq",
                    Cmp::Lt => "lt",
                    Cmp::Gt => "gt",
                };
                opt(module, "ttl", 0, format!(" --{key}-{op} {v}"))
            }
            _ => misplaced(m),
        }
    }
}

/// Packet length.
pub(super) mod length {
    use super::*;

    pub(in crate::netfilter::iptables) fn parse(
        p: &mut RuleParser,
        module: &str,
        opt: &str,
        opt_at: usize,
        neg: &mut bool,
    ) -> Res<bool> {
        match (module, opt) {
            ("length", "length") => {
                let (v, span) = p.value(opt_at, neg)?;
                match parse_port_range(&v, ':') {
                    Some(r) => p.push(Match::Length(r.lo, r.hi), *neg),
                    None => return err(span, "bad length", "expected N or N:M"),
                }
            }

            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(in crate::netfilter::iptables) fn emit(m: &Match, _cx: &Cx) -> ModOpt {
        match m {
            Match::Length(a, b) => {
                let t = if a == b {
                    format!(" --length {a}")
                } else {
                    format!(" --length {a}:{b}")
                };
                opt("length", "length", 0, t)
            }
            _ => misplaced(m),
        }
    }
}
