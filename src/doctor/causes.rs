//! Which causes produce which message Amanda prints: the one table `--error`
//! ranks by. Each row names its source; `check::messages` writes the
//! firewall's messages from the same sources.

use serde::Serialize;

/// Why Amanda fails on this host, in the order doctor looks at them and
/// ranks them when nothing else decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// inetd/xinetd does not start amandad for the auth (and so the protocol)
    /// the server speaks to this host.
    InetdAuth,
    /// A `client-port` service name has no `/udp` entry in the services file.
    ServicesUdp,
    /// A reserved range outside amanda-security.conf's, which ambind refuses.
    AmbindRange,
    /// The live ruleset drops one of this host's flows.
    RulesetBlocks,
    /// Flows rely on the amanda helper, but no rule assigns it.
    HelperUnassigned,
    /// The kernel has no nf_conntrack_amanda.
    HelperMissing,
    /// `.amandahosts` does not name the server as it arrives here.
    Amandahosts,
    /// ssh auth: the Amanda user's login shell runs no command, so sshd
    /// cannot start amandad.
    SshShell,
    /// ssh auth: no key line lets the caller in from where it arrives here,
    /// or none runs amandad for the services it asks for.
    SshKeys,
    /// inetd/xinetd (or, for ssh auth, sshd) is configured for amandad but
    /// nothing listens.
    NotListening,
    /// Too few reserved UDP ports for the dumpers.
    FewPorts,
    /// Anything else the Amanda files' lints say.
    Setting,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::InetdAuth => "inetd-auth",
            Cause::ServicesUdp => "services-udp",
            Cause::AmbindRange => "ambind-range",
            Cause::RulesetBlocks => "ruleset-blocks",
            Cause::HelperUnassigned => "helper-unassigned",
            Cause::HelperMissing => "helper-missing",
            Cause::Amandahosts => "amandahosts",
            Cause::SshShell => "ssh-shell",
            Cause::SshKeys => "ssh-keys",
            Cause::NotListening => "not-listening",
            Cause::FewPorts => "few-ports",
            Cause::Setting => "setting",
        }
    }
}

/// A piece of a message (matched case-insensitively), the causes that print
/// it (most likely first), and where that is written down.
pub struct Row {
    pub part: &'static str,
    pub causes: &'static [Cause],
    pub source: &'static str,
}

use Cause::*;

