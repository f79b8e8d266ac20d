//! `amwall doctor`: on the host where Amanda fails, read what is there (the
//! Amanda files, inetd/xinetd, `.amandahosts`, the kernel, the live ruleset,
//! the listening sockets) and say what will fail and what to change, most
//! likely cause first.
//!
//! Why a command of its own: an admin arrives with a symptom on one host
//! ("timeout waiting for ACK"), and the causes are spread over files that no
//! other command reads together. Split as gather (the only part that touches
//! the machine, through `gather::Host`), diagnose (pure) and report.

pub mod causes;
mod diagnose;
pub mod gather;
mod report;
mod sshd;

use serde::Serialize;

pub use causes::Cause;
pub use diagnose::Ask;
pub use gather::{Host, Live};

use crate::diag::Result;

/// How bad a finding is; the order is the report's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Amanda fails because of it (exit 1).
    Breaks,
    /// Fails sometimes, or amwall cannot tell.
    Warning,
    /// Works today, worth knowing.
    Note,
}

/// What a finding rests on: a place (FILE:LINE, a rule's FILE:LINE in the
/// live listing) and what is there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub at: String,
    pub text: String,
}

impl Evidence {
    pub fn new(at: &str, text: String) -> Evidence {
        Evidence {
            at: at.to_string(),
            text,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub cause: Cause,
    pub severity: Severity,
    /// What will fail, and why.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What Amanda prints when it fails this way.
    pub amanda: Option<String>,
    pub fix: String,
    /// Whether this cause produces the `--error` message.
    pub explains_error: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub host: Option<String>,
    pub roles: Vec<&'static str>,
    /// `--error`, and the rows of `causes::TABLE` that match it.
    pub error: Option<String>,
    pub error_causes: Vec<String>,
    /// Most likely first.
    pub findings: Vec<Finding>,
    /// What could not be looked at, and why.
    pub not_checked: Vec<String>,
}

impl Report {
    /// Whether a finding breaks Amanda (the CLI's exit 1).
    pub fn breaks(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Breaks)
    }
}

/// Read `host` and diagnose it.
pub fn doctor(host: &dyn Host, ask: &Ask) -> Result<Report> {
    let g = gather::gather(host)?;
    diagnose::diagnose(&g, ask)
}

// Each cause planted in a fixture tree (a fake root) with canned command
// output; doctor must name exactly that cause first.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::amanda::settings::Auth;
    use crate::plan::Plan;

    struct Fake {
        root: tempfile::TempDir,
        cmds: HashMap<&'static str, String>,
    }

    impl Fake {
        fn new() -> Fake {
            let f = Fake {
                root: tempfile::tempdir().unwrap(),
                cmds: HashMap::new(),
            };
            // A Debian host: passwd, services (tcp only), amanda-security.conf.
            f.file(
            "etc/passwd",
            // The Amanda user is whoever runs the test: it owns the fixture files.
            &format!(
                "root:x:0:0:root:/root:/bin/sh\nbackup:x:{}:34:backup:/var/backups:/usr/sbin/nologin\n",
                nix::unistd::geteuid()
            ),
        );
            f.file(
                "etc/services",
                "ssh 22/tcp\namanda 10080/tcp\namandaidx 10082/tcp\namidxtape 10083/tcp\n",
            );
            f.file(
                "etc/amanda-security.conf",
                "tcp_port_range=512,1024\nudp_port_range=840,860\n",
            );
            f.file("proc/sys/kernel/osrelease", "6.1.0-test\n");
            f
        }
        fn file(&self, rel: &str, text: &str) -> &Fake {
            let p = self.root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            if rel.ends_with("amandahosts") {
                // As amandad wants it: the owner's only.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            self
        }
        fn cmd(mut self, argv0: &'static str, out: &str) -> Fake {
            self.cmds.insert(argv0, out.to_string());
            self
        }
        fn doctor(&self, plan: Option<&Plan>, host: Option<&str>, error: Option<&str>) -> Report {
            doctor(
                self,
                &Ask {
                    plan,
                    host: host.map(str::to_string),
                    error: error.map(str::to_string),
                },
            )
            .unwrap()
        }
    }

    impl Host for Fake {
        fn root(&self) -> &Path {
            self.root.path()
        }
        fn run(&self, argv: &[&str]) -> std::result::Result<String, String> {
            self.cmds
                .get(argv[0])
                .cloned()
                .ok_or_else(|| format!("{}: not in the fixture", argv[0]))
        }
    }

