//! Deployment → the network flows Amanda needs. Pure: same model, same flows,
//! in the same order. Each rule of thumb cites docs/design.md's flow table.

use serde::Serialize;

use crate::amanda::facts;
use crate::amanda::settings::{Auth, ClientPort};
use crate::model::{Deployment, HostId};
use crate::ports::{PortRange, Proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// amcheck's selfcheck request.
    Check,
    /// planner's sendsize request.
    Estimate,
    /// dumper's sendbackup request and its data streams.
    Backup,
    /// amrecover (3.x protocol): amindexd and amidxtaped on the server.
    #[serde(rename = "recovery")]
    Recover,
    /// amoldrecover (2.4 protocol), opt-in with `legacy-recover`.
    #[serde(rename = "legacy-recovery")]
    LegacyRecover,
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Check => "check",
            Operation::Estimate => "estimate",
            Operation::Backup => "backup",
            Operation::Recover => "recovery",
            Operation::LegacyRecover => "legacy-recovery",
        }
    }
}

/// How a flow relates to the kernel's Amanda conntrack helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HelperRole {
    /// Not involved: the flow needs its own opening.
    None,
    /// A UDP request to 10080 whose replies the helper must parse: assign the helper
    /// where it enters (prerouting) on the amandad host and every router on the way.
    Assign,
    /// A data stream the helper expects from a parsed `CONNECT`: accepted as RELATED,
    /// so no static opening is generated for it.
    Expected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub operation: Operation,
    /// Which Amanda conversation this is, for people ("control", "data streams ...").
    pub stream: &'static str,
    pub auth: Auth,
    pub initiator: HostId,
    pub responder: HostId,
    pub proto: Proto,
    pub dport: PortRange,
    /// `None`: any (ephemeral) source port.
    pub sport: Option<PortRange>,
    pub helper: HelperRole,
    /// One sentence an admin can check against Amanda's behaviour.
    pub why: String,
}

/// The port amandad is reached on for `auth`, from the amandad side's `client-port`.
/// Service names resolve as Debian's /etc/services does (see `facts::service_port`).
pub fn control_port(auth: Auth, client_port: &Option<ClientPort>) -> u16 {
    match client_port {
        Some(ClientPort::Number(n)) => *n,
        Some(ClientPort::Service(s)) => facts::service_port(s).unwrap_or(facts::AMANDA_PORT),
        None if auth == Auth::Ssh => facts::SSH_PORT,
        None => facts::AMANDA_PORT,
    }
}

/// Whether amwall relies on the kernel's Amanda helper for a client's backup data
/// streams when the admin asks for it. Only bsd with `index yes` works (lab, kernel
/// 6.18, both backends):
/// - bsdudp: the REP `CONNECT DATA p MESG 499999 ...` makes the helper expect port
///   49999 (it reads five digits of the multiplexed handle); a second dumper talking
///   to the same client within 180 s creates the same expectation, the clash makes
///   the kernel drop that client's REP (amandad: sendto EPERM) and the dumper times
///   out waiting for REP. Amanda runs several dumpers per client (one per disk).
/// - bsd with `index no`: `INDEX -1` stops the helper's parsing, STATE gets no
///   expectation and amdump fails with "could not connect STATE stream".
///
/// In those cases the plan stays static (the client's range is opened, no helper is
/// assigned) and a lint says why.
pub fn helper_usable(auth: Auth, index: bool) -> bool {
    helper_cover(auth, index) == Some(HelperCover::All)
}

/// What the kernel's helper, once a rule assigns it to the sendbackup request,
/// does for that backup's data streams — whatever the plan chose, since the
/// kernel reads the ruleset, not the topology (`check` follows this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperCover {
    /// bsd with `index yes`: every stream the REP announces is expected (RELATED).
    All,
    /// bsdudp: the data stream is expected, but a second dumper to the same
    /// client within 180 s clashes with the first one's expectation and the
    /// kernel drops that client's REP (see `helper_usable`).
    OneDumper,
    /// bsd with `index no`: parsing stops at `INDEX -1`, STATE is never expected.
    NotState,
}

/// `None` when the helper has nothing to parse for `auth` (bsdtcp, ssh, local).
pub fn helper_cover(auth: Auth, index: bool) -> Option<HelperCover> {
    match auth {
        Auth::Bsd if index => Some(HelperCover::All),
        Auth::Bsd => Some(HelperCover::NotState),
        Auth::Bsdudp => Some(HelperCover::OneDumper),
        _ => None,
    }
}

impl Flow {
    /// The sendbackup request whose REP (`CONNECT DATA p MESG p ...`) the helper
    /// parses: the conntrack master of the backup's data streams.
    pub fn announces_streams(&self) -> bool {
        self.operation == Operation::Backup
            && self.proto == Proto::Udp
            && matches!(self.auth, Auth::Bsd | Auth::Bsdudp)
    }

