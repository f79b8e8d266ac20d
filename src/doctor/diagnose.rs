//! From what was read to what will fail: pure, one function per cause, in
//! the order of `Cause`. Each finding rests on a line of a file or a rule of
//! the live ruleset, and says what to change.

use std::net::{IpAddr, Ipv4Addr};

use super::causes::{causes_of, rows_of, Cause};
use super::gather::{Gathered, InetdService, Module, AMANDA_USER};
use super::sshd;
use super::{Evidence, Finding, Report, Severity};
use crate::amanda::conf::{self, LintContext, SecurityConf, Services, Warning};
use crate::amanda::settings::{Auth, ClientPort};
use crate::check::{HostRules, Problem};
use crate::diag::{Error, Result};
use crate::flows::{control_port, HelperRole, Operation};
use crate::model::HostId;
use crate::netfilter::Action;
use crate::plan::Plan;

/// What the host is asked about: the topology's plan (its flows and this
/// host in it) and the message Amanda printed, if the admin has them.
pub struct Ask<'a> {
    pub plan: Option<&'a Plan>,
    pub host: Option<String>,
    pub error: Option<String>,
}

struct Ctx<'a> {
    g: &'a Gathered,
    plan: Option<&'a Plan>,
    me: Option<HostId>,
    name: Option<String>,
    out: Vec<Finding>,
    not_checked: Vec<String>,
}

/// An auth amandad must serve here, on `port`, and why.
#[derive(Clone, Debug)]
struct Need {
    auth: Auth,
    port: u16,
    why: Evidence,
}

pub fn diagnose(g: &Gathered, ask: &Ask) -> Result<Report> {
    let name = ask.host.clone().or_else(|| g.hostname.clone());
    let me = match (ask.plan, &name) {
        (Some(p), Some(n)) => Some(p.deployment.host_by_name(n).ok_or_else(|| {
            Error::Usage(format!(
                "host `{n}` is not in the topology; name this host with --host"
            ))
        })?),
        (Some(_), None) => {
            return Err(Error::Usage(
                "with a topology, doctor needs this host's name: --host NAME".into(),
            ))
        }
        _ => None,
    };
    let mut cx = Ctx {
        g,
        plan: ask.plan,
        me,
        name: name.clone(),
        out: Vec::new(),
        not_checked: Vec::new(),
    };
    let needs = cx.needs();
    cx.inetd(&needs);
    cx.lints();
    cx.ruleset();
    cx.kernel();
    cx.amandahosts();
    cx.ssh();
    cx.listening(&needs);
    let mut findings = cx.out;
    let ranked = ask.error.as_deref().map(causes_of).unwrap_or_default();
    for f in &mut findings {
        f.explains_error = ranked.iter().any(|(c, _)| *c == f.cause);
    }
    let pos = |c: Cause| {
        ranked
            .iter()
            .position(|(x, _)| *x == c)
            .unwrap_or(usize::MAX)
    };
    // Stable: within one key, the order the causes were looked at.
    findings.sort_by_key(|f| (pos(f.cause), f.severity, f.cause));
    let mut roles = Vec::new();
    if !g.servers.is_empty() {
        roles.push("server");
    }
    if g.inetd.iter().any(|s| s.enabled) || !needs.is_empty() {
        roles.push("client");
    }
    Ok(Report {
        host: name,
        roles,
        error: ask.error.clone(),
        error_causes: ask
            .error
            .as_deref()
            .map(|e| rows_of(e).iter().map(|r| r.text()).collect())
            .unwrap_or_default(),
        findings,
        not_checked: cx.not_checked,
    })
}

fn proto_of(auth: Auth) -> &'static str {
    if auth.is_udp() {
        "udp"
    } else {
        "tcp"
    }
}

/// What amcheck prints when nobody answers on the control port.
fn no_answer(auth: Auth) -> String {
    if auth.is_udp() {
        "amcheck: \"selfcheck request failed: timeout waiting for ACK\"".into()
    } else {
        "amcheck: \"selfcheck request failed: Connection refused\"".into()
    }
}

