//! `parse(emit(ir)) == ir` for random rulesets over everything the IR can
//! say in iptables-save syntax (smoltcp's wire habit: one representation,
//! a parse and an emit that round-trip). Equality is up to
//! `Ruleset::canonical`: the order of stateless matches and the origin lines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use amwall::netfilter::*;
use amwall::ports::{PortRange, Proto};
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

fn port_range() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)))
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn net(six: bool) -> BoxedStrategy<Addr> {
    if six {
        (v6(), 0u8..=128)
            .prop_map(|(a, p)| Addr::Net6(Ipv6Net::new(a, p).unwrap().trunc()))
            .boxed()
    } else {
        (v4(), 0u8..=32)
            .prop_map(|(a, p)| Addr::Net(Ipv4Net::new(a, p).unwrap().trunc()))
            .boxed()
    }
}

fn ip(six: bool) -> BoxedStrategy<IpAddr> {
    if six {
        v6().prop_map(IpAddr::V6).boxed()
    } else {
        v4().prop_map(IpAddr::V4).boxed()
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.]{0,10}"
}

/// A comment or log prefix: printable text, quoted as needed (a lone `!`
/// is as ambiguous to iptables-restore as to us, so it is left out).
fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,20}".prop_filter("a lone ! reads as negation", |s| s != "!")
}

fn sorted<T: Ord + Clone>(v: Vec<T>) -> Vec<T> {
    let mut v = v;
    v.sort();
    v.dedup();
    v
}

/// A protocol, and the matches that only make sense with it.
fn proto_and_matches(six: bool) -> BoxedStrategy<Vec<Match>> {
    let ports = prop_oneof![
        vec(port_range(), 1..4).prop_map(Match::SPort),
        vec(port_range(), 1..4).prop_map(Match::DPort),
        vec(port_range(), 2..4).prop_map(Match::Port),
    ];
    let tcp = (
        vec(ports.clone(), 0..3),
        proptest::option::of((any::<u8>(), any::<u8>())),
    )
        .prop_map(|(mut m, flags)| {
            m.insert(0, Match::Proto(Proto::Tcp));
            if let Some((mask, set)) = flags {
                m.push(Match::TcpFlags { mask, set });
            }
            m
        });
    let udp = vec(ports.clone(), 0..3).prop_map(|mut m| {
        m.insert(0, Match::Proto(Proto::Udp));
        m
    });
    let sctp = vec(ports, 0..2).prop_map(|mut m| {
        m.insert(0, Match::ProtoNum(132));
        m
    });
    let icmp_type = (
        proptest::option::of(any::<u8>()),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(ty, code, with_code)| IcmpType {
            ty,
            code: ty.and(with_code.then_some(code)),
        });
    let icmp = proptest::option::of(icmp_type).prop_map(move |t| {
        let (p, m): (u8, fn(IcmpType) -> Match) = if six {
            (58, Match::Icmp6)
        } else {
            (1, Match::Icmp)
        };
        let mut v = vec![Match::ProtoNum(p)];
        v.extend(t.map(m));
        v
    });
    let other = select(vec![47u8, 50, 51, 2]).prop_map(|n| vec![Match::ProtoNum(n)]);
    prop_oneof![Just(vec![]), tcp, udp, sctp, icmp, other].boxed()
}

