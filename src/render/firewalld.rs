//! Policy → what firewalld itself loads: a service for the conntrack helper,
//! ipsets for large groups, and policy objects with rich rules; plus the one
//! thing firewalld cannot say, the reserved source port, as drop-only rules
//! in an nft table of amwall's own.
//!
//! Why policies and not zones: a zone's sources take a peer's every packet
//! into that zone, so binding the backup server's address to an amanda zone
//! would cut it off from whatever the admin's zones allow it (ssh, monitoring).
//! A policy from `ANY` to `HOST` (input) or `ANY` to `ANY` (forward), at
//! priority -1, is evaluated before every zone and after any policy the
//! admin gave a lower priority; its target CONTINUE hands whatever it does
//! not accept to the zones as before. amwall owns these files whole, and
//! writes no zone.
//!
//! Why the source port lives in nft: a rich rule holds one element, so
//! `<port>` and `<source-port>` in one rule are refused, and two rules would
//! each accept on their own. In nftables a drop in any base chain ends the
//! packet whatever another table accepted, so a table beside firewalld's
//! (which firewalld's reload leaves alone) can take back what firewalld's
//! accept let through with the wrong source port: first `return` for every
//! packet some amwall rule accepts with its source port, then `drop` the new
//! connections that match a port-restricted rule's source and destination.

use crate::netfilter::{
    priority, Action, Addr, BaseChain, Chain, ChainType, CtState, Family, Hook, Match, Policy,
    Rule, Ruleset, Table,
};
use crate::policy::{Addrs, HostPolicy, Place, PolicyRule};
use crate::ports::PortRange;

/// The nft table for the source-port restriction beside firewalld's.
pub const SPORT_TABLE: &str = "amwall_sport";
/// The service that carries the amanda helper; numbered when a host needs
/// the helper on more than one set of ports.
pub const HELPER_SERVICE: &str = "amwall-amanda";
/// The policy for packets to this host, and the one for what a router passes on.
pub const INPUT_POLICY: &str = "amwall-input";
pub const FORWARD_POLICY: &str = "amwall-forward";
/// Before every zone, after the admin's own negative-priority policies.
pub const POLICY_PRIORITY: i32 = -1;
/// In every file amwall writes, so its loader replaces only its own files.
pub const MARKER: &str = "Written by amwall";

/// Which directory of firewalld's configuration an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Ipset,
    Policy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Ipset, Kind::Policy];

    pub fn from_dir(dir: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.dir() == dir)
    }

    /// The directory under /etc/firewalld.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Ipset => "ipsets",
            Kind::Policy => "policies",
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Ipset => "ipset",
            Kind::Policy => "policy",
        }
    }
}

/// One firewalld configuration file: `/etc/firewalld/{dir}/{name}.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    pub xml: String,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Text inside `<!-- -->`: one line (`name::comment`), no `--`, not ending
/// in `-`. Entities mean nothing in a comment, so nothing else changes.
fn xml_comment(s: &str) -> String {
    let mut o = crate::name::comment(s);
    while o.contains("--") {
        o = o.replace("--", "- -");
    }
    if o.ends_with('-') {
        o.push(' ');
    }
    o
}

fn range(p: &PortRange) -> String {
    if p.lo == p.hi {
        p.lo.to_string()
    } else {
        format!("{}-{}", p.lo, p.hi)
    }
}

fn head(header: &[String]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    // `--` may not appear inside an XML comment.
    o.push_str(&format!("<!-- {MARKER}. -->\n"));
    for h in header {
        o.push_str(&format!("<!-- {} -->\n", xml_comment(h)));
    }
    o
}

/// A rich rule's source, one per member for small groups (as iptables).
fn sources(hp: &HostPolicy, src: &Addrs) -> Vec<Option<String>> {
    match src {
        Addrs::Any => vec![None],
        Addrs::Net(n) => vec![Some(format!("<source address=\"{n}\"/>"))],
        Addrs::Group(g) if super::uses_ipset(&hp.groups[*g]) => vec![Some(format!(
            "<source ipset=\"{}\"/>",
            super::ipset_name(&hp.groups[*g])
        ))],
        Addrs::Group(g) => hp.groups[*g]
            .members
            .iter()
            .map(|n| Some(format!("<source address=\"{n}\"/>")))
            .collect(),
    }
}

