//! Settings that look fine on paper and fail on a real system. Each lint names
//! the symptom an admin would otherwise meet in Amanda's logs.

use serde::Serialize;

use crate::amanda::facts;
use crate::amanda::settings::{Auth, Build, ClientPort};
use crate::model::{Deployment, HostId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub severity: Severity,
    /// Short stable name, for scripts and tests.
    pub code: &'static str,
    pub host: Option<String>,
    pub message: String,
}

pub fn lint(d: &Deployment) -> Vec<Lint> {
    let mut l = Linter { d, out: Vec::new() };
    let (udp_clients, tcp_clients) = clients_per_server(d);
    for h in 0..d.hosts.len() {
        l.reserved_ranges(h, udp_clients[h], tcp_clients[h]);
        l.udp_client_port_service(h);
        l.helper(h);
        l.client_range_differs(h);
        l.local_remote(h);
        l.unreachable_without_ipv6(h);
    }
    l.management();
    l.out
}

/// Per server: how many of its clients talk UDP (bsd, bsdudp) and bsdtcp. One
/// pass, so 10,000-client sites stay linear.
fn clients_per_server(d: &Deployment) -> (Vec<usize>, Vec<usize>) {
    let mut udp_clients = vec![0usize; d.hosts.len()];
    let mut tcp_clients = vec![0usize; d.hosts.len()];
    for c in d.hosts.iter().filter(|c| c.roles.client) {
        if let Some(s) = c.server {
            if c.amanda.auth.is_udp() {
                udp_clients[s] += 1;
            } else if c.amanda.auth == Auth::Bsdtcp {
                tcp_clients[s] += 1;
            }
        }
    }
    (udp_clients, tcp_clients)
}

struct Linter<'d> {
    d: &'d Deployment,
    out: Vec<Lint>,
}