impl Ctx<'_> {
    fn push(&mut self, f: Finding) {
        self.out.push(f);
    }

    fn services(&self) -> Services {
        self.g
            .services
            .clone()
            .unwrap_or_else(|| conf::parse_services("/etc/services (missing)", ""))
    }

    /// The port an inetd service listens on: its own, or its name in the services file.
    fn port_of(&self, s: &InetdService) -> Option<u16> {
        s.port.or_else(|| self.services().lookup(&s.name, &s.proto))
    }

    /// The auths this host's amandad is spoken to with: from the topology,
    /// from this host's entry in a local disklist, else from
    /// amanda-client.conf (what amrecover here uses, usually the same).
    fn needs(&mut self) -> Vec<Need> {
        let mut v: Vec<Need> = Vec::new();
        fn add(v: &mut Vec<Need>, auth: Auth, cp: &Option<ClientPort>, why: Evidence) {
            if !matches!(auth, Auth::Bsd | Auth::Bsdudp | Auth::Bsdtcp) {
                return;
            }
            let port = control_port(auth, cp);
            if !v.iter().any(|n| n.auth == auth && n.port == port) {
                v.push(Need { auth, port, why });
            }
        }
        if let (Some(p), Some(me)) = (self.plan, self.me) {
            let d = &p.deployment;
            let h = &d.hosts[me];
            if h.roles.client {
                add(
                    &mut v,
                    h.amanda.auth,
                    &h.amanda.client_port,
                    Evidence::new(
                        &d.source_name,
                        format!("the server backs up {} with auth {}", h.name, h.amanda.auth),
                    ),
                );
            }
            for r in d
                .hosts
                .iter()
                .filter(|r| r.roles.recover && r.server == Some(me))
            {
                add(
                    &mut v,
                    r.client_conf.auth,
                    &r.client_conf.client_port,
                    Evidence::new(
                        &d.source_name,
                        format!(
                            "{} recovers from here with auth {}",
                            r.name, r.client_conf.auth
                        ),
                    ),
                );
            }
        }
        if let Some(n) = &self.name {
            let short = n.split('.').next().unwrap_or(n);
            for cfg in &self.g.servers {
                for c in &cfg.clients {
                    if c.host == *n || c.host.split('.').next() == Some(short) {
                        let at = c.auth.pos().cloned().unwrap_or_else(|| c.pos.clone());
                        add(
                            &mut v,
                            c.auth.value,
                            &c.client_port.value,
                            Evidence::new(
                                &at.to_string(),
                                format!(
                                    "disklist: {} is backed up with auth {} ({})",
                                    c.host, c.auth.value, c.auth.origin
                                ),
                            ),
                        );
                    }
                }
            }
        }
        if v.is_empty() {
            if let Some(c) = &self.g.client {
                if let Some(at) = c.auth.pos() {
                    add(
                        &mut v,
                        c.auth.value,
                        &c.client_port.value,
                        Evidence::new(
                            &at.to_string(),
                            format!("amanda-client.conf: auth {} (assumed to be the server's for this host; give --topology to know)", c.auth.value),
                        ),
                    );
                }
            }
        }
        if v.is_empty() {
            self.not_checked.push(
                "which auth the server uses for this host: no topology entry, no local disklist entry, no `auth` in amanda-client.conf".into(),
            );
        }
        v
    }

    /// (1) inetd/xinetd must start amandad with the auth the server speaks,
    /// on its protocol and port: Debian registers bsdtcp on tcp only.
    fn inetd(&mut self, needs: &[Need]) {
        let services = self.services();
        for s in self.g.inetd.iter().filter(|s| s.enabled) {
            if let (Some(a), None) = (&s.auth_text, s.auth) {
                self.push(Finding {
                    cause: Cause::InetdAuth,
                    severity: Severity::Breaks,
                    summary: format!("{} starts amandad with -auth={a}, which Amanda 3.5.1 on Debian has no driver for: amandad exits (\"no driver for security type\")", s.daemon),
                    evidence: vec![Evidence::new(&s.at(), format!("service {}: {}", s.name, s.args))],
                    amanda: None,
                    fix: "use -auth=bsdtcp, bsd or bsdudp, as the server's dumptype says".into(),
                    explains_error: false,
                });
            }
            if s.port.is_none() && services.lookup(&s.name, &s.proto).is_none() {
                let file = services
                    .file
                    .as_ref()
                    .map_or("the services file".to_string(), |f| f.display().to_string());
                self.push(Finding {
                    cause: Cause::ServicesUdp,
                    severity: Severity::Breaks,
                    summary: format!("{} cannot start service `{}`: {file} has no `{}/{}`, and the service gives no port", s.daemon, s.name, s.name, s.proto),
                    evidence: vec![Evidence::new(&s.at(), format!("service {} ({})", s.name, s.proto))],
                    amanda: Some(no_answer(if s.proto == "udp" { Auth::Bsd } else { Auth::Bsdtcp })),
                    fix: format!("add `port = 10080` (and `type = UNLISTED` for xinetd) to the service, or `{} 10080/{}` to {file}", s.name, s.proto),
                    explains_error: false,
                });
            }
        }
        for n in needs {
            let proto = proto_of(n.auth);
            let served: Vec<&InetdService> = self
                .g
                .inetd
                .iter()
                .filter(|s| s.enabled && s.proto == proto && self.port_of(s) == Some(n.port))
                .collect();
            if served.iter().any(|s| s.auth() == n.auth) {
                continue;
            }
            let mut evidence = vec![n.why.clone()];
            for s in self.g.inetd.iter() {
                evidence.push(Evidence::new(
                    &s.at(),
                    format!(
                        "{} service {}: {} {}, {}{}",
                        s.daemon,
                        s.name,
                        s.proto,
                        self.port_of(s)
                            .map_or("(no port)".into(), |p| p.to_string()),
                        s.auth_text
                            .as_ref()
                            .map_or("no -auth= (bsdtcp)".into(), |a| format!("-auth={a}")),
                        if s.enabled { "" } else { " (disabled)" }
                    ),
                ));
            }
            // bsd and bsdudp share the socket; a swapped name is likelier a
            // typo than a dead service.
            let near = served.iter().any(|s| s.auth().is_udp() && n.auth.is_udp());
            let summary = if self.g.inetd.is_empty() {
                format!("no inetd or xinetd service starts amandad, so the server's {} requests to {proto} {} get no answer", n.auth, n.port)
            } else if near {
                format!(
                    "amandad on {proto} {} is started for another UDP auth than the server's {}",
                    n.port, n.auth
                )
            } else {
                format!("amandad is not served for auth {} on {proto} {}: the server's requests get no answer (inetd serves only what is listed below)", n.auth, n.port)
            };
            self.push(Finding {
                cause: Cause::InetdAuth,
                severity: if near {
                    Severity::Warning
                } else {
                    Severity::Breaks
                },
                summary,
                evidence,
                amanda: Some(no_answer(n.auth)),
                fix: xinetd_fix(n.auth, n.port),
                explains_error: false,
            });
        }
    }

    /// (2), (3): the Amanda files' own lints (services file, ambind ranges)
    /// against this host's amanda-security.conf and services file.
    fn lints(&mut self) {
        let services = self.services();
        let have_security = self.g.security.is_some();
        let security = self.g.security.clone().unwrap_or_else(SecurityConf::debian);
        let ctx = LintContext {
            security: &security,
            services: &services,
        };
        let mut ws: Vec<Warning> = Vec::new();
        for cfg in &self.g.servers {
            ws.extend(conf::lint_server(cfg, &ctx));
        }
        if let Some(c) = &self.g.client {
            ws.extend(conf::lint_client(c, &ctx));
        }
        if !have_security && (!self.g.servers.is_empty() || self.g.client.is_some()) {
            self.not_checked.push(
                "ambind's ranges: no /etc/amanda-security.conf (checked against Debian's)".into(),
            );
        }
        for w in ws {
            let (cause, severity, fix) = match w.code {
                "ambind-udp-range" | "ambind-tcp-range" => (
                    Cause::AmbindRange,
                    Severity::Breaks,
                    "move the reserved range inside amanda-security.conf's (Debian: reserved-udp-port 840,860; reserved-tcp-port 512,1023), or widen udp_port_range/tcp_port_range in /etc/amanda-security.conf".to_string(),
                ),
                "udp-client-port-service" => (
                    Cause::ServicesUdp,
                    Severity::Breaks,
                    "set `client-port 10080` in the dumptype (and amanda-client.conf), or add `amanda 10080/udp` to /etc/services".to_string(),
                ),
                "udp-range-too-small" => (
                    Cause::FewPorts,
                    Severity::Warning,
                    "widen reserved-udp-port (inside ambind's range) or lower inparallel".to_string(),
                ),
                _ => (Cause::Setting, Severity::Warning, "see the message".to_string()),
            };
            self.push(Finding {
                cause,
                severity,
                summary: w.message.clone(),
                evidence: vec![Evidence::new(&w.pos.to_string(), w.code.to_string())],
                amanda: None,
                fix,
                explains_error: false,
            });
        }
    }

    /// (4), (5): the live ruleset through `check`'s walk of this host's flows.
    fn ruleset(&mut self) {
        let (Some(plan), Some(_), Some(name)) = (self.plan, self.me, self.name.clone()) else {
            self.not_checked.push("the live ruleset: without --topology doctor does not know the peers' addresses, so no flow is walked".into());
            return;
        };
        let hr = match &self.g.rules {
            Ok(hr) => hr.clone(),
            Err(e) => {
                self.not_checked.push(format!("the live ruleset: {e}"));
                return;
            }
        };
        let assigns = assigns_helper(&hr);
        let start = self.out.len();
        let r = crate::check::check(
            plan,
            &[(name.clone(), hr)],
            crate::check::Options {
                open: false,
                redundant: false,
            },
        );
        for fr in &r.flows {
            let flow = &plan.flows[fr.flow.id - 1];
            let Some(x) = fr.result.findings.iter().find(|x| x.host == name) else {
                continue;
            };
            let what = format!(
                "flow #{} ({} {}, {} {})",
                fr.flow.id,
                fr.flow.operation.name(),
                fr.flow.who(),
                fr.flow.proto,
                fr.flow.dport
            );
            let severity = if x.certain {
                Severity::Breaks
            } else {
                Severity::Warning
            };
            let f = match &x.problem {
                Problem::Blocked { at, chain_path, manager, .. } => {
                    let helper = flow.helper == HelperRole::Expected && !assigns;
                    Finding {
                        cause: if helper { Cause::HelperUnassigned } else { Cause::RulesetBlocks },
                        severity,
                        summary: if helper {
                            format!("the plan relies on the amanda helper to accept these streams as RELATED, but no rule assigns the helper here, so they are NEW and dropped: {what}")
                        } else {
                            format!("the {} ({}) is dropped here by {manager}: {what}", x.packet.name(), x.packets)
                        },
                        evidence: vec![
                            Evidence::new(&at.to_string(), at.text.clone()),
                            Evidence::new("chain", chain_path.join(" → ")),
                        ],
                        amanda: fr.result.amanda.clone(),
                        fix: if helper {
                            "assign the helper where the sendbackup request enters: `iptables -t raw -A PREROUTING -p udp --dport 10080 -j CT --helper amanda` (nft: a `ct helper` object of type \"amanda\" and `ct helper set` in a prerouting chain); automatic assignment is gone since kernel 4.7/6.0. Or open the client's unreserved-tcp-port range (`amwall plan` without the helper)".into()
                        } else {
                            format!("allow these packets before that rule ({manager}); `amwall plan` writes this host's rules")
                        },
                        explains_error: false,
                    }
                }
                Problem::SourcePort { port } => Finding {
                    cause: Cause::RulesetBlocks,
                    severity,
                    summary: format!("{what}: NAT here rewrites the request's privileged source port to {port}"),
                    evidence: vec![Evidence::new("(live ruleset)", x.packets.clone())],
                    amanda: Some(crate::check::messages::not_secure(1024)),
                    fix: "keep the source port privileged: masquerade with `--to-ports 1-1023` for Amanda's reserved ports (nft: `masquerade to :1-1023`)".into(),
                    explains_error: false,
                },
                Problem::Unknown { at, what: w } => Finding {
                    cause: Cause::RulesetBlocks,
                    severity: Severity::Warning,
                    summary: format!("{what}: amwall cannot tell what `{w}` does to it"),
                    evidence: at.iter().map(|a| Evidence::new(&a.to_string(), a.text.clone())).collect(),
                    amanda: None,
                    fix: "check that rule by hand".into(),
                    explains_error: false,
                },
                Problem::Nat { message } => Finding {
                    cause: Cause::RulesetBlocks,
                    severity: Severity::Warning,
                    summary: format!("{what}: {message}"),
                    evidence: vec![],
                    amanda: None,
                    fix: "make the NAT rules agree with the topology".into(),
                    explains_error: false,
                },
            };
            // One finding per rule: the flows it stops are listed in it.
            match self.out[start..].iter_mut().find(|o| {
                o.cause == f.cause && o.evidence == f.evidence && o.severity == f.severity
            }) {
                Some(o) => {
                    o.summary.push_str(&format!("; {what}"));
                    if let (Some(a), Some(b)) = (o.amanda.as_mut(), &f.amanda) {
                        if !a.contains(b.as_str()) {
                            a.push_str(&format!("; {b}"));
                        }
                    }
                }
                None => self.push(f),
            }
        }
    }

    /// (5) the kernel side of the helper: the module, and automatic assignment.
    fn kernel(&mut self) {
        let k = &self.g.kernel;
        let assigns = self.g.rules.as_ref().is_ok_and(assigns_helper);
        let planned = match (self.plan, self.me) {
            (Some(p), Some(me)) => p.flows.iter().zip(&p.paths).any(|(f, path)| {
                f.helper == HelperRole::Assign && path.hops.iter().any(|h| h.host == me)
            }),
            _ => false,
        };
        if (assigns || planned) && k.amanda_helper == Module::Missing {
            self.push(Finding {
                cause: Cause::HelperMissing,
                severity: Severity::Breaks,
                summary: format!(
                    "the kernel {} has no nf_conntrack_amanda, but {}",
                    k.release.as_deref().unwrap_or("?"),
                    if assigns { "the ruleset assigns the amanda helper" } else { "the plan relies on the amanda helper" }
                ),
                evidence: vec![Evidence::new(
                    &format!("/lib/modules/{}/modules.dep", k.release.as_deref().unwrap_or("RELEASE")),
                    "no nf_conntrack_amanda.ko".into(),
                )],
                amanda: Some("amdump: \"could not connect DATA stream: ... Connection timed out\"".into()),
                fix: "install a kernel with CONFIG_NF_CONNTRACK_AMANDA, or plan without the helper (open the clients' unreserved-tcp-port range)".into(),
                explains_error: false,
            });
        }
        if k.auto_assign == Some(true) {
            self.push(Finding {
                cause: Cause::HelperUnassigned,
                severity: Severity::Note,
                summary: "net.netfilter.nf_conntrack_helper=1: this kernel still assigns helpers by port, which kernels since 6.0 cannot; rules that work here only through it break after an upgrade".into(),
                evidence: vec![Evidence::new("/proc/sys/net/netfilter/nf_conntrack_helper", "1".into())],
                amanda: None,
                fix: "assign the helper explicitly (raw PREROUTING `-j CT --helper amanda`) and set nf_conntrack_helper=0".into(),
                explains_error: false,
            });
        }
    }

    /// amandad reads `.amandahosts` only if the Amanda user owns it and
    /// nobody else may read or write it (A:common-src/security-util.c
    /// check_user_amandahosts: "is owned by", "incorrect permissions").
    fn amandahosts_file(&mut self) {
        let Some(ah) = &self.g.amandahosts else {
            return;
        };
        if ah.lines.is_none() {
            return;
        }
        let mut bad = Vec::new();
        if let (Some(o), Some(u)) = (ah.owner, ah.uid) {
            if o != u {
                bad.push(format!("owned by uid {o}, not {AMANDA_USER} ({u})"));
            }
        }
        if let Some(m) = ah.mode.filter(|m| m & 0o077 != 0) {
            bad.push(format!("mode {m:04o}: group or others have access"));
        }
        if bad.is_empty() {
            return;
        }
        self.push(Finding {
            cause: Cause::Amandahosts,
            severity: Severity::Breaks,
            summary: format!(
                "amandad refuses every request: {} is {}",
                ah.path,
                bad.join(", and ")
            ),
            evidence: vec![Evidence::new(&ah.path, bad.join("; "))],
            amanda: Some(format!(
                "amcheck: \"{}: incorrect permissions; file must be accessible only by its owner\" (or \"... is owned by N, should be M\")",
                ah.path
            )),
            fix: format!(
                "chown {AMANDA_USER}: {p} && chmod 600 {p} (on Debian the link's target, /etc/amandahosts)",
                p = ah.path
            ),
            explains_error: false,
        });
    }

    /// (6) `.amandahosts` must name the server by the address its requests
    /// arrive from here: after masquerade, the router's.
    fn amandahosts(&mut self) {
        self.amandahosts_file();
        let (Some(plan), Some(me)) = (self.plan, self.me) else {
            self.not_checked.push("~backup/.amandahosts: without --topology doctor does not know which address the server's requests arrive from".into());
            return;
        };
        let d = &plan.deployment;
        // (peer, address it arrives from, its own address, user, services, kind)
        let mut wants: Vec<(HostId, Ipv4Addr, Ipv4Addr, &str, &[&str])> = Vec::new();
        for (f, p) in plan.flows.iter().zip(&plan.paths) {
            if f.responder != me {
                continue;
            }
            let want: (&str, &[&str]) = match f.operation {
                Operation::Check | Operation::Estimate | Operation::Backup => {
                    (AMANDA_USER, &["amdump"])
                }
                Operation::Recover => ("root", &["amindexd", "amidxtaped"]),
                Operation::LegacyRecover => continue,
            };
            let seen = p.last().src;
            if !wants.iter().any(|w| w.1 == seen && w.3 == want.0) {
                wants.push((f.initiator, seen, p.hops[0].src, want.0, want.1));
            }
        }
        if wants.is_empty() {
            return;
        }
        let Some(ah) = &self.g.amandahosts else {
            self.not_checked.push(format!(
                "~{AMANDA_USER}/.amandahosts: no user {AMANDA_USER} in /etc/passwd"
            ));
            return;
        };
        for (peer, seen, inner, user, services) in wants {
            let who = &d.hosts[peer].name;
            let lines = ah.lines.as_deref().unwrap_or_default();
            let ok = lines.iter().any(|l| {
                self.resolve(&l.host).contains(&IpAddr::V4(seen))
                    && l.user.as_deref().unwrap_or(AMANDA_USER) == user
                    && (if l.services.is_empty() {
                        services == ["amdump"]
                    } else {
                        services.iter().all(|s| l.services.iter().any(|x| x == s))
                    })
            });
            if ok {
                continue;
            }
            let nat = masqueraded_by(plan, peer, me, seen);
            let mut evidence: Vec<Evidence> = Vec::new();
            let mut inner_named = false;
            for l in lines {
                let addrs = self.resolve(&l.host);
                let mut note = format!(
                    "{} {} {}",
                    l.host,
                    l.user.as_deref().unwrap_or(""),
                    l.services.join(" ")
                );
                if addrs.contains(&IpAddr::V4(inner)) && inner != seen {
                    inner_named = true;
                    note.push_str(&format!(
                        "  ← {who}'s own address {inner}, not the {seen} its requests arrive from"
                    ));
                } else if addrs.is_empty() {
                    note.push_str("  (not an address, not in /etc/hosts; DNS not consulted)");
                }
                evidence.push(Evidence::new(
                    &format!("{}:{}", ah.path, l.line),
                    note.trim().to_string(),
                ));
            }
            if ah.lines.is_none() {
                evidence.push(Evidence::new(&ah.path, "does not exist".into()));
            }
            let seen_name = self
                .name_of(IpAddr::V4(seen))
                .unwrap_or_else(|| seen.to_string());
            let me_name = &d.hosts[me].name;
            let via = nat
                .as_ref()
                .map_or(String::new(), |r| format!(" (after masquerade on {r})"));
            self.push(Finding {
                cause: Cause::Amandahosts,
                severity: Severity::Breaks,
                summary: if inner_named {
                    format!("{} names {who} by its own address {inner}, but its requests arrive from {seen}{via}: amandad refuses them", ah.path)
                } else {
                    format!("{} does not let {user} from {who} in (its requests arrive from {seen}{via})", ah.path)
                },
                evidence,
                // A:common-src/security-util.c check_user; lab-verified (tests/doctor.rs).
                amanda: Some(format!("amcheck: \"NAK {me_name}: user {user} from {seen_name} is not allowed to execute the service noop: Please add the line \\\"{seen_name} {user} {}\\\" to {} on the client\"", services.join(" "), ah.path)),
                fix: format!("add `{seen_name} {user} {}` to {}", services.join(" "), ah.path),
                explains_error: false,
            });
        }
    }

    /// (7) ssh auth: sshd must answer on the port dialled, run amandad
    /// through a shell that runs commands, and hold a key that lets each
    /// caller in from the address it arrives from here (after masquerade:
    /// the router's; sshd matches `from=` against addresses unless UseDNS).
    // Long: one check per thing sshd needs, in the order a login meets them;
    // each needs the same wants and the same gathered side
    fn ssh(&mut self) {
        let (Some(plan), Some(me)) = (self.plan, self.me) else {
            return;
        };
        let d = &plan.deployment;
        // (caller, address it arrives from, its own address, port, services)
        let mut wants: Vec<(HostId, Ipv4Addr, Ipv4Addr, u16, &str)> = Vec::new();
        for (f, p) in plan.flows.iter().zip(&plan.paths) {
            if f.responder != me || f.auth != Auth::Ssh {
                continue;
            }
            let services = match f.operation {
                Operation::Check | Operation::Estimate | Operation::Backup => "amdump",
                Operation::Recover => "amindexd amidxtaped",
                Operation::LegacyRecover => continue,
            };
            let w = (
                f.initiator,
                p.last().src,
                p.hops[0].src,
                f.dport.lo,
                services,
            );
            if !wants.contains(&w) {
                wants.push(w);
            }
        }
        if wants.is_empty() {
            return;
        }
        let Some(side) = &self.g.ssh else {
            self.not_checked
                .push(format!("ssh auth: no user {AMANDA_USER} in /etc/passwd"));
            return;
        };
        if sshd::refuses_commands(&side.shell) {
            self.push(Finding {
                cause: Cause::SshShell,
                severity: Severity::Breaks,
                summary: format!(
                    "{AMANDA_USER}'s login shell is {}, which runs no command: sshd starts amandad through it, so every ssh-auth request fails",
                    if side.shell.is_empty() { "empty" } else { &side.shell }
                ),
                evidence: vec![Evidence::new(
                    &side.passwd_at,
                    format!("{AMANDA_USER}: shell {}", side.shell),
                )],
                // Lab-verified (tests/amanda_ssh.rs, tests/doctor.rs).
                // Which one depends on timing.
                amanda: Some("amcheck: \"selfcheck request failed: error sending REQ: write error to: Broken pipe\" or \"... tcpm_recv_token: invalid size: \\\"This account is currently not available.\\n\\\"\"".into()),
                fix: format!("usermod -s /bin/sh {AMANDA_USER} (Debian's {AMANDA_USER} user has {})", crate::amanda::facts::DEBIAN_BACKUP_SHELL),
                explains_error: false,
            });
        }
        let Some(sshd_conf) = &side.sshd else {
            self.push(Finding {
                cause: Cause::NotListening,
                severity: Severity::Breaks,
                summary: "ssh auth needs an OpenSSH server here, and there is no /etc/ssh/sshd_config".into(),
                evidence: vec![Evidence::new("/etc/ssh/sshd_config", "does not exist".into())],
                amanda: Some("amcheck: \"selfcheck request failed: error sending REQ: write error to: Broken pipe\" or \"... EOF on read from HOST\" (ssh: Connection refused)".into()),
                fix: "apt-get install openssh-server".into(),
                explains_error: false,
            });
            return;
        };
        let ports = sshd_conf.listen_ports();
        let mut dialled: Vec<u16> = wants.iter().map(|w| w.3).collect();
        dialled.sort_unstable();
        dialled.dedup();
        for port in &dialled {
            let configured = ports.contains(port);
            let listening = match &self.g.listeners {
                Ok(ls) => Some(ls.iter().any(|l| l.proto == "tcp" && l.port == *port)),
                Err(_) => None,
            };
            if configured && listening != Some(false) {
                continue;
            }
            self.push(Finding {
                cause: Cause::NotListening,
                severity: Severity::Breaks,
                summary: if configured {
                    format!("sshd is configured for tcp {port}, but nothing listens there (is sshd running?)")
                } else {
                    format!("Amanda dials tcp {port} for ssh auth, but sshd_config listens on {ports:?}")
                },
                evidence: vec![
                    Evidence::new("/etc/ssh/sshd_config", format!("Port {ports:?}")),
                    Evidence::new("ss -lnptuH", match listening {
                        Some(true) => format!("a tcp socket on port {port}"),
                        Some(false) => format!("no tcp socket on port {port}"),
                        None => "not read".into(),
                    }),
                ],
                amanda: Some("amcheck: \"selfcheck request failed: error sending REQ: write error to: Broken pipe\" or \"... EOF on read from HOST\" (ssh: Connection refused)".into()),
                fix: if configured {
                    "systemctl start ssh, and read `journalctl -u ssh` for why it stopped".into()
                } else {
                    format!("add `Port {port}` to /etc/ssh/sshd_config, or set the dumptype's client-port to {}", ports[0])
                },
                explains_error: false,
            });
        }
        let lines: Vec<(&str, &sshd::KeyLine)> = side
            .key_files
            .iter()
            .flat_map(|(path, l)| l.iter().flatten().map(move |k| (path.as_str(), k)))
            .collect();
        for (peer, seen, inner, _, services) in wants {
            let names: Vec<String> = self
                .g
                .etc_hosts
                .iter()
                .filter(|(a, _)| *a == IpAddr::V4(seen))
                .flat_map(|(_, n)| n.clone())
                .collect();
            let admits = |k: &sshd::KeyLine, addr: Ipv4Addr| {
                k.from.as_ref().map_or(true, |f| {
                    sshd::from_allows(f, IpAddr::V4(addr), &names, sshd_conf.use_dns)
                })
            };
            let runs = |k: &sshd::KeyLine| {
                k.command.as_ref().map_or(true, |c| {
                    c.contains("amandad")
                        && c.contains("-auth=ssh")
                        && services
                            .split(' ')
                            .all(|s| c.split_whitespace().any(|w| w == s))
                })
            };
            if lines.iter().any(|(_, k)| admits(k, seen) && runs(k)) {
                continue;
            }
            let who = &d.hosts[peer].name;
            let nat = masqueraded_by(plan, peer, me, seen)
                .map(|r| format!(" (after masquerade on {r})"))
                .unwrap_or_default();
            let mut evidence = Vec::new();
            let mut inner_named = false;
            for (path, k) in &lines {
                let mut note = format!(
                    "{} from={} command={}",
                    k.key,
                    k.from.as_ref().map_or("(any)".into(), |f| f.join(",")),
                    k.command.as_deref().unwrap_or("(any)")
                );
                if inner != seen && !admits(k, seen) && admits(k, inner) {
                    inner_named = true;
                    note.push_str(&format!(
                        "  ← admits {who}'s own address {inner}, not the {seen} it arrives from"
                    ));
                } else if !runs(k) {
                    note.push_str(&format!("  ← does not run `amandad -auth=ssh {services}`"));
                } else if !sshd_conf.use_dns
                    && k.from.iter().flatten().any(|p| {
                        p.chars().any(|c| c.is_ascii_alphabetic())
                            && p.parse::<ipnet::IpNet>().is_err()
                    })
                {
                    note.push_str(
                        "  ← a host name in from= never matches with UseDNS no (sshd's default)",
                    );
                }
                evidence.push(Evidence::new(&format!("{path}:{}", k.line), note));
            }
            for (path, l) in &side.key_files {
                if l.is_none() {
                    evidence.push(Evidence::new(path, "does not exist".into()));
                }
            }
            let files: Vec<&str> = side.key_files.iter().map(|(p, _)| p.as_str()).collect();
            self.push(Finding {
                cause: Cause::SshKeys,
                severity: Severity::Breaks,
                summary: if inner_named {
                    format!("the key lines for {who} admit its own address {inner}, but its connections arrive from {seen}{nat}: sshd refuses the key")
                } else if lines.is_empty() {
                    format!("no key in {} lets {who} log in as {AMANDA_USER}", files.join(", "))
                } else {
                    format!("no key line lets {who} in from {seen}{nat} to run `amandad -auth=ssh {services}`")
                },
                evidence,
                // Lab-verified (tests/doctor.rs): ssh exits before amandad reads the request.
                amanda: Some("amcheck: \"selfcheck request failed: error sending REQ: write error to: Broken pipe\" or \"... EOF on read from HOST\", by timing (ssh: Permission denied (publickey))".into()),
                fix: format!(
                    "in {}: `from=\"{seen}\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,command=\"{} -auth=ssh {services}\" KEY` with {who}'s key (SUMMARY.md's \"What Amanda's configuration must say\")",
                    files.first().copied().unwrap_or("~backup/.ssh/authorized_keys"),
                    crate::amanda::facts::amandad_path(d.build),
                ),
                explains_error: false,
            });
        }
    }

    /// (8) inetd/xinetd says amandad listens; does anything?
    fn listening(&mut self, needs: &[Need]) {
        let ls = match &self.g.listeners {
            Ok(l) => l.clone(),
            Err(e) => {
                if self.g.inetd.iter().any(|s| s.enabled) {
                    self.not_checked.push(format!("listening sockets: {e}"));
                }
                return;
            }
        };
        for s in self.g.inetd.iter().filter(|s| s.enabled) {
            let Some(port) = self.port_of(s) else {
                continue;
            };
            if ls.iter().any(|l| l.proto == s.proto && l.port == port) {
                continue;
            }
            let needed = needs
                .iter()
                .any(|n| proto_of(n.auth) == s.proto && n.port == port);
            self.push(Finding {
                cause: Cause::NotListening,
                severity: if needed {
                    Severity::Breaks
                } else {
                    Severity::Warning
                },
                summary: format!(
                    "{} is configured to start amandad on {} {port}, but nothing listens there",
                    s.daemon, s.proto
                ),
                evidence: vec![
                    Evidence::new(&s.at(), format!("service {}: {}", s.name, s.args)),
                    Evidence::new(
                        "ss -lnptuH",
                        format!("no {} socket on port {port}", s.proto),
                    ),
                ],
                amanda: Some(no_answer(s.auth())),
                fix: format!(
                    "start or reload {} (`systemctl restart {}`) and read its log for the reason",
                    s.daemon,
                    if s.daemon == "xinetd" {
                        "xinetd"
                    } else {
                        "openbsd-inetd"
                    }
                ),
                explains_error: false,
            });
        }
    }

    /// A `.amandahosts` host field as addresses: an address, a name in
    /// /etc/hosts, or a host of the topology.
    fn resolve(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(a) = host.parse::<IpAddr>() {
            return vec![a];
        }
        let same = |n: &str| {
            n.eq_ignore_ascii_case(host)
                || n.split('.')
                    .next()
                    .is_some_and(|s| s.eq_ignore_ascii_case(host))
        };
        let mut v: Vec<IpAddr> = self
            .g
            .etc_hosts
            .iter()
            .filter(|(_, names)| names.iter().any(|n| same(n)))
            .map(|(a, _)| *a)
            .collect();
        if v.is_empty() {
            if let Some(p) = self.plan {
                if let Some(h) = p.deployment.host_by_name(host) {
                    v.extend(
                        p.deployment.hosts[h]
                            .interfaces
                            .iter()
                            .filter_map(|i| i.address.map(IpAddr::V4)),
                    );
                }
            }
        }
        v
    }

    fn name_of(&self, a: IpAddr) -> Option<String> {
        self.g
            .etc_hosts
            .iter()
            .find(|(x, _)| *x == a)
            .and_then(|(_, n)| n.first().cloned())
    }
}

