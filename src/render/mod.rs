//! Policy → netfilter IR per backend.
//!
//! The two backends get differently shaped IR (iptables' fixed tables, nft's own
//! `amwall` table), but both come from the same `HostPolicy`, so they open the
//! same things.

use std::fmt;
use std::net::Ipv6Addr;

pub mod firewalld;

use crate::netfilter::{
    self, iptables::multiport_chunks, priority, Action, Addr, Backend, BaseChain, Chain, ChainType,
    CtHelper, CtState, CtStatus, Family, Hook, Jump, Match, Policy, Rule, Ruleset, Set, Table,
};
use crate::policy::{AddrGroup, Addrs, HostPolicy, Mgmt6, Place, PolicyRule, Rule6};
use crate::ports::PortRange;

/// The nft table amwall owns; `plan` output replaces only this table.
pub const NFT_TABLE: &str = "amwall";
/// The nft ct helper object name for Amanda over UDP.
pub const NFT_HELPER_OBJ: &str = "amanda-udp";

/// Which backends `plan` writes files for and `lab` runs: unlike
/// [`Backend`], a choice that may be both (one lab after the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSet {
    Iptables,
    Nft,
    Both,
}

impl BackendSet {
    /// In the order `plan` writes them and `lab` runs them.
    pub fn members(self) -> &'static [Backend] {
        match self {
            BackendSet::Iptables => &[Backend::Iptables],
            BackendSet::Nft => &[Backend::Nft],
            BackendSet::Both => &Backend::ALL,
        }
    }

    pub fn contains(self, b: Backend) -> bool {
        self.members().contains(&b)
    }
}

impl fmt::Display for BackendSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSet::Iptables => f.write_str("iptables"),
            BackendSet::Nft => f.write_str("nft"),
            BackendSet::Both => f.write_str("both"),
        }
    }
}

impl std::str::FromStr for BackendSet {
    type Err = String;
    fn from_str(s: &str) -> Result<BackendSet, String> {
        match s {
            "both" => Ok(BackendSet::Both),
            _ => match s.parse::<Backend>() {
                Ok(Backend::Iptables) => Ok(BackendSet::Iptables),
                Ok(Backend::Nft) => Ok(BackendSet::Nft),
                Err(_) => Err(format!("unknown backend `{s}` (iptables, nft or both)")),
            },
        }
    }
}

fn established() -> Rule {
    Rule::new(
        vec![Match::CtState(vec![CtState::Established, CtState::Related])],
        Action::Accept,
    )
}

fn loopback() -> Rule {
    Rule::new(vec![Match::InIface("lo".into())], Action::Accept)
}

/// Which spelling of "the destination was port-forwarded" a backend uses.
#[derive(Clone, Copy)]
enum Flavor {
    Iptables,
    Nft,
}

/// The matches of a policy rule, with `src` given (sets are resolved by the caller).
///
/// A forward rule for a port-forwarded flow also requires that conntrack DNAT'd
/// the connection: without it the rule would pass packets sent straight to the
/// inner address (from a neighbour on the outer link, or spoofed), which no flow
/// needs and `amwall check` rightly reports as open beyond need.
fn matches(r: &PolicyRule, src: Option<Addr>, dports: &[PortRange], flavor: Flavor) -> Vec<Match> {
    let mut m = Vec::new();
    if let Some(i) = &r.in_iface {
        m.push(Match::InIface(i.clone()));
    }
    if let Some(o) = &r.out_iface {
        m.push(Match::OutIface(o.clone()));
    }
    if let Some(s) = src {
        m.push(Match::Src(s));
    }
    if let Some(d) = r.dst {
        m.push(Match::Dst(Addr::Net(
            ipnet::Ipv4Net::new(d, 32).expect("/32"),
        )));
    }
    m.push(Match::Proto(r.proto));
    if let Some(sp) = r.sport {
        m.push(Match::SPort(vec![sp]));
    }
    m.push(Match::DPort(dports.to_vec()));
    if r.place == Place::Forward && r.dnat_to.is_some() {
        m.push(match flavor {
            Flavor::Iptables => Match::CtState(vec![CtState::Dnat]),
            Flavor::Nft => Match::CtStatus(vec![CtStatus::Dnat]),
        });
    }
    m
}

fn action(r: &PolicyRule, helper: &str) -> Action {
    match r.place {
        Place::Input | Place::Forward => Action::Accept,
        Place::Dnat => Action::Dnat(r.dnat_to.expect("port forwards have a target")),
        Place::Helper => Action::CtHelper(helper.to_string()),
    }
}

/// Groups up to this size stay inline in iptables, one rule per member, as an
/// admin would write them: the rules sit after ESTABLISHED,RELATED, so only a
/// connection's first packet walks them, and four rules cost less to read than an
/// extra file to load at boot. Larger groups become an ipset (`HOST.ipset`), one
/// hash lookup whatever the size.
pub const IPSET_THRESHOLD: usize = 4;

/// The ipset name for a group: global per host, at most 31 characters.
pub fn ipset_name(g: &AddrGroup) -> String {
    let mut n = format!("amw_{}", g.name);
    // `policy` keeps group names short enough; truncating is the last guard.
    n.truncate(crate::name::IPSET_NAME_MAX);
    debug_assert!(crate::name::set_name(&n).is_ok(), "{n}");
    n
}

fn uses_ipset(g: &AddrGroup) -> bool {
    g.members.len() > IPSET_THRESHOLD
}

