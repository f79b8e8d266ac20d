//! amanda::conf on files no one here wrote — Debian's own sample configurations,
//! checked against what the real Amanda 3.5.1 (`amgetconf`, and Amanda's Perl
//! library for the disklist) reads from them — and on fixtures for every construct,
//! every error (with its exact message and line:column) and every lint.
//!
//! The comparison tests need `amanda-server` and `amanda-client` installed; they fail
//! (never skip) when amgetconf is missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use amwall::amanda::conf::{
    lint_client, lint_server, load_client_conf, load_security_conf, load_server_config,
    parse_security_conf, parse_services, AmandaConfig, ClientConf, DumptypeRef, Kind, LintContext,
    LoadOptions, Origin, SecurityConf, Services,
};
use amwall::amanda::settings::{Auth, Build, ClientPort};
use amwall::ports::PortRange;

const FIX: &str = "tests/fixtures/amanda";

fn load(dir: &str) -> AmandaConfig {
    load_server_config(Path::new(&format!("{FIX}/{dir}")), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
}

fn error(dir: &str) -> String {
    match load_server_config(Path::new(&format!("{FIX}/{dir}")), &LoadOptions::default()) {
        Ok(_) => panic!("{dir} should not load"),
        Err(e) => e.to_string(),
    }
}

fn at(o: &Origin) -> String {
    match o {
        Origin::File(p) => p.to_string(),
        Origin::Default(why) => format!("default: {why}"),
    }
}

// ---------------------------------------------------------------- fixtures

/// The deployment of examples/wiki.toml, written as Amanda configuration.
#[test]
fn wiki_fixture_reads_clients_auth_and_ranges_with_positions() {
    let c = load("wiki");
    let conf = format!("{FIX}/wiki/amanda.conf");
    let s = &c.server;
    assert_eq!(s.reserved_udp_port.value, PortRange::new(840, 860));
    assert_eq!(at(&s.reserved_udp_port.origin), format!("{conf}:24:1"));
    assert_eq!(at(&s.reserved_tcp_port.origin), format!("{conf}:25:1"));
    assert_eq!(s.unreserved_tcp_port.value, PortRange::new(50000, 50100));
    assert_eq!(s.inparallel.value, 4);
    assert_eq!(at(&s.inparallel.origin), format!("{conf}:7:1"));

    let hosts: Vec<&str> = c.clients.iter().map(|c| c.host.as_str()).collect();
    assert_eq!(hosts, ["tshost", "fwhost", "lhost", "rhost"]);
    let dumptypes = format!("{FIX}/wiki/dumptypes.conf");
    for cl in &c.clients {
        // auth and client-port come from `global`, through root-tar / user-tar.
        assert_eq!(cl.auth.value, Auth::Bsd, "{}", cl.host);
        assert_eq!(at(&cl.auth.origin), format!("{dumptypes}:6:5"));
        assert_eq!(cl.client_port.value, Some(ClientPort::Number(10080)));
        assert_eq!(at(&cl.client_port.origin), format!("{dumptypes}:7:5"));
        assert!(cl.index.value);
    }

    let lhost = c.client("lhost").unwrap();
    let srv = &lhost.disks[1];
    assert_eq!(srv.disk.value, "/srv/My Files");
    assert_eq!(srv.device.as_ref().unwrap().value, "/srv");
    assert_eq!(srv.spindle.as_ref().unwrap().value, 2);
    assert_eq!(srv.interface.as_ref().unwrap().value, "lan");
    assert_eq!(
        srv.disk.pos.to_string(),
        format!("{FIX}/wiki/disklist:6:13")
    );

    let rhost = &c.client("rhost").unwrap().disks[0];
    assert!(
        matches!(&rhost.dumptype, DumptypeRef::Inline(p) if p.to_string() == format!("{FIX}/wiki/disklist:10:18"))
    );
    assert_eq!(rhost.spindle.as_ref().unwrap().value, 1);
    assert_eq!(rhost.interface.as_ref().unwrap().value, "wan");
    assert_eq!(
        rhost.auth.value,
        Auth::Bsd,
        "inherited from root-tar inside the inline dumptype"
    );

    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let files: Vec<String> = c.files.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        files,
        [
            conf.clone(),
            format!("{FIX}/wiki/dumptypes.conf"),
            format!("{FIX}/wiki/disklist")
        ]
    );
}