    /// Debian's /etc/xinetd.d/amanda: bsdtcp on tcp only.
    const DEBIAN_XINETD: &str = "service amanda\n{\n\tdisable = no\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n\tuser = backup\n\tserver = /usr/lib/amanda/amandad\n\tserver_args = -auth=bsdtcp amdump amindexd amidxtaped\n}\n";
    const UDP_XINETD: &str = "service amanda-udp\n{\n\ttype = UNLISTED\n\tport = 10080\n\tsocket_type = dgram\n\tprotocol = udp\n\twait = yes\n\tuser = backup\n\tserver = /usr/lib/amanda/amandad\n\tserver_args = -auth=bsd amdump amindexd amidxtaped\n}\n";
    const SS_TCP: &str =
        "tcp LISTEN 0 64 0.0.0.0:10080 0.0.0.0:* users:((\"xinetd\",pid=9,fd=5))\n";
    const SS_UDP: &str = "udp UNCONN 0 0 0.0.0.0:10080 0.0.0.0:* users:((\"xinetd\",pid=9,fd=5))\n";
    const ACK: &str = "ERROR: lhost: selfcheck request failed: timeout waiting for ACK";
    const OPEN: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    fn plan(auth: Auth, helper: bool) -> Plan {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab/wiki-doc.toml");
        let d = crate::load::load_file(&p).unwrap();
        Plan::build(d.with_auth(auth).with_helper(helper)).unwrap()
    }

    fn causes(r: &Report) -> Vec<(Cause, Severity)> {
        r.findings.iter().map(|f| (f.cause, f.severity)).collect()
    }

    fn first(r: &Report) -> &Finding {
        r.findings
            .first()
            .unwrap_or_else(|| panic!("no finding:\n{r}"))
    }

