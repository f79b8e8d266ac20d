//! The sets iptables rules name with `-m set --match-set NAME src`
//! ([`Addr::Set`]). iptables-save does not include them, so `check --ipset
//! FILE` supplies them; a set it does not supply stays unknown.
//!
//! FILE is either `ipset save` output or an `ipset restore` script such as the
//! `HOST.ipset` that `plan` writes (create a temporary set, fill it, `swap` it
//! in, `destroy` the temporary one). Both are read the way `ipset restore`
//! runs them, starting from no sets: every command (`create`, `add`, `del`,
//! `flush`, `destroy`, `rename`, `swap`, their one-letter forms `-N -A -D -F
//! -X -E -W`, `test`, `COMMIT`) changes the sets as ipset would, and what
//! counts is the state at the end. A command ipset would refuse (a set
//! created twice without `-exist`, an unknown set, a swap of different types)
//! is an error at its line, because ipset would stop loading there.
//!
//! IPv4 address sets (`hash:ip`, `hash:net`, `bitmap:ip`) become IR [`Set`]s,
//! their members as the prefixes that cover them exactly; IPv6 ones
//! (`hash:ip`, `hash:net` with `family inet6`, as `plan` writes for
//! `HOST.rules6`) become IPv6 [`Set`]s of their entries. Other types (ports,
//! `hash:ip,port`...), sets with `nomatch` entries (a most-specific
//! match the IR cannot express) and `netmask` sets are listed by name in
//! [`IpSets::unsupported`], so a rule that uses one is reported as unknown
//! rather than guessed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv4Subnets, Ipv6Net};

use crate::diag::InputError;
use crate::netfilter::Set;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSets {
    pub sets: Vec<Set>,
    /// Sets of a type the IR cannot hold.
    pub unsupported: Vec<String>,
}