/// The rich rules of one policy rule: one per source member and port range.
fn rich(hp: &HostPolicy, r: &PolicyRule, what: Rich<'_>, out: &mut Vec<String>) {
    let dst = r
        .dst
        .map(|d| format!("<destination address=\"{d}\"/>"))
        .unwrap_or_default();
    for s in sources(hp, &r.src) {
        let s = s.unwrap_or_default();
        let mut one = |element: String, verdict: &str| {
            out.push(format!(
                "  <rule family=\"ipv4\">{s}{dst}{element}{verdict}</rule> <!-- {} -->",
                xml_comment(&r.label)
            ))
        };
        match what {
            Rich::Service(name) => one(format!("<service name=\"{name}\"/>"), "<accept/>"),
            Rich::Ports => {
                for p in &r.dports {
                    one(
                        format!("<port port=\"{}\" protocol=\"{}\"/>", range(p), r.proto),
                        "<accept/>",
                    )
                }
            }
            Rich::Forward(to) => {
                for p in &r.dports {
                    one(
                        format!(
                            "<forward-port port=\"{}\" protocol=\"{}\" to-addr=\"{to}\"/>",
                            range(p),
                            r.proto
                        ),
                        "",
                    )
                }
            }
        }
    }
}

/// Amanda's IPv6 openings in `place` as rich rules of family ipv6: one per
/// source and port range. A rich rule with an address must name its family
/// (firewalld.richlanguage(5)), so each family gets rules of its own; no
/// helper and no port forward over IPv6 (`policy::Ipv6Policy::rules`).
fn rich6(hp: &HostPolicy, place: Place, out: &mut Vec<String>) {
    let sets = ipsets6(hp);
    for r in hp.v6.rules.iter().filter(|r| r.place == place) {
        let dst = r
            .dst
            .map(|d| format!("<destination address=\"{d}\"/>"))
            .unwrap_or_default();
        let srcs: Vec<String> = match sets.iter().find(|g| g.members == r.srcs) {
            Some(g) => vec![format!("<source ipset=\"{}\"/>", g.ipset_name)],
            None => r
                .srcs
                .iter()
                .map(|s| format!("<source address=\"{s}\"/>"))
                .collect(),
        };
        for s in &srcs {
            for p in &r.dports {
                out.push(format!(
                    "  <rule family=\"ipv6\">{s}{dst}<port port=\"{}\" protocol=\"{}\"/><accept/></rule> <!-- {} -->",
                    range(p),
                    r.proto,
                    xml_comment(&r.label)
                ));
            }
        }
    }
}

/// An ipset object: `hash:net`, its `options` lines, one entry per member.
fn ipset(
    header: &[String],
    name: String,
    short: &str,
    options: &str,
    members: impl Iterator<Item = String>,
) -> Object {
    let mut xml = head(header);
    xml.push_str(&format!(
        "<ipset type=\"hash:net\">\n  <short>amwall: {short}</short>\n{options}"
    ));
    for m in members {
        xml.push_str(&format!("  <entry>{m}</entry>\n"));
    }
    xml.push_str("</ipset>\n");
    Object {
        kind: Kind::Ipset,
        name,
        xml,
    }
}

/// The IPv6 groups large enough for an ipset, as iptables has them: here
/// `family inet6` ipset objects (firewalld.ipset(5)).
fn ipsets6(hp: &HostPolicy) -> Vec<super::Group6> {
    super::groups6_in_ipsets(hp)
}

#[derive(Clone, Copy)]
enum Rich<'a> {
    Ports,
    Service(&'a str),
    Forward(std::net::Ipv4Addr),
}

fn policy(name: &str, what: &str, egress: &str, rules: &[String], header: &[String]) -> Object {
    let mut xml = head(header);
    xml.push_str(&format!(
        "<policy priority=\"{POLICY_PRIORITY}\" target=\"CONTINUE\">\n  <short>amwall: {what}</short>\n  <ingress-zone name=\"ANY\"/>\n  <egress-zone name=\"{egress}\"/>\n"
    ));
    for r in rules {
        xml.push_str(r);
        xml.push('\n');
    }
    xml.push_str("</policy>\n");
    Object {
        kind: Kind::Policy,
        name: name.into(),
        xml,
    }
}

