//! One intermediate representation of a netfilter ruleset, with an emitter per
//! format (iptables-restore, nft). `plan` builds it from the policy; `check`
//! will parse real rulesets into the same types.
//!
//! iptables' fixed tables map onto the same shape as nft's: a table of chains,
//! base chains carrying hook, type, priority and policy (iptables' `filter`
//! INPUT is a filter-type base chain on the input hook at priority 0).

pub mod iptables;
pub mod nft;

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{PortRange, Proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// Standard priorities (nft(8) "PRIORITY"), which are also iptables' table priorities.
pub mod priority {
    pub const RAW: i32 = -300;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SRCNAT: i32 = 100;
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub elements: Vec<Ipv4Net>,
}

impl Set {
    /// nft needs `flags interval` once any element is a prefix rather than an address.
    pub fn needs_interval(&self) -> bool {
        self.elements.iter().any(|e| e.prefix_len() < 32)
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

impl Ruleset {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Net(Ipv4Net),
    /// A named set (nft set, or ipset for iptables).
    Set(String),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Net(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr()),
            Addr::Net(n) => write!(f, "{n}"),
            Addr::Set(s) => write!(f, "@{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    InIface(String),
    OutIface(String),
    Src(Addr),
    Dst(Addr),
    Proto(Proto),
    /// Sorted, non-empty.
    SPort(Vec<PortRange>),
    DPort(Vec<PortRange>),
    CtState(Vec<CtState>),
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub action: Action,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, action: Action) -> Self {
        Rule {
            matches,
            action,
            comment: None,
        }
    }
    pub fn with_comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }
}
