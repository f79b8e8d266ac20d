//! Settings read from the files that will fail on a real system, each reported at
//! the line that decides it. The same checks exist for topology files in
//! `lint`; these ones point into the admin's own Amanda files.

use std::sync::Arc;

use super::security::{SecurityConf, Services};
use super::server::AmandaConfig;
use super::source::Pos;
use super::{ClientConf, Setting, Warning};
use crate::amanda::facts;
use crate::amanda::settings::{Auth, ClientPort};
use crate::ports::PortRange;

/// The system files the checks compare against; `SecurityConf::debian()` and
/// `Services::debian()` stand in for a Debian host's own.
pub struct LintContext<'a> {
    pub security: &'a SecurityConf,
    pub services: &'a Services,
}

pub fn lint_server(cfg: &AmandaConfig, ctx: &LintContext) -> Vec<Warning> {
    let mut out = Vec::new();
    let top = file_start(cfg.files.first().map(|p| p.display().to_string()));
    let s = &cfg.server;
    let udp: Vec<&str> = cfg
        .clients
        .iter()
        .filter(|c| c.auth.value.is_udp())
        .map(|c| c.host.as_str())
        .collect();
    let tcp: Vec<&str> = cfg
        .clients
        .iter()
        .filter(|c| c.auth.value == Auth::Bsdtcp)
        .map(|c| c.host.as_str())
        .collect();

    if !udp.is_empty() {
        ambind(
            &mut out,
            "udp",
            &s.reserved_udp_port,
            "reserved-udp-port",
            ctx.security.udp_port_range.as_ref(),
            &udp,
            &top,
        );
        // One UDP socket per server process at once: amcheck, planner and each of
        // `inparallel` dumpers (docs/amanda-protocol.md §4 "Too few ports").
        let need = s.inparallel.value + 2;
        let have = facts::usable_ports(s.reserved_udp_port.value);
        if have < need {
            let at = s
                .reserved_udp_port
                .pos()
                .or(s.inparallel.pos())
                .cloned()
                .unwrap_or_else(|| top.clone());
            out.push(Warning {
                code: "udp-range-too-small",
                pos: at,
                message: format!(
                    "reserved-udp-port {} gives {have} usable ports, but amcheck, planner and {} dumpers (inparallel) need {need} at once: expect random \"all ports between {} and {} busy\" failures",
                    range(s.reserved_udp_port.value),
                    s.inparallel.value,
                    s.reserved_udp_port.value.lo,
                    s.reserved_udp_port.value.hi
                ),
            });
        }
    }
    if !tcp.is_empty() {
        ambind(
            &mut out,
            "tcp",
            &s.reserved_tcp_port,
            "reserved-tcp-port",
            ctx.security.tcp_port_range.as_ref(),
            &tcp,
            &top,
        );
    }

    for c in &cfg.clients {
        if c.auth.value.is_udp() {
            let at = c
                .client_port
                .pos()
                .or(c.auth.pos())
                .cloned()
                .unwrap_or_else(|| c.pos.clone());
            service(
                &mut out,
                ctx.services,
                &c.client_port.value,
                c.auth.value,
                &c.host,
                at,
            );
        }
        let mut auths: Vec<(Auth, Pos)> = Vec::new();
        for d in &c.disks {
            if !auths.iter().any(|(a, _)| *a == d.auth.value) {
                auths.push((d.auth.value, d.disk.pos.clone()));
            }
        }
        if auths.len() > 1 {
            let list: Vec<String> = auths.iter().map(|(a, p)| format!("{a} ({p})")).collect();
            out.push(Warning {
                code: "mixed-auth",
                pos: c.pos.clone(),
                message: format!(
                    "the disklist entries of {} use different auth: {}; Amanda talks to the host with the auth of its last entry ({})",
                    c.host,
                    list.join(", "),
                    c.auth.value
                ),
            });
        }
    }
    out
}