/// The settings derived from the Amanda files equal the hand-written topology's.
#[test]
fn wiki_fixture_settings_match_the_hand_written_topology() {
    let c = load("wiki");
    let d = common::example("wiki");
    for cl in &c.clients {
        let h = d.host(d.host_by_name(&cl.host).unwrap());
        let s = cl.settings(None, Build::Debian);
        assert_eq!(s.auth, h.amanda.auth, "{}", cl.host);
        assert_eq!(s.client_port, h.amanda.client_port, "{}", cl.host);
        assert_eq!(s.index, h.amanda.index, "{}", cl.host);
        assert_eq!(s.reserved_udp_port, h.amanda.reserved_udp_port);
        assert_eq!(s.unreserved_tcp_port, h.amanda.unreserved_tcp_port);
    }
    let s = c.server_settings(Build::Debian);
    let ts = d.host(d.host_by_name("tshost").unwrap());
    assert_eq!(s.auth, ts.amanda.auth);
    assert_eq!(s.reserved_udp_port, ts.amanda.reserved_udp_port);
    assert_eq!(s.reserved_tcp_port, ts.amanda.reserved_tcp_port);
    assert_eq!(s.unreserved_tcp_port, ts.amanda.unreserved_tcp_port);
    assert_eq!(s.inparallel, 4);
}

#[test]
fn wiki_client_conf() {
    let path = format!("{FIX}/wiki/rhost/amanda-client.conf");
    let c = load_client_conf(Path::new(&path), &LoadOptions::default()).unwrap();
    assert_eq!(c.auth.value, Auth::Bsd);
    assert_eq!(at(&c.auth.origin), format!("{path}:5:1"));
    assert_eq!(c.client_port.value, Some(ClientPort::Number(10080)));
    assert_eq!(c.index_server.value, "fwhost");
    assert_eq!(at(&c.index_server.origin), format!("{path}:3:1"));
    assert_eq!(c.tape_server.value, "fwhost");
    assert_eq!(c.reserved_udp_port.value, PortRange::new(840, 860));
    assert_eq!(c.reserved_tcp_port.value, PortRange::new(512, 1023));
    assert!(matches!(c.reserved_tcp_port.origin, Origin::Default(_)));
    assert_eq!(c.settings(Build::Debian).auth, Auth::Bsd);
    assert!(c.warnings.is_empty());
}

#[test]
fn every_construct() {
    let c = load("constructs");
    let conf = format!("{FIX}/constructs/amanda.conf");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // `reserved_udp_PORT`, a single-port range, the repeated `org` (last wins).
    assert_eq!(c.server.reserved_udp_port.value, PortRange::new(850, 859));
    assert_eq!(c.server.reserved_tcp_port.value, PortRange::new(600, 600));
    assert_eq!(c.server.inparallel.value, 6);
    let org: Vec<_> = c.params.iter().filter(|p| p.key == "org").collect();
    assert_eq!(org.len(), 2);
    assert_eq!(
        org[1].value,
        "\"Constructs \\\"quoted\\\"\\tandA escaped, \\ncontinued\""
    );
    assert_eq!(org[1].pos.to_string(), format!("{conf}:11:1"));

    // One definition of each of the twelve kinds, some through nested includes.
    for kind in Kind::ALL {
        assert!(
            c.definitions
                .iter()
                .any(|d| d.kind == kind && d.pos.is_some()),
            "{kind:?}"
        );
    }
    let interfaces = format!("{FIX}/constructs/sub/interfaces.conf");
    let local = c.definitions.iter().find(|d| d.name == "local").unwrap();
    assert_eq!(
        local.pos.as_ref().unwrap().to_string(),
        format!("{interfaces}:4:18")
    );

    let dt = |n: &str| c.dumptypes.iter().find(|d| d.name == n).unwrap();
    assert_eq!(dt("child").auth.value, Auth::Bsdudp);
    assert!(
        dt("child").index.value,
        "bare `index` after a parent with `index no`"
    );
    assert_eq!(
        dt("child").client_port.value,
        Some(ClientPort::Number(10080))
    );
    assert_eq!(
        dt("quoted-name").client_port.value,
        Some(ClientPort::Service("amanda".into()))
    );
    assert_eq!(
        dt("override-order").auth.value,
        Auth::Bsdudp,
        "the parent comes after `auth`"
    );
    assert_eq!(dt("predefined-parent").auth.value, Auth::Bsd);
    assert_eq!(dt("with-app").auth.value, Auth::Bsdtcp);
    assert!(matches!(dt("with-app").auth.origin, Origin::Default(_)));

    let disk = |h: &str, d: &str| {
        c.client(h)
            .unwrap()
            .disks
            .iter()
            .find(|x| x.disk.value == d)
            .unwrap()
            .clone()
    };
    assert_eq!(disk("server", "/var").auth.value, Auth::Bsdtcp);
    assert_eq!(
        disk("server", "/var").interface.as_ref().unwrap().value,
        "local"
    );
    assert_eq!(
        disk("client1", "/data with blanks")
            .spindle
            .as_ref()
            .unwrap()
            .value,
        -1
    );
    let home = disk("client2", "/home");
    assert!(!home.index.value);
    assert_eq!(home.client_port.value, Some(ClientPort::Number(10080)));
    let srv = disk("client2", "/srv");
    assert_eq!(srv.device.as_ref().unwrap().value, "/dev/sdb1");
    assert_eq!(srv.auth.value, Auth::Bsd);
    // client2's entries disagree (bsdudp, bsd): Amanda uses its last entry's.
    assert_eq!(c.client("client2").unwrap().auth.value, Auth::Bsd);
    assert_eq!(
        disk("client3", "/opt").host.pos.to_string(),
        format!("{FIX}/constructs/disklist.more:1:1")
    );
}