/// iptables: small groups expand to one rule per member, large ones match an ipset;
/// port lists split to fit `multiport`.
fn iptables_rules(hp: &HostPolicy, place: Place) -> Vec<Rule> {
    let mut out = Vec::new();
    for r in hp.in_place(place) {
        let srcs: Vec<Option<Addr>> = match &r.src {
            Addrs::Any => vec![None],
            Addrs::Net(n) => vec![Some(Addr::Net(*n))],
            Addrs::Group(g) if uses_ipset(&hp.groups[*g]) => {
                vec![Some(Addr::Set(ipset_name(&hp.groups[*g])))]
            }
            Addrs::Group(g) => hp.groups[*g]
                .members
                .iter()
                .map(|n| Some(Addr::Net(*n)))
                .collect(),
        };
        for s in srcs {
            for chunk in multiport_chunks(&r.dports) {
                out.push(
                    Rule::new(
                        matches(r, s.clone(), &chunk, Flavor::Iptables),
                        action(r, crate::amanda::facts::HELPER_NAME),
                    )
                    .with_comment(&r.label),
                );
            }
        }
    }
    out
}

fn base(kind: ChainType, hook: Hook, priority: i32, policy: Policy) -> Option<BaseChain> {
    Some(BaseChain {
        kind,
        hook,
        priority,
        policy,
    })
}

/// A router's masquerade rules, for nat POSTROUTING (owned) or
/// AMWALL-POSTROUTING (merged).
fn iptables_masquerade(hp: &HostPolicy) -> Vec<Rule> {
    hp.masquerade
        .iter()
        .map(|m| {
            Rule::new(
                vec![
                    Match::Src(Addr::Net(m.from)),
                    Match::OutIface(m.out_iface.clone()),
                ],
                Action::Masquerade,
            )
        })
        .collect()
}

/// The iptables-restore ruleset of one host: filter always, raw and nat only when
/// used (iptables-restore replaces only the tables a file names).
pub fn iptables_ruleset(hp: &HostPolicy) -> Ruleset {
    let mut tables = Vec::new();
    if hp.uses_helper() {
        tables.push(Table {
            family: Family::Ip,
            name: "raw".into(),
            sets: vec![],
            ct_helpers: vec![],
            chains: vec![
                Chain {
                    name: "PREROUTING".into(),
                    base: base(
                        ChainType::Filter,
                        Hook::Prerouting,
                        priority::RAW,
                        Policy::Accept,
                    ),
                    rules: iptables_rules(hp, Place::Helper),
                },
                Chain {
                    name: "OUTPUT".into(),
                    base: base(
                        ChainType::Filter,
                        Hook::Output,
                        priority::RAW,
                        Policy::Accept,
                    ),
                    rules: vec![],
                },
            ],
        });
    }
    let dnat = iptables_rules(hp, Place::Dnat);
    if !dnat.is_empty() || !hp.masquerade.is_empty() {
        let masq = iptables_masquerade(hp);
        let chain = |name: &str, hook, prio, rules| Chain {
            name: name.into(),
            base: base(ChainType::Nat, hook, prio, Policy::Accept),
            rules,
        };
        tables.push(Table {
            family: Family::Ip,
            name: "nat".into(),
            sets: vec![],
            ct_helpers: vec![],
            chains: vec![
                chain("PREROUTING", Hook::Prerouting, priority::DSTNAT, dnat),
                chain("INPUT", Hook::Input, priority::SRCNAT, vec![]),
                chain("OUTPUT", Hook::Output, priority::DSTNAT, vec![]),
                chain("POSTROUTING", Hook::Postrouting, priority::SRCNAT, masq),
            ],
        });
    }
    let mut input = vec![established(), loopback()];
    input.extend(iptables_rules(hp, Place::Input));
    let mut forward = vec![established()];
    forward.extend(iptables_rules(hp, Place::Forward));
    tables.push(Table {
        family: Family::Ip,
        name: "filter".into(),
        sets: vec![],
        ct_helpers: vec![],
        chains: vec![
            Chain {
                name: "INPUT".into(),
                base: base(
                    ChainType::Filter,
                    Hook::Input,
                    priority::FILTER,
                    Policy::Drop,
                ),
                rules: input,
            },
            Chain {
                name: "FORWARD".into(),
                base: base(
                    ChainType::Filter,
                    Hook::Forward,
                    priority::FILTER,
                    Policy::Drop,
                ),
                rules: forward,
            },
            Chain {
                name: "OUTPUT".into(),
                base: base(
                    ChainType::Filter,
                    Hook::Output,
                    priority::FILTER,
                    Policy::Accept,
                ),
                rules: vec![],
            },
        ],
    });
    Ruleset { tables }
}

/// How a backend writes what the IPv6 chains accept: ip6tables one rule per
/// ICMPv6 type, source and port chunk; nft one rule with sets.
#[derive(Clone, Copy)]
enum Six {
    Iptables,
    Nft,
}

impl Six {
    fn icmp6(self, types: &[u8]) -> Vec<Rule> {
        let one = |t: u8| {
            Match::Icmp6(netfilter::IcmpType {
                ty: Some(t),
                code: None,
            })
        };
        let rule = |m: Match| {
            Rule::new(vec![Match::ProtoNum(IPPROTO_ICMPV6), m], Action::Accept)
                .with_comment(ICMPV6_COMMENT)
        };
        match self {
            Six::Iptables => types.iter().map(|&t| rule(one(t))).collect(),
            Six::Nft => vec![rule(Match::AnyOf(
                types.iter().map(|&t| vec![one(t)]).collect(),
            ))],
        }
    }