/// Matches that need no protocol.
fn free_match(six: bool) -> BoxedStrategy<Match> {
    let tuple = select(vec![
        CtTuple::OrigSrc,
        CtTuple::OrigDst,
        CtTuple::ReplSrc,
        CtTuple::ReplDst,
    ]);
    let states = subsequence(
        vec![
            CtState::Invalid,
            CtState::Established,
            CtState::Related,
            CtState::New,
            CtState::Untracked,
            CtState::Snat,
            CtState::Dnat,
        ],
        1..4,
    );
    let addr_types = subsequence(
        vec![
            AddrType::Unspec,
            AddrType::Unicast,
            AddrType::Local,
            AddrType::Broadcast,
            AddrType::Anycast,
            AddrType::Multicast,
            AddrType::Blackhole,
            AddrType::Unreachable,
            AddrType::Prohibit,
            AddrType::Throw,
            AddrType::Nat,
            AddrType::Xresolve,
        ],
        1..3,
    );
    let dir = select(vec![Dir::Src, Dir::Dst]);
    let range = (ip(six), ip(six)).prop_map(|(a, b)| Addr::Range(a, b));
    prop_oneof![
        states.prop_map(|s| Match::CtState(sorted(s))),
        any::<u8>().prop_map(Match::CtProto),
        (tuple.clone(), net(six)).prop_map(|(t, a)| Match::CtAddr(t, a)),
        (tuple, port_range()).prop_map(|(t, p)| Match::CtPort(t, p)),
        subsequence(
            vec![
                CtStatus::None,
                CtStatus::Expected,
                CtStatus::SeenReply,
                CtStatus::Assured,
                CtStatus::Confirmed
            ],
            1..3
        )
        .prop_map(|s| Match::CtStatus(sorted(s))),
        select(vec![CtDirection::Original, CtDirection::Reply]).prop_map(Match::CtDirection),
        (any::<u32>(), any::<u32>()).prop_map(|(value, mask)| Match::Mark { value, mask }),
        (any::<u32>(), any::<u32>()).prop_map(|(value, mask)| Match::ConnMark { value, mask }),
        (dir.clone(), addr_types, proptest::option::of(dir)).prop_map(|(dir, t, limit_iface)| {
            Match::AddrType {
                dir,
                types: sorted(t),
                limit_iface,
            }
        }),
        name().prop_map(|n| Match::Src(Addr::Set(n))),
        name().prop_map(|n| Match::Dst(Addr::Set(n))),
        (name(), vec(select(vec![Dir::Src, Dir::Dst]), 2..4))
            .prop_map(|(name, dirs)| Match::IpSet { name, dirs }),
        range.clone().prop_map(Match::Src),
        range.prop_map(Match::Dst),
        vec(any::<u8>(), 6).prop_map(|b| Match::MacSrc(
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        )),
        select(vec![
            PktType::Unicast,
            PktType::Broadcast,
            PktType::Multicast
        ])
        .prop_map(Match::PktType),
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| Match::Owner(Owner::Uid(a.min(b), a.max(b)))),
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| Match::Owner(Owner::Gid(a.min(b), a.max(b)))),
        Just(Match::Owner(Owner::SocketExists)),
        (select(vec![Cmp::Eq, Cmp::Lt, Cmp::Gt]), any::<u8>()).prop_map(|(c, v)| Match::Ttl(c, v)),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Match::Length(a.min(b), a.max(b))),
        subsequence(vec!["loose", "validmark", "accept-local"], 0..3)
            .prop_map(|f| Match::RpFilter(f.into_iter().map(String::from).collect())),
        Just(Match::Fragment),
    ]
    .boxed()
}

fn negatable(m: Match) -> bool {
    // Fragment is IPv4 only; the rest can all be negated in iptables.
    !matches!(m, Match::Fragment)
}

/// Stateful and unknown matches: kept as text.
fn text_match() -> BoxedStrategy<Match> {
    prop_oneof![
        (1u32..100).prop_map(|n| Match::Stateful {
            module: "limit".into(),
            args: vec!["--limit".into(), format!("{n}/min")]
        }),
        name().prop_map(|n| Match::Stateful {
            module: "recent".into(),
            args: vec!["--update".into(), "--name".into(), n, "--rsource".into()]
        }),
        (1u32..100).prop_map(|n| Match::Unknown {
            text: format!("-m rt --rt-type 0 --rt-segsleft {n}")
        }),
    ]
    .boxed()
}

