//! The kernel is the judge: rulesets are loaded into a network namespace with
//! the real `iptables-restore` / `nft -f`, random real packets are injected
//! there (Ethernet frames on veth pairs, documentation addresses only), and
//! what the kernel did is compared with what the simulator says:
//! - the verdict, from observer chains that count what passed every other
//!   chain (an nft table at priority 10000 on input and postrouting);
//! - for iptables rulesets, the rules that matched, from `iptables-save -c`
//!   (every rule's and policy's packet counter), against the rules the
//!   simulator's trace matched (rules it cannot decide are left out; of the
//!   branches it forks into, one must agree with the kernel).
//!
//! Packets: first packets (TCP SYN, UDP, ICMP echo) for this host or to be
//! forwarded, and for forwarded ones that passed, the reply (ESTABLISHED,
//! reply direction, NAT undone) and a later packet of the connection.
//! Rulesets: every host of three mapped examples (the lab's documentation
//! addresses), both backends; the real-world IPv4 rulesets, with a veth for
//! every interface name they use; handwritten ones for rarer corners. A rule
//! the kernel refuses is left out of both sides and reported.
//! `AMWALL_KERNEL_SEED` replays a run, `AMWALL_KERNEL_SCALE=N` sends N times
//! as many packets.
//!
//! Needs root, iproute2, iptables (nf_tables), nftables, ipset.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use amwall::amanda::settings::Auth;
use amwall::check::{HostRules, RulesFile};
use amwall::lab::netns::veth;
use amwall::lab::Netns;
use amwall::netfilter::{ipset, iptables, Hook};
use amwall::sim::compile::{Atom, StAtom};
use amwall::sim::engine::{RuleRes, State, Step};
use amwall::sim::space::*;
use amwall::sim::{self, compile, Ct, CtBase, Engine, HostInfo, SetDb};
use amwall::Plan;
use ipnet::Ipv4Net;
use nix::libc;

mod common;

