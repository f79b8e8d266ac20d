//! Properties of the evaluator on random rulesets (proptest):
//! - the whole packet space through a ruleset comes out cut into disjoint
//!   parts that add up to the space (nothing lost, nothing counted twice);
//! - every single packet fares exactly as the part of the space holding it
//!   (the symbolic evaluation and the concrete one agree);
//! - cutting a run of rules at once (`sim::index::Run`) decides every packet
//!   as going through its rules one by one does;
//! - the packet description parser never panics.

use amwall::netfilter::iptables;
use amwall::sim::engine::{End, State};
use amwall::sim::space::*;
use amwall::sim::{self, compile, Ct, CtBase, Engine, HostInfo, LocalGuess, SetDb};
use proptest::prelude::*;

fn rule() -> impl Strategy<Value = String> {
    let src = prop_oneof![
        Just(String::new()),
        Just(" -s 192.0.2.0/25".into()),
        Just(" ! -s 192.0.2.128/26".into()),
        Just(" -s 198.51.100.7/32".into()),
        Just(" -m iprange --src-range 192.0.2.10-192.0.2.200".into()),
    ];
    let iface = prop_oneof![
        Just(String::new()),
        Just(" -i eth0".into()),
        Just(" ! -i eth1".into()),
        Just(" -i eth+".into()),
    ];
    let l4 = prop_oneof![
        Just(String::new()),
        (1u16..2000, 0u16..200).prop_map(|(a, n)| format!(" -p tcp -m tcp --dport {a}:{}", a + n)),
        (1u16..2000).prop_map(|a| format!(" -p udp -m udp ! --sport {a}")),
        Just(" -p tcp -m multiport --dports 22,80,443,1000:1100".into()),
        Just(" -p icmp -m icmp --icmp-type 8".into()),
        Just(" -p tcp -m tcp --tcp-flags SYN,ACK SYN".into()),
    ];
    let state = prop_oneof![
        3 => Just(String::new()),
        1 => Just(" -m conntrack --ctstate NEW".into()),
        1 => Just(" -m conntrack --ctstate RELATED,ESTABLISHED".into()),
        1 => Just(" -m mark --mark 0x1/0x1".into()),
    ];
    let target = prop_oneof![
        3 => Just(" -j ACCEPT".to_string()),
        3 => Just(" -j DROP".into()),
        1 => Just(" -j RETURN".into()),
        2 => Just(" -j SUB".into()),
        1 => Just(" -g SUB".into()),
        1 => Just(" -j LOG".into()),
        1 => Just(" -j MARK --set-xmark 0x1/0x1".into()),
        1 => Just(" -j REJECT --reject-with icmp-port-unreachable".into()),
    ];
    (src, iface, l4, state, target).prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}"))
}

fn ruleset() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(rule(), 0..12),
        prop::collection::vec(rule(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(input, sub, drop)| {
            let mut t = format!(
                "*filter\n:INPUT {} [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:SUB - [0:0]\n",
                if drop { "DROP" } else { "ACCEPT" }
            );
            for r in input {
                t.push_str(&format!("-A INPUT{r}\n"));
            }
            // SUB must not jump to itself.
            for r in sub.iter().filter(|r| !r.contains("SUB")) {
                t.push_str(&format!("-A SUB{r}\n"));
            }
            t.push_str("COMMIT\n");
            t
        })
}

fn fate(e: &Option<End>) -> u8 {
    match e {
        None => 0,
        Some(End::Drop { .. }) => 1,
        Some(End::Reject { .. }) => 2,
        Some(_) => 3,
    }
}

fn start(c: &compile::Compiled, cube: Cube, base: CtBase) -> State {
    let mut s = State::new(
        cube,
        Ct::new_conn(base, amwall::netfilter::CtDirection::Original),
        false,
    );
    s.tcp_flags = Some(0x02);
    s.ttl = Some(64);
    s.len = Some(60);
    let _ = c;
    s
}