    /// One IPv6 opening of Amanda's: its sources one by one, or as the
    /// set of its group ([`groups6`]) where the IPv4 side would use one
    /// (ip6tables: an inet6 ipset above [`IPSET_THRESHOLD`]; nft: a named
    /// `ipv6_addr` set for any group).
    fn amanda(self, r: &Rule6, groups: &[Group6]) -> Vec<Rule> {
        let group = groups.iter().find(|g| g.members == r.srcs);
        let host = |a: Ipv6Addr| Addr::Net6(ipnet::Ipv6Net::new(a, 128).expect("/128"));
        let with = |src: Match, dports: &[PortRange]| {
            let mut m = Vec::new();
            m.extend(r.in_iface.clone().map(Match::InIface));
            m.extend(r.out_iface.clone().map(Match::OutIface));
            m.push(src);
            m.extend(r.dst.map(|d| Match::Dst(host(d))));
            m.push(Match::Proto(r.proto));
            m.extend(r.sport.map(|sp| Match::SPort(vec![sp])));
            m.push(Match::DPort(dports.to_vec()));
            Rule::new(m, Action::Accept).with_comment(&r.label)
        };
        match self {
            Six::Iptables => {
                let srcs: Vec<Match> = match group.filter(|g| g.members.len() > IPSET_THRESHOLD) {
                    Some(g) => vec![Match::Src(Addr::Set(g.ipset_name.clone()))],
                    None => r.srcs.iter().map(|&s| Match::Src(host(s))).collect(),
                };
                let mut out = Vec::new();
                for s in srcs {
                    for chunk in multiport_chunks(&r.dports) {
                        out.push(with(s.clone(), &chunk));
                    }
                }
                out
            }
            Six::Nft => {
                let src = match (r.srcs.as_slice(), group) {
                    ([one], _) => Match::Src(host(*one)),
                    (_, Some(g)) => Match::Src(Addr::Set(g.name.clone())),
                    (many, None) => {
                        Match::AnyOf(many.iter().map(|&s| vec![Match::Src(host(s))]).collect())
                    }
                };
                vec![with(src, &r.dports)]
            }
        }
    }
}

/// The sources several IPv6 openings share, as one group: what the IPv4
/// side's [`AddrGroup`] is to its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group6 {
    /// The nft set's name in `table ip6 amwall`: the IPv4 group's name
    /// where an IPv4 rule for the same flows has one (so both families'
    /// sets read alike), else `src6_N`.
    pub name: String,
    /// The ipset's name: `amw6_` and `name`, within ipset's 31 characters
    /// and distinct from every IPv4 ipset (`amw_`).
    pub ipset_name: String,
    /// Sorted, deduplicated.
    pub members: Vec<Ipv6Addr>,
}

/// Each distinct source list of more than one address among the host's
/// IPv6 openings, in order of first use.
pub fn groups6(hp: &HostPolicy) -> Vec<Group6> {
    let mut out: Vec<Group6> = Vec::new();
    for r in hp.v6.rules.iter().filter(|r| r.srcs.len() > 1) {
        if out.iter().any(|g| g.members == r.srcs) {
            continue;
        }
        let v4 = hp.rules.iter().find_map(|p| match p.src {
            Addrs::Group(g) if p.place == r.place && p.flows == r.flows => {
                Some(hp.groups[g].name.clone())
            }
            _ => None,
        });
        let fallback = format!("src6_{}", out.len() + 1);
        let mut name = v4.unwrap_or_else(|| fallback.clone());
        // Room for `amw6_` and a `_N` that tells two truncated names apart.
        name.truncate(crate::name::IPSET_NAME_MAX - "amw6_".len() - 4);
        if out.iter().any(|g| g.name == name) {
            name = format!("{name}_{}", out.len() + 1);
        }
        // The group names were checked when `policy` made them; a name the
        // tools would refuse still never reaches a rule.
        if crate::name::set_name(&format!("amw6_{name}")).is_err() {
            name = fallback;
        }
        let ipset_name = format!("amw6_{name}");
        out.push(Group6 {
            name,
            ipset_name,
            members: r.srcs.clone(),
        });
    }
    out
}

fn management6(m: &Mgmt6) -> Rule {
    let mut matches = Vec::new();
    if let Some(src) = m.src {
        matches.push(Match::Src(Addr::Net6(src)));
    }
    matches.push(Match::Proto(m.proto));
    matches.push(Match::DPort(vec![PortRange::single(m.port)]));
    Rule::new(matches, Action::Accept).with_comment("management")
}

/// The IPv6 forward chain's accepts: ESTABLISHED,RELATED, and on routers
/// the admins' way through and Amanda's forwarded flows.
fn ipv6_forward(hp: &HostPolicy, six: Six) -> Vec<Rule> {
    let mut rules = vec![established()];
    if hp.v6.router {
        rules.extend(hp.v6.management.iter().map(management6));
    }
    let groups = groups6(hp);
    for r in hp.v6.rules.iter().filter(|r| r.place == Place::Forward) {
        rules.extend(six.amanda(r, &groups));
    }
    rules
}

/// What IPv6 itself needs on every host (`policy::ICMPV6_ACCEPTED`, the
/// DHCPv6 client's replies), management over IPv6 and Amanda's IPv6
/// openings: the accepts of the IPv6 input chain after `lo` and
/// ESTABLISHED,RELATED.
fn ipv6_input(hp: &HostPolicy, six: Six) -> Vec<Rule> {
    use crate::policy::{dhcpv6_client_dst, DHCPV6_CLIENT_PORT, ICMPV6_ACCEPTED};
    let mut rules = vec![established(), loopback()];
    rules.extend(six.icmp6(ICMPV6_ACCEPTED));
    rules.push(
        Rule::new(
            vec![
                Match::Dst(Addr::Net6(dhcpv6_client_dst())),
                Match::Proto(crate::ports::Proto::Udp),
                Match::DPort(vec![PortRange::single(DHCPV6_CLIENT_PORT)]),
            ],
            Action::Accept,
        )
        .with_comment("dhcpv6 client"),
    );
    rules.extend(hp.v6.management.iter().map(management6));
    let groups = groups6(hp);
    for r in hp.v6.rules.iter().filter(|r| r.place == Place::Input) {
        rules.extend(six.amanda(r, &groups));
    }
    rules
}