/// The services that carry the helper, one per distinct port set of the
/// host's helper rules, with the name each helper rule uses.
fn helper_services(hp: &HostPolicy, header: &[String]) -> (Vec<Object>, Vec<(usize, String)>) {
    let mut services: Vec<(&[PortRange], crate::ports::Proto, String)> = Vec::new();
    let mut uses = Vec::new();
    for (i, r) in hp.rules.iter().enumerate() {
        if r.place != Place::Helper {
            continue;
        }
        let name = match services
            .iter()
            .find(|(d, p, _)| *d == r.dports.as_slice() && *p == r.proto)
        {
            Some((_, _, n)) => n.clone(),
            None => {
                let n = if services.is_empty() {
                    HELPER_SERVICE.to_string()
                } else {
                    format!("{HELPER_SERVICE}-{}", services.len() + 1)
                };
                services.push((&r.dports, r.proto, n.clone()));
                n
            }
        };
        uses.push((i, name));
    }
    let objects = services
        .into_iter()
        .map(|(dports, proto, name)| {
            let mut xml = head(header);
            xml.push_str(
                "<service>\n  <short>amwall: Amanda with the amanda conntrack helper</short>\n",
            );
            for p in dports {
                xml.push_str(&format!(
                    "  <port protocol=\"{proto}\" port=\"{}\"/>\n",
                    range(p)
                ));
            }
            xml.push_str(&format!(
                "  <helper name=\"{}\"/>\n</service>\n",
                crate::amanda::facts::HELPER_NAME
            ));
            Object {
                kind: Kind::Service,
                name,
                xml,
            }
        })
        .collect();
    (objects, uses)
}

/// The firewalld configuration of one host: services first, then ipsets,
/// then policies (the order firewalld resolves references in, and the order
/// they are installed); the source ports are `sport_table`'s. Management rules are left to the
/// host's zones, as in iptables merged mode: the admin's ssh already passes
/// there, and amwall writes no zone.
pub fn config(hp: &HostPolicy, header: &[String]) -> Vec<Object> {
    let (mut objects, helper_uses) = helper_services(hp, header);
    for g in hp.groups.iter().filter(|g| super::uses_ipset(g)) {
        let members = g.members.iter().map(|m| m.to_string());
        let short = esc(&g.name);
        objects.push(ipset(header, super::ipset_name(g), &short, "", members));
    }
    for g in ipsets6(hp) {
        let members = g.members.iter().map(|m| m.to_string());
        let short = format!("{} (IPv6)", esc(&g.name));
        let family = "  <option name=\"family\" value=\"inet6\"/>\n";
        objects.push(ipset(header, g.ipset_name, &short, family, members));
    }
    let own = |r: &&PolicyRule| r.label != "management";
    // Input: a helper rule's accept goes through its service (which sets the
    // helper); the input rule with the same source and ports is then the same
    // opening, written once.
    let mut input = Vec::new();
    for (i, name) in &helper_uses {
        rich(hp, &hp.rules[*i], Rich::Service(name), &mut input);
    }
    for r in hp.in_place(Place::Input).filter(own) {
        let served = hp.in_place(Place::Helper).any(|h| {
            h.src == r.src && h.proto == r.proto && h.dports == r.dports && h.dst == r.dst
        });
        if !served {
            rich(hp, r, Rich::Ports, &mut input);
        }
    }
    rich6(hp, Place::Input, &mut input);
    if !input.is_empty() {
        objects.push(policy(
            INPUT_POLICY,
            "Amanda to this host",
            "HOST",
            &input,
            header,
        ));
    }
    // Forward: firewalld accepts every connection its own port forwards
    // DNAT'd (`ct status dnat accept`), so the forward rules of port-forwarded
    // flows need no rule of their own; the forward-port is what admits them.
    let mut forward = Vec::new();
    for r in hp.in_place(Place::Forward).filter(|r| r.dnat_to.is_none()) {
        rich(hp, r, Rich::Ports, &mut forward);
    }
    for r in hp.in_place(Place::Dnat) {
        rich(
            hp,
            r,
            Rich::Forward(r.dnat_to.expect("port forwards have a target")),
            &mut forward,
        );
    }
    rich6(hp, Place::Forward, &mut forward);
    for m in &hp.masquerade {
        forward.push(format!(
            "  <rule family=\"ipv4\"><source address=\"{}\"/><masquerade/></rule> <!-- leaving by {} (a rich rule cannot name the interface: any but lo) -->",
            m.from,
            xml_comment(&m.out_iface)
        ));
    }
    if !forward.is_empty() {
        objects.push(policy(
            FORWARD_POLICY,
            "Amanda through this router",
            "ANY",
            &forward,
            header,
        ));
    }
    objects
}

/// One opening as the source-port table sees it, either family's.
struct Opening<'a> {
    src: Option<Match>,
    dst: Option<Addr>,
    proto: crate::ports::Proto,
    sport: Option<PortRange>,
    dports: &'a [PortRange],
    label: &'a str,
}