/// A chain body with a long run in it: groups of rules on one source
/// address each (a MAC check then a drop, a ban, an allow, a jump), some
/// groups on a wider prefix, random rules before and after.
fn run_ruleset() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        Just(" -j DROP".to_string()),
        Just(" -p tcp -m tcp --dport 22 -j ACCEPT".into()),
        Just(" -m mac --mac-source 02:00:00:00:00:01 -j RETURN".into()),
        Just(" -j SUB".into()),
        Just(" -p udp -j LOG".into()),
        Just(" -j MARK --set-xmark 0x1/0x1".into()),
        Just(" -m mark --mark 0x1/0x1 -j REJECT --reject-with icmp-port-unreachable".into()),
    ];
    let group = (0u8..4, 0u8..32, prop::collection::vec(member, 1..3));
    (
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(group, 16..40),
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(rule(), 0..4),
    )
        .prop_map(|(before, groups, after, sub)| {
            let mut t = String::from(
                "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:SUB - [0:0]\n",
            );
            let mut chain = before;
            for (i, (a, kind, members)) in groups.into_iter().enumerate() {
                let src = match kind {
                    // Overlaps the others: the run ends before it.
                    0 => " -s 198.51.100.0/25".to_string(),
                    1..=4 => format!(" -s 192.0.2.{}/30", i * 4),
                    _ => format!(" -s 198.51.100.{}/32", i * 4 + a as usize),
                };
                chain.extend(members.into_iter().map(|m| format!("{src}{m}")));
            }
            chain.extend(after);
            for r in chain {
                t.push_str(&format!("-A INPUT{r}\n"));
            }
            for r in sub.iter().filter(|r| !r.contains("SUB")) {
                t.push_str(&format!("-A SUB{r}\n"));
            }
            t.push_str("COMMIT\n");
            t
        })
}