// ---------------------------------------------------------------- randomness

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn seed() -> u64 {
    std::env::var("AMWALL_KERNEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_a3a1_da00_2026)
}

// ------------------------------------------------------------------- frames

#[derive(Clone, Debug)]
struct Pkt {
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    /// ICMP type and id.
    icmp: (u8, u16),
    /// UDP payload (ICMP and TCP carry none but ICMP's 8 bytes).
    payload: Vec<u8>,
}

fn csum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Pkt {
    /// The IPv4 packet (header + layer 4 + 8 bytes of payload).
    fn ip(&self) -> Vec<u8> {
        let payload: &[u8] = if self.payload.is_empty() {
            b"amwall!!"
        } else {
            &self.payload
        };
        let mut l4: Vec<u8> = Vec::new();
        match self.proto {
            6 => {
                l4.extend(self.sport.to_be_bytes());
                l4.extend(self.dport.to_be_bytes());
                l4.extend(self.seq.to_be_bytes());
                l4.extend(self.ack.to_be_bytes());
                l4.push(5 << 4);
                l4.push(self.flags);
                l4.extend(64240u16.to_be_bytes());
                l4.extend([0, 0, 0, 0]);
            }
            17 => {
                l4.extend(self.sport.to_be_bytes());
                l4.extend(self.dport.to_be_bytes());
                l4.extend(((8 + payload.len()) as u16).to_be_bytes());
                l4.extend([0, 0]);
                l4.extend(payload);
            }
            _ => {
                l4.push(self.icmp.0);
                l4.push(0);
                l4.extend([0, 0]);
                l4.extend(self.icmp.1.to_be_bytes());
                l4.extend(1u16.to_be_bytes());
                l4.extend(payload);
            }
        }
        let total = 20 + l4.len();
        // Layer-4 checksum (pseudo-header for TCP and UDP).
        if self.proto == 6 || self.proto == 17 {
            let mut pseudo = 0u32;
            for w in [self.src.octets(), self.dst.octets()] {
                pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
                pseudo += u32::from(u16::from_be_bytes([w[2], w[3]]));
            }
            pseudo += u32::from(self.proto) + l4.len() as u32;
            let mut c = csum(&l4, pseudo);
            if c == 0 && self.proto == 17 {
                c = 0xffff;
            }
            let at = if self.proto == 6 { 16 } else { 6 };
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        } else {
            let c = csum(&l4, 0);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let mut ip = vec![0x45, 0];
        ip.extend((total as u16).to_be_bytes());
        ip.extend(((self.seq & 0xffff) as u16).to_be_bytes());
        ip.extend(0x4000u16.to_be_bytes());
        ip.push(64);
        ip.push(self.proto);
        ip.extend([0, 0]);
        ip.extend(self.src.octets());
        ip.extend(self.dst.octets());
        let c = csum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend(l4);
        ip
    }
}

// ---------------------------------------------------------------- namespaces

struct Port {
    /// Interface name in the host namespace (what rules name).
    name: String,
    hmac: [u8; 6],
    smac: [u8; 6],
    sock: OwnedFd,
    ifindex: i32,
}

/// What a host looks like: interfaces with addresses, routes.
#[derive(Clone, Debug, Default)]
struct Setup {
    /// (interface, addresses with prefix length)
    ifaces: Vec<(String, Vec<(Ipv4Addr, u8)>)>,
    /// Extra device routes and the default route's interface (with gateway).
    routes: Vec<(Ipv4Net, String)>,
    default: Option<(Ipv4Addr, String)>,
    /// Source addresses worth using besides random documentation ones.
    sources: Vec<Ipv4Addr>,
    /// Destinations worth forwarding to.
    destinations: Vec<Ipv4Addr>,
}

impl Setup {
    fn local(&self) -> Vec<Ipv4Addr> {
        self.ifaces
            .iter()
            .flat_map(|(_, a)| a.iter().map(|(x, _)| *x))
            .collect()
    }

    /// The kernel's choice for `dst`: longest prefix, then the default route.
    fn route(&self, dst: Ipv4Addr) -> Option<String> {
        let mut best: Option<(u8, String)> = None;
        let mut consider = |net: Ipv4Net, ifn: &str| {
            if net.contains(&dst) && best.as_ref().map_or(true, |(l, _)| net.prefix_len() > *l) {
                best = Some((net.prefix_len(), ifn.to_string()));
            }
        };
        for (n, a) in &self.ifaces {
            for (x, l) in a {
                consider(Ipv4Net::new(*x, *l).unwrap().trunc(), n);
            }
        }
        for (net, n) in &self.routes {
            consider(*net, n);
        }
        best.map(|(_, n)| n)
            .or_else(|| self.default.as_ref().map(|(_, n)| n.clone()))
    }

    fn host_info(&self) -> HostInfo {
        let mut broadcast = Vec::new();
        for (_, a) in &self.ifaces {
            for (x, l) in a {
                if *l > 0 && *l < 31 {
                    broadcast.push(Ipv4Net::new(*x, *l).unwrap().broadcast().into());
                }
            }
        }
        HostInfo {
            local: Some(self.local().into_iter().map(Into::into).collect()),
            broadcast,
            iface_addr: self
                .ifaces
                .iter()
                .filter_map(|(n, a)| a.first().map(|(x, _)| (n.clone(), (*x).into())))
                .collect(),
            ifaces: self.ifaces.iter().map(|(n, _)| n.clone()).collect(),
            guess: Default::default(),
        }
    }
}

struct Bench {
    // Field order is drop order: the sockets before their namespaces.
    ports: Vec<Port>,
    h: Netns,
    _s: Netns,
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.trim().split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

fn must(ns: &Netns, argv: &[&str]) -> String {
    ns.must(argv)
        .unwrap_or_else(|e| panic!("bench set-up: {e}"))
        .stdout
}

impl Bench {
    fn new(setup: &Setup) -> Bench {
        let h = Netns::new("amwsk-h").expect("netns (needs root)");
        let s = Netns::new("amwsk-s").expect("netns");
        for cmd in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ] {
            must(&h, &["sysctl", "-qw", cmd]);
        }
        let mut ports = Vec::new();
        for (i, (name, addrs)) in setup.ifaces.iter().enumerate() {
            let peer = format!("p{i}");
            veth(&h, name, &s, &peer).unwrap_or_else(|e| panic!("veth {name}: {e}"));
            for (a, l) in addrs {
                must(&h, &["ip", "addr", "add", &format!("{a}/{l}"), "dev", name]);
            }
            must(
                &h,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{}.rp_filter=0", name.replace('.', "/")),
                ],
            );
            let hmac = mac(&must(
                &h,
                &["cat", &format!("/sys/class/net/{name}/address")],
            ));
            let smac = mac(&must(
                &s,
                &["cat", &format!("/sys/class/net/{peer}/address")],
            ));
            let p2 = peer.clone();
            let (fd, ifindex) = s
                .run_in(move || unsafe {
                    let cname = std::ffi::CString::new(p2).unwrap();
                    let ifindex = libc::if_nametoindex(cname.as_ptr()) as i32;
                    let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                    (fd, ifindex)
                })
                .unwrap();
            assert!(fd >= 0 && ifindex > 0, "packet socket on {peer}");
            ports.push(Port {
                name: name.clone(),
                hmac,
                smac,
                sock: unsafe { OwnedFd::from_raw_fd(fd) },
                ifindex,
            });
        }
        for (net, ifn) in &setup.routes {
            must(&h, &["ip", "route", "add", &net.to_string(), "dev", ifn]);
        }
        if let Some((gw, ifn)) = &setup.default {
            must(
                &h,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &gw.to_string(),
                    "dev",
                    ifn,
                ],
            );
        }
        // The observer: what passed every other chain of input and of
        // postrouting (forwarded packets only: TTL 63 after the forward
        // decrement, where the host's own packets start at 64).
        // The host itself sends nothing here (no RSTs, no ICMP errors): its
        // own packets would pass the ruleset's output and postrouting chains
        // and move their counters. A chain before every other one drops them.
        let obs = "table ip amwobs {\n\tchain pre {\n\t\ttype filter hook prerouting priority -1000; policy accept;\n\t\tcounter\n\t}\n\tchain in {\n\t\ttype filter hook input priority 10000; policy accept;\n\t\tcounter\n\t}\n\tchain post {\n\t\ttype filter hook postrouting priority 10000; policy accept;\n\t\tip ttl 63 counter\n\t}\n\tchain out {\n\t\ttype filter hook output priority -1000; policy drop;\n\t}\n}\n";
        let o = h.exec(&["nft", "-f", "-"], Some(obs)).unwrap();
        assert!(o.ok(), "observer: {}", o.stderr);
        Bench { ports, h, _s: s }
    }

    fn send(&self, iface: &str, p: &Pkt) {
        let port = self.ports.iter().find(|x| x.name == iface).expect("port");
        let mut frame = Vec::new();
        frame.extend(port.hmac);
        frame.extend(port.smac);
        frame.extend(0x0800u16.to_be_bytes());
        frame.extend(p.ip());
        unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = port.ifindex;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&port.hmac);
            let n = libc::sendto(
                port.sock.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(n as usize, frame.len(), "sendto on {iface}");
        }
    }

    /// (arrived, input, forwarded) packets the observer has counted.
    fn observed(&self) -> (u64, u64, u64) {
        let out = must(&self.h, &["nft", "list", "table", "ip", "amwobs"]);
        let n: Vec<u64> = out
            .split("counter packets ")
            .skip(1)
            .map(|x| x.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        (n[0], n[1], n[2])
    }

    /// Rule and policy packet counters of the iptables tables.
    fn counters(&self) -> BTreeMap<(String, String, Option<usize>), u64> {
        let out = must(&self.h, &["iptables-save", "-c"]);
        let p = iptables::parse("iptables-save -c", &out).expect("iptables-save parses");
        let mut m = BTreeMap::new();
        for t in &p.ruleset.tables {
            for c in &t.chains {
                for (i, r) in c.rules.iter().enumerate() {
                    m.insert(
                        (t.name.clone(), c.name.clone(), Some(i)),
                        r.counters.map_or(0, |x| x.packets),
                    );
                }
            }
        }
        for ci in &p.chains {
            if let Some(c) = ci.counters {
                m.insert((ci.table.clone(), ci.chain.clone(), None), c.packets);
            }
        }
        m
    }
}