impl IpSets {
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// A set while the commands run.
#[derive(Debug, Clone)]
struct Live {
    name: String,
    /// Type and family as ipset compares them for `swap`.
    kind: String,
    members: Members,
}

#[derive(Debug, Clone)]
enum Members {
    /// `hash:ip`, `bitmap:ip`: single addresses, kept as merged intervals so
    /// that `add S 0.0.0.0/0` costs nothing and `del` can cut holes.
    Addrs(Vec<(u32, u32)>),
    /// `hash:net`: the entries themselves (ipset deletes entries, not addresses).
    Nets(BTreeSet<Ipv4Net>),
    /// `family inet6` `hash:ip` (`host`: single addresses only, as ipset
    /// takes no IPv6 range or prefix there) or `hash:net`: the entries.
    Nets6 { host: bool, set: BTreeSet<Ipv6Net> },
    /// Anything else: its members are not read.
    Other,
}

fn insert(iv: &mut Vec<(u32, u32)>, lo: u32, hi: u32) {
    iv.push((lo, hi));
    iv.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(iv.len());
    for &(a, b) in iv.iter() {
        match out.last_mut() {
            Some(l) if a <= l.1.saturating_add(1) => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *iv = out;
}

fn remove(iv: &mut Vec<(u32, u32)>, lo: u32, hi: u32) {
    let mut out = Vec::with_capacity(iv.len() + 1);
    for &(a, b) in iv.iter() {
        if b < lo || a > hi {
            out.push((a, b));
            continue;
        }
        if a < lo {
            out.push((a, lo - 1));
        }
        if b > hi {
            out.push((hi + 1, b));
        }
    }
    *iv = out;
}

/// A member as the addresses it names: `A`, `A/P`, `A-B`.
fn range(member: &str) -> Option<(u32, u32)> {
    if let Some((a, b)) = member.split_once('-') {
        let (a, b): (Ipv4Addr, Ipv4Addr) = (a.parse().ok()?, b.parse().ok()?);
        return (a <= b).then(|| (u32::from(a), u32::from(b)));
    }
    let n: Ipv4Net = match member.split_once('/') {
        Some(_) => member.parse().ok()?,
        None => Ipv4Net::new(member.parse().ok()?, 32).ok()?,
    };
    Some((u32::from(n.network()), u32::from(n.broadcast())))
}

/// A `hash:net` member as its entries: a range is split the way ipset splits it.
fn nets(member: &str) -> Option<Vec<Ipv4Net>> {
    if member.contains('-') {
        let (a, b) = range(member)?;
        return Some(Ipv4Subnets::new(a.into(), b.into(), 0).collect());
    }
    let n: Ipv4Net = match member.split_once('/') {
        Some(_) => member.parse().ok()?,
        None => Ipv4Net::new(member.parse().ok()?, 32).ok()?,
    };
    // ipset stores the network: `add n 10.0.0.1/8` is 10.0.0.0/8.
    Some(vec![n.trunc()])
}

/// An IPv6 member: `A` or, in a `hash:net`, `A/P` (stored as its network,
/// as ipset does). ipset takes no IPv6 range.
fn net6(member: &str, host: bool) -> Option<Ipv6Net> {
    match member.split_once('/') {
        Some(_) if host => None,
        Some(_) => member.parse::<Ipv6Net>().ok().map(|n| n.trunc()),
        None => Ipv6Net::new(member.parse().ok()?, 128).ok(),
    }
}

fn word_spans(line: &str, start: usize) -> Vec<(&str, Range<usize>)> {
    let mut out = Vec::new();
    let mut i = 0;
    for w in line.split_whitespace() {
        let at = i + line[i..].find(w).expect("a word of the line");
        out.push((w, start + at..start + at + w.len()));
        i = at + w.len();
    }
    out
}

// Long: one arm per ipset command and option, as ipset(8) lists them: the grammar in one
// place
pub fn parse(file: &str, text: &str) -> Result<IpSets, Box<InputError>> {
    let fail = |span: Range<usize>, msg: String, label: &str| {
        Box::new(InputError::new(
            file,
            &Arc::new(text.to_string()),
            span,
            msg,
            label,
        ))
    };
    let mut live: Vec<Live> = Vec::new();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end();
        let all = word_spans(line, start);
        // `-exist` / `-!` may stand anywhere on the line.
        let exist = all.iter().any(|(w, _)| matches!(*w, "-exist" | "-!"));
        let ws: Vec<(&str, Range<usize>)> = all
            .into_iter()
            .filter(|(w, _)| !matches!(*w, "-exist" | "-!"))
            .collect();
        let Some((cmd, cspan)) = ws.first().cloned() else {
            continue;
        };
        if cmd.starts_with('#') || cmd == "COMMIT" {
            continue;
        }
        let arg = |k: usize, what: &str| -> Result<(&str, Range<usize>), Box<InputError>> {
            ws.get(k).cloned().ok_or_else(|| {
                fail(
                    start + line.len()..start + line.len(),
                    format!("`{cmd}` needs {what}"),
                    "line ends",
                )
            })
        };
        let find = |live: &[Live], name: &str, span: Range<usize>| {
            live.iter().position(|s| s.name == name).ok_or_else(|| {
                fail(
                    span,
                    format!("no set `{name}`: ipset restore stops here (create it first)"),
                    "unknown set",
                )
            })
        };
        match cmd {
            "create" | "-N" | "n" => {
                let (name, nspan) = arg(1, "a set name")?;
                let (kind, _) = arg(2, "a set type")?;
                let opts: Vec<&str> = ws[3..].iter().map(|(w, _)| *w).collect();
                let v6 = opts.windows(2).any(|w| w == ["family", "inet6"]);
                let fam = if v6 { "inet6" } else { "inet" };
                if let Some(s) = live.iter().find(|s| s.name == name) {
                    if exist && s.kind == format!("{kind} {fam}") {
                        continue;
                    }
                    return Err(fail(
                        nspan,
                        format!("set `{name}` already exists: ipset restore stops here"),
                        if exist {
                            "created before with another type"
                        } else {
                            "created twice (without -exist)"
                        },
                    ));
                }
                let members = match kind {
                    _ if opts.contains(&"netmask") => Members::Other,
                    "hash:ip" if v6 => Members::Nets6 {
                        host: true,
                        set: BTreeSet::new(),
                    },
                    "hash:net" if v6 => Members::Nets6 {
                        host: false,
                        set: BTreeSet::new(),
                    },
                    _ if v6 => Members::Other,
                    "hash:ip" | "bitmap:ip" => Members::Addrs(Vec::new()),
                    "hash:net" => Members::Nets(BTreeSet::new()),
                    _ => Members::Other,
                };
                live.push(Live {
                    name: name.to_string(),
                    kind: format!("{kind} {fam}"),
                    members,
                });
            }
            "add" | "del" | "-A" | "-D" | "a" | "d" => {
                let (name, nspan) = arg(1, "a set name")?;
                let (member, mspan) = arg(2, "a member")?;
                let i = find(&live, name, nspan)?;
                let add = matches!(cmd, "add" | "-A" | "a");
                let nomatch = ws[3..].iter().any(|(w, _)| *w == "nomatch");
                let bad = || {
                    fail(
                        mspan.clone(),
                        format!("bad member `{member}` of set {name}"),
                        "expected ADDRESS, ADDRESS/PREFIX or ADDRESS-ADDRESS",
                    )
                };
                let s = &mut live[i];
                match &mut s.members {
                    Members::Other => {}
                    _ if nomatch => s.members = Members::Other,
                    Members::Addrs(iv) => {
                        let (lo, hi) = range(member).ok_or_else(bad)?;
                        if add {
                            insert(iv, lo, hi)
                        } else {
                            remove(iv, lo, hi)
                        }
                    }
                    Members::Nets(set) => {
                        for n in nets(member).ok_or_else(bad)? {
                            if add {
                                set.insert(n);
                            } else {
                                set.remove(&n);
                            }
                        }
                    }
                    Members::Nets6 { host, set } => {
                        let n = net6(member, *host).ok_or_else(bad)?;
                        if add {
                            set.insert(n);
                        } else {
                            set.remove(&n);
                        }
                    }
                }
            }
            "test" | "-T" | "t" => {}
            "flush" | "-F" | "f" => match ws.get(1) {
                None => live.iter_mut().for_each(flush),
                Some((name, span)) => {
                    let i = find(&live, name, span.clone())?;
                    flush(&mut live[i]);
                }
            },
            "destroy" | "-X" | "x" => match ws.get(1) {
                None => live.clear(),
                Some((name, span)) => {
                    let i = find(&live, name, span.clone())?;
                    live.remove(i);
                }
            },
            "rename" | "-E" | "e" => {
                let (from, fspan) = arg(1, "the set to rename")?;
                let (to, tspan) = arg(2, "the new name")?;
                let i = find(&live, from, fspan)?;
                if live.iter().any(|s| s.name == to) {
                    return Err(fail(
                        tspan,
                        format!("set `{to}` already exists: ipset restore stops here"),
                        "taken",
                    ));
                }
                live[i].name = to.to_string();
            }
            "swap" | "-W" | "w" => {
                let (a, aspan) = arg(1, "two set names")?;
                let (b, bspan) = arg(2, "two set names")?;
                let i = find(&live, a, aspan)?;
                let j = find(&live, b, bspan.clone())?;
                if live[i].kind != live[j].kind {
                    return Err(fail(
                        bspan,
                        format!(
                            "sets `{a}` ({}) and `{b}` ({}) cannot be swapped: their type differs",
                            live[i].kind, live[j].kind
                        ),
                        "ipset restore stops here",
                    ));
                }
                // The names trade places; each set keeps its members.
                live[i].name = b.to_string();
                live[j].name = a.to_string();
            }
            _ => {
                return Err(fail(
                    cspan,
                    format!("unknown ipset command `{cmd}`"),
                    "expected create, add, del, flush, destroy, rename or swap (as `ipset save` and `ipset restore` take them)",
                ))
            }
        }
    }
    let mut out = IpSets::default();
    for s in live {
        let elements = match s.members {
            Members::Other => {
                out.unsupported.push(s.name);
                continue;
            }
            Members::Nets6 { set, .. } => {
                out.sets.push(Set::v6(s.name, set.into_iter().collect()));
                continue;
            }
            Members::Addrs(iv) => iv
                .into_iter()
                .flat_map(|(a, b)| Ipv4Subnets::new(a.into(), b.into(), 0))
                .collect(),
            Members::Nets(n) => n.into_iter().collect(),
        };
        out.sets.push(Set::v4(s.name, elements));
    }
    Ok(out)
}

fn flush(s: &mut Live) {
    match &mut s.members {
        Members::Addrs(iv) => iv.clear(),
        Members::Nets(n) => n.clear(),
        Members::Nets6 { set, .. } => set.clear(),
        Members::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_sets_and_the_rest() {
        let s = parse(
            "s.ipset",
            "create whitelist hash:ip family inet hashsize 1024 maxelem 65536\nadd whitelist 192.0.2.1\nadd whitelist 192.0.2.8-192.0.2.9\ncreate nets hash:net family inet\nadd nets 198.51.100.0/24\ncreate v6 hash:ip family inet6\nadd v6 2001:db8::1\ncreate svc hash:ip,port family inet\nadd svc 192.0.2.1,tcp:22\n",
        )
        .unwrap();
        let w = s.set("whitelist").unwrap();
        assert_eq!(w.elements.len(), 2, "{w:?}");
        assert_eq!(w.elements[1], "192.0.2.8/31".parse().unwrap());
        assert_eq!(s.set("nets").unwrap().elements.len(), 1);
        let v6 = s.set("v6").unwrap();
        assert!(v6.v6 && v6.elements.is_empty(), "{v6:?}");
        assert_eq!(v6.elements6, ["2001:db8::1/128".parse().unwrap()]);
        assert_eq!(s.unsupported, ["svc"]);
    }

    /// inet6 sets as ipset reads them: hash:net stores the network, hash:ip
    /// takes single addresses only (ipset refuses an IPv6 prefix or range
    /// there), del removes an entry, swap needs the same family.
    #[test]
    fn inet6_sets() {
        let s = parse(
            "s.ipset",
            "create n hash:net family inet6
add n 2001:db8:1::5/48
add n 2001:db8::9
add n 2001:db8::7
del n 2001:db8::7
create h hash:ip family inet6
add h 2001:db8::1
",
        )
        .unwrap();
        let n = s.set("n").unwrap();
        assert_eq!(
            n.elements6,
            [
                "2001:db8::9/128".parse().unwrap(),
                "2001:db8:1::/48".parse().unwrap()
            ]
        );
        let e = parse(
            "s",
            "create h hash:ip family inet6
add h 2001:db8::/64
",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        let e = parse(
            "s",
            "create a hash:net family inet6
create b hash:net family inet
swap a b
",
        )
        .unwrap_err();
        assert!(e.message.contains("cannot be swapped"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("s", "create a hash:ip\nadd a 300.1.1.1\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        let e = parse("s", "add b 1.2.3.4\n").unwrap_err();
        assert!(e.message.contains("no set `b`"), "{e}");
        let e = parse("s", "create a hash:ip\ncreate a hash:ip\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
        let e = parse("s", "create a hash:ip\ncreate b hash:net\nswap a b\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("s", "create a hash:ip\nlist a\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
    }

    /// What `plan` writes: fill `NAME~`, swap it in, destroy the twin. The
    /// end state is the set under its real name, nothing else.
    #[test]
    fn a_restore_script_ends_in_its_swapped_sets() {
        let s = parse(
            "h.ipset",
            "# header\ncreate x hash:ip family inet hashsize 1024 maxelem 65536 -exist\n\
             create x~ hash:ip family inet hashsize 1024 maxelem 65536 -exist\n\
             flush x~\nadd x~ 192.0.2.1\nadd x~ 192.0.2.2\nswap x~ x\ndestroy x~\n",
        )
        .unwrap();
        assert_eq!(s.sets.len(), 1, "{s:?}");
        assert_eq!(s.sets[0].name, "x");
        assert_eq!(
            s.sets[0].elements,
            [
                "192.0.2.1/32".parse().unwrap(),
                "192.0.2.2/32".parse().unwrap()
            ]
        );
        // `-exist` lets a second create of the same type pass; flush, del,
        // rename and the one-letter forms change what is left.
        let s = parse(
            "h.ipset",
            "-N a hash:ip\n-A a 192.0.2.8/30\n-D a 192.0.2.9\ncreate a hash:ip -exist\n\
             create n hash:net\nadd n 198.51.100.0/24\nadd n 203.0.113.0/24\ndel n 203.0.113.0/24\n\
             create g hash:net\nadd g 10.0.0.0/8\nadd g 10.1.0.0/16 nomatch\n\
             create old hash:ip\nadd old 192.0.2.99\nflush old\nrename old new\nCOMMIT\n",
        )
        .unwrap();
        let a = s.set("a").unwrap();
        assert_eq!(
            a.elements,
            [
                "192.0.2.8/32".parse().unwrap(),
                "192.0.2.10/31".parse().unwrap()
            ]
        );
        assert_eq!(
            s.set("n").unwrap().elements,
            ["198.51.100.0/24".parse().unwrap()]
        );
        assert!(s.set("new").unwrap().elements.is_empty());
        assert!(s.set("old").is_none());
        // A nomatch entry makes the set's meaning a most-specific match.
        assert_eq!(s.unsupported, ["g"]);
        // `destroy` alone removes every set.
        assert_eq!(
            parse("h", "create a hash:ip\nadd a 192.0.2.1\ndestroy\n").unwrap(),
            IpSets::default()
        );
    }
}