    #[test]
    fn inetd_serving_bsdtcp_to_a_bsd_server() {
        let f = Fake::new().cmd("ss", SS_TCP);
        f.file("etc/xinetd.d/amanda", DEBIAN_XINETD);
        f.file(
            "etc/amanda/amanda-client.conf",
            "auth \"bsd\"\nclient-port 10080\n",
        );
        let r = f.doctor(None, Some("lhost"), Some(ACK));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::InetdAuth, Severity::Breaks),
            "{r}"
        );
        assert!(x.explains_error);
        assert!(
            x.evidence
                .iter()
                .any(|e| e.at.ends_with("etc/xinetd.d/amanda:1")),
            "{r}"
        );
        assert!(
            x.evidence
                .iter()
                .any(|e| e.at.ends_with("amanda-client.conf:1:1")),
            "{r}"
        );
        assert!(x
            .amanda
            .as_deref()
            .unwrap()
            .contains("timeout waiting for ACK"));
        assert!(r.breaks());
        // The right service: no finding at all.
        let ok = Fake::new().cmd("ss", SS_UDP);
        ok.file("etc/xinetd.d/amanda-udp", UDP_XINETD);
        ok.file(
            "etc/amanda/amanda-client.conf",
            "auth \"bsd\"\nclient-port 10080\n",
        );
        let r = ok.doctor(None, Some("lhost"), None);
        assert!(r.findings.is_empty(), "{r}");
    }

    #[test]
    fn no_inetd_at_all() {
        let f = Fake::new().cmd("ss", "");
        f.file("etc/amanda/amanda-client.conf", "auth \"bsdtcp\"\n");
        let r = f.doctor(
            None,
            Some("lhost"),
            Some("selfcheck request failed: Connection refused"),
        );
        assert_eq!(first(&r).cause, Cause::InetdAuth, "{r}");
        assert!(first(&r).summary.starts_with("no inetd or xinetd"));
    }

    #[test]
    fn udp_service_named_amanda_without_a_udp_services_entry() {
        let f = Fake::new().cmd("ss", "");
        f.file(
            "etc/xinetd.d/amanda-udp",
            &UDP_XINETD
                .replace("amanda-udp", "amanda")
                .replace("\ttype = UNLISTED\n\tport = 10080\n", ""),
        );
        let r = f.doctor(None, Some("lhost"), None);
        assert_eq!(first(&r).cause, Cause::ServicesUdp, "{r}");
    }

    #[test]
    fn server_with_bsd_clients_and_the_default_client_port() {
        let f = Fake::new();
        f.file(
            "etc/amanda/daily/amanda.conf",
            "define dumptype d {\n  auth \"bsd\"\n}\n",
        );
        f.file("etc/amanda/daily/disklist", "lhost /data d\n");
        let r = f.doctor(None, Some("tshost"), Some("amanda/udp unknown protocol"));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::ServicesUdp, Severity::Breaks),
            "{r}"
        );
        assert!(x.explains_error);
    }

    #[test]
    fn reserved_udp_port_outside_ambind() {
        let f = Fake::new();
        f.file(
        "etc/amanda/daily/amanda.conf",
        "reserved-udp-port 700,710\ndefine dumptype d {\n  auth \"bsd\"\n  client-port 10080\n}\n",
    );
        f.file("etc/amanda/daily/disklist", "lhost /data d\n");
        let r = f.doctor(
            None,
            Some("tshost"),
            Some("udp port out of range (840 <= 700 <= 860)"),
        );
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::AmbindRange, Severity::Breaks),
            "{r}"
        );
        assert!(x.evidence[0].at.ends_with("amanda.conf:1:1"), "{r}");
        // Inside the range: nothing.
        f.file(
        "etc/amanda/daily/amanda.conf",
        "reserved-udp-port 840,860\ndefine dumptype d {\n  auth \"bsd\"\n  client-port 10080\n}\n",
    );
        let r = f.doctor(None, Some("tshost"), None);
        assert!(!causes(&r).iter().any(|c| c.0 == Cause::AmbindRange), "{r}");
    }

    #[test]
    fn a_foreign_nft_tables_drop_blocks_the_control_flow() {
        let p = plan(Auth::Bsd, false);
        let nft = "table inet foreign {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport 10080 drop\n\t}\n}\n";
        let f = Fake::new()
            .cmd("ss", SS_UDP)
            .cmd("iptables-save", OPEN)
            .cmd("nft", nft);
        f.file("etc/xinetd.d/amanda-udp", UDP_XINETD);
        f.file("etc/hosts", "192.0.2.2 tshost\n");
        f.file("etc/amandahosts", "tshost backup amdump\n");
        std::os::unix::fs::symlink(
            "/etc/amandahosts",
            f.root.path().join("var/backups/.amandahosts"),
        )
        .or_else(|_| {
            std::fs::create_dir_all(f.root.path().join("var/backups"))?;
            std::os::unix::fs::symlink(
                "/etc/amandahosts",
                f.root.path().join("var/backups/.amandahosts"),
            )
        })
        .unwrap();
        let r = f.doctor(Some(&p), Some("lhost"), Some(ACK));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::RulesetBlocks, Severity::Breaks),
            "{r}"
        );
        assert!(x.evidence[0].at == "(live nft list ruleset):4", "{r}");
        assert!(x.summary.contains("nft table `foreign`"), "{r}");
        assert!(
            x.amanda
                .as_deref()
                .unwrap()
                .contains("timeout waiting for ACK"),
            "{r}"
        );
        // Only the ruleset is wrong here.
        assert!(
            causes(&r).iter().all(|c| c.0 == Cause::RulesetBlocks),
            "{r}"
        );
    }

    #[test]
    fn helper_relied_on_but_not_assigned() {
        let p = plan(Auth::Bsd, true);
        // lhost's own rules: the control port open, nothing else, no CT rule.
        let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p udp --dport 10080 -j ACCEPT\nCOMMIT\n";
        let f = Fake::new()
            .cmd("ss", SS_UDP)
            .cmd("iptables-save", rules)
            .cmd("nft", "");
        f.file("etc/xinetd.d/amanda-udp", UDP_XINETD);
        let r = f.doctor(Some(&p), Some("lhost"), Some("could not connect DATA stream: can't connect stream to lhost port 50014: Connection timed out"));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::HelperUnassigned, Severity::Breaks),
            "{r}"
        );
        assert!(x.explains_error);
        // With the assignment, the streams pass.
        let with = rules.replace("COMMIT\n", "COMMIT\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp --dport 10080 -j CT --helper amanda\nCOMMIT\n");
        let f = f.cmd("iptables-save", &with);
        let r = f.doctor(Some(&p), Some("lhost"), None);
        assert!(
            !causes(&r).iter().any(|c| c.0 == Cause::HelperUnassigned),
            "{r}"
        );
        // And a kernel without the module is named.
        f.file(
            "lib/modules/6.1.0-test/modules.dep",
            "kernel/net/netfilter/nf_conntrack_ftp.ko:\n",
        );
        let r = f.doctor(Some(&p), Some("lhost"), None);
        assert!(
            causes(&r).contains(&(Cause::HelperMissing, Severity::Breaks)),
            "{r}"
        );
    }

    /// A kernel that still assigns helpers by port (< 6.0): a note, not a break.
    #[test]
    fn automatic_helper_assignment_is_a_note() {
        let f = Fake::new();
        f.file("proc/sys/net/netfilter/nf_conntrack_helper", "1\n");
        f.file(
            "sys/module/nf_conntrack_amanda/parameters/master_timeout",
            "300\n",
        );
        let r = f.doctor(None, Some("lhost"), None);
        assert_eq!(
            causes(&r),
            vec![(Cause::HelperUnassigned, Severity::Note)],
            "{r}"
        );
        assert!(!r.breaks());
    }

    #[test]
    fn amandahosts_naming_the_inner_address_behind_nat() {
        let p = plan(Auth::Bsd, false);
        let f = Fake::new()
            .cmd("ss", SS_UDP)
            .cmd("iptables-save", OPEN)
            .cmd("nft", "");
        f.file("etc/xinetd.d/amanda-udp", UDP_XINETD);
        f.file("etc/hosts", "192.0.2.2 tshost\n198.51.100.1 fwhost-eth1\n");
        f.file("var/backups/.amandahosts", "tshost backup amdump\n");
        let r = f.doctor(
            Some(&p),
            Some("rhost"),
            Some("[access as backup not allowed from backup@fwhost-eth1: ...]"),
        );
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::Amandahosts, Severity::Breaks),
            "{r}"
        );
        assert!(
            x.summary.contains("192.0.2.2") && x.summary.contains("198.51.100.1"),
            "{r}"
        );
        assert!(x.summary.contains("masquerade on fwhost"), "{r}");
        assert!(x.evidence[0].at.ends_with(".amandahosts:1"), "{r}");
        assert!(x.fix.contains("fwhost-eth1 backup amdump"), "{r}");
        f.file("var/backups/.amandahosts", "fwhost-eth1 backup amdump\n");
        let r = f.doctor(Some(&p), Some("rhost"), None);
        assert!(r.findings.is_empty(), "{r}");
    }

    #[test]
    fn amandahosts_readable_by_others() {
        let f = Fake::new();
        f.file("var/backups/.amandahosts", "tshost backup amdump\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            f.root.path().join("var/backups/.amandahosts"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let r = f.doctor(None, Some("lhost"), Some("/var/backups/.amandahosts: incorrect permissions; file must be accessible only by its owner"));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::Amandahosts, Severity::Breaks),
            "{r}"
        );
        assert!(x.explains_error && x.summary.contains("mode 0644"), "{r}");
        assert!(x.fix.contains("chmod 600"), "{r}");
    }

    #[test]
    fn configured_but_not_listening() {
        let f = Fake::new().cmd("ss", SS_TCP);
        f.file("etc/xinetd.d/amanda-udp", UDP_XINETD);
        f.file(
            "etc/amanda/amanda-client.conf",
            "auth \"bsd\"\nclient-port 10080\n",
        );
        let r = f.doctor(None, Some("lhost"), Some(ACK));
        let x = first(&r);
        assert_eq!(
            (x.cause, x.severity),
            (Cause::NotListening, Severity::Breaks),
            "{r}"
        );
    }

    #[test]
    fn a_host_not_in_the_topology_is_a_usage_error() {
        let p = plan(Auth::Bsd, false);
        let f = Fake::new();
        let e = doctor(
            &f,
            &Ask {
                plan: Some(&p),
                host: Some("nohost".into()),
                error: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("nohost"));
    }

    #[test]
    fn report_text_and_json() {
        let f = Fake::new().cmd("ss", SS_TCP);
        f.file("etc/xinetd.d/amanda", DEBIAN_XINETD);
        f.file(
            "etc/amanda/amanda-client.conf",
            "auth \"bsd\"\nclient-port 10080\n",
        );
        let r = f.doctor(None, Some("lhost"), Some(ACK));
        let t = r.to_string();
        assert!(t.starts_with("amwall doctor: lhost (client)\n"), "{t}");
        assert!(
            t.contains("\n1. BREAKS inetd-auth  (explains the message)\n"),
            "{t}"
        );
        assert!(t.contains("   fix:"), "{t}");
        assert!(t.lines().all(|l| l == l.trim_end()), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["findings"][0]["cause"], "inetd-auth");
        assert_eq!(j["findings"][0]["severity"], "breaks");
    }

    #[test]
    fn hostile_files_are_input_errors() {
        let f = Fake::new();
        f.file("etc/amanda/daily/amanda.conf", "reserved-udp-port \"x\n");
        assert!(doctor(
            &f,
            &Ask {
                plan: None,
                host: None,
                error: None
            }
        )
        .is_err());
        let f = Fake::new();
        std::fs::create_dir_all(f.root.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &f.root.path().join("etc/inetd.conf"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let t = std::time::Instant::now();
        assert!(doctor(
            &f,
            &Ask {
                plan: None,
                host: None,
                error: None
            }
        )
        .is_err());
        assert!(t.elapsed().as_secs() < 5);
    }
}