/// The comment on the ICMPv6 rules, which `apply` also reads to tell them
/// from rules it did not write.
pub const ICMPV6_COMMENT: &str = "icmpv6 (rfc 4890)";

/// ICMPv6's protocol number (`-p ipv6-icmp`, `meta l4proto ipv6-icmp`).
const IPPROTO_ICMPV6: u8 = 58;

/// The filter chains of an IPv6 table: input and forward drop by default,
/// as the IPv4 side does; iptables' built-in OUTPUT (`Some` name) accepts.
fn ipv6_chains(
    names: [&str; 2],
    output: Option<&str>,
    input: Vec<Rule>,
    forward: Vec<Rule>,
) -> Vec<Chain> {
    let chain = |name: &str, hook, policy, rules| Chain {
        name: name.into(),
        base: base(ChainType::Filter, hook, priority::FILTER, policy),
        rules,
    };
    let mut chains = vec![
        chain(names[0], Hook::Input, Policy::Drop, input),
        chain(names[1], Hook::Forward, Policy::Drop, forward),
    ];
    chains.extend(output.map(|o| chain(o, Hook::Output, Policy::Accept, vec![])));
    chains
}

/// The ip6tables-restore ruleset of one host (`HOST.rules6`): the filter
/// table only. No Amanda flow runs over IPv6 with Debian's build, so there is
/// no nat or raw table to write.
pub fn ip6tables_ruleset(hp: &HostPolicy) -> Ruleset {
    let six = Six::Iptables;
    Ruleset {
        tables: vec![Table {
            family: Family::Ip6,
            name: "filter".into(),
            sets: vec![],
            ct_helpers: vec![],
            chains: ipv6_chains(
                ["INPUT", "FORWARD"],
                Some("OUTPUT"),
                ipv6_input(hp, six),
                ipv6_forward(hp, six),
            ),
        }],
    }
}

/// `table ip6 amwall`, which `HOST.nft` carries after `table ip amwall`. A
/// table of its own rather than one `inet` table for both: the IPv4 table
/// stays exactly what it was, and each family's table is replaced on its own.
pub fn nft6_table(hp: &HostPolicy) -> Table {
    let six = Six::Nft;
    let host = |a: &Ipv6Addr| ipnet::Ipv6Net::new(*a, 128).expect("/128");
    Table {
        family: Family::Ip6,
        name: NFT_TABLE.into(),
        sets: groups6(hp)
            .into_iter()
            .map(|g| Set::v6(g.name, g.members.iter().map(host).collect()))
            .collect(),
        ct_helpers: vec![],
        chains: ipv6_chains(
            ["input", "forward"],
            None,
            ipv6_input(hp, six),
            ipv6_forward(hp, six),
        ),
    }
}

/// How amwall's iptables rules meet the host's: as the whole tables
/// (`Owned`, `HOST.rules`: for hosts whose firewall amwall is) or as chains
/// of its own beside everyone else's (`Merged`, `HOST.merged.rules`: for
/// hosts where Docker, fail2ban or the admin keep rules of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesMode {
    Owned,
    Merged,
}

impl IptablesMode {
    pub const ALL: [IptablesMode; 2] = [IptablesMode::Owned, IptablesMode::Merged];

    pub fn name(self) -> &'static str {
        match self {
            IptablesMode::Owned => "owned",
            IptablesMode::Merged => "merged",
        }
    }
}

/// Merged mode's chains. Fixed names (not from any input), so the load
/// script and `apply` can name them without quoting; the prefix is what
/// tells amwall's chains from everyone else's.
pub const MERGED_PREFIX: &str = "AMWALL-";

/// The line that marks a ufw hook file as amwall's, so it is replaced
/// again and never mistaken for the admin's.
pub const UFW_MARKER: &str = "Written by amwall: ufw before.init hook";

