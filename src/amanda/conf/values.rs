//! Definitions with inheritance resolved, and typed readers for the parameters
//! that decide which packets flow.
//!
//! Inheritance follows `read_block`/`copy_dumptype` in `A:common-src/conffile.c`: a
//! parent named inside a block is expanded in place, so a later line overrides it and
//! it overrides earlier lines (amanda.conf(5): "the last occurrence of each parameter
//! takes precedence"); only values the parent set explicitly are copied; the parent
//! must be defined earlier, because Amanda resolves it while reading.

use std::collections::BTreeMap;

use super::keywords::Kind;
use super::parse::{Arg, ArgVal, Block, Definition, Item, Param};
use super::source::{Loc, Pos};
use super::{Origin, Setting};
use crate::amanda::settings::{Auth, ClientPort};
use crate::diag::InputError;
use crate::ports::PortRange;

/// What a definition (after inheritance) sets, by normalized keyword.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    pub params: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Set(Param),
    /// A predefined dumptype's value (conffile.c `init_defaults`).
    Builtin(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Def {
    pub name: String,
    pub loc: Option<Loc>,
    pub resolved: Resolved,
}

/// Every definition of every kind, in definition order.
#[derive(Debug, Default)]
pub(crate) struct Defs {
    pub by_kind: BTreeMap<Kind, Vec<Def>>,
}

impl Defs {
    /// Amanda predefines these dumptypes "for backwards compatibility"
    /// (`init_defaults` in conffile.c; `amgetconf CONF --list dumptype` lists them).
    pub fn with_builtins() -> Defs {
        let mut d = Defs::default();
        let mut put = |name: &str, key: &str, v: &'static str| {
            let mut r = Resolved::default();
            r.params.insert(key.to_string(), Value::Builtin(v));
            d.by_kind.entry(Kind::Dumptype).or_default().push(Def {
                name: name.to_string(),
                loc: None,
                resolved: r,
            });
        };
        put("NO-COMPRESS", "compress", "NONE");
        put("COMPRESS-FAST", "compress", "CLIENT FAST");
        put("COMPRESS-BEST", "compress", "CLIENT BEST");
        put("COMPRESS-CUST", "compress", "CLIENT CUSTOM");
        put("SRVCOMPRESS", "compress", "SERVER FAST");
        put("BSD-AUTH", "auth", "BSD");
        put("BSDTCP-AUTH", "auth", "BSDTCP");
        put("NO-RECORD", "record", "NO");
        put("NO-HOLD", "holdingdisk", "NEVER");
        put("NO-FULL", "strategy", "NOFULL");
        d
    }

    /// Amanda looks names up without regard to case (amgetconf finds `dumptype:A:auth`
    /// for `define dumptype a`).
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Def> {
        self.by_kind
            .get(&kind)?
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn names(&self, kind: Kind) -> Vec<&str> {
        self.by_kind
            .get(&kind)
            .map(|v| v.iter().map(|d| d.name.as_str()).collect())
            .unwrap_or_default()
    }

    /// Add a definition read from a file. `later` holds definitions not read yet,
    /// so that naming one of them gets a precise message.
    pub fn define(&mut self, def: &Definition, later: &[&Definition]) -> Result<(), InputError> {
        if let Some(prev) = self.get(def.kind, &def.name) {
            let e = def.name_loc.error(
                format!("{} `{}` is defined twice", def.kind.name(), def.name),
                "second definition",
            );
            return Err(match &prev.loc {
                Some(l) => e.with_help(format!("first defined at {}", l.pos())),
                None => e.with_help("Amanda predefines it and does not allow redefining it"),
            });
        }
        let resolved = self.resolve(def.kind, &def.body, later)?;
        self.by_kind.entry(def.kind).or_default().push(Def {
            name: def.name.clone(),
            loc: Some(def.name_loc.clone()),
            resolved,
        });
        Ok(())
    }

    pub fn resolve(
        &self,
        kind: Kind,
        body: &Block,
        later: &[&Definition],
    ) -> Result<Resolved, InputError> {
        let mut r = Resolved::default();
        for item in &body.items {
            match item {
                Item::Param(p) => {
                    r.params.insert(p.key.clone(), Value::Set(p.clone()));
                }
                Item::Inherit { name, loc } => {
                    let Some(parent) = self.get(kind, name) else {
                        let e = loc.error(
                            format!("unknown {} `{name}`", kind.name()),
                            "not defined before this line",
                        );
                        let help = match later.iter().find(|d| d.kind == kind && d.name.eq_ignore_ascii_case(name)) {
                            Some(d) => format!(
                                "it is defined later, at {}; Amanda reads top to bottom, so move that definition up",
                                d.name_loc.pos()
                            ),
                            None => format!("{}s defined so far: {}", kind.name(), self.names(kind).join(", ")),
                        };
                        return Err(e.with_help(help));
                    };
                    for (k, v) in &parent.resolved.params {
                        r.params.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        Ok(r)
    }
}

fn only_arg<'a>(p: &'a Param, what: &str) -> Result<&'a Arg, InputError> {
    match &p.args[..] {
        [a] => Ok(a),
        [] => Err(p
            .key_loc
            .error(format!("{} needs {what}", p.key), "value missing")),
        [_, extra, ..] => Err(extra
            .loc
            .error(format!("{} takes {what}", p.key), "unexpected")),
    }
}

/// A quoted string (`read_str` asks for CONF_STRING: `auth bsd` unquoted is an error
/// in Amanda too, "a quoted string is expected").
pub(crate) fn string(p: &Param) -> Result<(String, Loc), InputError> {
    let a = only_arg(p, "a quoted string")?;
    match &a.val {
        ArgVal::Str(s) => Ok((s.clone(), a.loc.clone())),
        ArgVal::Word(w) => Err(a
            .loc
            .error(format!("{} needs a quoted string", p.key), "not quoted")
            .with_help(format!("write {} \"{w}\"", p.key))),
        _ => Err(a.loc.error(
            format!("{} needs a quoted string", p.key),
            "expected \"...\"",
        )),
    }
}

/// The security drivers amwall models; Debian's 3.5.1 has no krb5 or rsh
/// (`amgetconf build.KRB5_SECURITY` = no; docs/design.md "Debian 3.5.1").
pub(crate) fn auth(p: &Param) -> Result<Auth, InputError> {
    let (s, loc) = string(p)?;
    Auth::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
        loc.error(format!("unknown auth \"{s}\""), "not an auth amwall models")
            .with_help("amwall knows bsd, bsdudp, bsdtcp, ssh and local; Debian's Amanda 3.5.1 is built without krb5 and rsh")
    })
}

/// `get_bool`: no value means yes; yes/no/true/false/on/off and integers.
pub(crate) fn boolean(p: &Param) -> Result<bool, InputError> {
    let a = match &p.args[..] {
        [] => return Ok(true),
        _ => only_arg(p, "yes or no")?,
    };
    let bad = || {
        a.loc
            .error(format!("{} takes yes or no", p.key), "not a boolean")
            .with_help("Amanda accepts YES, NO, TRUE, FALSE, ON, OFF, 0, 1")
    };
    match &a.val {
        ArgVal::Int(n) => Ok(*n != 0),
        ArgVal::Word(w) => match w.to_ascii_lowercase().as_str() {
            "y" | "yes" | "t" | "true" | "on" => Ok(true),
            "n" | "no" | "f" | "false" | "off" => Ok(false),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `read_int_or_str`: an integer, or a quoted service name; "" means the default.
/// A quoted number is a number: the security drivers take a leading digit as a port
/// and look anything else up with getservbyname (docs/amanda-protocol.md §1).
pub(crate) fn client_port(p: &Param) -> Result<Option<ClientPort>, InputError> {
    let a = only_arg(p, "a port number or a quoted service name")?;
    let number = |n: i64, loc: &Loc| {
        u16::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .map(|n| Some(ClientPort::Number(n)))
            .ok_or_else(|| {
                loc.error(
                    format!("client-port {n} is not a port number"),
                    "outside 1-65535",
                )
            })
    };
    match &a.val {
        ArgVal::Int(n) => number(*n, &a.loc),
        ArgVal::Str(s) if s.is_empty() => Ok(None),
        ArgVal::Str(s) if s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<i64>() {
            Ok(n) => number(n, &a.loc),
            Err(_) => Err(a.loc.error(format!("client-port \"{s}\" is not a port number"), "too large")),
        },
        ArgVal::Str(s) => Ok(Some(ClientPort::Service(s.clone()))),
        _ => Err(a
            .loc
            .error("client-port needs a port number or a quoted service name", "not a number or a string")
            .with_help("Amanda: \"an integer or a quoted string is expected\"; write client-port \"amanda\" or client-port 10080")),
    }
}

/// Which ports a `*-port` range may start in (`validate_reserved_port_range`,
/// `validate_unreserved_port_range` in conffile.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortClass {
    Reserved,
    Unreserved,
}

/// `read_intrange`: `LOW,HIGH` or a single port. Like Amanda we check that LOW lies in
/// its class and that LOW <= HIGH; Amanda never checks HIGH against the class (its
/// loop tests index 0 twice, and amgetconf accepts `reserved-udp-port 850,2000`).
pub(crate) fn port_range(p: &Param, class: PortClass) -> Result<PortRange, InputError> {
    let usage = || {
        p.loc()
            .error(
                format!("{} takes a port range LOW,HIGH", p.key),
                "not LOW,HIGH",
            )
            .with_help(format!("for example: {} 840,860", p.key))
    };
    let (lo, hi) = match &p.args[..] {
        [Arg {
            val: ArgVal::Int(a),
            ..
        }] => (*a, *a),
        [Arg {
            val: ArgVal::Int(a),
            ..
        }, Arg {
            val: ArgVal::Comma, ..
        }, Arg {
            val: ArgVal::Int(b),
            ..
        }] => (*a, *b),
        _ => return Err(usage()),
    };
    let (min, max, class_name) = match class {
        PortClass::Reserved => (1, 1023, "a reserved range must start in 1-1023"),
        PortClass::Unreserved => (1024, 65535, "an unreserved range must start in 1024-65535"),
    };
    let text = format!("{lo},{hi}");
    if lo < min || lo > max {
        return Err(p
            .loc()
            .error(
                format!("bad port range {text} for {}: {class_name}", p.key),
                "out of range",
            )
            .with_help(format!(
                "Amanda: \"portrange must be in the range {min} to {max}, inclusive\""
            )));
    }
    if lo > hi {
        return Err(p
            .loc()
            .error(
                format!(
                    "bad port range {text} for {}: the low port comes first",
                    p.key
                ),
                "backwards",
            )
            .with_help("Amanda: \"portranges must be in order from low to high\""));
    }
    if hi > 65535 {
        return Err(p.loc().error(
            format!("bad port range {text} for {}: {hi} is not a port", p.key),
            "above 65535",
        ));
    }
    Ok(PortRange::new(lo as u16, hi as u16))
}

/// Amanda's MAX_DUMPERS (`A:server-src/driverio.h`; "max 63" in Debian's
/// template.d/advanced.conf), enforced by `validate_inparallel`.
pub(crate) const MAX_DUMPERS: i64 = 63;

pub(crate) fn inparallel(p: &Param) -> Result<u32, InputError> {
    let a = only_arg(p, "a number")?;
    match a.val {
        ArgVal::Int(n) if (1..=MAX_DUMPERS).contains(&n) => Ok(n as u32),
        ArgVal::Int(n) => Err(a
            .loc
            .error(format!("inparallel {n} is out of range"), "not in 1-63")
            .with_help("Amanda: \"inparallel must be between 1 and MAX_DUMPERS (63)\"")),
        _ => Err(a.loc.error("inparallel needs a number", "not a number")),
    }
}

/// A typed value from a resolved definition, or the default with its citation.
pub(crate) fn setting<T>(
    r: &Resolved,
    key: &str,
    read: impl Fn(&Param) -> Result<T, InputError>,
    builtin: impl Fn(&str) -> T,
    default: (T, &'static str),
) -> Result<Setting<T>, InputError> {
    Ok(match r.params.get(key) {
        Some(Value::Set(p)) => Setting {
            value: read(p)?,
            origin: Origin::File(p.key_loc.pos()),
        },
        Some(Value::Builtin(s)) => Setting {
            value: builtin(s),
            origin: Origin::Default("a predefined dumptype (conffile.c init_defaults)"),
        },
        None => Setting {
            value: default.0,
            origin: Origin::Default(default.1),
        },
    })
}

/// Position of a parameter, for lints that point at it.
pub(crate) fn pos_of(p: &Param) -> Pos {
    p.key_loc.pos()
}

#[cfg(test)]
mod tests {
    use super::super::parse::{parse_text, Flavor, Stmt};
    use super::*;

    fn params(text: &str) -> Vec<Param> {
        let mut w = Vec::new();
        parse_text("t.conf", text, Flavor::Server, &mut w)
            .unwrap()
            .stmts
            .into_iter()
            .filter_map(|s| match s {
                Stmt::Param(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ranges_as_amgetconf_reads_them() {
        let p = params(
            "reserved-udp-port 841,850\nreserved-udp-port 850\nreserved-udp-port 850,2000\n",
        );
        assert_eq!(
            port_range(&p[0], PortClass::Reserved).unwrap(),
            PortRange::new(841, 850)
        );
        assert_eq!(
            port_range(&p[1], PortClass::Reserved).unwrap(),
            PortRange::new(850, 850)
        );
        // amgetconf prints 850,2000: Amanda does not check HIGH.
        assert_eq!(
            port_range(&p[2], PortClass::Reserved).unwrap(),
            PortRange::new(850, 2000)
        );
    }

    #[test]
    fn range_errors() {
        let p = params(
            "reserved-udp-port 860,840\nunreserved-tcp-port 80,90\nreserved-tcp-port 841 850\n",
        );
        assert_eq!(
            port_range(&p[0], PortClass::Reserved)
                .unwrap_err()
                .to_string(),
            "t.conf:1:1: bad port range 860,840 for reserved-udp-port: the low port comes first"
        );
        assert_eq!(
            port_range(&p[1], PortClass::Unreserved).unwrap_err().to_string(),
            "t.conf:2:1: bad port range 80,90 for unreserved-tcp-port: an unreserved range must start in 1024-65535"
        );
        // amgetconf: "an integer is expected" for `841 850`.
        assert!(port_range(&p[2], PortClass::Reserved).is_err());
    }

    #[test]
    fn client_port_forms() {
        let p = params("a 10080\na \"10080\"\na \"amanda\"\na \"\"\na amanda\n");
        assert_eq!(client_port(&p[0]).unwrap(), Some(ClientPort::Number(10080)));
        assert_eq!(client_port(&p[1]).unwrap(), Some(ClientPort::Number(10080)));
        assert_eq!(
            client_port(&p[2]).unwrap(),
            Some(ClientPort::Service("amanda".into()))
        );
        assert_eq!(client_port(&p[3]).unwrap(), None);
        assert!(client_port(&p[4]).is_err());
    }

    #[test]
    fn booleans() {
        let p = params("index\nindex no\nindex Yes\nindex 0\nindex maybe\n");
        assert!(boolean(&p[0]).unwrap());
        assert!(!boolean(&p[1]).unwrap());
        assert!(boolean(&p[2]).unwrap());
        assert!(!boolean(&p[3]).unwrap());
        assert!(boolean(&p[4]).is_err());
    }

    #[test]
    fn auth_must_be_quoted_and_known() {
        let p = params("auth \"BSDUDP\"\nauth bsd\nauth \"krb5\"\n");
        assert_eq!(auth(&p[0]).unwrap(), Auth::Bsdudp);
        assert_eq!(
            auth(&p[1]).unwrap_err().to_string(),
            "t.conf:2:6: auth needs a quoted string"
        );
        assert_eq!(
            auth(&p[2]).unwrap_err().to_string(),
            "t.conf:3:6: unknown auth \"krb5\""
        );
    }
}