// ----------------------------------------------------------------- rulesets

/// A flow crossing the host: packets aimed at what the rules are about.
#[derive(Clone, Debug)]
struct Hint {
    iif: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: (u16, u16),
    dport: (u16, u16),
}

struct Case {
    label: String,
    hints: Vec<Hint>,
    /// Text the kernel loads (after refused lines were taken out).
    text: String,
    nft: bool,
    setup: Setup,
    ipset_names: Vec<String>,
    skipped: Vec<String>,
}

/// Load, dropping lines the kernel refuses (and saying so).
fn load(b: &Bench, case: &mut Case) {
    for name in &case.ipset_names {
        must(&b.h, &["ipset", "create", name, "hash:net"]);
    }
    let cmd = if case.nft {
        vec!["nft", "-f", "-"]
    } else {
        vec!["iptables-restore"]
    };
    for _ in 0..20 {
        let o = b.h.exec(&cmd, Some(&case.text)).unwrap();
        if o.ok() {
            return;
        }
        assert!(
            !case.nft,
            "{}: nft refused our own script: {}",
            case.label, o.stderr
        );
        let line: usize = o
            .stderr
            .split("line: ")
            .nth(1)
            .and_then(|x| x.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{}: refused without a line: {}", case.label, o.stderr));
        let mut lines: Vec<String> = case.text.lines().map(String::from).collect();
        let l = &mut lines[line - 1];
        assert!(
            l.starts_with("-A "),
            "{}: refused line {line} is not a rule: {l}",
            case.label
        );
        case.skipped.push(format!(
            "line {line} ({}): {}",
            o.stderr.lines().next().unwrap_or(""),
            l
        ));
        *l = format!("# skipped: {l}");
        case.text = lines.join("\n") + "\n";
    }
    panic!("{}: too many refused lines", case.label);
}

fn generated_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let picks: [(&str, Option<Auth>); 3] = [
        ("wiki", Some(Auth::Bsd)),
        ("wiki", Some(Auth::Bsdtcp)),
        ("helper", None),
    ];
    for (ex, auth) in picks {
        let mut d = common::example(ex);
        if let Some(a) = auth {
            d = d.with_auth(a);
        }
        let (_, mapped) =
            amwall::lab::map::Mapping::new(&d).expect("maps onto documentation ranges");
        let plan = Plan::build(mapped).expect("plans");
        let d = &plan.deployment;
        for hp in &plan.policies {
            let host = &d.hosts[hp.host];
            let mut setup = Setup::default();
            // The examples are IPv4 (or dual-stack) throughout.
            let v4 = |i: &amwall::model::Interface| i.address.expect("an IPv4 example");
            for i in &host.interfaces {
                let net = d.networks[i.network].cidr.expect("an IPv4 example");
                setup
                    .ifaces
                    .push((i.name.clone(), vec![(v4(i), net.prefix_len())]));
            }
            if let Some(g) = host.gateway {
                for i in &host.interfaces {
                    if let Some(gi) = d.iface_on(g, i.network) {
                        setup.default = Some((v4(gi), i.name.clone()));
                        break;
                    }
                }
            }
            let own: BTreeSet<Ipv4Addr> = host.interfaces.iter().map(v4).collect();
            for (j, other) in d.hosts.iter().enumerate() {
                if j == hp.host {
                    continue;
                }
                for i in &other.interfaces {
                    if !own.contains(&v4(i)) {
                        setup.sources.push(v4(i));
                        setup.destinations.push(v4(i));
                    }
                }
            }
            let label = format!(
                "{ex}-{}/{}",
                auth.map_or("default".into(), |a| a.to_string()),
                host.name
            );
            let sets: Vec<String> = plan
                .ipset(hp)
                .map(|t| {
                    t.lines()
                        .filter_map(|l| l.strip_prefix("create "))
                        .map(|l| {
                            l.split(' ')
                                .next()
                                .unwrap()
                                .trim_end_matches('~')
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert!(sets.is_empty(), "{label}: the examples need no ipsets");
            let mut hints = Vec::new();
            for (f, path) in plan.flows.iter().zip(&plan.paths) {
                for hop in path.hops.iter().filter(|h| h.host == hp.host) {
                    if !matches!(
                        hop.kind,
                        amwall::route::HopKind::Destination | amwall::route::HopKind::Forward
                    ) {
                        continue;
                    }
                    hints.push(Hint {
                        iif: hop.in_iface.clone().unwrap(),
                        src: hop.src,
                        dst: hop.dst,
                        proto: if f.proto == amwall::ports::Proto::Tcp {
                            6
                        } else {
                            17
                        },
                        sport: f.sport.map_or((32768, 60999), |r| (r.lo, r.hi)),
                        dport: (f.dport.lo, f.dport.hi),
                    });
                }
            }
            out.push(Case {
                label: format!("{label}.rules"),
                hints: hints.clone(),
                text: plan.iptables(hp),
                nft: false,
                setup: setup.clone(),
                ipset_names: vec![],
                skipped: vec![],
            });
            out.push(Case {
                label: format!("{label}.nft"),
                hints,
                text: plan.nft(hp),
                nft: true,
                setup,
                ipset_names: vec![],
                skipped: vec![],
            });
        }
    }
    out
}

fn real_world_cases() -> Vec<Case> {
    let Some(files) = common::real_world_files() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        // The collectors anonymised MAC addresses as XX:...; any valid one keeps the rule.
        let mut text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:01");
        // iptables-save 1.3 printed `-d ! X`; today's iptables-restore only
        // reads `! -d X` (the same rule).
        for o in ["-s", "-d", "-i", "-o", "-p"] {
            text = text.replace(&format!(" {o} ! "), &format!(" ! {o} "));
        }
        if text.contains("ip6tables-save") {
            continue; // IPv6: the packets here are IPv4.
        }
        let parsed = iptables::parse(&name, &text).unwrap();
        let c = compile(
            &parsed.ruleset,
            &SetDb { ipsets: None },
            &HostInfo::default(),
            false,
        );
        // One veth per interface class the rules tell apart.
        let mut names: Vec<String> = Vec::new();
        for cl in &c.ifaces.classes {
            let n = match cl {
                compile::IfClass::Exact(n) if n != "lo" => n.clone(),
                compile::IfClass::Prefix(p) => format!("{p}7"),
                compile::IfClass::Other => "zzother0".into(),
                _ => continue,
            };
            let valid = !n.is_empty()
                && n.len() <= 15
                && n.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
            if valid && !names.contains(&n) && names.len() < 24 {
                names.push(n);
            }
        }
        let mut setup = Setup::default();
        for (i, n) in names.iter().enumerate() {
            setup
                .ifaces
                .push((n.clone(), vec![(Ipv4Addr::new(192, 0, 2, 1 + i as u8), 32)]));
            if i < 16 {
                setup.routes.push((
                    Ipv4Net::new(Ipv4Addr::new(203, 0, 113, (8 * i) as u8), 29).unwrap(),
                    n.clone(),
                ));
            }
        }
        if let Some(first) = names.first() {
            setup
                .routes
                .push(("198.51.100.0/24".parse().unwrap(), first.clone()));
            setup.routes.push((
                "203.0.113.128/25".parse().unwrap(),
                names.get(1).unwrap_or(first).clone(),
            ));
        }
        for k in 0..16u8 {
            setup
                .destinations
                .push(Ipv4Addr::new(203, 0, 113, 8 * k + 3));
        }
        let ipset_names = text
            .split("--match-set ")
            .skip(1)
            .map(|x| x.split_whitespace().next().unwrap().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        out.push(Case {
            label: name,
            hints: vec![],
            text,
            nft: false,
            setup,
            ipset_names,
            skipped: vec![],
        });
    }
    out
}

// ---------------------------------------------------------------- comparing

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Input,
    Forwarded,
    Dropped,
    /// The simulator met an action it cannot evaluate (any kernel fate agrees).
    Unknown,
}

fn fate_of(e: &amwall::sim::End) -> Fate {
    match e {
        amwall::sim::End::Unknown { .. } | amwall::sim::End::Loop { .. } => Fate::Unknown,
        _ => Fate::Dropped,
    }
}

type Key = (String, String, Option<usize>);

/// The rules (and policies) a trace matched, without those amwall cannot decide.
fn matched(
    c: &compile::Compiled,
    s: &State,
    tables: &[String],
    unknown: &BTreeSet<(usize, usize)>,
) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    for st in s.trace.iter().flatten() {
        match st {
            Step::Rule {
                chain,
                rule,
                res: RuleRes::Match | RuleRes::AssumedMatch,
            } if !unknown.contains(&(*chain, *rule)) => {
                let ch = &c.chains[*chain];
                out.insert((tables[ch.table].clone(), ch.name.clone(), Some(*rule)));
            }
            Step::End {
                chain,
                policy: Some(_),
            } => {
                let ch = &c.chains[*chain];
                out.insert((tables[ch.table].clone(), ch.name.clone(), None));
            }
            _ => {}
        }
    }
    out
}

struct Checker<'a> {
    c: compile::Compiled,
    info: HostInfo,
    setup: &'a Setup,
    tables: Vec<String>,
    unknown: BTreeSet<(usize, usize)>,
    /// The same rules as the kernel lists them (`nft list ruleset` of what
    /// iptables-restore loaded), parsed by the nft parser: its verdicts must
    /// agree as well.
    listed: Option<compile::Compiled>,
}

impl Checker<'_> {
    /// The simulator's outcomes for a state arriving on `iif`: (final state, fate).
    fn run(&self, s: State, iif: &str) -> Vec<(State, Fate)> {
        let e = Engine::new(&self.c, &self.info);
        let mut s = s;
        s.cube.ifs = [self.c.ifaces.class_of(iif), self.c.ifaces.class_of("")];
        let mut out = Vec::new();
        let (pre, stop) = e.run_hook(Hook::Prerouting, vec![s]);
        out.extend(stop.into_iter().map(|(s, e)| (s, fate_of(&e))));
        let local: Vec<u128> = self
            .setup
            .local()
            .iter()
            .map(|a| u32::from(*a) as u128)
            .collect();
        for s in pre {
            let dst = s.eff(DST).clone();
            assert!(dst.is_point(), "NAT to a range: {dst}");
            let d = dst.lo();
            if local.contains(&d) || d >> 24 == 127 {
                let (inp, stop) = e.run_hook(Hook::Input, vec![s]);
                out.extend(stop.into_iter().map(|(s, e)| (s, fate_of(&e))));
                out.extend(inp.into_iter().map(|s| (s, Fate::Input)));
                continue;
            }
            let Some(oif) = self.setup.route(Ipv4Addr::from(d as u32)) else {
                out.push((s, Fate::Dropped));
                continue;
            };
            let mut s = s;
            s.cube.ifs[OIF] = self.c.ifaces.class_of(&oif);
            // ip_forward decrements the TTL before the forward hook.
            s.ttl = s.ttl.map(|t| t - 1);
            let (fwd, stop) = e.run_hook(Hook::Forward, vec![s]);
            out.extend(stop.into_iter().map(|(s, e)| (s, fate_of(&e))));
            let (post, stop) = e.run_hook(Hook::Postrouting, fwd);
            out.extend(stop.into_iter().map(|(s, e)| (s, fate_of(&e))));
            out.extend(post.into_iter().map(|s| (s, Fate::Forwarded)));
        }
        out
    }
}