fn nat_spec(six: bool, with_addr: bool) -> BoxedStrategy<NatSpec> {
    let addrs = if with_addr {
        (ip(six), ip(six)).prop_map(|(a, b)| Some((a, b))).boxed()
    } else {
        Just(None).boxed()
    };
    (
        addrs,
        proptest::option::of(port_range()),
        subsequence(
            vec![NatFlag::Random, NatFlag::RandomFully, NatFlag::Persistent],
            0..3,
        ),
    )
        .prop_map(|(addrs, ports, flags)| NatSpec {
            addrs,
            ports,
            flags: sorted(flags),
        })
        .boxed()
}

fn action(six: bool, chains: Vec<String>) -> BoxedStrategy<Action> {
    let jump = if chains.is_empty() {
        Just(Action::Accept).boxed()
    } else {
        select(chains.clone()).prop_map(Action::Jump).boxed()
    };
    let goto = if chains.is_empty() {
        Just(Action::Drop).boxed()
    } else {
        select(chains).prop_map(Action::Goto).boxed()
    };
    let kind = select(vec![LogKind::Log, LogKind::NfLog, LogKind::ULog]);
    prop_oneof![
        Just(Action::Accept),
        Just(Action::Drop),
        Just(Action::Return),
        Just(Action::Continue),
        Just(Action::Masquerade),
        Just(Action::Notrack),
        jump,
        goto,
        v4().prop_map(Action::Dnat),
        name().prop_map(Action::CtHelper),
        proptest::option::of(select(vec!["icmp-port-unreachable", "tcp-reset"]))
            .prop_map(|w| Action::Reject(w.map(String::from))),
        (kind, proptest::option::of(text()), any::<bool>()).prop_map(|(kind, prefix, level)| {
            Action::Log {
                kind,
                prefix,
                args: if level {
                    vec!["--log-level".into(), "6".into()]
                } else {
                    vec![]
                },
            }
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(value, mask)| Action::Mark { value, mask }),
        (any::<u32>(), any::<u32>(), 0..3u8).prop_map(|(a, b, k)| Action::ConnMark(match k {
            0 => ConnMarkOp::Set { value: a, mask: b },
            1 => ConnMarkOp::Save {
                nfmask: a,
                ctmask: b
            },
            _ => ConnMarkOp::Restore {
                nfmask: a,
                ctmask: b
            },
        })),
        // The plain IPv4 DNAT is `Dnat`; `DnatTo` is for everything else.
        nat_spec(six, true)
            .prop_filter("plain DNAT is Action::Dnat", |s| {
                !(s.ports.is_none()
                    && s.flags.is_empty()
                    && matches!(s.addrs, Some((IpAddr::V4(a), IpAddr::V4(b))) if a == b))
            })
            .prop_map(Action::DnatTo),
        nat_spec(six, true).prop_map(Action::Snat),
        nat_spec(six, false)
            .prop_filter("plain MASQUERADE is Action::Masquerade", |s| {
                s.ports.is_some() || !s.flags.is_empty()
            })
            .prop_map(Action::MasqueradeTo),
        nat_spec(six, false).prop_map(Action::Redirect),
        net(six).prop_map(Action::Netmap),
        Just(Action::Passthrough {
            target: "TCPMSS".into(),
            args: vec!["--clamp-mss-to-pmtu".into()]
        }),
        Just(Action::Passthrough {
            target: "CT".into(),
            args: vec!["--zone".into(), "3".into()]
        }),
        Just(Action::Unknown {
            text: "-j NFQUEUE --queue-num 3".into()
        }),
    ]
    .boxed()
}

fn rule(six: bool, chains: Vec<String>) -> BoxedStrategy<Rule> {
    let iface = "[a-z][a-z0-9.]{0,8}\\+?";
    let generic = (
        proptest::option::of((net(six), any::<bool>())),
        proptest::option::of((net(six), any::<bool>())),
        proptest::option::of((iface, any::<bool>())),
        proptest::option::of((iface, any::<bool>())),
    );
    let free = vec((free_match(six), any::<bool>()), 0..4);
    (
        generic,
        proto_and_matches(six),
        free,
        vec(text_match(), 0..2),
        action(six, chains),
        proptest::option::of(text()),
        proptest::option::of((any::<u64>(), any::<u64>())),
    )
        .prop_map(
            move |((src, dst, i, o), proto, free, texts, action, comment, counters)| {
                let mut m = Vec::new();
                let neg = |m: Match, n: bool| if n { m.negate() } else { m };
                if let Some((a, n)) = src {
                    m.push(neg(Match::Src(a), n));
                }
                if let Some((a, n)) = dst {
                    m.push(neg(Match::Dst(a), n));
                }
                if let Some((x, n)) = i {
                    m.push(neg(Match::InIface(x), n));
                }
                if let Some((x, n)) = o {
                    m.push(neg(Match::OutIface(x), n));
                }
                m.extend(proto);
                for (f, n) in free {
                    if six && f == Match::Fragment {
                        continue;
                    }
                    let n = n && negatable(f.clone());
                    m.push(neg(f, n));
                }
                m.extend(texts);
                let mut r = Rule::new(m, action);
                r.comment = comment;
                r.counters = counters.map(|(packets, bytes)| Counters { packets, bytes });
                r
            },
        )
        .boxed()
}

fn table(six: bool, name: &'static str) -> BoxedStrategy<Table> {
    let builtins: Vec<&str> = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .into_iter()
        .filter(|c| iptables_builtin(name, c).is_some())
        .collect();
    let users = subsequence(vec!["user_a", "u-1", "LOG_DROP"], 0..3);
    (
        users,
        vec(select(vec![Policy::Accept, Policy::Drop]), builtins.len()),
    )
        .prop_flat_map(move |(users, policies)| {
            let users: Vec<String> = users.into_iter().map(String::from).collect();
            let mut chains: Vec<(String, Option<BaseChain>)> = builtins
                .iter()
                .zip(policies)
                .map(|(c, p)| {
                    let (kind, hook, priority) = iptables_builtin(name, c).unwrap();
                    (
                        c.to_string(),
                        Some(BaseChain {
                            kind,
                            hook,
                            priority,
                            policy: p,
                        }),
                    )
                })
                .collect();
            chains.extend(users.iter().map(|u| (u.clone(), None)));
            let n = chains.len();
            (Just(chains), vec(vec(rule(six, users.clone()), 0..4), n))
        })
        .prop_map(move |(chains, rules)| Table {
            family: if six { Family::Ip6 } else { Family::Ip },
            name: name.into(),
            sets: vec![],
            ct_helpers: vec![],
            chains: chains
                .into_iter()
                .zip(rules)
                .map(|((name, base), rules)| Chain { name, base, rules })
                .collect(),
        })
        .boxed()
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    let t = (any::<bool>(), select(IPTABLES_TABLES.to_vec()))
        .prop_flat_map(|(six, name)| table(six, name));
    vec(t, 1..4).prop_map(|tables| {
        // One table per family and name: a second one would replace the first.
        let mut out: Vec<Table> = Vec::new();
        for t in tables {
            if !out.iter().any(|o| o.family == t.family && o.name == t.name) {
                out.push(t);
            }
        }
        Ruleset { tables: out }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn iptables_parse_of_emit_is_identity(rs in ruleset()) {
        let text = iptables::emit(&rs, &["round trip".into()]);
        let parsed = iptables::parse("rt.rules", &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.ruleset.canonical(), rs.canonical(), "\n{}", text);
        // And every rule points at its own line.
        let lines: Vec<&str> = text.lines().collect();
        for r in parsed.ruleset.rules() {
            let l = lines[r.origin.unwrap().line - 1];
            prop_assert!(l.starts_with("-A ") || l.starts_with('['), "{}", l);
        }
    }
}

// ---- nft: the same property over what the nft syntax can say ----

/// Name the first rule that differs, with its text, before the whole-ruleset
/// comparison prints two walls of Debug output.
fn first_difference(got: &Ruleset, want: &Ruleset, text: &str) -> Result<(), TestCaseError> {
    for (tg, tw) in got.tables.iter().zip(&want.tables) {
        for (cg, cw) in tg.chains.iter().zip(&tw.chains) {
            for (i, rw) in cw.rules.iter().enumerate() {
                let rg = cg.rules.get(i);
                if rg != Some(rw) {
                    let line = nft::rule_text_in(rw, tw.family);
                    return Err(TestCaseError::fail(format!(
                        "chain {} rule {i}: {line}\n got: {rg:?}\nwant: {rw:?}\n{text}",
                        cw.name
                    )));
                }
            }
        }
    }
    Ok(())
}

fn nft_family() -> impl Strategy<Value = Family> {
    select(vec![Family::Ip, Family::Ip6, Family::Inet])
}

/// Addresses of the family's version (either in inet).
fn fam_six(fam: Family) -> BoxedStrategy<bool> {
    match fam {
        Family::Ip => Just(false).boxed(),
        Family::Ip6 => Just(true).boxed(),
        _ => any::<bool>().boxed(),
    }
}

fn nft_match(fam: Family, sets: Vec<String>) -> BoxedStrategy<Vec<Match>> {
    let six = fam_six(fam);
    let iface = "[a-z][a-z0-9.]{0,8}\\+?";
    let states = subsequence(
        vec![
            CtState::Invalid,
            CtState::Established,
            CtState::Related,
            CtState::New,
            CtState::Untracked,
        ],
        1..4,
    );
    let ports = vec(port_range(), 1..4).boxed();
    let tuple = select(vec![
        CtTuple::OrigSrc,
        CtTuple::OrigDst,
        CtTuple::ReplSrc,
        CtTuple::ReplDst,
    ]);
    let neg = |s: BoxedStrategy<Match>| {
        (s, any::<bool>())
            .prop_map(|(m, n)| vec![if n { m.negate() } else { m }])
            .boxed()
    };
    let mut options: Vec<BoxedStrategy<Vec<Match>>> = vec![
        neg(iface.prop_map(Match::InIface).boxed()),
        neg(iface.prop_map(Match::OutIface).boxed()),
        neg(six.clone().prop_flat_map(net).prop_map(Match::Src).boxed()),
        neg(six
            .clone()
            .prop_flat_map(|s| (ip(s), ip(s)))
            .prop_map(|(a, b)| Match::Dst(Addr::Range(a, b)))
            .boxed()),
        (
            six.clone().prop_flat_map(|s| vec(net(s), 2..4)),
            any::<bool>(),
        )
            .prop_map(|(v, n)| {
                let m = Match::AnyOf(v.into_iter().map(|a| vec![Match::Src(a)]).collect());
                vec![if n { m.negate() } else { m }]
            })
            .boxed(),
        (
            select(vec![Proto::Tcp, Proto::Udp]),
            vec(
                (select(vec![true, false]), ports.clone(), any::<bool>()),
                0..3,
            ),
        )
            .prop_map(|(p, ps)| {
                let mut v = vec![Match::Proto(p)];
                for (src, list, n) in ps {
                    let m = if src {
                        Match::SPort(list)
                    } else {
                        Match::DPort(list)
                    };
                    v.push(if n { m.negate() } else { m });
                }
                v
            })
            .boxed(),
        (any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(mask, set, n)| {
                let m = Match::TcpFlags { mask, set };
                vec![Match::Proto(Proto::Tcp), if n { m.negate() } else { m }]
            })
            .boxed(),
        neg(states.prop_map(|s| Match::CtState(sorted(s))).boxed()),
        neg(subsequence(
            vec![
                CtStatus::Expected,
                CtStatus::SeenReply,
                CtStatus::Assured,
                CtStatus::Confirmed,
            ],
            1..3,
        )
        .prop_map(|s| Match::CtStatus(sorted(s)))
        .boxed()),
        neg(select(vec![CtDirection::Original, CtDirection::Reply])
            .prop_map(Match::CtDirection)
            .boxed()),
        neg((any::<u32>(), any::<u32>())
            .prop_map(|(value, mask)| Match::Mark { value, mask })
            .boxed()),
        neg((any::<u32>(), any::<u32>())
            .prop_map(|(value, mask)| Match::ConnMark { value, mask })
            .boxed()),
        neg((tuple.clone(), six.clone().prop_flat_map(net))
            .prop_map(|(t, a)| Match::CtAddr(t, a))
            .boxed()),
        neg((tuple, port_range())
            .prop_map(|(t, p)| Match::CtPort(t, p))
            .boxed()),
        neg(select(vec![6u8, 17, 1, 132])
            .prop_map(Match::CtProto)
            .boxed()),
        neg((
            select(vec![Dir::Src, Dir::Dst]),
            subsequence(
                vec![
                    AddrType::Unicast,
                    AddrType::Local,
                    AddrType::Broadcast,
                    AddrType::Multicast,
                ],
                1..3,
            ),
            proptest::option::of(select(vec![Dir::Src, Dir::Dst])),
        )
            .prop_map(|(dir, t, limit_iface)| Match::AddrType {
                dir,
                types: sorted(t),
                limit_iface,
            })
            .boxed()),
        neg(subsequence(vec!["loose", "validmark"], 0..2)
            .prop_map(|f| Match::RpFilter(f.into_iter().map(String::from).collect()))
            .boxed()),
        neg(vec(any::<u8>(), 6)
            .prop_map(|b| {
                Match::MacSrc(
                    b.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            })
            .boxed()),
        neg(select(vec![
            PktType::Unicast,
            PktType::Broadcast,
            PktType::Multicast,
        ])
        .prop_map(Match::PktType)
        .boxed()),
        neg((any::<u32>(), any::<u32>())
            .prop_map(|(a, b)| Match::Owner(Owner::Uid(a.min(b), a.max(b))))
            .boxed()),
        neg((any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| Match::Length(a.min(b), a.max(b)))
            .boxed()),
        neg(any::<u8>().prop_map(|v| Match::Ttl(Cmp::Eq, v)).boxed()),
        (select(vec![Cmp::Lt, Cmp::Gt]), any::<u8>())
            .prop_map(|(c, v)| vec![Match::Ttl(c, v)])
            .boxed(),
        (1u32..100)
            .prop_map(|n| {
                vec![Match::Stateful {
                    module: "limit".into(),
                    args: vec!["rate".into(), format!("{n}/minute")],
                }]
            })
            .boxed(),
    ];
    let icmp_v6 = match fam {
        Family::Ip => Some(false),
        Family::Ip6 => Some(true),
        _ => None,
    };
    if let Some(v6) = icmp_v6 {
        options.push(
            (vec(any::<u8>(), 1..3), any::<bool>())
                .prop_map(move |(tys, n)| {
                    let t = |ty| IcmpType {
                        ty: Some(ty),
                        code: None,
                    };
                    let mk = |ty| {
                        if v6 {
                            Match::Icmp6(t(ty))
                        } else {
                            Match::Icmp(t(ty))
                        }
                    };
                    let tys = sorted(tys);
                    let m = if tys.len() == 1 {
                        mk(tys[0])
                    } else {
                        Match::AnyOf(tys.into_iter().map(|ty| vec![mk(ty)]).collect())
                    };
                    vec![
                        Match::ProtoNum(if v6 { 58 } else { 1 }),
                        if n { m.negate() } else { m },
                    ]
                })
                .boxed(),
        );
    }
    if fam == Family::Inet {
        options.push(
            select(vec![4u8, 6])
                .prop_map(|v| vec![Match::IpVersion(v)])
                .boxed(),
        );
    }
    if fam == Family::Ip {
        options.push(neg(Just(Match::Fragment).boxed()));
    }
    if !sets.is_empty() {
        options.push(neg(select(sets)
            .prop_map(|s| Match::Src(Addr::Set(s)))
            .boxed()));
    }
    proptest::strategy::Union::new(options).boxed()
}

fn nft_effect(fam: Family) -> BoxedStrategy<Action> {
    let _ = fam;
    prop_oneof![
        (
            proptest::option::of("[ -!#-~]{0,12}"),
            proptest::option::of(select(vec!["warn", "info", "debug"]))
        )
            .prop_map(|(prefix, level)| Action::Log {
                kind: LogKind::Log,
                prefix,
                args: level
                    .map(|l| vec!["level".to_string(), l.to_string()])
                    .unwrap_or_default(),
            }),
        (1u16..100).prop_map(|g| Action::Log {
            kind: LogKind::NfLog,
            prefix: None,
            args: vec!["group".into(), g.to_string()],
        }),
        any::<u32>().prop_map(|value| Action::Mark {
            value,
            mask: u32::MAX
        }),
        any::<u32>().prop_map(|value| Action::ConnMark(ConnMarkOp::Set {
            value,
            mask: u32::MAX
        })),
        Just(Action::ConnMark(ConnMarkOp::Save {
            nfmask: u32::MAX,
            ctmask: u32::MAX
        })),
        Just(Action::ConnMark(ConnMarkOp::Restore {
            nfmask: u32::MAX,
            ctmask: u32::MAX
        })),
        Just(Action::Notrack),
        name().prop_map(Action::CtHelper),
    ]
    .boxed()
}

fn nft_action(fam: Family, chains: Vec<String>) -> BoxedStrategy<Action> {
    let six = fam_six(fam);
    let chain = if chains.is_empty() {
        Just("sub".to_string()).boxed()
    } else {
        select(chains).boxed()
    };
    let mut options: Vec<BoxedStrategy<Action>> = vec![
        Just(Action::Accept).boxed(),
        Just(Action::Drop).boxed(),
        Just(Action::Return).boxed(),
        Just(Action::Continue).boxed(),
        Just(Action::Masquerade).boxed(),
        chain.clone().prop_map(Action::Jump).boxed(),
        chain.prop_map(Action::Goto).boxed(),
        proptest::option::of(select(vec![
            "tcp reset",
            "icmp port-unreachable",
            "icmpx admin-prohibited",
        ]))
        .prop_map(|w| Action::Reject(w.map(String::from)))
        .boxed(),
        six.clone()
            .prop_flat_map(|s| nat_spec(s, true))
            .prop_map(Action::Snat)
            .boxed(),
        six.prop_flat_map(|s| nat_spec(s, true))
            .prop_filter("plain DNAT is Action::Dnat", |s| {
                !(s.ports.is_none()
                    && s.flags.is_empty()
                    && matches!(s.addrs, Some((IpAddr::V4(a), IpAddr::V4(b))) if a == b))
            })
            .prop_map(Action::DnatTo)
            .boxed(),
        nat_spec(false, false)
            .prop_filter("plain MASQUERADE is Action::Masquerade", |s| {
                s.ports.is_some() || !s.flags.is_empty()
            })
            .prop_map(Action::MasqueradeTo)
            .boxed(),
        nat_spec(false, false).prop_map(Action::Redirect).boxed(),
        nft_effect(fam),
    ];
    if fam != Family::Ip6 {
        options.push(v4().prop_map(Action::Dnat).boxed());
    }
    proptest::strategy::Union::new(options).boxed()
}

fn nft_rule(fam: Family, chains: Vec<String>, sets: Vec<String>) -> BoxedStrategy<Rule> {
    (
        vec(nft_match(fam, sets), 0..4),
        vec(nft_effect(fam), 0..3),
        nft_action(fam, chains),
        proptest::option::of("[ -!#-~]{0,16}"),
        proptest::option::of((any::<u64>(), any::<u64>())),
    )
        .prop_map(|(ms, effects, action, comment, counters)| {
            // `tcp dport 22` implies the protocol; nft keeps one of each.
            let mut matches: Vec<Match> = Vec::new();
            for m in ms.concat() {
                if matches!(m, Match::Proto(_) | Match::ProtoNum(_)) && matches.contains(&m) {
                    continue;
                }
                matches.push(m);
            }
            let mut r = Rule::new(matches, action);
            // Without a verdict the last statement is the action.
            if r.action != Action::Continue {
                r.effects = effects;
            }
            r.comment = comment;
            r.counters = counters.map(|(packets, bytes)| Counters { packets, bytes });
            r
        })
        .prop_filter("one protocol per rule", |r| {
            let mut p = r
                .matches
                .iter()
                .filter(|m| matches!(m, Match::Proto(_) | Match::ProtoNum(_)));
            p.next().is_none() || p.next().is_none()
        })
        // A rule of only a comment reads as the chain's own comment.
        .prop_filter("a rule must print something", |r| {
            !(r.matches.is_empty() && r.action == Action::Continue && r.counters.is_none())
        })
        .boxed()
}

fn nft_table() -> impl Strategy<Value = Table> {
    (
        nft_family(),
        "[a-z][a-z0-9_]{0,6}",
        subsequence(vec!["sub", "other"], 0..3),
        0usize..2,
    )
        .prop_flat_map(|(fam, name, users, nsets)| {
            let users: Vec<String> = users.into_iter().map(String::from).collect();
            let set_names: Vec<String> = if fam == Family::Ip6 {
                vec![]
            } else {
                (0..nsets).map(|i| format!("hosts{i}")).collect()
            };
            let base = (
                select(vec![ChainType::Filter, ChainType::Nat, ChainType::Route]),
                select(vec![
                    Hook::Prerouting,
                    Hook::Input,
                    Hook::Forward,
                    Hook::Output,
                    Hook::Postrouting,
                ]),
                -400i32..400,
                select(vec![Policy::Accept, Policy::Drop]),
            )
                .prop_map(|(kind, hook, priority, policy)| BaseChain {
                    kind,
                    hook,
                    priority,
                    policy,
                });
            let sets = vec(vec((v4(), 8u8..=32), 1..4), set_names.len()).prop_map({
                let names = set_names.clone();
                move |els| {
                    names
                        .iter()
                        .zip(els)
                        .map(|(n, e)| {
                            Set::v4(
                                n.clone(),
                                e.into_iter()
                                    .map(|(a, p)| Ipv4Net::new(a, p).unwrap().trunc())
                                    .collect(),
                            )
                        })
                        .collect::<Vec<_>>()
                }
            });
            let chains = (
                vec(base, 1..3),
                vec(
                    vec(nft_rule(fam, users.clone(), set_names.clone()), 0..4),
                    users.len() + 2,
                ),
            );
            (Just((fam, name, users)), sets, chains)
        })
        .prop_map(|((family, name, users), sets, (bases, mut rules))| {
            let mut chains = Vec::new();
            for (i, b) in bases.into_iter().enumerate() {
                chains.push(Chain {
                    name: format!("base{i}"),
                    base: Some(b),
                    rules: std::mem::take(&mut rules[i]),
                });
            }
            for (i, u) in users.into_iter().enumerate() {
                chains.push(Chain {
                    name: u,
                    base: None,
                    rules: std::mem::take(&mut rules[2 + i]),
                });
            }
            Table {
                family,
                name,
                sets,
                ct_helpers: vec![CtHelper {
                    name: "amanda-udp".into(),
                    helper: "amanda".into(),
                    proto: Proto::Udp,
                }],
                chains,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn nft_parse_of_emit_is_identity(t in nft_table()) {
        let rs = Ruleset { tables: vec![t] };
        let text = nft::emit(&rs, &["round trip".into()]);
        let parsed = nft::parse("rt.nft", &text)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let (got, want) = (parsed.ruleset.canonical(), rs.canonical());
        first_difference(&got, &want, &text)?;
        prop_assert_eq!(got, want, "\n{}", text);
    }
}