/// Merged mode: amwall's rules in chains of its own, to be loaded with
/// `iptables-restore --noflush` (which creates each chain, or flushes and
/// refills it on a reload) and entered by one jump at the top of each
/// built-in chain (`Jump`; the jumps cannot live in the file: a restore
/// file cannot add a rule only if it is missing). Nothing is dropped here
/// and no policy is set: what amwall's chains do not accept returns to the
/// host's own rules, which keep deciding everything else. The management
/// rule is left out for the same reason: the host's own rules already let
/// the admin in, and a ban (fail2ban) on that port must keep working.
pub fn iptables_merged(hp: &HostPolicy) -> (Ruleset, Vec<Jump>) {
    let not_mgmt = |v: Vec<Rule>| -> Vec<Rule> {
        v.into_iter()
            .filter(|r| r.comment.as_deref() != Some("management"))
            .collect()
    };
    let chain = |name: &str, rules| Chain {
        name: name.into(),
        base: None,
        rules,
    };
    let table = |name: &str, chains| Table {
        family: Family::Ip,
        name: name.into(),
        sets: vec![],
        ct_helpers: vec![],
        chains,
    };
    let mut tables = Vec::new();
    let mut entries = Vec::new();
    if hp.uses_helper() {
        tables.push(table(
            "raw",
            vec![chain(
                "AMWALL-PREROUTING",
                iptables_rules(hp, Place::Helper),
            )],
        ));
        entries.push(jump("raw", "PREROUTING", "AMWALL-PREROUTING"));
    }
    let dnat = iptables_rules(hp, Place::Dnat);
    if !dnat.is_empty() || !hp.masquerade.is_empty() {
        let masq = iptables_masquerade(hp);
        tables.push(table(
            "nat",
            vec![
                chain("AMWALL-PREROUTING", dnat),
                chain("AMWALL-POSTROUTING", masq),
            ],
        ));
        entries.push(jump("nat", "PREROUTING", "AMWALL-PREROUTING"));
        entries.push(jump("nat", "POSTROUTING", "AMWALL-POSTROUTING"));
    }
    let mut input = vec![established(), loopback()];
    input.extend(not_mgmt(iptables_rules(hp, Place::Input)));
    let mut filter = vec![chain("AMWALL-INPUT", input)];
    entries.push(jump("filter", "INPUT", "AMWALL-INPUT"));
    // Only a router gets a forward chain: elsewhere FORWARD stays exactly
    // the host's (Docker's own chains live there).
    let fwd = not_mgmt(iptables_rules(hp, Place::Forward));
    if !fwd.is_empty() {
        let mut forward = vec![established()];
        forward.extend(fwd);
        filter.push(chain("AMWALL-FORWARD", forward));
        entries.push(jump("filter", "FORWARD", "AMWALL-FORWARD"));
    }
    tables.push(table("filter", filter));
    (Ruleset { tables }, entries)
}

/// Merged mode over IPv6 (`HOST.merged.rules6`), for a build that speaks
/// IPv6: Amanda's IPv6 openings in `AMWALL-INPUT`/`AMWALL-FORWARD` of
/// ip6tables' filter table, entered by the same kind of jump. Only Amanda's
/// rules: ICMPv6, the DHCPv6 client and management stay the host's own
/// ip6tables rules' business, as management does over IPv4. `None` when no
/// Amanda flow runs over IPv6 here.
pub fn ip6tables_merged(hp: &HostPolicy) -> Option<(Ruleset, Vec<Jump>)> {
    let six = Six::Iptables;
    let groups = groups6(hp);
    let amanda = |place: Place| -> Vec<Rule> {
        hp.v6
            .rules
            .iter()
            .filter(|r| r.place == place)
            .flat_map(|r| six.amanda(r, &groups))
            .collect()
    };
    let (inp, fwd) = (amanda(Place::Input), amanda(Place::Forward));
    if inp.is_empty() && fwd.is_empty() {
        return None;
    }
    let chain = |name: &str, rules| Chain {
        name: name.into(),
        base: None,
        rules,
    };
    let mut chains = Vec::new();
    let mut entries = Vec::new();
    if !inp.is_empty() {
        let mut input = vec![established(), loopback()];
        input.extend(inp);
        chains.push(chain("AMWALL-INPUT", input));
        entries.push(jump("filter", "INPUT", "AMWALL-INPUT"));
    }
    if !fwd.is_empty() {
        let mut forward = vec![established()];
        forward.extend(fwd);
        chains.push(chain("AMWALL-FORWARD", forward));
        entries.push(jump("filter", "FORWARD", "AMWALL-FORWARD"));
    }
    let table = Table {
        family: Family::Ip6,
        name: "filter".into(),
        sets: vec![],
        ct_helpers: vec![],
        chains,
    };
    Some((
        Ruleset {
            tables: vec![table],
        },
        entries,
    ))
}

pub fn ip6tables_merged_text(hp: &HostPolicy, header: &[String]) -> Option<String> {
    ip6tables_merged(hp).map(|(rs, _)| netfilter::iptables::emit(&rs, header))
}

fn jump(table: &str, from: &str, chain: &str) -> Jump {
    Jump {
        table: table.into(),
        from: from.into(),
        chain: chain.into(),
    }
}

/// The `iptables` commands that add each jump of `entries` at the top of its
/// built-in chain unless it is there already (`-C`), so running them again
/// never adds a second jump.
pub fn merged_entry_commands(entries: &[Jump]) -> Vec<String> {
    merged_entry_commands_with("iptables", entries)
}

/// [`merged_entry_commands`] for `ip6tables`.
pub fn merged_entry_commands6(entries: &[Jump]) -> Vec<String> {
    merged_entry_commands_with("ip6tables", entries)
}

fn merged_entry_commands_with(tool: &str, entries: &[Jump]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{tool} -w -t {t} -C {f} -j {c} 2>/dev/null || {tool} -w -t {t} -I {f} 1 -j {c}",
                t = e.table,
                f = e.from,
                c = e.chain
            )
        })
        .collect()
}

/// What ufw has no command for: the `amanda` helper assignment (raw) and
/// NAT (port forwards, masquerade), as merged mode's chains in raw and nat
/// with their jumps, or `None` when the host needs neither. They go into
/// ufw's `before.init` hook, not `before.rules`: what before.rules adds to
/// the built-in nat and raw chains is added once more by every `ufw reload`
/// and left behind by `ufw disable` (docs/design.md), while before.init is
/// called with `start` and `stop` around ufw's own rules.
pub fn ufw_before_init(hp: &HostPolicy) -> Option<(Ruleset, Vec<Jump>)> {
    let (mut rs, mut jumps) = iptables_merged(hp);
    let hooks = |t: &str| matches!(t, "raw" | "nat");
    rs.tables.retain(|t| hooks(&t.name));
    jumps.retain(|j| hooks(&j.table));
    (!jumps.is_empty()).then_some((rs, jumps))
}

