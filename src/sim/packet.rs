//! The packet description `explain` takes:
//!
//! ```text
//! PROTO SRC[:SPORT] -> DST[:DPORT] [in IF] [out IF] [state S] [reply]
//!       [flags F,F] [mark N] [ctmark N] [ttl N] [len N] [type T[/CODE]] [helper NAME]
//! ```
//!
//! - PROTO: `tcp`, `udp`, `icmp`, `icmpv6`, another name from /etc/protocols, or a number.
//! - Addresses: IPv4 or IPv6 (`[2001:db8::1]:22` with a port), optionally a
//!   prefix (`192.0.2.0/24`): then every address of it is evaluated at once.
//! - Ports: `N`, or a range `N-M` (evaluated symbolically as well).
//! - `in IF` only: the packet arrives for this host (prerouting, input).
//!   `in IF out IF`: it is forwarded (prerouting, forward, postrouting).
//!   `out IF` only: this host sends it (output, postrouting).
//!   Neither: it arrives on any interface other than `lo`.
//! - `state new|established|related|invalid|untracked` (default `new`);
//!   `reply`: the packet travels in the reply direction of its connection.
//! - `flags`: TCP flags (default SYN for new, ACK otherwise).
//!   Square brackets and commas between options are optional.

use std::net::IpAddr;

use crate::netfilter::{names, CtDirection};

use super::engine::CtBase;
use super::space::Iv;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub proto: u8,
    pub v6: bool,
    pub src: Iv,
    pub dst: Iv,
    pub sport: Iv,
    /// For ICMP: `type << 8 | code` (any code when not given).
    pub dport: Iv,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub state: Option<CtBase>,
    pub untracked: bool,
    pub dir: CtDirection,
    pub tcp_flags: Option<u8>,
    pub mark: u32,
    pub ctmark: u32,
    pub ttl: Option<u8>,
    pub len: Option<u16>,
    pub helper: Option<String>,
}

/// Which hooks the packet crosses on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Input,
    Forward,
    Output,
}

impl Packet {
    pub fn route(&self) -> Route {
        match (&self.iif, &self.oif) {
            (Some(_), Some(_)) => Route::Forward,
            (None, Some(_)) => Route::Output,
            _ => Route::Input,
        }
    }
}

fn addr(s: &str) -> Result<(Iv, bool), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv4 or IPv6 address"))?;
    let (v, bits, v6) = match ip {
        IpAddr::V4(x) => (u32::from(x) as u128, 32u32, false),
        IpAddr::V6(x) => (u128::from(x), 128u32, true),
    };
    let len: u32 = match len {
        Some(l) => l
            .parse()
            .ok()
            .filter(|&l| l <= bits)
            .ok_or_else(|| format!("`/{l}`: the prefix length must be 0..{bits}"))?,
        None => bits,
    };
    let host = if bits - len >= 128 {
        u128::MAX
    } else {
        (1u128 << (bits - len)) - 1
    };
    Ok((Iv::new(v & !host, (v & !host) | host), v6))
}

fn ports(s: &str) -> Result<Iv, String> {
    let p = |x: &str| {
        x.parse::<u16>()
            .map_err(|_| format!("`{x}` is not a port (0-65535)"))
    };
    let (a, b) = match s.split_once(['-', ':']) {
        Some((a, b)) => (p(a)?, p(b)?),
        None => (p(s)?, p(s)?),
    };
    if a > b {
        return Err(format!("`{s}`: the range is backwards"));
    }
    Ok(Iv::new(a as u128, b as u128))
}