fn point_state(p: &Pkt, base: CtBase) -> State {
    let mut cube = Cube::full(false, 0, 0);
    cube.set(SRC, Iv::point(u32::from(p.src) as u128));
    cube.set(DST, Iv::point(u32::from(p.dst) as u128));
    cube.set(PROTO, Iv::point(p.proto as u128));
    if p.proto == 1 {
        cube.set(SPORT, Iv::point(0));
        cube.set(DPORT, Iv::point((p.icmp.0 as u128) << 8));
    } else {
        cube.set(SPORT, Iv::point(p.sport as u128));
        cube.set(DPORT, Iv::point(p.dport as u128));
    }
    let mut s = State::new(
        cube,
        Ct::new_conn(base, amwall::netfilter::CtDirection::Original),
        true,
    );
    if p.proto == 6 {
        s.tcp_flags = Some(p.flags);
    }
    s.ttl = Some(64);
    s.len = Some(p.ip().len() as u16);
    s
}

#[derive(Default)]
struct Tally {
    related: usize,
    listed: usize,
    packets: usize,
    compared_rules: usize,
    disagreements: Vec<String>,
}

/// Send `p` on `iif`, compare the kernel's fate (and counters) with the
/// simulator's outcomes; returns the agreeing outcome.
#[allow(clippy::too_many_arguments)]
fn probe(
    b: &Bench,
    ck: &Checker,
    case: &Case,
    iif: &str,
    p: &Pkt,
    state: State,
    what: &str,
    tally: &mut Tally,
) -> Option<(State, Fate)> {
    let before = b.observed();
    let cnt_before = (!case.nft).then(|| b.counters());
    b.send(iif, p);
    // The packet has been through the stack once the first chain counted it
    // (prerouting to input or postrouting runs in one softirq pass).
    let mut after = b.observed();
    for _ in 0..200 {
        if after.0 > before.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        after = b.observed();
    }
    assert!(
        after.0 > before.0,
        "{}: the packet never arrived",
        case.label
    );
    std::thread::sleep(Duration::from_millis(2));
    let after = b.observed();
    let kernel = match (after.1 - before.1, after.2 - before.2) {
        (0, 0) => Fate::Dropped,
        (1, 0) => Fate::Input,
        (0, 1) => Fate::Forwarded,
        other => panic!("{}: observer saw {other:?} for one packet", case.label),
    };
    let fired: Option<BTreeSet<Key>> = cnt_before.map(|before| {
        b.counters()
            .into_iter()
            .filter(|(k, v)| before.get(k).map_or(*v > 0, |x| v > x))
            .filter(|(k, _)| {
                // Only what the simulated file has (not the observer, nor the unknowns).
                k.2.map_or(true, |i| {
                    !ck.c.chains.iter().enumerate().any(|(id, ch)| {
                        ck.tables[ch.table] == k.0
                            && ch.name == k.1
                            && ck.unknown.contains(&(id, i))
                    })
                })
            })
            .map(|(k, _)| k)
            .collect()
    });
    tally.packets += 1;
    if let Some(l) = &ck.listed {
        let other = Checker {
            c: l.clone(),
            info: ck.info.clone(),
            setup: ck.setup,
            tables: vec![],
            unknown: BTreeSet::new(),
            listed: None,
        };
        let mut st = state.clone();
        st.trace = None;
        let outs = other.run(st, iif);
        tally.listed += 1;
        if !outs
            .iter()
            .any(|(_, f)| *f == kernel || *f == Fate::Unknown)
        {
            tally.disagreements.push(format!(
                "{} [{what}, as nft lists it] {p:?} in {iif}: kernel {kernel:?}, sim {:?}",
                case.label,
                outs.iter().map(|(_, f)| *f).collect::<Vec<_>>()
            ));
        }
    }
    let outcomes = ck.run(state, iif);
    let agree = outcomes.iter().find(|(s, f)| {
        *f == Fate::Unknown
            || *f == kernel
                && fired
                    .as_ref()
                    .map_or(true, |k| *k == matched(&ck.c, s, &ck.tables, &ck.unknown))
    });
    if let Some(k) = &fired {
        tally.compared_rules += k.len();
    }
    match agree {
        Some(x) => Some(x.clone()),
        None => {
            let mut msg = format!(
                "{} [{what}] {p:?} in {iif}: kernel {kernel:?}{}\n",
                case.label,
                fired
                    .as_ref()
                    .map(|k| format!(", matched {k:?}"))
                    .unwrap_or_default()
            );
            for (s, f) in &outcomes {
                msg.push_str(&format!(
                    "  sim {f:?}{}: matched {:?}\n",
                    if s.tainted() { " (a branch)" } else { "" },
                    matched(&ck.c, s, &ck.tables, &ck.unknown)
                ));
                for st in s.trace.iter().flatten() {
                    msg.push_str(&format!("      {st:?}\n"));
                }
            }
            tally.disagreements.push(msg);
            None
        }
    }
}