/// `ufw_before_init`'s chains as iptables-restore text.
pub fn ufw_before_init_text(hp: &HostPolicy, header: &[String]) -> Option<String> {
    ufw_before_init(hp).map(|(rs, _)| netfilter::iptables::emit(&rs, header))
}

/// The commands that take each jump of `entries` out (every copy) and then
/// the chain it enters; quiet and harmless when they are not there.
pub fn merged_exit_commands(entries: &[Jump]) -> Vec<String> {
    let mut out: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "while iptables -w -t {t} -D {f} -j {c} 2>/dev/null; do :; done",
                t = e.table,
                f = e.from,
                c = e.chain
            )
        })
        .collect();
    for e in entries {
        out.push(format!(
            "iptables -w -t {t} -F {c} 2>/dev/null || :",
            t = e.table,
            c = e.chain
        ));
        out.push(format!(
            "iptables -w -t {t} -X {c} 2>/dev/null || :",
            t = e.table,
            c = e.chain
        ));
    }
    out
}

/// The `ufw` commands that open what this host needs, as shell lines (the
/// words of [`ufw_argv`], each quoted when it needs it).
pub fn ufw_commands(hp: &HostPolicy) -> Vec<String> {
    ufw_argv(hp)
        .into_iter()
        .map(|argv| {
            let words: Vec<String> = argv.iter().map(|w| crate::name::shell_word(w)).collect();
            format!("ufw {}", words.join(" "))
        })
        .collect()
}

/// The arguments of each `ufw` command that opens what this host needs:
/// `ufw allow` for input, `ufw route allow` for forwarding, one per source
/// member and port chunk (ufw has no sets; it takes up to 15 ports per
/// rule, as multiport). ufw keeps ESTABLISHED and `lo` itself, and the
/// management port is left to the host's ufw rules, as in iptables merged
/// mode. Every word is a validated name, an address or a number, or the
/// rule's label as ufw's comment; `apply` runs them without a shell.
pub fn ufw_argv(hp: &HostPolicy) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let host = |n: &ipnet::Ipv4Net| {
        if n.prefix_len() == 32 {
            n.addr().to_string()
        } else {
            n.to_string()
        }
    };
    let range = |lo: u16, hi: u16| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        }
    };
    for r in hp.rules.iter().filter(|r| r.label != "management") {
        let verb: &[&str] = match r.place {
            Place::Input => &["allow"],
            Place::Forward => &["route", "allow"],
            Place::Dnat | Place::Helper => continue,
        };
        let srcs: Vec<String> = match &r.src {
            Addrs::Any => vec!["any".into()],
            Addrs::Net(n) => vec![host(n)],
            Addrs::Group(g) => hp.groups[*g].members.iter().map(host).collect(),
        };
        let to = r.dst.map_or("any".to_string(), |d| d.to_string());
        for src in &srcs {
            for chunk in multiport_chunks(&r.dports) {
                let ports: Vec<String> = chunk.iter().map(|p| range(p.lo, p.hi)).collect();
                let mut c: Vec<String> = verb.iter().map(|w| w.to_string()).collect();
                if let Some(i) = &r.in_iface {
                    c.extend(["in".into(), "on".into(), i.to_string()]);
                }
                if let Some(o) = &r.out_iface {
                    c.extend(["out".into(), "on".into(), o.to_string()]);
                }
                c.extend([
                    "proto".into(),
                    r.proto.to_string(),
                    "from".into(),
                    src.clone(),
                ]);
                if let Some(sp) = r.sport {
                    c.extend(["port".into(), range(sp.lo, sp.hi)]);
                }
                c.extend(["to".into(), to.clone(), "port".into(), ports.join(",")]);
                c.extend(["comment".into(), r.label.clone()]);
                out.push(c);
            }
        }
    }
    out.extend(ufw_argv6(hp));
    out
}

/// Amanda's IPv6 openings as `ufw` commands: the same words as the IPv4
/// ones with IPv6 addresses, which ufw writes to its IPv6 chains only
/// (user6.rules). ufw refuses them ("IPv6 not enabled") unless
/// /etc/default/ufw says `IPV6=yes`, Debian's default.
fn ufw_argv6(hp: &HostPolicy) -> Vec<Vec<String>> {
    let range = |p: &PortRange| {
        if p.lo == p.hi {
            p.lo.to_string()
        } else {
            format!("{}:{}", p.lo, p.hi)
        }
    };
    let mut out = Vec::new();
    for r in &hp.v6.rules {
        let verb: &[&str] = match r.place {
            Place::Input => &["allow"],
            Place::Forward => &["route", "allow"],
            Place::Dnat | Place::Helper => continue,
        };
        let to = r.dst.map_or("any".to_string(), |d| d.to_string());
        for src in &r.srcs {
            for chunk in multiport_chunks(&r.dports) {
                let ports: Vec<String> = chunk.iter().map(range).collect();
                let mut c: Vec<String> = verb.iter().map(|w| w.to_string()).collect();
                if let Some(i) = &r.in_iface {
                    c.extend(["in".into(), "on".into(), i.clone()]);
                }
                if let Some(o) = &r.out_iface {
                    c.extend(["out".into(), "on".into(), o.clone()]);
                }
                c.extend(["proto".into(), r.proto.to_string()]);
                c.extend(["from".into(), src.to_string()]);
                if let Some(sp) = &r.sport {
                    c.extend(["port".into(), range(sp)]);
                }
                c.extend(["to".into(), to.clone(), "port".into(), ports.join(",")]);
                c.extend(["comment".into(), r.label.clone()]);
                out.push(c);
            }
        }
    }
    out
}