#[test]
fn unknown_keywords_are_kept_and_reported() {
    let c = load("unknown");
    let conf = format!("{FIX}/unknown/amanda.conf");
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            format!("{conf}:3:1: warning: unknown keyword `frobnicate-level` in amanda.conf: kept and ignored, but Amanda 3.5.1 rejects it"),
            format!("{conf}:6:5: warning: unknown keyword `zap-mode` in a dumptype: kept and ignored, but Amanda 3.5.1 rejects it"),
            format!("{conf}:8:8: warning: unknown definition kind `gizmo`: kept, but Amanda 3.5.1 rejects it"),
        ]
    );
    let kept = c
        .params
        .iter()
        .find(|p| p.key == "frobnicate-level")
        .unwrap();
    assert_eq!(kept.value, "3 \"x\"");
    assert!(!kept.known);
    assert_eq!(c.server.inparallel.value, 2);
    assert_eq!(c.clients[0].auth.value, Auth::Bsdtcp);
}

// ------------------------------------------------------------ broken fixtures

#[test]
fn broken_unterminated_string() {
    assert_eq!(
        error("broken/unterminated-string"),
        format!("{FIX}/broken/unterminated-string/amanda.conf:2:5: unterminated string")
    );
}

#[test]
fn broken_unknown_dumptype_in_disklist() {
    assert_eq!(
        error("broken/unknown-dumptype"),
        format!("{FIX}/broken/unknown-dumptype/disklist:3:10: unknown dumptype `unknown-type`")
    );
}

#[test]
fn broken_unknown_parent_dumptype() {
    assert_eq!(
        error("broken/unknown-parent"),
        format!("{FIX}/broken/unknown-parent/amanda.conf:3:5: unknown dumptype `no-such-parent`")
    );
}

#[test]
fn broken_parent_defined_after_its_child() {
    let e = load_server_config(
        Path::new(&format!("{FIX}/broken/parent-defined-later")),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FIX}/broken/parent-defined-later/amanda.conf:2:5: unknown dumptype `parent`")
    );
    let amwall::Error::Input(ie) = e else {
        panic!()
    };
    let help = miette::Diagnostic::help(&*ie).unwrap().to_string();
    assert!(help.contains("defined later, at"), "{help}");
    assert!(
        help.contains("parent-defined-later/amanda.conf:5:17"),
        "{help}"
    );
}

#[test]
fn broken_include_cycle() {
    let d = format!("{FIX}/broken/include-cycle");
    assert_eq!(
        error("broken/include-cycle"),
        format!("{d}/b.conf:3:13: includefile cycle: {d}/a.conf → {d}/b.conf → {d}/a.conf")
    );
}

#[test]
fn broken_bad_range() {
    assert_eq!(
        error("broken/bad-range"),
        format!("{FIX}/broken/bad-range/amanda.conf:3:1: bad port range 860,840 for reserved-udp-port: the low port comes first")
    );
}

