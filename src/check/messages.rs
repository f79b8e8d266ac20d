//! What Amanda prints when the firewall eats a flow's packets: one place for
//! the messages (docs/design.md "What the admin sees when a flow is blocked",
//! its lab-verified findings, and docs/amanda-protocol.md §4 "Field failures").

use crate::amanda::settings::Auth;
use crate::flows::{Flow, Operation};
use crate::ports::Proto;

/// Which packet of the flow was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PacketKind {
    /// The first packet (TCP SYN, the UDP request): state NEW (or RELATED).
    First,
    /// The responder's answer: ESTABLISHED, reply direction.
    Reply,
    /// The initiator's next packets: ESTABLISHED, original direction.
    Later,
}

impl PacketKind {
    pub fn name(&self) -> &'static str {
        match self {
            PacketKind::First => "first packet",
            PacketKind::Reply => "reply",
            PacketKind::Later => "later packets",
        }
    }
}

/// The message for a flow whose `kind` packets are blocked. `host` is the
/// name the initiator connects to, `port` the first destination port.
pub fn blocked(flow: &Flow, kind: PacketKind, host: &str, port: u16) -> String {
    let udp = flow.proto == Proto::Udp;
    // UDP control (bsd, bsdudp), A:common-src/protocol.c: after the REQ the
    // server waits for an ACK (s_ackwait: "timeout waiting for ACK" when none
    // comes, docs/design.md's first row: blocked replies end here), then for the
    // REP (s_repwait: "timeout waiting for REP", docs/design.md's second row: a REP
    // that comes after conntrack forgot the flow). Its ACK of the REP is the
    // only later packet: the request completes, and the client's amandad
    // logs "timeout waiting for ACK for our REP" (docs/amanda-protocol.md §4).
    let control = |who: &str, prefix: &str| -> String {
        let end = if prefix.starts_with('[') { "]" } else { "" };
        match (udp, kind, flow.auth) {
            (true, PacketKind::Later, _) => format!(
                "the client's amandad: \"timeout waiting for ACK for our REP\" ({who} gets its reply; retried requests are lost)"
            ),
            (true, _, _) => format!("{who}: \"{prefix}timeout waiting for ACK{end}\""),
            (false, _, Auth::Ssh) => format!(
                "{who}: \"{prefix}...{end}\" (ssh: connect to host {host} port {port}: Connection timed out)"
            ),
            // Lab-verified for bsdtcp (docs/design.md: "selfcheck request failed: Connection timed out").
            (false, _, _) => format!("{who}: \"{prefix}Connection timed out{end}\""),
        }
    };
    match (flow.operation, flow.stream) {
        (Operation::Check, _) => control("amcheck", "selfcheck request failed: "),
        (Operation::Estimate, _) => {
            control("planner", &format!("Request to {host} failed: "))
        }
        (Operation::Backup, "control") => control("dumper", "[request failed: "),
        // docs/design.md lab: "could not connect DATA stream: can't connect stream to lhost port 50014: Connection timed out".
        (Operation::Backup, _) => format!(
            "amdump: \"could not connect DATA stream: can't connect stream to {host} port {port}: Connection timed out\" (or MESG/INDEX/STATE)"
        ),
        (Operation::Recover, s) if s.starts_with("control") => {
            control("amrecover", "[request failed: ")
        }
        // docs/design.md lab: "[could not connect MESG stream: can't connect stream to fwhost-pub port 500xx: ...]".
        (Operation::Recover, _) => format!(
            "amrecover: \"could not connect MESG stream: can't connect stream to {host} port {port}: Connection timed out\" (or CTL)"
        ),
        (Operation::LegacyRecover, _) => format!(
            "amoldrecover cannot connect to {host} port {port} (Connection timed out; message not lab-verified)"
        ),
    }
}

/// docs/design.md: a client rejects a request from a source port ≥ 1024
/// (A:common-src/security-util.c).
pub fn not_secure(port: u128) -> String {
    format!("client log: \"port {port} not secure\" (the request's source port was rewritten to 1024 or above)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::HelperRole;
    use crate::ports::PortRange;

    fn flow(op: Operation, stream: &'static str, auth: Auth, proto: Proto) -> Flow {
        Flow {
            operation: op,
            stream,
            auth,
            initiator: 0,
            responder: 1,
            proto,
            dport: PortRange::single(10080),
            sport: None,
            helper: HelperRole::None,
            why: String::new(),
        }
    }

    /// docs/design.md table: S→C control blocked → amcheck "selfcheck request failed: timeout waiting for ACK".
    #[test]
    fn blocked_udp_check_waits_for_ack() {
        let f = flow(Operation::Check, "control", Auth::Bsd, Proto::Udp);
        assert_eq!(
            blocked(&f, PacketKind::First, "c", 10080),
            "amcheck: \"selfcheck request failed: timeout waiting for ACK\""
        );
    }

    /// docs/design.md lab: clients' data range closed (bsd) → "could not connect DATA stream".
    #[test]
    fn blocked_data_stream() {
        let f = flow(Operation::Backup, "data streams", Auth::Bsd, Proto::Tcp);
        assert!(blocked(&f, PacketKind::First, "lhost", 50014)
            .contains("could not connect DATA stream: can't connect stream to lhost port 50014"));
    }

    /// docs/design.md lab: bsdtcp clients' 10080 closed → "selfcheck request failed: Connection timed out".
    #[test]
    fn blocked_bsdtcp_check_times_out() {
        let f = flow(Operation::Check, "control", Auth::Bsdtcp, Proto::Tcp);
        assert!(blocked(&f, PacketKind::First, "c", 10080)
            .ends_with("selfcheck request failed: Connection timed out\""));
    }
}