/// A hook's chain of the source-port table: `return` for each packet an
/// opening accepts as amwall opens it, then `drop` for new connections to a
/// port-restricted opening from any other source port. `None` when no
/// opening here restricts the source port.
fn sport_chain(hook: Hook, name: &str, openings: &[Opening<'_>]) -> Option<Chain> {
    if !openings.iter().any(|o| o.sport.is_some()) {
        return None;
    }
    let base_matches = |o: &Opening<'_>| {
        let mut m = Vec::new();
        m.extend(o.src.clone());
        m.extend(o.dst.clone().map(Match::Dst));
        m.push(Match::Proto(o.proto));
        m
    };
    let mut out = Vec::new();
    for o in openings {
        let mut m = base_matches(o);
        m.extend(o.sport.map(|sp| Match::SPort(vec![sp])));
        m.push(Match::DPort(o.dports.to_vec()));
        out.push(
            Rule::new(m, Action::Return).with_comment(format!("{}: as amwall opens it", o.label)),
        );
    }
    for o in openings.iter().filter(|o| o.sport.is_some()) {
        let mut m = base_matches(o);
        m.push(Match::DPort(o.dports.to_vec()));
        m.push(Match::CtState(vec![CtState::New]));
        out.push(
            Rule::new(m, Action::Drop)
                .with_comment(format!("{}: not from its source ports", o.label)),
        );
    }
    Some(Chain {
        name: name.into(),
        base: Some(BaseChain {
            kind: ChainType::Filter,
            hook,
            priority: priority::FILTER,
            policy: Policy::Accept,
        }),
        rules: out,
    })
}

const SPORT_HOOKS: [(Place, Hook, &str); 2] = [
    (Place::Input, Hook::Input, "input"),
    (Place::Forward, Hook::Forward, "forward"),
];

/// The drop-only table: see the module comment. `table ip amwall_sport`
/// for the IPv4 openings and, where Amanda's flows run over IPv6,
/// `table ip6 amwall_sport` for theirs: a firewalld rich rule can no more
/// tie a source port to a destination port in IPv6 than in IPv4. `None`
/// when no rule restricts the source port.
pub fn sport_table(hp: &HostPolicy) -> Option<Ruleset> {
    let mut tables = Vec::new();
    let mut chains = Vec::new();
    for (place, hook, name) in SPORT_HOOKS {
        let openings: Vec<Opening<'_>> = hp
            .in_place(place)
            .filter(|r| r.label != "management")
            .map(|r| Opening {
                src: match &r.src {
                    Addrs::Any => None,
                    Addrs::Net(n) => Some(Match::Src(Addr::Net(*n))),
                    Addrs::Group(g) => Some(Match::Src(Addr::Set(hp.groups[*g].name.clone()))),
                },
                dst: r
                    .dst
                    .map(|d| Addr::Net(ipnet::Ipv4Net::new(d, 32).expect("/32"))),
                proto: r.proto,
                sport: r.sport,
                dports: &r.dports,
                label: &r.label,
            })
            .collect();
        chains.extend(sport_chain(hook, name, &openings));
    }
    let table = |family, sets, chains| Table {
        family,
        name: SPORT_TABLE.into(),
        sets,
        ct_helpers: Vec::new(),
        chains,
    };
    if !chains.is_empty() {
        tables.push(table(Family::Ip, super::nft_sets(hp), chains));
    }
    let host = |a: std::net::Ipv6Addr| Addr::Net6(ipnet::Ipv6Net::new(a, 128).expect("/128"));
    let mut chains6 = Vec::new();
    for (place, hook, name) in SPORT_HOOKS {
        let openings: Vec<Opening<'_>> = hp
            .v6
            .rules
            .iter()
            .filter(|r| r.place == place)
            .map(|r| Opening {
                src: Some(match r.srcs.as_slice() {
                    [one] => Match::Src(host(*one)),
                    many => Match::AnyOf(many.iter().map(|&a| vec![Match::Src(host(a))]).collect()),
                }),
                dst: r.dst.map(host),
                proto: r.proto,
                sport: r.sport,
                dports: &r.dports,
                label: &r.label,
            })
            .collect();
        chains6.extend(sport_chain(hook, name, &openings));
    }
    if !chains6.is_empty() {
        tables.push(table(Family::Ip6, Vec::new(), chains6));
    }
    (!tables.is_empty()).then_some(Ruleset { tables })
}

/// Whether [`sport_table`] holds `table ip6 amwall_sport`.
pub fn sport_has_ip6(hp: &HostPolicy) -> bool {
    sport_table(hp).is_some_and(|rs| rs.tables.iter().any(|t| t.family == Family::Ip6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_xml_would_read_as_markup() {
        assert_eq!(esc("a<b>&\"'\n"), "a&lt;b&gt;&amp;&quot;&apos; ");
    }

    #[test]
    fn a_comment_cannot_end_early() {
        for s in ["a--b", "x-", "-->", "a\n-->b", "---"] {
            let c = xml_comment(s);
            assert!(
                !c.contains("--") && !c.ends_with('-') && !c.contains('\n'),
                "{s:?} -> {c:?}"
            );
        }
    }
}