#[test]
fn broken_unclosed_block() {
    assert_eq!(
        error("broken/unclosed-block"),
        format!("{FIX}/broken/unclosed-block/amanda.conf:4:1: `define` inside a block: `}}` missing before this line")
    );
}

#[test]
fn broken_undefined_interface() {
    assert_eq!(
        error("broken/undefined-interface"),
        format!(
            "{FIX}/broken/undefined-interface/disklist:1:14: undefined network interface `eth9`"
        )
    );
}

#[test]
fn broken_unterminated_string_in_disklist() {
    assert_eq!(
        error("broken/disklist-unterminated"),
        format!("{FIX}/broken/disklist-unterminated/disklist:2:4: unterminated string")
    );
}

#[test]
fn missing_config_is_an_io_error() {
    let e = error("no-such-dir");
    assert!(e.starts_with(&format!("{FIX}/no-such-dir: ")), "{e}");
}

// ----------------------------------------------------------------------- lints

fn debian() -> (SecurityConf, Services) {
    (SecurityConf::debian(), Services::debian())
}

#[test]
fn lints_on_the_old_wiki_recipe_settings() {
    let c = load("lints");
    let conf = format!("{FIX}/lints/amanda.conf");
    let (sec, svc) = debian();
    let w: Vec<String> = lint_server(
        &c,
        &LintContext {
            security: &sec,
            services: &svc,
        },
    )
    .iter()
    .map(|w| format!("{} {} {}", w.code, w.pos, w.message))
    .collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(w[0].starts_with(&format!("ambind-udp-range {conf}:4:1 reserved-udp-port 700,710 is outside udp_port_range=840,860")), "{}", w[0]);
    assert!(w[1].starts_with(&format!("udp-range-too-small {conf}:4:1 reserved-udp-port 700,710 gives 10 usable ports, but amcheck, planner and 10 dumpers (inparallel) need 12")), "{}", w[1]);
    assert!(w[2].starts_with(&format!("udp-client-port-service {FIX}/lints/dumptypes.conf:2:5 lhost uses auth bsd with client-port service \"amanda\"")), "{}", w[2]);
    assert!(w[3].starts_with(&format!("mixed-auth {FIX}/lints/disklist:1:1 the disklist entries of lhost use different auth: bsdtcp")), "{}", w[3]);
}

#[test]
fn lints_follow_the_system_files_given() {
    let c = load("lints");
    let sec = load_security_conf(Path::new(&format!("{FIX}/lints/amanda-security.conf"))).unwrap();
    let svc = parse_services("services", "amanda 10080/udp\namanda 10080/tcp\n");
    let codes: Vec<&str> = lint_server(
        &c,
        &LintContext {
            security: &sec,
            services: &svc,
        },
    )
    .iter()
    .map(|w| w.code)
    .collect();
    assert_eq!(codes, ["udp-range-too-small", "mixed-auth"]);
    // No udp_port_range at all: ambind refuses every privileged UDP bind.
    let none = parse_security_conf("sec", "tcp_port_range=512,1024\n").unwrap();
    let w = lint_server(
        &c,
        &LintContext {
            security: &none,
            services: &svc,
        },
    );
    assert_eq!(w[0].code, "ambind-udp-range");
    assert!(
        w[0].message
            .starts_with("amanda-security.conf sets no udp_port_range"),
        "{}",
        w[0].message
    );
}

#[test]
fn the_wiki_fixture_lints_clean_on_debian() {
    let (sec, svc) = debian();
    let ctx = LintContext {
        security: &sec,
        services: &svc,
    };
    assert!(lint_server(&load("wiki"), &ctx).is_empty());
    let c = load_client_conf(
        Path::new(&format!("{FIX}/wiki/rhost/amanda-client.conf")),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(lint_client(&c, &ctx).is_empty());
}

#[test]
fn client_conf_lints() {
    let (sec, svc) = debian();
    let path = format!("{FIX}/lints/amanda-client.conf");
    let c = load_client_conf(Path::new(&path), &LoadOptions::default()).unwrap();
    let w: Vec<String> = lint_client(
        &c,
        &LintContext {
            security: &sec,
            services: &svc,
        },
    )
    .iter()
    .map(|w| format!("{} {}", w.code, w.pos))
    .collect();
    assert_eq!(
        w,
        [
            format!("ambind-udp-range {path}:3:1"),
            format!("udp-client-port-service {path}:2:1")
        ]
    );
}

// ------------------------------------------- Debian's samples against amgetconf

/// The installed Amanda: amgetconf, its CONFIG_DIR, and Amanda's Perl library.
struct Amanda {
    amgetconf: PathBuf,
    config_dir: PathBuf,
}

fn amanda() -> Amanda {
    let amgetconf = ["/usr/sbin/amgetconf", "/usr/bin/amgetconf"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("amgetconf not found: these tests need Debian's amanda-server and amanda-client (apt-get install -y amanda-server amanda-client)")
        });
    let out = Command::new(&amgetconf)
        .args(["x", "build.CONFIG_DIR"])
        .output()
        .unwrap();
    let config_dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        config_dir.is_absolute(),
        "amgetconf build.CONFIG_DIR: {config_dir:?}"
    );
    Amanda {
        amgetconf,
        config_dir,
    }
}