/// Whether a host's ufw commands include IPv6 ones, which need ufw's IPv6
/// support (`IPV6=yes` in /etc/default/ufw).
pub fn ufw_needs_ipv6(hp: &HostPolicy) -> bool {
    hp.v6
        .rules
        .iter()
        .any(|r| matches!(r.place, Place::Input | Place::Forward))
}

fn nft_rules(hp: &HostPolicy, place: Place) -> Vec<Rule> {
    hp.in_place(place)
        .map(|r| {
            let src = match &r.src {
                Addrs::Any => None,
                Addrs::Net(n) => Some(Addr::Net(*n)),
                Addrs::Group(g) => Some(Addr::Set(hp.groups[*g].name.clone())),
            };
            Rule::new(
                matches(r, src, &r.dports, Flavor::Nft),
                action(r, NFT_HELPER_OBJ),
            )
            .with_comment(&r.label)
        })
        .collect()
}

/// Every group as a named nft set (nft has no size limit worth a threshold).
fn nft_sets(hp: &HostPolicy) -> Vec<Set> {
    hp.groups
        .iter()
        .map(|g| Set::v4(g.name.clone(), g.members.clone()))
        .collect()
}

/// The nft ruleset of one host: one `ip amwall` table with named sets for groups.
pub fn nft_ruleset(hp: &HostPolicy) -> Ruleset {
    let mut chains = Vec::new();
    let mut ct_helpers = Vec::new();
    if hp.uses_helper() {
        ct_helpers.push(CtHelper {
            name: NFT_HELPER_OBJ.into(),
            helper: crate::amanda::facts::HELPER_NAME.into(),
            proto: crate::ports::Proto::Udp,
        });
        // `ct helper set` needs the conntrack entry, which exists only after the
        // conntrack hook (priority -200); nftables wiki "Conntrack helpers" uses filter.
        chains.push(Chain {
            name: "prerouting".into(),
            base: base(
                ChainType::Filter,
                Hook::Prerouting,
                priority::FILTER,
                Policy::Accept,
            ),
            rules: nft_rules(hp, Place::Helper),
        });
    }
    let mut input = vec![established(), loopback()];
    input.extend(nft_rules(hp, Place::Input));
    chains.push(Chain {
        name: "input".into(),
        base: base(
            ChainType::Filter,
            Hook::Input,
            priority::FILTER,
            Policy::Drop,
        ),
        rules: input,
    });
    let mut forward = vec![established()];
    forward.extend(nft_rules(hp, Place::Forward));
    chains.push(Chain {
        name: "forward".into(),
        base: base(
            ChainType::Filter,
            Hook::Forward,
            priority::FILTER,
            Policy::Drop,
        ),
        rules: forward,
    });
    let dnat = nft_rules(hp, Place::Dnat);
    if !dnat.is_empty() {
        chains.push(Chain {
            name: "dstnat".into(),
            base: base(
                ChainType::Nat,
                Hook::Prerouting,
                priority::DSTNAT,
                Policy::Accept,
            ),
            rules: dnat,
        });
    }
    if !hp.masquerade.is_empty() {
        chains.push(Chain {
            name: "srcnat".into(),
            base: base(
                ChainType::Nat,
                Hook::Postrouting,
                priority::SRCNAT,
                Policy::Accept,
            ),
            rules: hp
                .masquerade
                .iter()
                .map(|m| {
                    Rule::new(
                        vec![
                            Match::OutIface(m.out_iface.clone()),
                            Match::Src(Addr::Net(m.from)),
                        ],
                        Action::Masquerade,
                    )
                })
                .collect(),
        });
    }
    let sets = nft_sets(hp);
    Ruleset {
        tables: vec![Table {
            family: Family::Ip,
            name: NFT_TABLE.into(),
            sets,
            ct_helpers,
            chains,
        }],
    }
}

pub fn iptables_text(hp: &HostPolicy, header: &[String]) -> String {
    netfilter::iptables::emit(&iptables_ruleset(hp), header)
}

pub fn iptables_merged_text(hp: &HostPolicy, header: &[String]) -> String {
    netfilter::iptables::emit(&iptables_merged(hp).0, header)
}

/// The drop-only nft table beside firewalld's (`firewalld::sport_table`).
pub fn firewalld_sport_text(hp: &HostPolicy, header: &[String]) -> Option<String> {
    firewalld::sport_table(hp).map(|rs| netfilter::nft::emit(&rs, header))
}

/// `HOST.nft`: `table ip amwall`, then `table ip6 amwall`.
pub fn nft_text(hp: &HostPolicy, header: &[String]) -> String {
    let mut rs = nft_ruleset(hp);
    rs.tables.push(nft6_table(hp));
    netfilter::nft::emit(&rs, header)
}

pub fn ip6tables_text(hp: &HostPolicy, header: &[String]) -> String {
    netfilter::iptables::emit(&ip6tables_ruleset(hp), header)
}

/// The `ipset restore` file for the groups `iptables_ruleset` references
/// (and, where Amanda runs over IPv6, the `family inet6` sets of the groups
/// `HOST.rules6` references), or `None` when every group is small enough to
/// stay inline. Each set is filled under a temporary name and swapped in, so
/// reloading never leaves a half-filled set that running rules already use.
pub fn ipset_text(hp: &HostPolicy, header: &[String]) -> Option<String> {
    use std::fmt::Write;
    let big: Vec<&AddrGroup> = hp.groups.iter().filter(|g| uses_ipset(g)).collect();
    let big6 = groups6_in_ipsets(hp);
    if big.is_empty() && big6.is_empty() {
        return None;
    }
    let mut out = String::new();
    for h in header {
        writeln!(out, "# {}", crate::name::comment(h)).unwrap();
    }
    for g in big {
        let kind = if g.members.iter().all(|m| m.prefix_len() == 32) {
            "hash:ip"
        } else {
            "hash:net"
        };
        let members = g.members.iter().map(|m| {
            if m.prefix_len() == 32 {
                m.addr().to_string()
            } else {
                m.to_string()
            }
        });
        fill_ipset(&mut out, &ipset_name(g), kind, "inet", members.collect());
    }
    for g in big6 {
        let members = g.members.iter().map(|m| m.to_string()).collect();
        fill_ipset(&mut out, &g.ipset_name, "hash:net", "inet6", members);
    }
    Some(out)
}

