//! iptables-restore / iptables-save text.
//!
//! `emit` writes exactly the canonical form `iptables-save` prints for the same
//! rules (match order, `-m tcp`, `/32` suffixes, `RELATED,ESTABLISHED`), so that
//! loading a file and saving it again gives the same rule lines — a kernel test
//! checks this.

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
        Addr::Set(s) => s.clone(),
    }
}

fn policy(p: Policy) -> &'static str {
    match p {
        Policy::Accept => "ACCEPT",
        Policy::Drop => "DROP",
    }
}

/// Comments are quoted the way iptables-save does: only when they contain
/// something other than letters, digits and a few safe characters.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/,".contains(c))
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// One rule as the arguments after `-A CHAIN`.
pub fn rule_args(r: &Rule) -> String {
    let mut out = String::new();
    let find = |f: &dyn Fn(&Match) -> bool| r.matches.iter().find(|m| f(m));
    // iptables-save prints the generic matches first, in this order.
    if let Some(Match::Src(a)) = find(&|m| matches!(m, Match::Src(Addr::Net(_)))) {
        write!(out, " -s {}", addr(a)).unwrap();
    }
    if let Some(Match::Dst(a)) = find(&|m| matches!(m, Match::Dst(Addr::Net(_)))) {
        write!(out, " -d {}", addr(a)).unwrap();
    }
    if let Some(Match::InIface(i)) = find(&|m| matches!(m, Match::InIface(_))) {
        write!(out, " -i {i}").unwrap();
    }
    if let Some(Match::OutIface(i)) = find(&|m| matches!(m, Match::OutIface(_))) {
        write!(out, " -o {i}").unwrap();
    }
    let proto = r.matches.iter().find_map(|m| {
        if let Match::Proto(p) = m {
            Some(*p)
        } else {
            None
        }
    });
    if let Some(p) = proto {
        write!(out, " -p {p}").unwrap();
    }
    for m in &r.matches {
        match m {
            Match::Src(Addr::Set(s)) => write!(out, " -m set --match-set {s} src").unwrap(),
            Match::Dst(Addr::Set(s)) => write!(out, " -m set --match-set {s} dst").unwrap(),
            Match::CtState(states) => {
                // iptables-save's order.
                let mut names = Vec::new();
                for (st, n) in [
                    (CtState::Invalid, "INVALID"),
                    (CtState::New, "NEW"),
                    (CtState::Related, "RELATED"),
                    (CtState::Established, "ESTABLISHED"),
                ] {
                    if states.contains(&st) {
                        names.push(n);
                    }
                }
                write!(out, " -m conntrack --ctstate {}", names.join(",")).unwrap();
            }
            _ => {}
        }
    }
    let sport = r.matches.iter().find_map(|m| {
        if let Match::SPort(v) = m {
            Some(v)
        } else {
            None
        }
    });
    let dport = r.matches.iter().find_map(|m| {
        if let Match::DPort(v) = m {
            Some(v)
        } else {
            None
        }
    });
    if let Some(p) = proto {
        if sport.is_some() || dport.is_some() {
            let mut plain = String::new();
            let mut multi = String::new();
            match sport {
                Some(v) if v.len() == 1 => write!(plain, " --sport {}", ports(v)).unwrap(),
                Some(v) => write!(multi, " --sports {}", ports(v)).unwrap(),
                None => {}
            }
            match dport {
                Some(v) if v.len() == 1 => write!(plain, " --dport {}", ports(v)).unwrap(),
                Some(v) => write!(multi, " --dports {}", ports(v)).unwrap(),
                None => {}
            }
            if !plain.is_empty() {
                write!(out, " -m {p}{plain}").unwrap();
            }
            if !multi.is_empty() {
                write!(out, " -m multiport{multi}").unwrap();
            }
        }
    }
    if let Some(c) = &r.comment {
        write!(out, " -m comment --comment {}", quote(c)).unwrap();
    }
    match &r.action {
        Action::Accept => out.push_str(" -j ACCEPT"),
        Action::Drop => out.push_str(" -j DROP"),
        Action::Dnat(to) => write!(out, " -j DNAT --to-destination {to}").unwrap(),
        Action::Masquerade => out.push_str(" -j MASQUERADE"),
        Action::CtHelper(h) => write!(out, " -j CT --helper {h}").unwrap(),
    }
    out
}

/// The whole ruleset as an iptables-restore file. `header` lines become `#` comments.
pub fn emit(rs: &Ruleset, header: &[String]) -> String {
    let mut out = String::new();
    for h in header {
        writeln!(out, "# {h}").unwrap();
    }
    for t in &rs.tables {
        writeln!(out, "*{}", t.name).unwrap();
        for c in &t.chains {
            let p = c.base.as_ref().map_or("-", |b| policy(b.policy));
            writeln!(out, ":{} {} [0:0]", c.name, p).unwrap();
        }
        for c in &t.chains {
            for r in &c.rules {
                writeln!(out, "-A {}{}", c.name, rule_args(r)).unwrap();
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