impl Amanda {
    /// amgetconf only takes a configuration *name* under CONFIG_DIR
    /// (`config_init`: CONFIG_DIR "/" name); `../..` reaches any directory without
    /// writing to /etc/amanda.
    fn name(&self, dir: &Path) -> String {
        let dir = std::fs::canonicalize(dir).unwrap();
        let up = "../".repeat(self.config_dir.components().count() - 1);
        format!("{up}{}", dir.display().to_string().trim_start_matches('/'))
    }

    fn get(&self, dir: &Path, client: bool, key: &str) -> String {
        let mut cmd = Command::new(&self.amgetconf);
        if client {
            cmd.arg("--client");
        }
        let out = cmd
            .arg(self.name(dir))
            .arg(key)
            .current_dir("/")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "amgetconf {} {key}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// What Amanda's library reads: Ok(lines) or Err(its error lines).
    fn dump(&self, dir: &Path) -> Result<Vec<Vec<String>>, Vec<String>> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(FIX)
            .join("oracle/dump.pl");
        let out = Command::new("perl")
            .arg(script)
            .arg(self.name(dir))
            .current_dir("/")
            .output()
            .expect("perl runs (it comes with amanda-common)");
        let lines: Vec<Vec<String>> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        if out.status.success() {
            Ok(lines)
        } else {
            assert!(
                !lines.is_empty(),
                "perl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Err(lines
                .into_iter()
                .filter(|l| l[0] == "ERR")
                .map(|l| l[1..].join("\t"))
                .collect())
        }
    }
}

fn range_text(r: PortRange) -> String {
    format!("{},{}", r.lo, r.hi)
}

fn port_text(p: &Option<ClientPort>) -> String {
    match p {
        None => String::new(),
        Some(ClientPort::Number(n)) => n.to_string(),
        Some(ClientPort::Service(s)) => s.clone(),
    }
}