/// The IPv6 groups ip6tables matches as `family inet6` ipsets.
pub(crate) fn groups6_in_ipsets(hp: &HostPolicy) -> Vec<Group6> {
    groups6(hp)
        .into_iter()
        .filter(|g| g.members.len() > IPSET_THRESHOLD)
        .collect()
}

/// Whether `HOST.rules6` names ipsets, which `HOST.ipset` then creates.
pub fn ipset6_needed(hp: &HostPolicy) -> bool {
    !groups6_in_ipsets(hp).is_empty()
}

/// One set of `ipset_text`: created if missing, filled under a temporary
/// name, swapped in.
fn fill_ipset(out: &mut String, name: &str, kind: &str, family: &str, members: Vec<String>) {
    use std::fmt::Write;
    let mut tmp = format!("{name}~");
    if tmp.len() > 31 {
        tmp = format!("{}~", &name[..30]);
    }
    // hashsize is a power of two near the member count; maxelem must hold them all.
    let hashsize = members.len().next_power_of_two().clamp(1024, 1 << 20);
    let maxelem = members.len().max(65536);
    let create = |n: &str| {
        format!("create {n} {kind} family {family} hashsize {hashsize} maxelem {maxelem} -exist")
    };
    writeln!(out, "{}", create(name)).unwrap();
    writeln!(out, "{}", create(&tmp)).unwrap();
    writeln!(out, "flush {tmp}").unwrap();
    for m in members {
        writeln!(out, "add {tmp} {m}").unwrap();
    }
    writeln!(out, "swap {tmp} {name}").unwrap();
    writeln!(out, "destroy {tmp}").unwrap();
}

#[cfg(test)]
mod groups6_tests {
    use super::*;
    use crate::policy::{Ipv6Policy, Rule6};

    fn rule(srcs: &[&str], flows: Vec<usize>) -> Rule6 {
        Rule6 {
            place: Place::Input,
            in_iface: None,
            out_iface: None,
            srcs: srcs.iter().map(|s| s.parse().unwrap()).collect(),
            dst: None,
            proto: crate::ports::Proto::Tcp,
            sport: None,
            dports: vec![PortRange::single(10080)],
            flows,
            label: "amanda".into(),
        }
    }

    /// Names come from the IPv4 group of the same flows, cut to fit ipset's
    /// 31 characters with `amw6_`, told apart when two cut names meet, and
    /// fall back to `src6_N` when there is no IPv4 group or the name would
    /// be refused.
    #[test]
    fn group_names_fit_ipset_and_differ() {
        let long = "in_amrecover_hosts_of_the_very_long_department";
        let v4 = |name: &str, flows: Vec<usize>| PolicyRule {
            place: Place::Input,
            in_iface: None,
            out_iface: None,
            src: Addrs::Group(if name == long { 0 } else { 1 }),
            dst: None,
            proto: crate::ports::Proto::Tcp,
            sport: None,
            dports: vec![PortRange::single(10080)],
            dnat_to: None,
            flows,
            label: "amanda".into(),
        };
        let group = |name: &str| AddrGroup {
            name: name.into(),
            members: vec![],
            labels: vec![],
        };
        let hp = HostPolicy {
            host: 0,
            router: false,
            groups: vec![group(long), group("bad name")],
            rules: vec![
                v4(long, vec![1]),
                v4(long, vec![2]),
                v4("bad name", vec![3]),
            ],
            masquerade: vec![],
            v6: Ipv6Policy {
                management: vec![],
                router: false,
                rules: vec![
                    rule(&["2001:db8::1", "2001:db8::2"], vec![1]),
                    rule(&["2001:db8::3", "2001:db8::4"], vec![2]),
                    rule(&["2001:db8::5", "2001:db8::6"], vec![3]),
                    rule(&["2001:db8::7", "2001:db8::8"], vec![4]),
                    rule(&["2001:db8::1", "2001:db8::2"], vec![5]),
                    rule(&["2001:db8::9"], vec![6]),
                ],
            },
        };
        let g = groups6(&hp);
        let names: Vec<&str> = g.iter().map(|g| g.ipset_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "amw6_in_amrecover_hosts_of_",
                "amw6_in_amrecover_hosts_of__2",
                "amw6_src6_3",
                "amw6_src6_4"
            ]
        );
        for n in names {
            assert!(crate::name::set_name(n).is_ok(), "{n}");
        }
    }
}

#[cfg(test)]
mod backend_set_tests {
    use super::{Backend, BackendSet};

    #[test]
    fn both_is_every_backend_in_order() {
        assert_eq!(BackendSet::Both.members(), &Backend::ALL);
        assert!(BackendSet::Nft.contains(Backend::Nft));
        assert!(!BackendSet::Nft.contains(Backend::Iptables));
        for s in ["iptables", "nft", "both"] {
            assert_eq!(s.parse::<BackendSet>().unwrap().to_string(), s);
        }
        assert!("all".parse::<BackendSet>().is_err());
    }
}
