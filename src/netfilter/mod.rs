//! One intermediate representation of a netfilter ruleset, with a parser and an
//! emitter per format (iptables-save/-restore, nft). `plan` builds it from the
//! policy; `check` parses real rulesets into the same types, so every emitted
//! ruleset re-parses to what was emitted (`parse(emit(ir)) == ir`, up to
//! [`Ruleset::canonical`]).
//!
//! iptables' fixed tables map onto the same shape as nft's: a table of chains,
//! base chains carrying hook, type, priority and policy (iptables' `filter`
//! INPUT is a filter-type base chain on the input hook at priority 0).
//!
//! Parsed rulesets need more than `plan` emits: negation ([`Match::Not`]),
//! protocols other than tcp/udp, IPv6, marks, rate limits, user chains, jumps.
//! What a parser does not understand is kept as [`Match::Unknown`] /
//! [`Action::Unknown`] with its text, so the simulator can answer "unknown"
//! instead of guessing, and a parse never fails on an unfamiliar extension.

pub mod ipset;
pub mod iptables;
pub mod names;
pub mod nft;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::ports::{PortRange, Proto};

/// The two rule formats amwall emits, checks, lab-tests and applies. One type for
/// every layer, so a plan's file, a lab run and a pending apply cannot disagree on
/// what "nft" means; the serde spelling is what lab reports and apply state files
/// already carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// iptables-restore (plus `ipset restore` for large address groups).
    Iptables,
    /// `nft -f`.
    Nft,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Iptables, Backend::Nft];

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nft => "nft",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}` (iptables or nft)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ip,
    /// ip6tables, or nft `table ip6`.
    Ip6,
    /// nft only: one table for both IP versions.
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    /// The nft spelling (`table ip6 ...`).
    pub fn name(&self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    /// nft netdev/inet only.
    Ingress,
    /// nft netdev only.
    Egress,
}

impl Hook {
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    /// iptables' mangle OUTPUT, nft `type route`: may reroute after a mark change.
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// Standard priorities (nft(8) "PRIORITY"), which are also iptables' table priorities.
pub mod priority {
    pub const RAW: i32 = -300;
    pub const MANGLE: i32 = -150;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SECURITY: i32 = 50;
    pub const SRCNAT: i32 = 100;
}

/// The iptables tables, in the order the kernel consults them at a hook.
pub const IPTABLES_TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];

/// What an iptables built-in chain is as a base chain: its type, hook and
/// priority (the table's priority, nat split into dstnat/srcnat as the kernel
/// registers it). `None` for a user chain or an unknown table.
pub fn iptables_builtin(table: &str, chain: &str) -> Option<(ChainType, Hook, i32)> {
    let hook = match chain {
        "PREROUTING" => Hook::Prerouting,
        "INPUT" => Hook::Input,
        "FORWARD" => Hook::Forward,
        "OUTPUT" => Hook::Output,
        "POSTROUTING" => Hook::Postrouting,
        _ => return None,
    };
    let (kind, prio) = match (table, hook) {
        ("raw", Hook::Prerouting | Hook::Output) => (ChainType::Filter, priority::RAW),
        ("mangle", Hook::Output) => (ChainType::Route, priority::MANGLE),
        ("mangle", _) => (ChainType::Filter, priority::MANGLE),
        ("nat", Hook::Prerouting | Hook::Output) => (ChainType::Nat, priority::DSTNAT),
        ("nat", Hook::Input | Hook::Postrouting) => (ChainType::Nat, priority::SRCNAT),
        ("filter", Hook::Input | Hook::Forward | Hook::Output) => {
            (ChainType::Filter, priority::FILTER)
        }
        ("security", Hook::Input | Hook::Forward | Hook::Output) => {
            (ChainType::Filter, priority::SECURITY)
        }
        _ => return None,
    };
    Some((kind, hook, prio))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// A named set of addresses of one family: nft's `ipv4_addr`/`ipv6_addr`
/// sets, ipset's `family inet`/`inet6` ones. `v6` says which of the two
/// lists holds the members (the other stays empty), since an empty set has
/// a family too: a rule of the other family never matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub elements: Vec<Ipv4Net>,
    pub v6: bool,
    pub elements6: Vec<Ipv6Net>,
}

impl Set {
    pub fn v4(name: impl Into<String>, elements: Vec<Ipv4Net>) -> Set {
        Set {
            name: name.into(),
            elements,
            v6: false,
            elements6: Vec::new(),
        }
    }

    pub fn v6(name: impl Into<String>, elements6: Vec<Ipv6Net>) -> Set {
        Set {
            name: name.into(),
            elements: Vec::new(),
            v6: true,
            elements6,
        }
    }

    /// nft needs `flags interval` once any element is a prefix rather than an address.
    pub fn needs_interval(&self) -> bool {
        self.elements.iter().any(|e| e.prefix_len() < 32)
            || self.elements6.iter().any(|e| e.prefix_len() < 128)
    }

    /// Every member as an address of its family.
    pub fn addrs(&self) -> Vec<Addr> {
        let v4 = self.elements.iter().map(|&n| Addr::Net(n));
        v4.chain(self.elements6.iter().map(|&n| Addr::Net6(n)))
            .collect()
    }
}

/// An nft conntrack helper object (`ct helper NAME { type "amanda" protocol udp; }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtHelper {
    pub name: String,
    pub helper: String,
    pub proto: Proto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub sets: Vec<Set>,
    pub ct_helpers: Vec<CtHelper>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// One jump from a built-in iptables chain into a chain of amwall's
/// (`-A FROM -j CHAIN` in TABLE): how merged mode's chains are entered. A
/// restore file cannot add a rule only if it is missing, so whoever loads
/// merged rules adds these (`HOST.merged.sh`, `apply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jump {
    pub table: String,
    pub from: String,
    pub chain: String,
}