/// `192.0.2.1:80`, `[2001:db8::1]:80`, `2001:db8::1`, `192.0.2.0/24:1-1023`.
fn endpoint(s: &str) -> Result<(Iv, bool, Option<Iv>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]`"))?;
        let (iv, v6) = addr(a)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(ports(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("`{s}`: expected `:PORT` after `]`")),
        };
        return Ok((iv, v6, port));
    }
    if s.matches(':').count() > 1 {
        let (iv, v6) = addr(s)?;
        return Ok((iv, v6, None));
    }
    match s.split_once(':') {
        Some((a, p)) => {
            let (iv, v6) = addr(a)?;
            Ok((iv, v6, Some(ports(p)?)))
        }
        None => {
            let (iv, v6) = addr(s)?;
            Ok((iv, v6, None))
        }
    }
}

fn tcp_flags(s: &str) -> Result<u8, String> {
    let mut f = 0u8;
    for w in s.split(',') {
        f |= match w.to_ascii_uppercase().as_str() {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ECE" => 0x40,
            "CWR" => 0x80,
            "NONE" => 0,
            other => return Err(format!("`{other}` is not a TCP flag")),
        };
    }
    Ok(f)
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    let t = s.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
            .ok()
            .and_then(|v| v.to_string().parse().ok())
    } else {
        t.parse().ok()
    };
    parsed.ok_or_else(|| format!("`{s}` is not a valid {what}"))
}

pub fn parse(text: &str) -> Result<Packet, String> {
    let words: Vec<String> = text
        .split_whitespace()
        .flat_map(|w| {
            // `->` may touch its neighbours; options may be bracketed.
            let w = w.replace("->", " -> ");
            w.split_whitespace()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut it = words.iter().map(String::as_str).peekable();
    let proto_w = it
        .next()
        .ok_or("empty packet: expected `PROTO SRC -> DST`, e.g. `tcp 192.0.2.2:516 -> 192.0.2.3:10080 in eth0`")?;
    let proto = match proto_w.to_ascii_lowercase().as_str() {
        "icmpv6" | "icmp6" => 58,
        p => names::proto_number(p).ok_or_else(|| format!("`{proto_w}` is not a protocol"))?,
    };
    let src_w = it.next().ok_or("expected the source after the protocol")?;
    match it.next() {
        Some("->") => {}
        _ => return Err("expected `->` between source and destination".into()),
    }
    let dst_w = it.next().ok_or("expected the destination after `->`")?;
    let (src, v6s, sport) = endpoint(src_w)?;
    let (dst, v6d, dport) = endpoint(dst_w)?;
    if v6s != v6d {
        return Err("source and destination are of different IP versions".into());
    }
    let icmp = proto == 1 || proto == 58;
    if icmp && (sport.is_some() || dport.is_some()) {
        return Err("ICMP has no ports: use `type NAME` or `type N/CODE`".into());
    }
    let ported = super::compile::has_ports(proto);
    if !ported && !icmp && (sport.is_some() || dport.is_some()) {
        return Err(format!("protocol {proto_w} has no ports"));
    }
    let mut p = Packet {
        proto,
        v6: v6s,
        src,
        dst,
        sport: if ported {
            sport.unwrap_or(Iv::new(
                crate::ports::EPHEMERAL.lo as u128,
                crate::ports::EPHEMERAL.hi as u128,
            ))
        } else {
            Iv::point(0)
        },
        dport: if ported {
            dport.ok_or("give the destination port (DST:PORT)")?
        } else if icmp {
            Iv::new(0, 0xffff)
        } else {
            Iv::point(0)
        },
        iif: None,
        oif: None,
        state: None,
        untracked: false,
        dir: CtDirection::Original,
        tcp_flags: None,
        mark: 0,
        ctmark: 0,
        ttl: None,
        len: None,
        helper: None,
    };
    let rest: Vec<String> = it
        .map(|w| {
            w.trim_matches(|c| c == '[' || c == ']' || c == ',')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut i = 0;
    while i < rest.len() {
        let key = rest[i].to_ascii_lowercase();
        let val = rest.get(i + 1).map(String::as_str);
        fn need<'x>(v: Option<&'x str>, key: &str) -> Result<&'x str, String> {
            v.ok_or_else(|| format!("`{key}` needs a value"))
        }
        match key.as_str() {
            "in" => p.iif = Some(need(val, &key)?.to_string()),
            "out" => p.oif = Some(need(val, &key)?.to_string()),
            "state" => match need(val, &key)?.to_ascii_lowercase().as_str() {
                "new" => p.state = Some(CtBase::New),
                "established" => p.state = Some(CtBase::Established),
                "related" => p.state = Some(CtBase::Related),
                "invalid" => p.state = Some(CtBase::Invalid),
                "untracked" => p.untracked = true,
                other => {
                    return Err(format!(
                        "state `{other}`: expected new, established, related, invalid or untracked"
                    ))
                }
            },
            "reply" => {
                p.dir = CtDirection::Reply;
                i += 1;
                continue;
            }
            "flags" => p.tcp_flags = Some(tcp_flags(need(val, &key)?)?),
            "mark" => p.mark = number(need(val, &key)?, "mark")?,
            "ctmark" => p.ctmark = number(need(val, &key)?, "ctmark")?,
            "ttl" => p.ttl = Some(number(need(val, &key)?, "TTL")?),
            "len" | "length" => p.len = Some(number(need(val, &key)?, "length")?),
            "helper" => p.helper = Some(need(val, &key)?.to_string()),
            "type" if icmp => {
                let v = need(val, &key)?;
                let (t, c) = match v.split_once('/') {
                    Some((t, c)) => (t, Some(c)),
                    None => (v, None),
                };
                let (ty, code) = match t.parse::<u8>() {
                    Ok(n) => (n, c.map(|c| number::<u8>(c, "ICMP code")).transpose()?),
                    Err(_) => {
                        let (n, c0) = names::icmp_type(t, proto == 58)
                            .ok_or_else(|| format!("`{t}` is not an ICMP type"))?;
                        (n, c0)
                    }
                };
                let base = (ty as u128) << 8;
                p.dport = match code {
                    Some(c) => Iv::point(base | c as u128),
                    None => Iv::new(base, base | 0xff),
                };
            }
            other => {
                return Err(format!(
                    "unknown option `{other}` (expected in, out, state, reply, flags, mark, ctmark, ttl, len, type, helper)"
                ))
            }
        }
        i += 2;
    }
    if proto == 6 && p.tcp_flags.is_none() {
        p.tcp_flags = Some(match p.state {
            None | Some(CtBase::New) | Some(CtBase::Related) if p.dir == CtDirection::Original => {
                0x02
            }
            _ if p.dir == CtDirection::Reply && matches!(p.state, None | Some(CtBase::New)) => 0x12,
            _ => 0x10,
        });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses() {
        let p = parse("tcp 192.0.2.2:516 -> 192.0.2.3:10080 [in eth0]").unwrap();
        assert_eq!(p.proto, 6);
        assert_eq!(p.sport, Iv::point(516));
        assert_eq!(p.dport, Iv::point(10080));
        assert_eq!(p.src, Iv::point(0xc0000202));
        assert_eq!(p.iif.as_deref(), Some("eth0"));
        assert_eq!(p.route(), Route::Input);
        assert_eq!(p.tcp_flags, Some(0x02));
    }

    #[test]
    fn options_ranges_and_v6() {
        let p = parse("udp 198.51.100.0/24:840-860->203.0.113.5:10080 [in eth1, out eth0] [state established]").unwrap();
        assert_eq!(p.src, Iv::new(0xc6336400, 0xc63364ff));
        assert_eq!(p.sport, Iv::new(840, 860));
        assert_eq!(p.route(), Route::Forward);
        assert_eq!(p.state, Some(CtBase::Established));
        let q = parse("tcp [2001:db8::1]:22 -> 2001:db8::2:22").unwrap_err();
        assert!(q.contains("port"), "{q}");
        let q = parse("tcp [2001:db8::1]:4000 -> [2001:db8::2]:22 out eth0").unwrap();
        assert!(q.v6 && q.route() == Route::Output);
        let i = parse("icmp 192.0.2.1 -> 192.0.2.2 type echo-request").unwrap();
        assert_eq!(i.dport, Iv::new(8 << 8, (8 << 8) | 0xff));
        assert!(parse("tcp 192.0.2.1 -> 192.0.2.2").is_err());
        assert!(parse("tcp 192.0.2.1:1 -> 192.0.2.2:2 sideways").is_err());
    }
}