/// Ports the rules mention, to aim at.
fn ports_of(c: &compile::Compiled) -> Vec<u16> {
    fn walk(a: &Atom, out: &mut BTreeSet<u16>) {
        match a {
            Atom::Dim { d, set } if *d == SPORT || *d == DPORT => {
                for iv in &set.ivs {
                    for v in [iv.lo, iv.hi, iv.lo.saturating_sub(1), iv.hi + 1] {
                        if (1..=65535).contains(&v) {
                            out.insert(v as u16);
                        }
                    }
                }
            }
            Atom::And(v) | Atom::Or(v) => v.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut s = BTreeSet::new();
    for ch in &c.chains {
        for r in &ch.rules {
            r.atoms.iter().for_each(|a| walk(a, &mut s));
        }
    }
    s.into_iter().collect()
}

/// `AMWALL_KERNEL_SCALE=N` sends N times as many packets (for longer hunts).
fn scale() -> usize {
    std::env::var("AMWALL_KERNEL_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn run_cases(cases: Vec<Case>, per_case: usize, rng: &mut Rng) -> Tally {
    let per_case = per_case * scale();
    let mut tally = Tally::default();
    let mut used: BTreeSet<(u8, Ipv4Addr, u16, Ipv4Addr, u16)> = BTreeSet::new();
    // Connections an amanda helper may expect after a `CONNECT` reply went
    // through: (src, dst, port). Random first packets keep away from them
    // (the kernel would call them RELATED for three minutes).
    let mut expected: BTreeSet<(Ipv4Addr, Ipv4Addr, u16)> = BTreeSet::new();
    for mut case in cases {
        let b = Bench::new(&case.setup);
        load(&b, &mut case);
        let file = RulesFile::parse(&case.label, case.text.clone()).unwrap();
        let sets = (!case.ipset_names.is_empty()).then(|| {
            let text: String = case
                .ipset_names
                .iter()
                .map(|n| format!("create {n} hash:net family inet\n"))
                .collect();
            ipset::parse("empty sets", &text).unwrap()
        });
        let hr = HostRules::new(vec![file], sets);
        let info = case.setup.host_info();
        let c = compile(
            &hr.ruleset,
            &SetDb {
                ipsets: hr.ipsets.as_ref(),
            },
            &info,
            false,
        );
        let mut unknown = BTreeSet::new();
        for (id, ch) in c.chains.iter().enumerate() {
            for (ri, r) in ch.rules.iter().enumerate() {
                fn unk(a: &Atom) -> bool {
                    match a {
                        Atom::St(StAtom::Unknown(_), _) => true,
                        Atom::And(v) | Atom::Or(v) => v.iter().any(unk),
                        _ => false,
                    }
                }
                if r.atoms.iter().any(unk) {
                    unknown.insert((id, ri));
                }
            }
        }
        let tables = hr.ruleset.tables.iter().map(|t| t.name.clone()).collect();
        let ports = ports_of(&c);
        let listed = (!case.nft).then(|| {
            let text = must(&b.h, &["nft", "list", "ruleset"]);
            let p = amwall::netfilter::nft::parse("nft list ruleset", &text)
                .unwrap_or_else(|e| panic!("{}: nft listing: {e:?}", case.label));
            compile(
                &p.ruleset,
                &SetDb {
                    ipsets: hr.ipsets.as_ref(),
                },
                &info,
                false,
            )
        });
        let ck = Checker {
            c,
            info,
            setup: &case.setup,
            tables,
            unknown,
            listed,
        };
        let ifaces: Vec<String> = case.setup.ifaces.iter().map(|(n, _)| n.clone()).collect();
        let local = case.setup.local();
        let doc_src = |rng: &mut Rng| -> Ipv4Addr {
            if rng.chance(50) {
                Ipv4Addr::new(198, 51, 100, 1 + rng.below(254) as u8)
            } else {
                Ipv4Addr::new(203, 0, 113, 128 + rng.below(127) as u8)
            }
        };
        for _ in 0..per_case {
            let port = |rng: &mut Rng| -> u16 {
                if !ports.is_empty() && rng.chance(70) {
                    *rng.pick(&ports)
                } else {
                    1 + rng.below(65535) as u16
                }
            };
            let in_range = |rng: &mut Rng, (lo, hi): (u16, u16)| {
                lo + rng.below(usize::from(hi - lo) + 1) as u16
            };
            let (proto, mut src, dst, mut sport, mut dport, mut iif);
            if !case.hints.is_empty() && rng.chance(65) {
                // A flow's packet, sometimes with one field changed.
                let h = rng.pick(&case.hints).clone();
                (proto, src, dst, iif) = (h.proto, h.src, h.dst, h.iif.clone());
                sport = in_range(rng, h.sport);
                dport = in_range(rng, h.dport);
                if rng.chance(30) {
                    match rng.below(4) {
                        0 => sport = port(rng),
                        1 => dport = port(rng),
                        2 => src = doc_src(rng),
                        _ => iif = rng.pick(&ifaces).clone(),
                    }
                }
            } else {
                proto = *rng.pick(&[6u8, 6, 17, 17, 1]);
                src = if !case.setup.sources.is_empty() && rng.chance(70) {
                    *rng.pick(&case.setup.sources)
                } else {
                    doc_src(rng)
                };
                let forward = !case.setup.destinations.is_empty() && rng.chance(40);
                dst = if forward {
                    *rng.pick(&case.setup.destinations)
                } else {
                    *rng.pick(&local)
                };
                (sport, dport) = (port(rng), port(rng));
                iif = rng.pick(&ifaces).clone();
            }
            if local.contains(&src) {
                src = doc_src(rng);
            }
            if dst == src {
                continue;
            }
            if proto == 6 && expected.contains(&(src, dst, dport)) {
                continue;
            }
            let mut tries = 0;
            while !used.insert((proto, src, sport, dst, dport)) && tries < 100 {
                sport = 1024 + rng.below(60000) as u16;
                tries += 1;
            }
            let p = Pkt {
                proto,
                src,
                dst,
                sport,
                dport,
                flags: 0x02,
                seq: rng.next() as u32,
                ack: 0,
                icmp: (8, rng.next() as u16),
                payload: vec![],
            };
            let st = point_state(&p, CtBase::New);
            let Some((fin, fate)) = probe(&b, &ck, &case, &iif, &p, st, "first", &mut tally) else {
                continue;
            };
            if fate != Fate::Forwarded || fin.tainted() {
                continue;
            }
            // The reply, from where the first packet went, and a later packet.
            let e = fin.effective_cube();
            // Only when the simulator knows the connection's addresses and
            // ports exactly (not a port NAT picks at random).
            if !(SRC..=DPORT).all(|d| e.iv[d].is_point()) {
                continue;
            }
            let (rs, rd, rsp, rdp) = (
                e.iv[SRC].hull(),
                e.iv[DST].hull(),
                e.iv[SPORT].hull(),
                e.iv[DPORT].hull(),
            );
            // It comes in where the first packet went out.
            let Some(oif) = ck.setup.route(Ipv4Addr::from(rd.lo as u32)) else {
                continue;
            };
            let synack_seq = rng.next() as u32;
            let r = Pkt {
                proto,
                src: Ipv4Addr::from(rd.lo as u32),
                dst: Ipv4Addr::from(rs.lo as u32),
                sport: rdp.lo as u16,
                dport: rsp.lo as u16,
                flags: 0x12,
                seq: synack_seq,
                ack: p.seq.wrapping_add(1),
                icmp: (0, p.icmp.1),
                // What amandad answers a sendbackup request with: the
                // amanda helper reads it (if assigned) and expects the
                // dumper's connections to these ports.
                payload: if proto == 17 && rdp.lo == 10080 {
                    b"Amanda 2.6 REP HANDLE 000-1 SEQ 1\nCONNECT DATA 50010 MESG 50011 INDEX 50012 STATE 50013\n".to_vec()
                } else {
                    vec![]
                },
            };
            let mut rst = sim::reply_of(&fin, true);
            rst.ttl = Some(64);
            rst.len = Some(r.ip().len() as u16);
            if !r.payload.is_empty() {
                for port in 50010..=50013 {
                    expected.insert((p.src, p.dst, port));
                }
            }
            let Some((rstate, rfate)) = probe(&b, &ck, &case, &oif, &r, rst, "reply", &mut tally)
            else {
                continue;
            };
            // Conntrack saw the reply unless NOTRACK took it out.
            let answered = !rstate.ct.untracked;
            let mut l = p.clone();
            l.flags = 0x10;
            l.seq = p.seq.wrapping_add(1);
            l.ack = synack_seq.wrapping_add(1);
            let mut lst = sim::later_of(&fin, answered, true);
            lst.ttl = Some(64);
            lst.len = Some(l.ip().len() as u16);
            probe(&b, &ck, &case, &iif, &l, lst, "later", &mut tally);
            // The helper's expected data connection: RELATED where the
            // simulator says the helper was assigned, NEW elsewhere.
            // (The helper reads the reply where conntrack confirms it, at the
            // end of postrouting: only a forwarded reply creates expectations.)
            if proto == 17 && p.dport == 10080 && rfate == Fate::Forwarded {
                let d = Pkt {
                    proto: 6,
                    sport: 50000 + rng.below(100) as u16,
                    dport: 50010,
                    flags: 0x02,
                    seq: rng.next() as u32,
                    payload: vec![],
                    ..p.clone()
                };
                if !used.insert((6, d.src, d.sport, d.dst, d.dport)) {
                    continue;
                }
                let helper = fin.ct.helper.as_deref() == Some("amanda");
                let mut st = point_state(&d, if helper { CtBase::Related } else { CtBase::New });
                if helper {
                    tally.related += 1;
                }
                // nf_nat_follow_master, only for a NATed master: the master's
                // addresses, and no nat chains.
                if helper && fin.ct.nat_bits.iter().any(|b| *b) {
                    st.ct.nat_done = [true, true];
                    let fe = fin.effective_cube();
                    st.ct.pending = [
                        fin.ct.nat_bits[0].then(|| (Some(fe.iv[DST].clone()), None)),
                        fin.ct.nat_bits[1].then(|| (Some(fe.iv[SRC].clone()), None)),
                    ]
                    .into();
                }
                probe(&b, &ck, &case, &iif, &d, st, "data (helper)", &mut tally);
            }
        }
        for s in &case.skipped {
            println!("{}: the kernel refused {s}: left out", case.label);
        }
    }
    tally
}

fn report(name: &str, t: &Tally) {
    println!(
        "{name}: {} packets compared with the kernel ({} rule counters, {} helper-expected connections, {} also through the nft listing), {} disagreements",
        t.packets,
        t.compared_rules,
        t.related,
        t.listed,
        t.disagreements.len()
    );
    assert!(
        t.disagreements.is_empty(),
        "the simulator disagrees with the kernel (seed {}):\n{}",
        seed(),
        t.disagreements.join("\n")
    );
}

#[test]
fn generated_rulesets_agree_with_the_kernel() {
    let mut rng = Rng(seed());
    let cases = generated_cases();
    assert!(cases.len() >= 20, "{} cases", cases.len());
    let t = run_cases(cases, 14, &mut rng);
    report("generated", &t);
    assert!(t.packets >= 300);
}

#[test]
fn real_world_rulesets_agree_with_the_kernel() {
    let mut rng = Rng(seed() ^ 0x9e37_79b9_7f4a_7c15);
    let cases = real_world_cases();
    assert!(cases.len() >= 15, "{} cases", cases.len());
    let t = run_cases(cases, 16, &mut rng);
    report("real-world", &t);
    assert!(t.packets >= 250);
}

/// Handwritten rulesets for the corners generated and real-world ones rarely
/// reach: conntrack in raw (no entry yet), NOTRACK → UNTRACKED, marks and
/// connmarks, goto/return, DNAT and REDIRECT with ports, SNAT to a port range,
/// masquerade, `ct state DNAT`; in nft, several tables on one hook (each must
/// accept), reject, sets and concatenations, a nat chain on one hook only.
fn crafted_cases() -> Vec<Case> {
    let ipt = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j CT --notrack
-A PREROUTING -m conntrack --ctstate NEW -j DROP
-A PREROUTING -p tcp -m conntrack --ctstate INVALID -m tcp --dport 7 -j DROP
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 8000:8100 -j MARK --set-xmark 0x5/0xff
-A PREROUTING -m mark --mark 0x5/0xff -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A FORWARD -m connmark --mark 0x5 -p tcp -m tcp --dport 8050 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 203.0.113.5:80
-A PREROUTING -p tcp -m tcp --dport 2222 -j REDIRECT --to-ports 22
-A PREROUTING -p udp -m udp --dport 5000:5010 -j DNAT --to-destination 203.0.113.6:6000-6005
-A POSTROUTING -o fwout -p tcp -m tcp --dport 9000:9100 -j SNAT --to-source 203.0.113.1:2000-2100
-A POSTROUTING -o fwout -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:CHK - [0:0]
:SUB - [0:0]
-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j CHK
-A INPUT -p tcp -m mark --mark 0x5/0xff -j ACCEPT
-A INPUT ! -i fwin -p icmp -j ACCEPT
-A CHK -s 198.51.100.0/25 -g SUB
-A CHK -j RETURN
-A SUB -p tcp -m tcp --sport 1024:65535 -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT
-A FORWARD -i fwin -o fwout -p udp -m udp ! --dport 53 -j ACCEPT
-A FORWARD -i fwin -o fwout -p tcp -m multiport --dports 8000:8100,9000:9100 -j ACCEPT
-A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -m addrtype --dst-type MULTICAST -j DROP
COMMIT
";
    let nft = "table inet t1 {
\tchain in {
\t\ttype filter hook input priority 0; policy accept;
\t\ttcp dport 23 drop
\t\tip saddr 198.51.100.0/24 udp dport 69 reject
\t}
\tchain forward {
\t\ttype filter hook forward priority 10; policy drop;
\t\tct state established,related accept
\t\tiifname \"fwin\" oifname \"fwout\" accept
\t\tmeta l4proto icmp accept
\t}
}
table ip t2 {
\tchain in {
\t\ttype filter hook input priority -10; policy drop;
\t\tct state established,related accept
\t\ttcp dport { 22, 23, 80 } accept
\t\tudp dport 60-70 accept
\t\tip saddr . tcp dport { 198.51.100.7 . 443 } accept
\t}
\tchain pre {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\ttcp dport 8443 dnat to 203.0.113.9:443
\t}
\tchain post {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\toifname \"fwout\" masquerade
\t}
}
";
    let setup = Setup {
        ifaces: vec![
            ("fwin".into(), vec![(Ipv4Addr::new(192, 0, 2, 1), 24)]),
            ("fwout".into(), vec![(Ipv4Addr::new(203, 0, 113, 1), 24)]),
        ],
        routes: vec![("198.51.100.0/24".parse().unwrap(), "fwin".into())],
        default: None,
        sources: vec![
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(198, 51, 100, 200),
        ],
        destinations: vec![
            Ipv4Addr::new(203, 0, 113, 5),
            Ipv4Addr::new(203, 0, 113, 9),
            Ipv4Addr::new(203, 0, 113, 50),
        ],
    };
    let mut hints = Vec::new();
    for (src, dst, iif) in [
        (
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(203, 0, 113, 50),
            "fwin",
        ),
        (
            Ipv4Addr::new(198, 51, 100, 7),
            Ipv4Addr::new(192, 0, 2, 1),
            "fwin",
        ),
        (
            Ipv4Addr::new(198, 51, 100, 200),
            Ipv4Addr::new(203, 0, 113, 1),
            "fwout",
        ),
    ] {
        for (proto, dport) in [
            (6, (7, 7)),
            (6, (22, 23)),
            (6, (80, 80)),
            (6, (443, 443)),
            (6, (2222, 2222)),
            (6, (8000, 8100)),
            (6, (8080, 8080)),
            (6, (8443, 8443)),
            (6, (9000, 9100)),
            (17, (53, 53)),
            (17, (60, 70)),
            (17, (5000, 5010)),
        ] {
            hints.push(Hint {
                iif: iif.into(),
                src,
                dst,
                proto,
                sport: if dport.0 == 22 {
                    (512, 2047)
                } else {
                    (1, 65535)
                },
                dport,
            });
        }
    }
    // The amanda helper on a master connection nothing NATs: its expected
    // data connection is RELATED, and its first packet still walks the nat
    // chains (nf_conntrack_amanda.c sets nf_nat_follow_master only for a
    // NATed master), so the DNAT below applies and the forward rule for the
    // new address accepts it. Found by a longer randomized run on a
    // real-world ruleset; here it is reached on every run.
    let helper_ipt = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 10080 -j CT --helper amanda
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 50000:50100 -j DNAT --to-destination 203.0.113.9
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -d 203.0.113.9/32 -m conntrack --ctstate RELATED -j ACCEPT
-A FORWARD -i fwin -o fwout -p udp -m udp --dport 10080 -j ACCEPT
COMMIT
";
    let helper_hints: Vec<Hint> = [
        Ipv4Addr::new(203, 0, 113, 50),
        Ipv4Addr::new(203, 0, 113, 5),
    ]
    .into_iter()
    .map(|dst| Hint {
        iif: "fwin".into(),
        src: Ipv4Addr::new(192, 0, 2, 10),
        dst,
        proto: 17,
        sport: (840, 860),
        dport: (10080, 10080),
    })
    .collect();
    vec![
        Case {
            label: "crafted-helper.rules".into(),
            hints: helper_hints,
            text: helper_ipt.into(),
            nft: false,
            setup: setup.clone(),
            ipset_names: vec![],
            skipped: vec![],
        },
        Case {
            label: "crafted.rules".into(),
            hints: hints.clone(),
            text: ipt.into(),
            nft: false,
            setup: setup.clone(),
            ipset_names: vec![],
            skipped: vec![],
        },
        Case {
            label: "crafted.nft".into(),
            hints,
            text: nft.into(),
            nft: true,
            setup,
            ipset_names: vec![],
            skipped: vec![],
        },
    ]
}

#[test]
fn crafted_rulesets_agree_with_the_kernel() {
    let mut rng = Rng(seed() ^ 0x2545_f491);
    let t = run_cases(crafted_cases(), 90, &mut rng);
    report("crafted", &t);
    assert!(t.packets >= 180);
}