pub const TABLE: &[Row] = &[
    Row {
        part: "unknown protocol",
        causes: &[ServicesUdp],
        source: "docs/amanda-protocol.md §4 \"amanda/udp unknown protocol\" (Debian's services file, bsd/bsdudp)",
    },
    Row {
        part: "port out of range",
        causes: &[AmbindRange],
        source: "A:common-src/security-file.c (ambind: \"udp port out of range (L <= N <= H)\")",
    },
    Row {
        part: "could not bind",
        causes: &[AmbindRange, FewPorts],
        source: "A:common-src/amutil.c, stream.c (\"Could not bind to port in range\")",
    },
    Row {
        part: "can't bind a socket",
        causes: &[AmbindRange, FewPorts],
        source: "A:common-src/bsd-security.c, bsdudp-security.c bsd_connect (\"Can't bind a socket to connect to HOST\": no port of reserved-udp-port could be bound); amcheck's message when ambind refuses the range (tests/doctor.rs)",
    },
    Row {
        part: "unable to bind to a reserved port",
        causes: &[AmbindRange],
        source: "A:common-src/bsd-security.c bsd_connect (the bound port is not privileged)",
    },
    Row {
        part: "ports between",
        causes: &[FewPorts, AmbindRange],
        source: "A:common-src/amutil.c (\"All ports between X and Y are busy\")",
    },
    Row {
        part: "timeout waiting for ack",
        causes: &[InetdAuth, NotListening, RulesetBlocks, ServicesUdp, AmbindRange],
        source: "A:common-src/protocol.c s_ackwait; docs/design.md lab (no amandad on udp 10080, or blocked); wiki \"Amcheck: selfcheck request failed\"",
    },
    Row {
        part: "timeout waiting for rep",
        causes: &[RulesetBlocks, HelperUnassigned],
        source: "A:common-src/protocol.c s_repwait; docs/amanda-protocol.md §3 (bsdudp's second master's REP dropped)",
    },
    Row {
        part: "connection refused",
        causes: &[InetdAuth, NotListening, RulesetBlocks],
        source: "connect(2): nothing listens on tcp 10080 (bsdtcp), or a REJECT rule",
    },
    Row {
        part: "connection timed out",
        causes: &[RulesetBlocks, HelperUnassigned],
        source: "docs/design.md lab (bsdtcp's 10080 or a data stream dropped)",
    },
    Row {
        part: "could not connect",
        causes: &[HelperUnassigned, HelperMissing, RulesetBlocks],
        source: "docs/design.md lab (\"could not connect DATA stream\"), docs/amanda-protocol.md §3",
    },
    Row {
        part: "not allowed from",
        causes: &[Amandahosts],
        source: "A:common-src/security-util.c check_security (\"[access as U not allowed from U@HOST: ...]\")",
    },
    Row {
        part: "is not allowed to execute the service",
        causes: &[Amandahosts],
        source: "A:common-src/security-util.c check_user (\"user U from HOST is not allowed to execute the service S: Please add the line ...\"); lab: amcheck's NAK (tests/doctor.rs)",
    },
    Row {
        part: "incorrect permissions",
        causes: &[Amandahosts],
        source: "A:common-src/security-util.c check_user_amandahosts (\"%s: incorrect permissions; file must be accessible only by its owner\")",
    },
    Row {
        part: "amandahosts",
        causes: &[Amandahosts],
        source: "A:common-src/security-util.c check_user_amandahosts",
    },
    Row {
        part: "not secure",
        causes: &[RulesetBlocks],
        source: "A:common-src/security-util.c (\"port N not secure\": SNAT to an unprivileged port)",
    },
    Row {
        part: "account is currently not available",
        causes: &[SshShell],
        source: "nologin(8)'s message, which amcheck reads as a reply token; lab (tests/doctor.rs): the Amanda user's shell nologin",
    },
    Row {
        part: "invalid size",
        causes: &[SshShell],
        source: "A:common-src/security-util.c tcpm_recv_token: text before amandad's first token, printed by the login shell or a login script; lab (tests/doctor.rs): nologin's message",
    },
    Row {
        part: "eof on read from",
        causes: &[RulesetBlocks, SshKeys, SshShell, NotListening],
        source: "A:common-src/security-util.c (the ssh pipe closed before a reply); lab (tests/amanda_ssh.rs, tests/doctor.rs): tcp/22 dropped on the client (ssh's connect timed out), the port forward missing, or a key whose from= does not admit the caller",
    },
    Row {
        part: "write error to",
        causes: &[SshShell, SshKeys, NotListening],
        source: "A:common-src/security-util.c tcpm_send_token (ssh exited before amandad read the REQ); lab (tests/amanda_ssh.rs, tests/doctor.rs): the Amanda user's shell nologin, or a key whose from= does not admit the caller",
    },
    Row {
        part: "permission denied (publickey",
        causes: &[SshKeys],
        source: "ssh(1) with BatchMode: no key the server offered is accepted",
    },
    Row {
        part: "error receiving message",
        causes: &[InetdAuth],
        source: "A@tag-2.5.2:docs/faq.txt (amandad not configured as a UDP service)",
    },
];

/// The rows whose part `message` contains.
pub fn rows_of(message: &str) -> Vec<&'static Row> {
    let m = message.to_ascii_lowercase();
    TABLE.iter().filter(|r| m.contains(r.part)).collect()
}

/// The causes that print `message`, most likely first, with the rows' sources.
pub fn causes_of(message: &str) -> Vec<(Cause, &'static str)> {
    let mut out: Vec<(Cause, &'static str)> = Vec::new();
    for r in rows_of(message) {
        for c in r.causes {
            if !out.iter().any(|(x, _)| x == c) {
                out.push((*c, r.source));
            }
        }
    }
    out
}

impl Row {
    /// `"part": cause, cause (source)`, as the report lists it.
    pub fn text(&self) -> String {
        let causes: Vec<&str> = self.causes.iter().map(|c| c.name()).collect();
        format!("\"{}\": {} ({})", self.part, causes.join(", "), self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amchecks_ack_timeout_puts_inetd_first() {
        let c = causes_of("ERROR: lhost: selfcheck request failed: timeout waiting for ACK");
        assert_eq!(c[0].0, InetdAuth);
        assert!(c.iter().any(|(x, _)| *x == RulesetBlocks));
    }

    #[test]
    fn ambind_message() {
        let c = causes_of("udp port out of range (840 <= 700 <= 860)");
        assert_eq!(c.iter().map(|x| x.0).collect::<Vec<_>>(), vec![AmbindRange]);
    }

    /// What real amcheck printed with reserved-udp-port 700,720 on Debian (tests/doctor.rs).
    #[test]
    fn amchecks_bind_failure_is_ambind_first() {
        let c = causes_of(
            "ERROR: lhost: selfcheck request failed: Can't bind a socket to connect to lhost",
        );
        assert_eq!(c[0].0, AmbindRange);
    }

    #[test]
    fn unknown_message_has_no_cause() {
        assert!(causes_of("tape full").is_empty());
    }
}