/// amrecover on a client binds reserved ports from its amanda-client.conf through
/// ambind, and resolves `client-port` like the server does.
pub fn lint_client(conf: &ClientConf, ctx: &LintContext) -> Vec<Warning> {
    let mut out = Vec::new();
    let top = file_start(Some(conf.path.display().to_string()));
    let me = [conf.path.to_str().unwrap_or("amanda-client.conf")];
    if conf.auth.value.is_udp() {
        ambind(
            &mut out,
            "udp",
            &conf.reserved_udp_port,
            "reserved-udp-port",
            ctx.security.udp_port_range.as_ref(),
            &me,
            &top,
        );
        let at = conf
            .client_port
            .pos()
            .or(conf.auth.pos())
            .cloned()
            .unwrap_or_else(|| top.clone());
        service(
            &mut out,
            ctx.services,
            &conf.client_port.value,
            conf.auth.value,
            "amrecover",
            at,
        );
    }
    if conf.auth.value == Auth::Bsdtcp {
        ambind(
            &mut out,
            "tcp",
            &conf.reserved_tcp_port,
            "reserved-tcp-port",
            ctx.security.tcp_port_range.as_ref(),
            &me,
            &top,
        );
    }
    out
}

fn file_start(name: Option<String>) -> Pos {
    Pos {
        file: Arc::from(name.unwrap_or_default()),
        line: 1,
        column: 1,
    }
}

fn range(r: PortRange) -> String {
    format!("{},{}", r.lo, r.hi)
}

/// Debian's setuid ambind refuses privileged binds outside amanda-security.conf's
/// ranges (`A:common-src/security-file.c`; docs/design.md "Debian 3.5.1").
#[allow(clippy::too_many_arguments)]
fn ambind(
    out: &mut Vec<Warning>,
    proto: &str,
    ours: &Setting<PortRange>,
    key: &str,
    allowed: Option<&Setting<PortRange>>,
    users: &[&str],
    top: &Pos,
) {
    let code = if proto == "udp" {
        "ambind-udp-range"
    } else {
        "ambind-tcp-range"
    };
    match allowed {
        None => out.push(Warning {
            code,
            pos: ours.pos().cloned().unwrap_or_else(|| top.clone()),
            message: format!(
                "amanda-security.conf sets no {proto}_port_range, so ambind refuses every privileged {proto} bind that {key} {} needs (used for {})",
                range(ours.value),
                users.join(", ")
            ),
        }),
        Some(a) if !a.value.covers(&ours.value) => out.push(Warning {
            code,
            pos: ours.pos().or(a.pos()).cloned().unwrap_or_else(|| top.clone()),
            message: format!(
                "{key} {} is outside {proto}_port_range={} ({}): ambind refuses it (\"{proto} port out of range ({} <= N <= {})\")",
                range(ours.value),
                range(a.value),
                a.origin,
                a.value.lo,
                a.value.hi
            ),
        }),
        Some(_) => {}
    }
}

/// bsd/bsdudp look `client-port` up as a UDP service; Debian's services file has
/// `amanda 10080/tcp` only (docs/design.md "Debian 3.5.1").
fn service(
    out: &mut Vec<Warning>,
    services: &Services,
    port: &Option<ClientPort>,
    auth: Auth,
    who: &str,
    at: Pos,
) {
    let name = match port {
        Some(ClientPort::Number(_)) => return,
        Some(ClientPort::Service(s)) => s.as_str(),
        None => "amanda",
    };
    if services.lookup(name, "udp").is_some() {
        return;
    }
    let file = services
        .file
        .as_ref()
        .map_or("Debian's /etc/services".to_string(), |f| {
            f.display().to_string()
        });
    out.push(Warning {
        code: "udp-client-port-service",
        pos: at,
        message: format!(
            "{who} uses auth {auth} with client-port service \"{name}\", but {file} has no `{name} .../udp`: Amanda fails with \"{name}/udp unknown protocol\"; set client-port 10080"
        ),
    });
}