impl Jump {
    /// The line iptables-save prints for it.
    pub fn rule_line(&self) -> String {
        format!("-A {} -j {}", self.from, self.chain)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Ruleset {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    /// `-j NOTRACK` / `-j CT --notrack` made the packet skip conntrack.
    Untracked,
    /// Original destination differs from the reply source (iptables only).
    Snat,
    Dnat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Net(Ipv4Net),
    /// A named set (nft set, or ipset for iptables).
    Set(String),
    Net6(Ipv6Net),
    /// An inclusive range (`-m iprange`, nft `a-b`); both ends of one version.
    Range(IpAddr, IpAddr),
}

impl Addr {
    /// A single host or prefix of either version, host bits cleared the way
    /// the kernel stores it.
    pub fn net(a: IpAddr, prefix: u8) -> Option<Addr> {
        match a {
            IpAddr::V4(a) => Ipv4Net::new(a, prefix).ok().map(|n| Addr::Net(n.trunc())),
            IpAddr::V6(a) => Ipv6Net::new(a, prefix).ok().map(|n| Addr::Net6(n.trunc())),
        }
    }

    /// Some(true) for IPv6, Some(false) for IPv4, None for a set name.
    pub fn is_v6(&self) -> Option<bool> {
        match self {
            Addr::Net(_) => Some(false),
            Addr::Net6(_) => Some(true),
            Addr::Range(a, _) => Some(a.is_ipv6()),
            Addr::Set(_) => None,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Net(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr()),
            Addr::Net(n) => write!(f, "{n}"),
            Addr::Set(s) => write!(f, "@{s}"),
            Addr::Net6(n) if n.prefix_len() == 128 => write!(f, "{}", n.addr()),
            Addr::Net6(n) => write!(f, "{n}"),
            Addr::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Source or destination, for matches that name one (addrtype, ipset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    Src,
    Dst,
}

/// Kernel address types (`-m addrtype`, nft `fib ... type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrType {
    Unspec,
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Nat,
    Xresolve,
}

/// Link-layer packet type (`-m pkttype`, nft `meta pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PktType {
    Unicast,
    Broadcast,
    Multicast,
}

/// The four addresses/ports conntrack keeps per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtTuple {
    OrigSrc,
    OrigDst,
    ReplSrc,
    ReplDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtStatus {
    None,
    Expected,
    SeenReply,
    Assured,
    Confirmed,
    /// nft's `ct status snat` / `dnat`: the connection's source (destination) was
    /// translated. iptables spells the same kernel bits `--ctstate SNAT` / `DNAT`.
    Snat,
    Dnat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtDirection {
    Original,
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
}

/// `-m owner` (locally generated packets only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Uid(u32, u32),
    Gid(u32, u32),
    SocketExists,
}

/// An ICMP or ICMPv6 type; `None` means any (type `any`, or any code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpType {
    pub ty: Option<u8>,
    pub code: Option<u8>,
}

/// TCP flag bits as in the header (FIN = 0x01 ... CWR = 0x80).
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    pub const ALL: u8 = 0x3f;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    InIface(String),
    OutIface(String),
    Src(Addr),
    Dst(Addr),
    Proto(Proto),
    /// Sorted, non-empty when `plan` builds it; parsed lists keep the file's
    /// order (multiport matches any of them). Ports of the rule's protocol.
    SPort(Vec<PortRange>),
    DPort(Vec<PortRange>),
    /// Sorted (by `CtState`'s order), non-empty.
    CtState(Vec<CtState>),

    /// `!` before a match, in either syntax. Never nested.
    Not(Box<Match>),
    /// A layer-4 protocol other than tcp and udp (those are always
    /// [`Match::Proto`]), by number (`-p icmp` is `ProtoNum(1)`).
    ProtoNum(u8),
    /// `-m multiport --ports`: source or destination port.
    Port(Vec<PortRange>),
    /// `-f`: second and later fragments.
    Fragment,
    /// The flags under `mask` must be exactly `set` (`--tcp-flags`, `--syn`).
    TcpFlags {
        mask: u8,
        set: u8,
    },
    Icmp(IcmpType),
    Icmp6(IcmpType),
    /// Conntrack's view of the layer-4 protocol (`--ctproto`).
    CtProto(u8),
    CtAddr(CtTuple, Addr),
    CtPort(CtTuple, PortRange),
    /// Sorted, non-empty.
    CtStatus(Vec<CtStatus>),
    CtDirection(CtDirection),
    /// Packet mark: `mark & mask == value`.
    Mark {
        value: u32,
        mask: u32,
    },
    /// Connection mark: `ctmark & mask == value`.
    ConnMark {
        value: u32,
        mask: u32,
    },
    /// Sorted, non-empty. `limit_iface`: only consider the in (Src) / out
    /// (Dst) interface (`--limit-iface-in/out`).
    AddrType {
        dir: Dir,
        types: Vec<AddrType>,
        limit_iface: Option<Dir>,
    },
    /// An ipset looked up with several dimensions (`--match-set S src,dst`);
    /// one dimension is `Src`/`Dst` with [`Addr::Set`].
    IpSet {
        name: String,
        dirs: Vec<Dir>,
    },
    /// Source MAC address, lower-case `aa:bb:..`.
    MacSrc(String),
    PktType(PktType),
    Owner(Owner),
    /// IPv4 TTL or IPv6 hop limit.
    Ttl(Cmp, u8),
    /// Packet length range (`-m length`).
    Length(u16, u16),
    /// Reverse-path filter (`-m rpfilter`): the source is routable back out
    /// the input interface. Flags as iptables spells them (`loose`, ...).
    RpFilter(Vec<String>),
    /// Matches whose outcome depends on state amwall cannot see (rate limits,
    /// recent lists, connection counts, random sampling): the simulator treats
    /// them as "may match". `module` and `args` are kept for the trace.
    Stateful {
        module: String,
        args: Vec<String>,
    },
    /// Any one of the alternatives, each a conjunction: an nft anonymous or
    /// named set that is not a port list (`iifname { "a", "b" }`,
    /// `ip saddr . tcp dport { 10.0.0.1 . 22, ... }`). Non-empty.
    AnyOf(Vec<Vec<Match>>),
    /// IP version 4 or 6 (nft `meta nfproto`, in inet tables).
    IpVersion(u8),
    /// Not understood: kept with its text (`-m foo --bar 1`), so a verdict that
    /// depends on it is "unknown", never a guess.
    Unknown {
        text: String,
    },
}

impl Match {
    /// The match under a negation, and whether it was negated.
    pub fn positive(&self) -> (&Match, bool) {
        match self {
            Match::Not(m) => (m, true),
            m => (m, false),
        }
    }