    /// The data streams a sendbackup REP announces: expected connections once
    /// the helper is assigned to the request, NEW ones otherwise.
    pub fn announced(&self) -> bool {
        self.operation == Operation::Backup
            && self.proto == Proto::Tcp
            && matches!(self.auth, Auth::Bsd | Auth::Bsdudp)
    }
}

/// Every flow the deployment needs, in a stable order: per client (file order)
/// its check, estimate and backup flows, then per recovering host its recovery flows.
pub fn flows(d: &Deployment) -> Vec<Flow> {
    let mut out = Vec::new();
    for (c, host) in d.hosts.iter().enumerate() {
        if !host.roles.client {
            continue;
        }
        let s = host.server.expect("validated: every client has a server");
        backup_flows(d, s, c, &mut out);
    }
    for (r, host) in d.hosts.iter().enumerate() {
        if !host.roles.recover {
            continue;
        }
        let s = host
            .server
            .expect("validated: every recovering host has a server");
        recover_flows(d, s, r, &mut out);
    }
    out
}

fn backup_flows(d: &Deployment, s: HostId, c: HostId, out: &mut Vec<Flow>) {
    // The server's programs bind in its amanda.conf ranges; the client's
    // amandad listens in its amanda-client.conf range.
    let (sv, cl) = (&d.hosts[s].amanda, &d.hosts[c].amanda);
    let cl_listen = d.hosts[c].client_conf.unreserved_tcp_port;
    // The dumptype's auth must match what the client's amandad runs, so the client's
    // setting decides the conversation.
    let auth = cl.auth;
    let port = control_port(auth, &cl.client_port);
    let helper = helper_usable(auth, cl.index) && cl.conntrack_helper;
    let control = |op: Operation, what: &str| -> Option<Flow> {
        let (proto, sport, why) = match auth {
            // docs/design.md flow table, bsd/bsdudp: S→C udp 10080 [Sru]; one UDP socket per
            // server process bound in reserved-udp-port (A:common-src/dgram.c).
            Auth::Bsd | Auth::Bsdudp => (
                Proto::Udp,
                Some(sv.reserved_udp_port),
                format!("{what}: the server's REQ from a port in its reserved-udp-port to amandad; ACK/REP return on the same socket"),
            ),
            // bsdtcp: S→C tcp 10080 [Srt] (runbsdtcp → stream_client_addr(priv=1)); all
            // streams multiplexed on it.
            Auth::Bsdtcp => (
                Proto::Tcp,
                Some(sv.reserved_tcp_port),
                format!("{what}: the server connects from a port in its reserved-tcp-port to amandad; every stream is multiplexed on this connection"),
            ),
            // ssh: S→C tcp 22 [E] (A:common-src/ssh-security.c).
            Auth::Ssh => (
                Proto::Tcp,
                None,
                format!("{what}: the server runs `ssh CLIENT amandad -auth=ssh`; everything is multiplexed over ssh"),
            ),
            // local: pipes only (A:common-src/local-security.c).
            Auth::Local => return None,
        };
        Some(Flow {
            operation: op,
            stream: "control",
            auth,
            initiator: s,
            responder: c,
            proto,
            dport: PortRange::single(port),
            sport,
            helper: if helper {
                HelperRole::Assign
            } else {
                HelperRole::None
            },
            why,
        })
    };
    out.extend(control(Operation::Check, "amcheck selfcheck"));
    out.extend(control(Operation::Estimate, "planner sendsize (estimates)"));
    out.extend(control(Operation::Backup, "dumper sendbackup request"));
    // The client listens, the dumper connects (A:amandad-src/amandad.c, A:server-src/dumper.c):
    // bsd opens DATA, MESG, [INDEX], STATE; bsdudp one real TCP stream. The listener uses
    // the client's unreserved-tcp-port, the dumper's source the server's (lab: always 50000).
    let streams = match auth {
        Auth::Bsd if cl.index => {
            Some("data streams DATA, MESG, INDEX, STATE (one TCP connection each)")
        }
        Auth::Bsd => Some("data streams DATA, MESG, STATE (one TCP connection each; index no)"),
        Auth::Bsdudp => {
            Some("data stream (one TCP connection; the other streams are multiplexed on it)")
        }
        _ => None,
    };
    if let Some(stream) = streams {
        out.push(Flow {
            operation: Operation::Backup,
            stream,
            auth,
            initiator: s,
            responder: c,
            proto: Proto::Tcp,
            dport: cl_listen,
            sport: Some(sv.unreserved_tcp_port),
            helper: if helper { HelperRole::Expected } else { HelperRole::None },
            why: if helper {
                "the client's sendbackup REP says `CONNECT DATA p MESG p ...`; the conntrack helper reads it and expects these connections (RELATED)".into()
            } else {
                "the dumper connects to the ports the client's REP announced (`CONNECT DATA p MESG p ...`), inside the client's unreserved-tcp-port".into()
            },
        });
    }
}