/// The router whose masquerade makes `peer`'s flows arrive at `me` from `seen`.
fn masqueraded_by(plan: &Plan, peer: HostId, me: HostId, seen: Ipv4Addr) -> Option<String> {
    plan.flows
        .iter()
        .zip(&plan.paths)
        .find(|(f, p)| f.initiator == peer && f.responder == me && p.last().src == seen)
        .and_then(|(_, p)| p.hops.iter().find(|h| h.snat_to.is_some()))
        .map(|h| plan.deployment.hosts[h.host].name.clone())
}

/// Whether any rule assigns the amanda helper (`-j CT --helper amanda`,
/// `ct helper set` of an object of type "amanda").
fn assigns_helper(hr: &HostRules) -> bool {
    hr.ruleset.tables.iter().any(|t| {
        let is_amanda = |n: &str| {
            t.ct_helpers
                .iter()
                .find(|h| h.name == n)
                .map_or(n == "amanda", |h| h.helper == "amanda")
        };
        t.chains.iter().flat_map(|c| &c.rules).any(|r| {
            std::iter::once(&r.action)
                .chain(&r.effects)
                .any(|a| matches!(a, Action::CtHelper(n) if is_amanda(n)))
        })
    })
}

fn xinetd_fix(auth: Auth, port: u16) -> String {
    let (socket, proto, wait) = if auth.is_udp() {
        ("dgram", "udp", "yes")
    } else {
        ("stream", "tcp", "no")
    };
    format!(
        "serve it from xinetd, e.g. /etc/xinetd.d/amanda-{auth}: `service amanda-{auth} {{ type = UNLISTED; port = {port}; socket_type = {socket}; protocol = {proto}; wait = {wait}; user = backup; group = backup; groups = yes; server = /usr/lib/amanda/amandad; server_args = -auth={auth} amdump amindexd amidxtaped }}` (one assignment a line), then reload xinetd; or change the server's dumptype auth to what inetd serves"
    )
}