    pub fn negate(self) -> Match {
        match self {
            Match::Not(m) => *m,
            m => Match::Not(Box::new(m)),
        }
    }

    pub fn is_unknown(&self) -> bool {
        match self.positive().0 {
            Match::Unknown { .. } => true,
            Match::AnyOf(alts) => alts.iter().flatten().any(Match::is_unknown),
            _ => false,
        }
    }
}

/// Where NAT maps a connection to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec {
    /// First and last address; `None` keeps the address (only ports change).
    pub addrs: Option<(IpAddr, IpAddr)>,
    pub ports: Option<PortRange>,
    /// Sorted.
    pub flags: Vec<NatFlag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatFlag {
    Random,
    RandomFully,
    Persistent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Log,
    NfLog,
    ULog,
}

/// What CONNMARK does with the connection mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnMarkOp {
    /// `ctmark = (ctmark & !mask) ^ value`
    Set { value: u32, mask: u32 },
    /// `ctmark = (ctmark & !ctmask) ^ (mark & nfmask)`
    Save { nfmask: u32, ctmask: u32 },
    /// `mark = (mark & !nfmask) ^ (ctmark & ctmask)`
    Restore { nfmask: u32, ctmask: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// Port forward: rewrite the destination address, keep the port.
    Dnat(Ipv4Addr),
    Masquerade,
    /// Attach a conntrack helper (iptables: `-j CT --helper`; nft: `ct helper set`).
    CtHelper(String),

    /// Drop and answer; the type as the format spells it (`icmp-port-unreachable`).
    Reject(Option<String>),
    Return,
    Jump(String),
    Goto(String),
    /// No verdict (a rule without a target, or only counting): next rule.
    Continue,
    /// The packet continues; kept for the trace.
    Log {
        kind: LogKind,
        prefix: Option<String>,
        /// Other options, as written (`--log-level 6`).
        args: Vec<String>,
    },
    /// Set the packet mark: `mark = (mark & !mask) ^ value` (iptables' xmark).
    Mark {
        value: u32,
        mask: u32,
    },
    ConnMark(ConnMarkOp),
    /// DNAT other than [`Action::Dnat`]'s plain IPv4 address: ports, ranges, IPv6.
    DnatTo(NatSpec),
    Snat(NatSpec),
    /// MASQUERADE with ports or flags (the plain one is [`Action::Masquerade`]).
    MasqueradeTo(NatSpec),
    /// DNAT to the host itself, optionally to other ports.
    Redirect(NatSpec),
    /// Map a whole prefix 1:1 (NETMAP), keeping host bits.
    Netmap(Addr),
    /// Skip conntrack (`-j NOTRACK`, `-j CT --notrack`, nft `notrack`).
    Notrack,
    /// A target that lets the packet continue and changes nothing amwall
    /// models (TCPMSS, CHECKSUM, TOS, ...): kept for the trace and for emit.
    Passthrough {
        target: String,
        args: Vec<String>,
    },
    /// Not understood (NFQUEUE, TPROXY, an unknown extension): its verdict is unknown.
    Unknown {
        text: String,
    },
}

/// Where a parsed rule came from, for "BLOCKED at FILE:LINE". The file is the
/// caller's (one parse per file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// 1-based.
    pub line: usize,
    /// The file the line is in: 0 the file parsed, k its `k`th included
    /// file ([`Parsed::includes`]; nft `include`).
    pub file: usize,
}

