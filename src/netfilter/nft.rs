//! nft scripts, laid out the way `nft list ruleset` prints them.
//!
//! A script replaces only its own tables: `table ip NAME` + `delete table ip NAME`
//! first (the first line creates the table if it is missing, so the delete never
//! fails), then the new definition, all in one atomic `nft -f` transaction.

use std::fmt::Write;

use super::*;

fn ports(v: &[PortRange]) -> String {
    let one = |r: &PortRange| {
        if r.lo == r.hi {
            r.lo.to_string()
        } else {
            format!("{}-{}", r.lo, r.hi)
        }
    };
    if v.len() == 1 {
        one(&v[0])
    } else {
        format!("{{ {} }}", v.iter().map(one).collect::<Vec<_>>().join(", "))
    }
}

fn addr(a: &Addr) -> String {
    a.to_string()
}

fn family(f: Family) -> &'static str {
    f.name()
}

fn priority(kind: ChainType, hook: Hook, p: i32) -> String {
    // Print the standard names nft itself prints for the usual values.
    let name = match (kind, hook, p) {
        (_, _, priority::RAW) => Some("raw"),
        (_, _, priority::FILTER) => Some("filter"),
        (ChainType::Nat, Hook::Prerouting, priority::DSTNAT) => Some("dstnat"),
        (ChainType::Nat, Hook::Postrouting, priority::SRCNAT) => Some("srcnat"),
        _ => None,
    };
    name.map_or_else(|| p.to_string(), str::to_string)
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

/// One rule's statement text.
pub fn rule_text(r: &Rule) -> String {
    let mut parts: Vec<String> = Vec::new();
    for m in &r.matches {
        if let Match::InIface(i) = m {
            parts.push(format!("iifname {}", quote(i)));
        }
    }
    for m in &r.matches {
        if let Match::OutIface(i) = m {
            parts.push(format!("oifname {}", quote(i)));
        }
    }
    for m in &r.matches {
        match m {
            Match::Src(a) => parts.push(format!("ip saddr {}", addr(a))),
            Match::Dst(a) => parts.push(format!("ip daddr {}", addr(a))),
            _ => {}
        }
    }
    let proto = r.matches.iter().find_map(|m| {
        if let Match::Proto(p) = m {
            Some(*p)
        } else {
            None
        }
    });
    let mut port_match = false;
    if let Some(p) = proto {
        for m in &r.matches {
            match m {
                Match::SPort(v) => {
                    parts.push(format!("{p} sport {}", ports(v)));
                    port_match = true;
                }
                Match::DPort(v) => {
                    parts.push(format!("{p} dport {}", ports(v)));
                    port_match = true;
                }
                _ => {}
            }
        }
        if !port_match {
            parts.push(format!("ip protocol {p}"));
        }
    }
    for m in &r.matches {
        if let Match::CtState(states) = m {
            let mut names = Vec::new();
            for (st, n) in [
                (CtState::Established, "established"),
                (CtState::Related, "related"),
                (CtState::New, "new"),
                (CtState::Invalid, "invalid"),
            ] {
                if states.contains(&st) {
                    names.push(n);
                }
            }
            parts.push(format!("ct state {}", names.join(",")));
        }
    }
    parts.push(match &r.action {
        Action::Accept => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Dnat(to) => format!("dnat to {to}"),
        Action::Masquerade => "masquerade".into(),
        Action::CtHelper(h) => format!("ct helper set {}", quote(h)),
        other => format!("unsupported-action({other:?})"),
    });
    if let Some(c) = &r.comment {
        parts.push(format!("comment {}", quote(c)));
    }
    parts.join(" ")
}

/// The script for `rs`. `header` lines become `#` comments.
pub fn emit(rs: &Ruleset, header: &[String]) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    for h in header {
        writeln!(out, "# {h}").unwrap();
    }
    for t in &rs.tables {
        let fam = family(t.family);
        writeln!(
            out,
            "\ntable {fam} {n}\ndelete table {fam} {n}\n",
            n = t.name
        )
        .unwrap();
        writeln!(out, "table {fam} {} {{", t.name).unwrap();
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push('\n');
            }
            first = false;
        };
        for h in &t.ct_helpers {
            sep(&mut out);
            writeln!(
                out,
                "\tct helper {} {{\n\t\ttype {} protocol {}\n\t\tl3proto ip\n\t}}",
                h.name,
                quote(&h.helper),
                h.proto
            )
            .unwrap();
        }
        for s in &t.sets {
            sep(&mut out);
            writeln!(out, "\tset {} {{\n\t\ttype ipv4_addr", s.name).unwrap();
            if s.needs_interval() {
                writeln!(out, "\t\tflags interval").unwrap();
            }
            let elems: Vec<String> = s.elements.iter().map(|e| addr(&Addr::Net(*e))).collect();
            writeln!(out, "\t\telements = {{ {} }}\n\t}}", elems.join(", ")).unwrap();
        }
        for c in &t.chains {
            sep(&mut out);
            writeln!(out, "\tchain {} {{", c.name).unwrap();
            if let Some(b) = &c.base {
                let kind = match b.kind {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                    ChainType::Route => "route",
                };
                let pol = match b.policy {
                    Policy::Accept => "accept",
                    Policy::Drop => "drop",
                };
                writeln!(
                    out,
                    "\t\ttype {kind} hook {} priority {}; policy {pol};",
                    b.hook.name(),
                    priority(b.kind, b.hook, b.priority)
                )
                .unwrap();
            }
            for r in &c.rules {
                writeln!(out, "\t\t{}", rule_text(r)).unwrap();
            }
            writeln!(out, "\t}}").unwrap();
        }
        writeln!(out, "}}").unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_with_set_and_ports() {
        let r = Rule::new(
            vec![
                Match::InIface("eth0".into()),
                Match::Src(Addr::Set("in_amrecover_hosts".into())),
                Match::Proto(Proto::Tcp),
                Match::DPort(vec![PortRange::single(10082), PortRange::new(50000, 50100)]),
            ],
            Action::Accept,
        );
        assert_eq!(
            rule_text(&r),
            "iifname \"eth0\" ip saddr @in_amrecover_hosts tcp dport { 10082, 50000-50100 } accept"
        );
    }
}