/// What one part of the space came to. Whether it rests on an undecidable
/// rule, not on which: merging tainted parts unites their lists, so the list
/// depends on how the space was cut.
fn verdict(o: &sim::Outcome) -> (u8, Option<(usize, usize)>, bool) {
    (
        fate(&o.end),
        o.state.accepted_by.map(|r| (r.chain, r.rule)),
        o.state.tainted(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_space_is_partitioned_and_points_agree(
        text in ruleset(),
        base in prop_oneof![Just(CtBase::New), Just(CtBase::Established)],
        points in prop::collection::vec((any::<u32>(), 0u8..3, any::<u16>(), any::<u16>(), 0usize..3), 12),
    ) {
        let p = iptables::parse("random.rules", &text).unwrap();
        let info = HostInfo { guess: LocalGuess::Input, ifaces: vec!["eth0".into(), "eth1".into(), "eth9".into()], ..HostInfo::default() };
        let c = compile(&p.ruleset, &SetDb { ipsets: None }, &info, false);
        let e = Engine::new(&c, &info);
        let ifs = ["eth0", "eth1", "eth9"];
        let mut iif = 0;
        for i in ifs {
            iif |= c.ifaces.class_of(i);
        }
        let full = Cube::full(false, iif, c.ifaces.class_of(""));
        let outs = sim::run_route(&e, sim::Route::Input, None, vec![start(&c, full.clone(), base)]);
        // No undecidable matches here: no forks, and the parts are disjoint.
        prop_assert!(outs.iter().all(|o| !o.state.tainted()));
        let total: f64 = outs.iter().map(|o| o.state.cube.volume()).sum();
        prop_assert!((total - full.volume()).abs() <= full.volume() * 1e-9, "{total} vs {}", full.volume());
        for (i, a) in outs.iter().enumerate() {
            for b in &outs[i + 1..] {
                prop_assert!(a.state.cube.meet(&b.state.cube).is_none(), "overlap:\n{text}");
            }
        }
        // Each packet: evaluated alone, as its part says.
        for (addr, proto, sport, dport, k) in points {
            let proto = [6u128, 17, 1][proto as usize];
            let mut cube = Cube::full(false, c.ifaces.class_of(ifs[k]), c.ifaces.class_of(""));
            cube.set(SRC, Iv::point(addr as u128));
            cube.set(DST, Iv::point(0xc000_0201));
            cube.set(PROTO, Iv::point(proto));
            if proto == 1 {
                cube.set(SPORT, Iv::point(0));
                cube.set(DPORT, Iv::point((dport as u128 & 0xf) << 8));
            } else {
                cube.set(SPORT, Iv::point(sport as u128));
                cube.set(DPORT, Iv::point(dport as u128));
            }
            let alone = sim::run_route(&e, sim::Route::Input, None, vec![start(&c, cube.clone(), base)]);
            prop_assert_eq!(alone.len(), 1);
            let part = outs.iter().find(|o| o.state.cube.meet(&cube).is_some()).expect("some part holds it");
            prop_assert_eq!(fate(&alone[0].end), fate(&part.end), "{:?}\n{}", cube, text);
        }
    }

    #[test]
    fn a_run_decides_as_its_rules_one_by_one(
        text in run_ruleset(),
        points in prop::collection::vec((0u8..4, any::<u8>(), 0u8..3, any::<u16>(), 0usize..3), 24),
    ) {
        let p = iptables::parse("runs.rules", &text).unwrap();
        let info = HostInfo { guess: LocalGuess::Input, ifaces: vec!["eth0".into(), "eth1".into(), "eth9".into()], ..HostInfo::default() };
        let with = compile(&p.ruleset, &SetDb { ipsets: None }, &info, false);
        prop_assume!(with.chains.iter().any(|c| !c.runs.is_empty()));
        let mut without = with.clone();
        for c in &mut without.chains {
            c.runs.clear();
        }
        let ifs = ["eth0", "eth1", "eth9"];
        let mut iif = 0;
        for i in ifs {
            iif |= with.ifaces.class_of(i);
        }
        let full = Cube::full(false, iif, with.ifaces.class_of(""));
        let outs: Vec<Vec<sim::Outcome>> = [&with, &without]
            .iter()
            .map(|c| {
                let e = Engine::new(c, &info);
                sim::run_route(&e, sim::Route::Input, None, vec![start(c, full.clone(), CtBase::New)])
            })
            .collect();
        // The same volume comes to each verdict.
        let mut sums: Vec<std::collections::BTreeMap<_, f64>> = vec![Default::default(); 2];
        for (k, o) in outs.iter().enumerate() {
            for x in o {
                *sums[k].entry(verdict(x)).or_default() += x.state.cube.volume();
            }
        }
        prop_assert_eq!(sums[0].len(), sums[1].len(), "{:?}\n{:?}\n{}", sums[0].keys(), sums[1].keys(), text);
        for ((ka, va), (kb, vb)) in sums[0].iter().zip(&sums[1]) {
            prop_assert_eq!(ka, kb);
            prop_assert!((va - vb).abs() <= va.max(*vb) * 1e-9, "{ka:?}: {va} vs {vb}\n{text}");
        }
        // And each packet to the same verdicts.
        for (net, host, proto, port, k) in points {
            let addr: u32 = if net < 2 { 0xc633_6400 } else { 0xc000_0200 } | (host as u32 % 160);
            let proto = [6u128, 17, 1][proto as usize];
            let mut cube = Cube::full(false, with.ifaces.class_of(ifs[k]), with.ifaces.class_of(""));
            cube.set(SRC, Iv::point(addr as u128));
            cube.set(DST, Iv::point(0xc000_0201));
            cube.set(PROTO, Iv::point(proto));
            cube.set(SPORT, Iv::point(if proto == 1 { 0 } else { 40000 }));
            cube.set(DPORT, Iv::point(if proto == 1 { 0x800 } else { port as u128 % 64 }));
            let at: Vec<Vec<_>> = outs
                .iter()
                .map(|o| {
                    let mut v: Vec<_> = o.iter().filter(|x| x.state.cube.meet(&cube).is_some()).map(verdict).collect();
                    v.sort();
                    v.dedup();
                    v
                })
                .collect();
            prop_assert_eq!(&at[0], &at[1], "{:?}\n{}", cube, text);
        }
    }

    #[test]
    fn the_packet_parser_never_panics(s in "\\PC{0,60}") {
        let _ = sim::packet::parse(&s);
    }

    #[test]
    fn packet_descriptions_round_trip(
        a in any::<u32>(), b in any::<u32>(), sp in 1u16.., dp in 1u16.., tcp in any::<bool>(),
    ) {
        let (a, b) = (std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b));
        let text = format!("{} {a}:{sp} -> {b}:{dp} [in eth0]", if tcp { "tcp" } else { "udp" });
        let p = sim::packet::parse(&text).unwrap();
        prop_assert_eq!(p.src, Iv::point(u32::from(a) as u128));
        prop_assert_eq!(p.dport, Iv::point(dp as u128));
        prop_assert_eq!(p.route(), sim::Route::Input);
    }
}