/// Packet and byte counters as the kernel reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    pub comment: Option<String>,
    /// Set by parsers; `None` for rules `plan` builds.
    pub origin: Option<Origin>,
    /// Set by parsers when the file has them (`iptables-save -c`, nft `counter`).
    pub counters: Option<Counters>,
    /// Statements that run, in order, before `action` when the rule matches:
    /// nft lets one rule log, set a mark and then decide (`log prefix "x" drop`).
    /// iptables rules have none (one target each).
    pub effects: Vec<Action>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        Rule {
            matches,
            action,
            comment: None,
            origin: None,
            counters: None,
            effects: Vec::new(),
        }
    }
    pub fn with_comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
    pub fn at_line(self, line: usize) -> Self {
        self.at(line, 0)
    }
    /// At `line` of file `file` (see [`Origin::file`]).
    pub fn at(mut self, line: usize, file: usize) -> Self {
        self.origin = Some(Origin { line, file });
        self
    }

    /// The same rule in the form every parser produces, for comparing
    /// rulesets: no origin, set-like lists sorted, and the stateless and
    /// unknown matches (a conjunction, so their order cannot matter) sorted
    /// into one fixed order ahead of the stateful ones, which keep theirs (a
    /// rate limit counts only the packets that reach it).
    pub fn canonical(&self) -> Rule {
        fn rank(m: &Match) -> u8 {
            match m.positive().0 {
                Match::InIface(_) => 0,
                Match::OutIface(_) => 1,
                Match::Src(_) => 2,
                Match::Dst(_) => 3,
                Match::Proto(_) | Match::ProtoNum(_) => 4,
                Match::Fragment => 5,
                Match::SPort(_) => 6,
                Match::DPort(_) => 7,
                Match::Stateful { .. } => u8::MAX,
                // Kept text is compared as a set: an emitter may have to
                // move it to read back as one piece.
                Match::Unknown { .. } => 9,
                _ => 8,
            }
        }
        fn sort_lists(m: &mut Match) {
            match m {
                Match::Not(inner) => sort_lists(inner),
                Match::CtState(v) => {
                    v.sort();
                    v.dedup();
                }
                Match::CtStatus(v) => {
                    v.sort();
                    v.dedup();
                }
                Match::AddrType { types, .. } => {
                    types.sort();
                    types.dedup();
                }
                Match::AnyOf(alts) => alts.iter_mut().flatten().for_each(sort_lists),
                _ => {}
            }
        }
        let mut keyed: Vec<(u8, String, Match)> = self
            .matches
            .iter()
            .map(|m| {
                let mut m = m.clone();
                sort_lists(&mut m);
                let r = rank(&m);
                // Ties among stateless matches are broken by their text;
                // stateful ones keep their order (the sort is stable).
                let key = if r == u8::MAX {
                    String::new()
                } else {
                    format!("{m:?}")
                };
                (r, key, m)
            })
            .collect();
        keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Rule {
            matches: keyed.into_iter().map(|(_, _, m)| m).collect(),
            action: self.action.clone(),
            comment: self.comment.clone(),
            origin: None,
            counters: self.counters,
            effects: self.effects.clone(),
        }
    }

    /// How many matches (and the action) the simulator cannot evaluate.
    pub fn unknown_count(&self) -> usize {
        self.matches.iter().filter(|m| m.is_unknown()).count()
            + std::iter::once(&self.action)
                .chain(&self.effects)
                .filter(|a| matches!(a, Action::Unknown { .. }))
                .count()
    }
}