impl Linter<'_> {
    fn warn(&mut self, code: &'static str, host: Option<HostId>, message: String) {
        self.out.push(Lint {
            severity: Severity::Warning,
            code,
            host: host.map(|h| self.d.hosts[h].name.clone()),
            message,
        })
    }

    /// Host `h`'s amrecover talks UDP (its amanda-client.conf's auth).
    fn recovers_udp(&self, h: HostId) -> bool {
        let host = &self.d.hosts[h];
        host.roles.recover && host.client_conf.auth.is_udp()
    }

    /// The reserved ranges something binds on `h`: within what Debian's ambind
    /// allows, and wide enough for every process that binds one at once.
    fn reserved_ranges(&mut self, h: HostId, udp_clients: usize, tcp_clients: usize) {
        let d = self.d;
        let host = &d.hosts[h];
        let a = &host.amanda;
        // What binds reserved ports here: the server's programs (amanda.conf
        // ranges) and amrecover (amanda-client.conf ranges).
        let rc = &host.client_conf;
        let mut udp_ranges = Vec::new();
        if udp_clients > 0 {
            udp_ranges.push(a.reserved_udp_port);
        }
        if self.recovers_udp(h) {
            udp_ranges.push(rc.reserved_udp_port);
        }
        let mut tcp_ranges = Vec::new();
        if tcp_clients > 0 {
            tcp_ranges.push(a.reserved_tcp_port);
        }
        if host.roles.recover && rc.auth == Auth::Bsdtcp {
            tcp_ranges.push(rc.reserved_tcp_port);
        }
        udp_ranges.dedup();
        tcp_ranges.dedup();

        // Debian's ambind refuses privileged UDP binds outside 840-860 (docs/design.md, A:common-src/security-file.c).
        for r in udp_ranges
            .iter()
            .filter(|r| d.build == Build::Debian && !facts::DEBIAN_AMBIND_UDP.covers(r))
        {
            self.warn(
                "ambind-udp-range",
                Some(h),
                format!(
                    "reserved-udp-port {} is outside {} allowed by Debian's /etc/amanda-security.conf: ambind refuses it (\"udp port out of range (840 <= N <= 860)\")",
                    r, facts::DEBIAN_AMBIND_UDP
                ),
            );
        }
        for r in tcp_ranges
            .iter()
            .filter(|r| d.build == Build::Debian && !facts::DEBIAN_AMBIND_TCP.covers(r))
        {
            self.warn(
                "ambind-tcp-range",
                Some(h),
                format!(
                    "reserved-tcp-port {} is outside {} allowed by Debian's /etc/amanda-security.conf: ambind refuses it",
                    r, facts::DEBIAN_AMBIND_TCP
                ),
            );
        }

        // One UDP socket per server process: amcheck, planner and each of `inparallel`
        // dumpers (docs/amanda-protocol.md §4 "Too few ports", docs/portusage.txt).
        if host.roles.server && udp_clients > 0 {
            let need = a.inparallel + 2;
            let have = facts::usable_ports(a.reserved_udp_port);
            if have < need {
                self.warn(
                    "udp-range-too-small",
                    Some(h),
                    format!(
                        "reserved-udp-port {} gives {have} usable ports, but amcheck, planner and {} dumpers (inparallel) need {need} at once: expect random \"all ports between {} and {} busy\" failures",
                        a.reserved_udp_port, a.inparallel, a.reserved_udp_port.lo, a.reserved_udp_port.hi
                    ),
                );
            }
        }
    }

    fn udp_client_port_service(&mut self, h: HostId) {
        let d = self.d;
        let host = &d.hosts[h];
        let (a, rc) = (&host.amanda, &host.client_conf);
        let recovers_udp = self.recovers_udp(h);
        // Debian's /etc/services has amanda 10080/tcp but no 10080/udp.
        let amandad_udp = host.roles.client
            && a.auth.is_udp()
            && !matches!(a.client_port, Some(ClientPort::Number(_)));
        let amrecover_udp = recovers_udp && !matches!(rc.client_port, Some(ClientPort::Number(_)));
        if d.build == Build::Debian && (amandad_udp || amrecover_udp) {
            self.warn(
                "udp-client-port-service",
                Some(h),
                format!(
                    "auth {} on Debian needs a numeric client-port: /etc/services has no `amanda 10080/udp`, so Amanda fails with \"amanda/udp unknown protocol\"; set client-port \"10080\" in the dumptype and amanda-client.conf",
                    if amandad_udp { a.auth } else { rc.auth }
                ),
            );
        }
    }

    fn helper(&mut self, h: HostId) {
        let host = &self.d.hosts[h];
        let a = &host.amanda;
        // Where the kernel helper fails (see flows::helper_usable), the plan stays static.
        if host.roles.client && a.conntrack_helper && a.auth == Auth::Bsd && !a.index {
            self.warn(
                "helper-index-no",
                Some(h),
                "conntrack-helper with `index no`: the helper stops parsing at `INDEX -1` and never expects the STATE stream (amdump: \"could not connect STATE stream\"), so amwall does not use the helper here and opens the client's unreserved-tcp-port instead. Use index yes to let the helper work".into(),
            );
        }
        if host.roles.client && a.conntrack_helper && a.auth == Auth::Bsdudp {
            self.warn(
                "helper-bsdudp",
                Some(h),
                "conntrack-helper with bsdudp: the helper misreads `MESG 499999` as port 49999, and a second dumper's reply to this client within 180 s clashes with that expectation and is dropped (\"timeout waiting for REP\"); amwall does not use the helper here and opens the client's unreserved-tcp-port instead. Use bsd auth to let the helper work".into(),
            );
        }
        if a.conntrack_helper && (host.roles.client || host.roles.server) && !a.auth.is_udp() {
            self.warn(
                "helper-no-effect",
                Some(h),
                format!("conntrack-helper has no effect with auth {}: the kernel's amanda helper only parses UDP replies from port 10080 (bsd, bsdudp)", a.auth),
            );
        }
    }

    fn client_range_differs(&mut self, h: HostId) {
        let d = self.d;
        let host = &d.hosts[h];
        let a = &host.amanda;
        // A client whose data range is not the server's: the flows use the client's
        // (amandad listens in its amanda-client.conf range), but an admin reading the
        // server's amanda.conf would open the wrong ports by hand.
        if let Some(s) = host.server.filter(|&s| s != h) {
            let sv = &d.hosts[s].amanda;
            if host.roles.client
                && a.auth.is_udp()
                && a.unreserved_tcp_port != sv.unreserved_tcp_port
            {
                self.warn(
                    "unreserved-range-differs",
                    Some(h),
                    format!(
                        "its unreserved-tcp-port {} differs from the server's {}: backup data streams go to {} on this host (its amanda-client.conf decides where amandad listens), from the server's {}",
                        a.unreserved_tcp_port, sv.unreserved_tcp_port, a.unreserved_tcp_port, sv.unreserved_tcp_port
                    ),
                );
            }
        }
    }

    fn local_remote(&mut self, h: HostId) {
        let host = &self.d.hosts[h];
        let a = &host.amanda;
        if host.roles.client && a.auth == Auth::Local && host.server != Some(h) {
            self.warn(
                "local-remote",
                Some(h),
                "auth local only works on the server itself (pipes, no network): this client cannot be backed up".into(),
            );
        }
    }

    /// A host Amanda must talk to that has no IPv4 address, where Amanda
    /// cannot speak IPv6: `plan` leaves its Amanda flows out (a warning,
    /// not an error, so the rest of the fleet still gets its rules).
    fn unreachable_without_ipv6(&mut self, h: HostId) {
        let d = self.d;
        let host = &d.hosts[h];
        let amanda = host.roles.client || host.roles.recover || host.roles.server;
        if d.amanda_speaks_ipv6() || !amanda || d.has_ipv4(h) {
            return;
        }
        let why = match d.build {
            Build::Debian => "Debian's Amanda is built --without-ipv6 (`amadmin x version` lists it in CONFIGURE_ARGS)",
            Build::Upstream => "[amanda] ipv6 = false says this Amanda does not speak IPv6",
        };
        self.warn(
            "no-ipv4",
            Some(h),
            format!(
                "`{}` has no IPv4 address and {why}, so Amanda cannot reach it: its Amanda flows are left out of the plan and nothing is opened for them; give it an IPv4 address, or use an Amanda built with IPv6 (build = \"upstream\")",
                host.name
            ),
        );
    }

    fn management(&mut self) {
        let d = self.d;
        if d.management.enabled && d.management.from.is_empty() {
            self.warn(
                "management-anywhere",
                None,
                format!(
                    "management {}/{} is kept open from any address; name the admin networks in [management] from = [...]",
                    d.management.proto, d.management.port
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn lints(amanda: &str) -> Vec<&'static str> {
        let d = load_str(
            "t.toml",
            format!(
                "[amanda]\n{amanda}\n[management]\nfrom = [\"lan\"]\n[[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n[[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.2\" }}]\n[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }}]\n"
            ),
        )
        .unwrap();
        lint(&d).into_iter().map(|l| l.code).collect()
    }

    /// docs/design.md: `reserved-udp-port 700,710` (the old wiki) fails on Debian: ambind allows 840-860.
    #[test]
    fn wiki_udp_range_fails_on_debian() {
        let l = lints("auth = \"bsd\"\nclient-port = 10080\nreserved-udp-port = [700, 710]");
        assert!(l.contains(&"ambind-udp-range"), "{l:?}");
        assert!(
            l.contains(&"udp-range-too-small"),
            "11 ports < inparallel 10 + 2: {l:?}"
        );
    }

    /// docs/design.md: Debian's services file has no amanda/udp, so bsd needs a numeric client-port.
    #[test]
    fn bsd_without_numeric_client_port() {
        assert!(lints("auth = \"bsd\"").contains(&"udp-client-port-service"));
        assert!(
            !lints("auth = \"bsd\"\nclient-port = \"10080\"").contains(&"udp-client-port-service")
        );
        assert!(!lints("auth = \"bsdtcp\"").contains(&"udp-client-port-service"));
    }

    /// Debian defaults pass clean: 840-860 has 20 usable ports >= 10 + 2.
    #[test]
    fn debian_defaults_are_clean() {
        assert!(lints("auth = \"bsd\"\nclient-port = 10080").is_empty());
        assert!(lints("auth = \"bsdtcp\"").is_empty());
    }

    /// docs/design.md helper limits: `INDEX -1` stops parsing, STATE gets no expectation.
    #[test]
    fn helper_with_index_no() {
        let l =
            lints("auth = \"bsd\"\nclient-port = 10080\nconntrack-helper = true\nindex = false");
        assert_eq!(l, vec!["helper-index-no"]);
    }

    /// docs/design.md: the client listens in ITS unreserved range; the dumper's source is the server's.
    #[test]
    fn client_range_differing_from_the_server() {
        let d = load_str(
            "t.toml",
            "[amanda]\nauth = \"bsd\"\nclient-port = 10080\n[management]\nfrom = [\"lan\"]\n[[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n[[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.2\" }]\n[[host]]\nname = \"c\"\nroles = [\"client\"]\ninterfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.3\" }]\namanda = { unreserved-tcp-port = [60000, 60010] }\n".to_string(),
        )
        .unwrap();
        let l: Vec<_> = lint(&d).into_iter().map(|l| l.code).collect();
        assert_eq!(l, vec!["unreserved-range-differs"]);
        let f = crate::flows::flows(&d);
        let data = f
            .iter()
            .find(|f| f.proto == crate::ports::Proto::Tcp)
            .unwrap();
        assert_eq!(data.dport, crate::ports::PortRange::new(60000, 60010));
        assert_eq!(data.sport, Some(crate::ports::PortRange::new(50000, 50100)));
    }

    #[test]
    fn inparallel_sizes_the_udp_range() {
        assert!(
            lints("auth = \"bsd\"\nclient-port = 10080\ninparallel = 19")
                .contains(&"udp-range-too-small")
        );
        assert!(
            !lints("auth = \"bsd\"\nclient-port = 10080\ninparallel = 18")
                .contains(&"udp-range-too-small")
        );
    }
}
