//! `ipset save` output: the members of the sets iptables rules name with
//! `-m set --match-set NAME src` ([`Addr::Set`]). iptables-save does not
//! include them, so `check --ipset FILE` supplies them; a set it does not
//! supply stays unknown.
//!
//! IPv4 address sets (`hash:ip`, `hash:net`, `bitmap:ip`) become IR
//! [`Set`]s, ranges split into the prefixes that cover them exactly. Other
//! types (IPv6, ports, `hash:ip,port`...) are listed by name in
//! [`IpSets::unsupported`], so a rule that uses one is reported as unknown
//! rather than guessed.

use std::ops::Range;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv4Subnets};

use crate::diag::InputError;
use crate::netfilter::{Addr, Set};

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
    let mut out = IpSets::default();
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end();
        let words: Vec<&str> = line.split_whitespace().collect();
        let span = start..start + line.len();
        match words.as_slice() {
            [] => {}
            [w, ..] if w.starts_with('#') => {}
            ["create", name, kind, opts @ ..] => {
                let v6 = opts.windows(2).any(|w| w == ["family", "inet6"]);
                if matches!(*kind, "hash:ip" | "hash:net" | "bitmap:ip") && !v6 {
                    out.sets.push(Set {
                        name: name.to_string(),
                        elements: vec![],
                    });
                } else {
                    out.unsupported.push(name.to_string());
                }
            }
            ["add", name, member, ..] => {
                if out.unsupported.iter().any(|u| u == name) {
                    continue;
                }
                let Some(set) = out.sets.iter_mut().find(|s| s.name == *name) else {
                    return Err(fail(
                        span,
                        format!("`add` to set {name} before its `create`"),
                        "here",
                    ));
                };
                match nets(member) {
                    Some(n) => set.elements.extend(n),
                    None => {
                        return Err(fail(
                            span,
                            format!("bad member `{member}` of set {name}"),
                            "expected ADDRESS, ADDRESS/PREFIX or ADDRESS-ADDRESS",
                        ))
                    }
                }
            }
            _ => {
                return Err(fail(
                    span,
                    "expected `create NAME TYPE ...` or `add NAME MEMBER`".into(),
                    "as `ipset save` prints",
                ))
            }
        }
    }
    Ok(out)
}

fn nets(member: &str) -> Option<Vec<Ipv4Net>> {
    if let Some((a, b)) = member.split_once('-') {
        let (a, b) = (a.parse().ok()?, b.parse().ok()?);
        return (a <= b).then(|| Ipv4Subnets::new(a, b, 0).collect());
    }
    let a = match member.split_once('/') {
        Some((a, p)) => Addr::net(a.parse().ok()?, p.parse().ok()?)?,
        None => Addr::net(member.parse().ok()?, 32)?,
    };
    match a {
        Addr::Net(n) => Some(vec![n]),
        _ => None,
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
        assert_eq!(s.unsupported, ["v6", "svc"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("s", "create a hash:ip\nadd a 300.1.1.1\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("s", "add b 1.2.3.4\n").unwrap_err();
        assert!(e.message.contains("before its `create`"));
    }
}