/// How many lines skipped outside any table a warning names one by one
/// (iptables and nft alike); the rest are counted.
pub const SKIPPED_SHOWN: usize = 10;

/// A parsed file: the ruleset, and what the IR has no place for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub ruleset: Ruleset,
    /// Every declared chain, in file order.
    pub chains: Vec<ChainInfo>,
    /// What the parser skipped and the admin should know, each naming its
    /// FILE:LINE (a shell prompt pasted around a dump).
    pub warnings: Vec<String>,
    /// The files nft `include` read, in the order first read; an
    /// [`Origin::file`] of k means `includes[k - 1]`.
    pub includes: Vec<Source>,
}

/// A file read because another one included it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// Where a chain was declared (a blocked flow may be blocked by its policy)
/// and the policy counters `iptables-save` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: Family,
    pub table: String,
    pub chain: String,
    pub line: usize,
    /// As [`Origin::file`].
    pub file: usize,
    pub counters: Option<Counters>,
}

impl Parsed {
    pub fn chain_info(&self, family: Family, table: &str, chain: &str) -> Option<&ChainInfo> {
        self.chains
            .iter()
            .find(|c| c.family == family && c.table == table && c.chain == chain)
    }

    /// Unknown matches and targets in the whole file.
    pub fn unknown_count(&self) -> usize {
        self.ruleset.unknown_count()
    }
}

impl Ruleset {
    /// See [`Rule::canonical`]: what a parse of this ruleset's emitted text gives.
    pub fn canonical(&self) -> Ruleset {
        Ruleset {
            tables: self
                .tables
                .iter()
                .map(|t| Table {
                    chains: t
                        .chains
                        .iter()
                        .map(|c| Chain {
                            rules: c.rules.iter().map(Rule::canonical).collect(),
                            ..c.clone()
                        })
                        .collect(),
                    ..t.clone()
                })
                .collect(),
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.tables
            .iter()
            .flat_map(|t| t.chains.iter().flat_map(|c| c.rules.iter()))
    }

    /// Matches and actions kept as text because no parser understood them.
    pub fn unknown_count(&self) -> usize {
        self.rules().map(Rule::unknown_count).sum()
    }

    pub fn table_of(&self, family: Family, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }
}

#[cfg(test)]
mod backend_tests {
    use super::Backend;

    #[test]
    fn backend_names_round_trip_and_match_serde() {
        for b in Backend::ALL {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
            // Lab reports and apply state files carry this spelling.
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{b}\""));
        }
        assert!("both".parse::<Backend>().is_err());
    }
}