/// Everything amwall derives from a server configuration equals what Amanda reads.
fn compare_server(am: &Amanda, dir: &Path) -> AmandaConfig {
    let ours = load_server_config(dir, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let s = &ours.server;
    assert_eq!(
        am.get(dir, false, "reserved-udp-port"),
        range_text(s.reserved_udp_port.value)
    );
    assert_eq!(
        am.get(dir, false, "reserved-tcp-port"),
        range_text(s.reserved_tcp_port.value)
    );
    assert_eq!(
        am.get(dir, false, "unreserved-tcp-port"),
        range_text(s.unreserved_tcp_port.value)
    );
    assert_eq!(
        am.get(dir, false, "inparallel"),
        s.inparallel.value.to_string()
    );

    let lines = am
        .dump(dir)
        .unwrap_or_else(|e| panic!("Amanda rejects {}: {e:?}", dir.display()));
    let mut theirs: BTreeMap<String, (String, bool, String)> = BTreeMap::new();
    for l in lines.iter().filter(|l| l[0] == "T") {
        theirs.insert(
            l[1].to_uppercase(),
            (l[2].to_lowercase(), l[3] == "1", l[4].clone()),
        );
    }
    let mut mine: BTreeMap<String, (String, bool, String)> = BTreeMap::new();
    for d in &ours.dumptypes {
        mine.insert(
            d.name.to_uppercase(),
            (
                d.auth.value.to_string(),
                d.index.value,
                port_text(&d.client_port.value),
            ),
        );
    }
    assert_eq!(mine, theirs, "dumptypes of {}", dir.display());

    let mut theirs: Vec<Vec<String>> = lines
        .iter()
        .filter(|l| l[0] == "D")
        .map(|l| {
            vec![
                l[1].clone(),
                l[2].clone(),
                l[3].clone(),
                l[5].to_lowercase(),
                l[6].clone(),
                l[7].clone(),
                l[8].clone(),
            ]
        })
        .collect();
    let mut mine: Vec<Vec<String>> = ours
        .clients
        .iter()
        .flat_map(|c| &c.disks)
        .map(|d| {
            vec![
                d.host.value.clone(),
                d.disk.value.clone(),
                d.device
                    .as_ref()
                    .map(|x| x.value.clone())
                    .unwrap_or_default(),
                d.auth.value.to_string(),
                if d.index.value { "1" } else { "0" }.to_string(),
                port_text(&d.client_port.value),
                d.spindle.as_ref().map_or(-1, |s| s.value).to_string(),
            ]
        })
        .collect();
    theirs.sort();
    mine.sort();
    assert_eq!(mine, theirs, "disklist of {}", dir.display());
    ours
}

fn compare_client(am: &Amanda, file: &Path) -> ClientConf {
    let dir = tempfile::Builder::new()
        .prefix("amwall-conf-")
        .tempdir()
        .unwrap();
    std::fs::copy(file, dir.path().join("amanda-client.conf")).unwrap();
    let ours = load_client_conf(
        &dir.path().join("amanda-client.conf"),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let d = dir.path();
    assert_eq!(am.get(d, true, "auth"), ours.auth.value.to_string());
    assert_eq!(
        am.get(d, true, "client_port"),
        port_text(&ours.client_port.value)
    );
    assert_eq!(am.get(d, true, "index_server"), ours.index_server.value);
    assert_eq!(am.get(d, true, "tape_server"), ours.tape_server.value);
    assert_eq!(
        am.get(d, true, "reserved-udp-port"),
        range_text(ours.reserved_udp_port.value)
    );
    assert_eq!(
        am.get(d, true, "reserved-tcp-port"),
        range_text(ours.reserved_tcp_port.value)
    );
    assert_eq!(
        am.get(d, true, "unreserved-tcp-port"),
        range_text(ours.unreserved_tcp_port.value)
    );
    ours
}

/// A scratch configuration directory (removed on drop) holding copies of
/// Debian's files, gunzipped; `edits` are (from, to) replacements in amanda.conf.
fn scratch(files: &[(&str, &str)], edits: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("amwall-conf-")
        .tempdir()
        .unwrap();
    for (src, name) in files {
        let bytes = if src.ends_with(".gz") {
            let out = Command::new("gzip").args(["-dc", src]).output().unwrap();
            assert!(out.status.success(), "gzip -dc {src}");
            out.stdout
        } else {
            std::fs::read(src)
                .unwrap_or_else(|e| panic!("{src}: {e} (is amanda-server installed?)"))
        };
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let conf = dir.path().join("amanda.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in amanda.conf");
        text = text.replace(from, to);
    }
    std::fs::write(&conf, text).unwrap();
    if !dir.path().join("disklist").exists() {
        std::fs::write(dir.path().join("disklist"), "").unwrap();
    }
    dir
}

const EXAMPLES: &str = "/usr/share/doc/amanda-server/examples";
const TEMPLATES: &str = "/usr/share/amanda/template.d";

/// examples/amanda.conf with examples/disklist as shipped: the disklist names
/// interface `le0`, which the sample amanda.conf leaves commented out. Amanda and
/// amwall both refuse it, at the same line.
#[test]
fn debian_example_disklist_fails_like_amanda() {
    let am = amanda();
    let dir = scratch(
        &[
            (&format!("{EXAMPLES}/amanda.conf.gz"), "amanda.conf"),
            (&format!("{EXAMPLES}/disklist"), "disklist"),
        ],
        &[],
    );
    let theirs = am.dump(dir.path()).unwrap_err();
    assert!(
        theirs[0].ends_with("line 50: undefined network interface `LE0'"),
        "{theirs:?}"
    );
    let ours = load_server_config(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        ours,
        format!(
            "{}:50:5: undefined network interface `le0`",
            dir.path().join("disklist").display()
        )
    );
}

/// The same pair once `le0` is defined: every dumptype and every entry (inline
/// dumptypes, devices, spindles) agree with Amanda.
#[test]
fn debian_example_config_agrees_with_amanda() {
    let am = amanda();
    let dir = scratch(
        &[
            (&format!("{EXAMPLES}/amanda.conf.gz"), "amanda.conf"),
            (&format!("{EXAMPLES}/disklist"), "disklist"),
        ],
        &[(
            "#define interface le0 {\n#    comment \"10 Mbps ethernet\"\n#    use 400 kbps\n#}",
            "define interface le0 {\n    comment \"10 Mbps ethernet\"\n    use 400 kbps\n}",
        )],
    );
    let c = compare_server(&am, dir.path());
    assert_eq!(c.clients.len(), 10);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn debian_quick_example_agrees_with_amanda() {
    let am = amanda();
    let q = format!("{EXAMPLES}/quick");
    let dir = scratch(
        &[
            (&format!("{q}/amanda.conf.gz"), "amanda.conf"),
            (&format!("{q}/dumptypes.gz"), "dumptypes"),
            (&format!("{q}/tapetypes"), "tapetypes"),
            (&format!("{q}/disklist"), "disklist"),
        ],
        // The sample includes its parts from /etc/amanda/DailySet1; point at the copies.
        &[("\"/etc/amanda/DailySet1/", "\"")],
    );
    let c = compare_server(&am, dir.path());
    assert_eq!(c.clients[0].host, "debian-fresh-install");
    assert_eq!(c.files.len(), 4);
}

/// amserverconfig's templates (changer configs such as chg-manual.conf are another
/// format and not amanda.conf files).
#[test]
fn debian_templates_agree_with_amanda() {
    let am = amanda();
    for t in [
        "amanda-harddisk",
        "amanda-single-tape",
        "amanda-tape-changer",
        "amanda-S3",
        "amanda-CAStor",
    ] {
        let dir = scratch(
            &[
                (&format!("{TEMPLATES}/{t}.conf"), "amanda.conf"),
                (&format!("{TEMPLATES}/advanced.conf"), "advanced.conf"),
                (&format!("{TEMPLATES}/dumptypes"), "dumptypes"),
                (&format!("{TEMPLATES}/tapetypes"), "tapetypes"),
            ],
            &[("\"/etc/amanda/template.d/", "\"")],
        );
        let c = compare_server(&am, dir.path());
        assert!(c.files.len() == 5, "{t}: {:?}", c.files);
    }
    let dir = scratch(
        &[(&format!("{TEMPLATES}/advanced.conf"), "amanda.conf")],
        &[],
    );
    compare_server(&am, dir.path());
}

#[test]
fn debian_client_examples_agree_with_amanda() {
    let am = amanda();
    let c = compare_client(
        &am,
        Path::new("/usr/share/doc/amanda-client/examples/amanda-client.conf"),
    );
    assert_eq!(c.auth.value, Auth::Bsdtcp);
    let c = compare_client(
        &am,
        Path::new("/usr/share/doc/amanda-client/examples/amanda-client-postgresql.conf"),
    );
    assert_eq!(c.index_server.value, "localhost");
    compare_client(
        &am,
        Path::new(&format!("{FIX}/wiki/rhost/amanda-client.conf")),
    );
}

/// Our own fixtures are real Amanda configurations too.
#[test]
fn fixtures_agree_with_amanda() {
    let am = amanda();
    compare_server(&am, Path::new(&format!("{FIX}/wiki")));
    compare_server(&am, Path::new(&format!("{FIX}/constructs")));
}

/// Amanda rejects every broken fixture as well, and (except for the include cycle,
/// where Amanda only stops at "Too many open files") on the same line.
#[test]
fn amanda_rejects_the_broken_fixtures_on_the_same_line() {
    let am = amanda();
    for b in [
        "unterminated-string",
        "unknown-dumptype",
        "unknown-parent",
        "parent-defined-later",
        "include-cycle",
        "bad-range",
        "unclosed-block",
        "undefined-interface",
        "disklist-unterminated",
    ] {
        let dir = format!("{FIX}/broken/{b}");
        let theirs = am.dump(Path::new(&dir)).expect_err(&dir);
        let ours = error(&format!("broken/{b}"));
        if b == "include-cycle" {
            assert!(theirs[0].contains("Too many open files"), "{theirs:?}");
            continue;
        }
        let line: String = ours.split(':').nth(1).unwrap().to_string();
        assert!(
            theirs[0].contains(&format!("line {line}:")),
            "{b}: amwall says {ours}, Amanda says {theirs:?}"
        );
    }
}

/// The installed /etc/amanda-security.conf is what facts.rs says Debian ships.
#[test]
fn installed_security_conf() {
    amanda();
    let c = load_security_conf(Path::new("/etc/amanda-security.conf")).unwrap();
    assert_eq!(
        c.udp_port_range.unwrap().value,
        amwall::amanda::facts::DEBIAN_AMBIND_UDP
    );
    assert_eq!(
        c.tcp_port_range.unwrap().value,
        amwall::amanda::facts::DEBIAN_AMBIND_TCP
    );
}

// ------------------------------------------------ files included more than once

/// A config directory from (name, text) pairs.
fn conf_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("amwall-conf-")
        .tempdir()
        .unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Eight files, each including the next one twice between settings (Amanda
/// reads the deepest one 128 times), a dumptype in a file included once, and a
/// disklist that includes an empty file twice: amwall reads each file once and
/// ends with every value Amanda ends with.
#[test]
fn files_included_twice_read_once_and_agree_with_amanda() {
    let am = amanda();
    let n = 8;
    let mut files = vec![(
        "amanda.conf".to_string(),
        "includefile \"f1.conf\"\nincludefile \"types.conf\"\nunreserved-tcp-port 5000,6000\n"
            .to_string(),
    )];
    for i in 1..n {
        let next = format!("f{}.conf", i + 1);
        files.push((
            format!("f{i}.conf"),
            format!(
                "inparallel {i}\nincludefile \"{next}\"\nreserved-udp-port {},{}\nincludefile \"{next}\"\nreserved-tcp-port {},{}\n",
                600 + i, 700 + i, 500 + i, 510 + i
            ),
        ));
    }
    files.push((
        format!("f{n}.conf"),
        "inparallel 40\nunreserved-tcp-port 2000,3000\nreserved-tcp-port 520,530\n".into(),
    ));
    files.push((
        "types.conf".into(),
        "define dumptype tcp {\n  auth \"bsdtcp\"\n  client-port 10090\n}\n".into(),
    ));
    files.push((
        "disklist".into(),
        "includefile \"empty\"\nclient1 /home tcp\nincludefile \"empty\"\n".into(),
    ));
    files.push(("empty".into(), "# nothing yet\n\n".into()));
    let refs: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let dir = conf_dir(&refs);
    let ours = compare_server(&am, dir.path());
    assert_eq!(ours.server.inparallel.value, 40);
    assert_eq!(
        ours.server.reserved_tcp_port.value,
        PortRange { lo: 501, hi: 511 }
    );
    assert_eq!(
        ours.server.unreserved_tcp_port.value,
        PortRange { lo: 5000, hi: 6000 }
    );
    // Each file once: amanda.conf, f1..f8, types.conf, disklist, empty.
    assert_eq!(ours.files.len(), n + 4, "{:?}", ours.files);
}

/// Including a file with a `define` (amanda.conf) or an entry (disklist) twice
/// is an error for Amanda, and for amwall, at the second include.
#[test]
fn a_second_include_of_definitions_or_entries_fails_like_amanda() {
    let am = amanda();
    let dir = conf_dir(&[
        (
            "amanda.conf",
            "includefile \"t.conf\"\ninparallel 4\nincludefile \"t.conf\"\n".into(),
        ),
        (
            "t.conf",
            "define dumptype dd {\n  auth \"bsdtcp\"\n}\n".into(),
        ),
        ("disklist", String::new()),
    ]);
    let theirs = am.dump(dir.path()).unwrap_err();
    assert!(
        theirs[0].contains("dumptype dd already defined"),
        "{theirs:?}"
    );
    let ours = load_server_config(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        ours.contains("amanda.conf:3:13: \"t.conf\" is included a second time: its dumptype `dd`"),
        "{ours}"
    );

    let dir = conf_dir(&[
        (
            "amanda.conf",
            "define dumptype dd {\n  auth \"bsdtcp\"\n}\n".into(),
        ),
        (
            "disklist",
            "includefile \"d2\"\nincludefile \"d2\"\n".into(),
        ),
        ("d2", "# one client\nclient1 /home dd\n".into()),
    ]);
    let theirs = am.dump(dir.path()).unwrap_err();
    assert!(theirs[0].contains("duplicate disk record"), "{theirs:?}");
    let ours = load_server_config(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        ours.contains("disklist:2:13: duplicate disk record: \"d2\" is included a second time, so `client1 /home`"),
        "{ours}"
    );
}