fn recover_flows(d: &Deployment, s: HostId, r: HostId, out: &mut Vec<Flow>) {
    // amrecover reads auth, client-port, index-server, tape-server from its own
    // amanda-client.conf (A:recover-src/amrecover.c); amandad on the server
    // reads the server host's amanda-client.conf, amidxtaped (inetd,
    // legacy) the server's amanda.conf.
    let (sv, sv_amandad, rc) = (
        &d.hosts[s].amanda,
        &d.hosts[s].client_conf,
        &d.hosts[r].client_conf,
    );
    let auth = rc.auth;
    let port = control_port(auth, &rc.client_port);
    let flow = |stream, proto, dport, sport, helper, why: &str| Flow {
        operation: Operation::Recover,
        stream,
        auth,
        initiator: r,
        responder: s,
        proto,
        dport,
        sport,
        helper,
        why: why.to_string(),
    };
    match auth {
        Auth::Bsd | Auth::Bsdudp => {
            out.push(flow(
                "control (SERVICE amindexd, SERVICE amidxtaped)",
                Proto::Udp,
                PortRange::single(port),
                Some(rc.reserved_udp_port),
                // The helper would only cover amindexd's MESG; the streams below must be
                // open anyway (it does not parse CTL), so assigning it buys nothing. The
                // lab's minimal TSHost in helper mode is the static one (docs/design.md).
                HelperRole::None,
                "amrecover asks the server's amandad for amindexd and amidxtaped, from a port in its reserved-udp-port",
            ));
            // The direction flips: amandad on the server listens in ITS unreserved range
            // and amrecover connects (docs/design.md); the helper does not parse amidxtaped's
            // `CTL` reply (lab-verified), so this stays open even in helper mode.
            out.push(flow(
                if auth == Auth::Bsd {
                    "recovery streams MESG (amindexd); CTL, DATA, STATE (amidxtaped)"
                } else {
                    "recovery streams, one TCP connection per service"
                },
                Proto::Tcp,
                sv_amandad.unreserved_tcp_port,
                Some(rc.unreserved_tcp_port),
                HelperRole::None,
                "amandad on the server listens in its unreserved-tcp-port and amrecover connects; the helper cannot open these (it does not parse CTL)",
            ));
        }
        Auth::Bsdtcp => out.push(flow(
            "control (amindexd, amidxtaped multiplexed)",
            Proto::Tcp,
            PortRange::single(port),
            Some(rc.reserved_tcp_port),
            HelperRole::None,
            "amrecover connects from a port in its reserved-tcp-port; amindexd and amidxtaped each take one connection",
        )),
        Auth::Ssh => out.push(flow(
            "control (ssh)",
            Proto::Tcp,
            PortRange::single(port),
            None,
            HelperRole::None,
            "amrecover runs `ssh SERVER amandad -auth=ssh`",
        )),
        Auth::Local => {}
    }
    if rc.legacy_recover {
        // amoldrecover: stream_client_privileged to amandaidx/amidxtape
        // (A:oldrecover-src/amrecover.c, extract_list.c); amidxtaped then listens with
        // priv=0 and sends `CONNECT port` (A:perl/Amanda/Service/Amidxtaped.pm).
        let legacy = |dport, sport, stream, why: &str| Flow {
            operation: Operation::LegacyRecover,
            stream,
            auth,
            initiator: r,
            responder: s,
            proto: Proto::Tcp,
            dport,
            sport,
            helper: HelperRole::None,
            why: why.to_string(),
        };
        out.push(legacy(
            PortRange::single(facts::AMANDAIDX_PORT),
            Some(rc.reserved_tcp_port),
            "amandaidx (index)",
            "amoldrecover connects to amindexd from a reserved port",
        ));
        out.push(legacy(
            PortRange::single(facts::AMIDXTAPE_PORT),
            Some(rc.reserved_tcp_port),
            "amidxtape (tape)",
            "amoldrecover connects to amidxtaped from a reserved port",
        ));
        out.push(legacy(
            sv.unreserved_tcp_port,
            None,
            "amidxtape data (CONNECT port)",
            "amidxtaped answers `CONNECT port` from the server's unreserved range and amoldrecover connects (not lab-tested)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn deployment(auth: &str, extra: &str) -> Deployment {
        load_str(
            "t.toml",
            format!(
                r#"
[amanda]
auth = "{auth}"
client-port = 10080
{extra}
[[network]]
name = "lan"
cidr = "192.0.2.0/24"
[[host]]
name = "s"
roles = ["server"]
interfaces = [{{ name = "eth0", network = "lan", address = "192.0.2.2" }}]
[[host]]
name = "c"
roles = ["client", "recover"]
interfaces = [{{ name = "eth0", network = "lan", address = "192.0.2.3" }}]
"#
            ),
        )
        .unwrap()
    }

    fn find(fs: &[Flow], op: Operation, proto: Proto) -> Vec<&Flow> {
        fs.iter()
            .filter(|f| f.operation == op && f.proto == proto)
            .collect()
    }

    /// docs/design.md flow table, bsd: amcheck S→C udp 10080 [Sru]; amdump adds S→C tcp Cu [Su].
    #[test]
    fn bsd_backup_is_udp_control_plus_tcp_data() {
        let fs = flows(&deployment("bsd", ""));
        let check = find(&fs, Operation::Check, Proto::Udp);
        assert_eq!(check.len(), 1);
        assert_eq!((check[0].initiator, check[0].responder), (0, 1));
        assert_eq!(check[0].dport, PortRange::single(10080));
        assert_eq!(check[0].sport, Some(PortRange::new(840, 860)));
        let data = find(&fs, Operation::Backup, Proto::Tcp);
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].dport, PortRange::new(50000, 50100));
        assert_eq!(data[0].sport, Some(PortRange::new(50000, 50100)));
        assert_eq!(
            (data[0].initiator, data[0].responder),
            (0, 1),
            "the dumper connects to the client"
        );
    }

    /// docs/design.md: bsdtcp multiplexes everything on S→C tcp 10080 [Srt]; no data range.
    #[test]
    fn bsdtcp_has_no_data_range() {
        let fs = flows(&deployment("bsdtcp", ""));
        assert!(fs
            .iter()
            .all(|f| f.proto == Proto::Tcp && f.dport == PortRange::single(10080)));
        let check = find(&fs, Operation::Check, Proto::Tcp);
        assert_eq!(check[0].sport, Some(PortRange::new(512, 1023)));
    }

    /// docs/design.md: ssh is S→C tcp 22 from an ephemeral port.
    #[test]
    fn ssh_uses_port_22_without_source_constraint() {
        let d = load_str(
            "t.toml",
            deployment("ssh", "")
                .source_text
                .replace("client-port = 10080\n", ""),
        )
        .unwrap();
        let fs = flows(&d);
        assert!(fs
            .iter()
            .all(|f| f.dport == PortRange::single(22) && f.sport.is_none()));
    }

    /// docs/design.md: amrecover over bsd flips direction: R→S udp 10080 then R→S tcp Su [Ru].
    #[test]
    fn bsd_recovery_connects_to_the_servers_range() {
        let fs = flows(&deployment("bsd", ""));
        let rec: Vec<_> = fs
            .iter()
            .filter(|f| f.operation == Operation::Recover)
            .collect();
        assert_eq!(rec.len(), 2);
        assert!(rec.iter().all(|f| (f.initiator, f.responder) == (1, 0)));
        assert_eq!(rec[1].dport, PortRange::new(50000, 50100));
    }

    /// docs/design.md helper facts: backups' data streams become RELATED; recovery stays static.
    #[test]
    fn helper_mode_replaces_backup_data_but_not_recovery() {
        let fs = flows(&deployment("bsd", "conntrack-helper = true"));
        let data = find(&fs, Operation::Backup, Proto::Tcp);
        assert_eq!(data[0].helper, HelperRole::Expected);
        let rec_tcp = find(&fs, Operation::Recover, Proto::Tcp);
        assert_eq!(rec_tcp[0].helper, HelperRole::None);
        assert!(find(&fs, Operation::Check, Proto::Udp)[0].helper == HelperRole::Assign);
    }

    /// local auth uses pipes only (A:common-src/local-security.c).
    #[test]
    fn local_has_no_flows() {
        assert!(flows(&deployment("local", "")).is_empty());
    }

    /// amoldrecover: 10082 and 10083 from reserved ports (A:oldrecover-src/amrecover.c).
    #[test]
    fn legacy_recover_opens_10082_10083() {
        let fs = flows(&deployment("bsdtcp", "legacy-recover = true"));
        let ports: Vec<_> = fs
            .iter()
            .filter(|f| f.operation == Operation::LegacyRecover)
            .map(|f| f.dport)
            .collect();
        assert!(
            ports.contains(&PortRange::single(10082)) && ports.contains(&PortRange::single(10083))
        );
    }
}
