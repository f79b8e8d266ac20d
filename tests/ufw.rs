//! `plan --ufw` with the real ufw (Debian's package) enabled inside a network
//! namespace with its own /etc/ufw and /etc/default (`ip netns exec` mounts
//! /etc/netns/NAME/* over /etc): the script adds amwall's openings beside the
//! admin's ufw rules, twice over without a duplicate, and real packets show
//! Amanda's request passing only afterwards while the admin's ban still
//! drops. The machine's own ufw configuration is copied, never changed.
//! Needs root, iproute2, iptables and ufw: CI installs them, and a missing
//! one fails here loudly.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use amwall::check::{self, HostRules, Options, RulesFile};
use amwall::lab::netns::veth;
use amwall::lab::ufw::Ufw;
use amwall::lab::Netns;
use amwall::Plan;

/// iptables-save without its comment lines and counters, which change as
/// packets pass.
fn without_counters(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.starts_with(':') {
                l.rsplit_once(' ').map_or(l, |(a, _)| a)
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `amwall ARGS --state-dir STATE` where ufw runs: its exit status and
/// everything it said.
fn amwall_under(u: &Ufw, state: &std::path::Path, args: &[&str]) -> (i32, String) {
    let o = u
        .exec(&common::amwall_argv(&[], args, state.to_str().unwrap()))
        .unwrap();
    (o.status, format!("{}{}", o.stdout, o.stderr))
}

fn ufw(u: &Ufw, args: &[&str]) -> String {
    let o = u.run(args).expect("ufw must be installed");
    assert!(o.ok(), "ufw {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

#[test]
fn ufw_script_adds_amandas_openings_beside_the_admins_rules() {
    let plan = Plan::build(common::generated(2)).unwrap();
    let files = plan.ufw_outputs(Some("c0"));
    assert_eq!(files.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join(&files[0].0);
    std::fs::write(&script, &files[0].1).unwrap();
    let script = script.to_str().unwrap();

    let srv = Netns::new("amwuS").expect("creating a netns needs root and iproute2");
    let cli = Netns::new("amwuC").unwrap();
    veth(&srv, "eth0", &cli, "eth0").unwrap();
    for a in ["198.51.100.1/24", "198.51.100.9/24"] {
        srv.must(&["ip", "addr", "add", a, "dev", "eth0"]).unwrap();
    }
    cli.must(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"])
        .unwrap();
    let u = Ufw::enable(&cli).expect("ufw must be installed and enable");
    ufw(&u, &["allow", "22/tcp"]);
    ufw(&u, &["insert", "1", "deny", "from", "198.51.100.9"]);
    let status_before = ufw(&u, &["status", "numbered"]);

    // `amwall apply` without --backend finds ufw, and refuses, changing
    // nothing, when the topology says another manager runs the host.
    let topo = dir.path().join("t.toml");
    std::fs::write(
        &topo,
        common::generated_toml(2).replace(
            "name = \"c0\"\n",
            "name = \"c0\"\nfirewall = \"firewalld\"\n",
        ),
    )
    .unwrap();
    let saved = cli.must(&["iptables-save"]).unwrap().stdout;
    let state = dir.path().join("state");
    let o = cli
        .exec(
            &[
                "env",
                "-u",
                "SSH_CONNECTION",
                env!("CARGO_BIN_EXE_amwall"),
                "apply",
                topo.to_str().unwrap(),
                "--host",
                "c0",
                "--no-wait",
                "--state-dir",
                state.to_str().unwrap(),
            ],
            None,
        )
        .unwrap();
    assert_eq!(o.status, 2, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("ufw manages") && o.stderr.contains("firewall = \"firewalld\""),
        "{}",
        o.stderr
    );
    assert_eq!(
        without_counters(&cli.must(&["iptables-save"]).unwrap().stdout),
        without_counters(&saved)
    );

    let amandad: UdpSocket = cli
        .run_in(|| UdpSocket::bind("198.51.100.2:10080").unwrap())
        .unwrap();
    let _sshd: TcpListener = cli
        .run_in(|| TcpListener::bind("198.51.100.2:22").unwrap())
        .unwrap();
    let to_amandad: SocketAddr = "198.51.100.2:10080".parse().unwrap();
    let to_sshd: SocketAddr = "198.51.100.2:22".parse().unwrap();
    // Negative control: ufw's default deny drops Amanda's request.
    assert!(!common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));

    for round in 1..=2 {
        let o = cli.exec(&["sh", script], None).unwrap();
        assert!(o.ok(), "round {round}: {}{}", o.stdout, o.stderr);
    }
    let status = ufw(&u, &["status", "numbered"]);
    for line in status_before.lines().filter(|l| l.starts_with('[')) {
        let rule = line.split_once(']').unwrap().1.trim();
        assert!(status.contains(rule), "lost `{rule}`:\n{status}");
    }
    assert_eq!(
        status.matches("10080/udp").count(),
        1,
        "one rule, however often the script runs:\n{status}"
    );
    assert!(status.contains("198.51.100.1 840:860/udp"), "{status}");

    assert!(common::udp_arrives(
        &srv,
        "198.51.100.1:850",
        &amandad,
        to_amandad
    ));
    assert!(!common::udp_arrives(
        &srv,
        "198.51.100.1:40000",
        &amandad,
        to_amandad
    ));
    assert_eq!(
        common::tcp_connect(&srv, "198.51.100.1:0", to_sshd),
        ErrorKind::Other,
        "ssh still in"
    );
    assert_ne!(
        common::tcp_connect(&srv, "198.51.100.9:0", to_sshd),
        ErrorKind::Other,
        "the ban holds"
    );

    // The simulator reads ufw's chains and finds no flow to c0 blocked.
    let live = cli.must(&["iptables-save"]).unwrap().stdout;
    let rules = HostRules::new(vec![RulesFile::parse("live", live).unwrap()], None);
    let r = check::check(&plan, &[("c0".into(), rules)], Options::default());
    let blocked: Vec<_> = r
        .flows
        .iter()
        .filter(|f| f.flow.responder == "c0" && f.result.status == check::Status::Blocked)
        .map(|f| f.flow.to_string())
        .collect();
    assert!(blocked.is_empty(), "{blocked:?}");
}

/// The router's NAT and the amanda helper through ufw's before.init hook:
/// installed by HOST.ufw.sh over ufw's own file, loaded with one jump per
/// chain however often ufw reloads or the script runs, gone with `ufw
/// disable` and back with `enable`; an admin's own before.init is refused
/// and left as it is.
#[test]
fn ufw_before_init_carries_nat_and_the_helper_through_reloads() {
    let plan = common::amanda::plan(amwall::amanda::settings::Auth::Bsd, true);
    let files = plan.ufw_outputs(Some("fwhost"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fwhost.ufw.sh", "fwhost.ufw-before.init"]);
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in &files {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    let script = dir.path().join("fwhost.ufw.sh");
    let script = script.to_str().unwrap();
    let ns = Netns::new("amwuR").expect("creating a netns needs root and iproute2");
    let u = Ufw::enable(&ns).expect("ufw must be installed and enable");
    let run = || ns.exec(&["sh", script], None).unwrap();
    // Each jump once, and amwall's chains holding what ufw cannot say.
    let once = |when: &str| {
        let save = ns.must(&["iptables-save"]).unwrap().stdout;
        for (table, from, chain) in [
            ("raw", "PREROUTING", "AMWALL-PREROUTING"),
            ("nat", "PREROUTING", "AMWALL-PREROUTING"),
            ("nat", "POSTROUTING", "AMWALL-POSTROUTING"),
        ] {
            let t = ns.must(&["iptables-save", "-t", table]).unwrap().stdout;
            let jump = format!("-A {from} -j {chain}");
            assert_eq!(
                t.lines().filter(|l| *l == jump).count(),
                1,
                "{when}: {table} {jump}\n{save}"
            );
        }
        for what in [
            "--helper amanda",
            "-j DNAT --to-destination 192.0.2.",
            "-j MASQUERADE",
        ] {
            assert!(save.contains(what), "{when}: {what}\n{save}");
        }
        save
    };
    let o = run();
    assert!(o.ok(), "{}{}", o.stdout, o.stderr);
    let hook = std::fs::read_to_string(u.config().join("before.init")).unwrap();
    assert!(hook.contains(amwall::render::UFW_MARKER), "{hook}");
    once("installed");
    let status = ufw(&u, &["status"]);
    ufw(&u, &["reload"]);
    ufw(&u, &["reload"]);
    once("after two reloads");
    let o = run();
    assert!(o.ok(), "again: {}{}", o.stdout, o.stderr);
    once("the script again");
    assert_eq!(ufw(&u, &["status"]), status, "no rule twice");
    ufw(&u, &["disable"]);
    let save = ns.must(&["iptables-save"]).unwrap().stdout;
    assert!(
        !save.contains("AMWALL-"),
        "disable leaves nothing of amwall's: {save}"
    );
    ufw(&u, &["--force", "enable"]);
    once("enabled again");

    // An admin's own hook is not replaced.
    let admin = "#!/bin/sh\n# the admin's\nexit 0\n";
    std::fs::write(u.config().join("before.init"), admin).unwrap();
    let o = run();
    assert!(!o.ok(), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("is not ufw's own nor amwall's"),
        "{}",
        o.stderr
    );
    assert_eq!(
        std::fs::read_to_string(u.config().join("before.init")).unwrap(),
        admin
    );
}

/// ufw's files apply changes, as text and mode.
fn ufw_files(u: &Ufw) -> Vec<(String, String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    amwall::apply::ufw::FILES
        .iter()
        .filter_map(|n| {
            let p = u.config().join(n);
            let mode = std::fs::metadata(&p).ok()?.permissions().mode() & 0o7777;
            Some((n.to_string(), std::fs::read_to_string(&p).unwrap(), mode))
        })
        .collect()
}

/// `apply` on a host ufw manages (found without --backend): the router's
/// openings go into ufw's chains and its NAT into amwall's hook at once,
/// while /etc/ufw keeps the previous files until the admin confirms; a
/// rollback brings back the chains and files exactly, also over an earlier
/// confirmed apply; and what was confirmed is what ufw loads on its own.
#[test]
fn apply_through_ufw_changes_its_files_only_on_confirm() {
    let topo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(common::amanda::FIXTURE);
    let ns = Netns::new("amwuA").expect("creating a netns needs root and iproute2");
    let u = Ufw::enable(&ns).expect("ufw must be installed and enable");
    ufw(&u, &["allow", "22/tcp"]);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let amwall = |args: &[&str]| amwall_under(&u, &state, args);
    let apply = || {
        amwall(&[
            "apply",
            topo.to_str().unwrap(),
            "--host",
            "fwhost",
            "--timeout",
            "120",
            "--no-wait",
        ])
    };
    // A table amwall's hook used stays in the kernel, empty, once its
    // chains are gone: the same to every packet as no table.
    let live = || {
        let save = without_counters(&ns.must(&["iptables-save"]).unwrap().stdout);
        let mut out = Vec::new();
        for block in save.split_inclusive("COMMIT") {
            let empty = block.lines().all(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with('*') || l == "COMMIT" || l.ends_with(" ACCEPT")
            });
            if !empty {
                out.push(block.trim().to_string());
            }
        }
        out.join("\n")
    };
    let opens = |save: &str| {
        save.lines()
            .any(|l| l.starts_with("-A ufw-user-input") && l.contains("--dports 10080"))
            && save.contains("-j MASQUERADE")
    };
    let files0 = ufw_files(&u);
    let live0 = live();
    assert!(!opens(&live0), "negative control:\n{live0}");

    let (rc, said) = apply();
    assert_eq!(rc, 0, "{said}");
    assert!(
        said.contains("ufw manages") && said.contains("so: --backend ufw"),
        "{said}"
    );
    let loaded = live();
    assert!(opens(&loaded), "{loaded}");
    assert_eq!(
        loaded
            .matches("-A POSTROUTING -j AMWALL-POSTROUTING")
            .count(),
        1,
        "{loaded}"
    );
    assert_eq!(ufw_files(&u), files0, "the files wait for the confirmation");
    let (rc, said) = amwall(&["apply", "--rollback"]);
    assert_eq!(rc, 0, "{said}");
    assert_eq!(live(), live0, "the chains as before");
    assert_eq!(ufw_files(&u), files0);

    let (rc, said) = apply();
    assert_eq!(rc, 0, "{said}");
    let loaded = live();
    let (rc, said) = amwall(&["apply", "--confirm"]);
    assert_eq!(rc, 0, "{said}");
    let kept = ufw_files(&u);
    let hook = kept.iter().find(|(n, _, _)| n == "before.init").unwrap();
    assert!(
        hook.1.contains(amwall::render::UFW_MARKER) && hook.2 == 0o755,
        "{hook:?}"
    );
    let rules = &kept.iter().find(|(n, _, _)| n == "user.rules").unwrap().1;
    assert!(rules.contains("10080"), "{rules}");
    assert_eq!(live(), loaded, "confirming changes no chain");
    ufw(&u, &["reload"]);
    assert_eq!(
        live(),
        loaded,
        "what ufw loads from its files is what was applied"
    );

    // Applied again over the confirmed one: nothing twice, and a rollback
    // leaves the confirmed state, hook chains included.
    let (rc, said) = apply();
    assert_eq!(rc, 0, "{said}");
    assert_eq!(live(), loaded, "the same rules, none twice");
    let (rc, said) = amwall(&["apply", "--rollback"]);
    assert_eq!(rc, 0, "{said}");
    assert_eq!(live(), loaded);
    assert_eq!(ufw_files(&u), kept);
}

/// The dual-stack example's upstream build speaks IPv6: with ufw enabled on
/// every host (its own ICMPv6 rules keep neighbour discovery working),
/// `HOST.ufw.sh` opens Amanda's flows over IPv6 too, and real connections
/// pass through ufw's IPv6 chains only from reserved source ports. With
/// IPV6=no in /etc/default/ufw the script refuses and changes nothing.
#[test]
fn ufw_script_opens_amandas_ipv6_flows() {
    use common::dual::{self, connects, RH, TS};
    let plan = Plan::build(common::example("dualstack")).unwrap();
    let n = dual::net("amwu6");
    let dir = tempfile::tempdir().unwrap();
    let mut ufws = Vec::new();
    for (ns, _) in n.hosts() {
        ufws.push(Ufw::enable(ns).expect("ufw must be installed and enable"));
    }
    dual::amanda_closed(&n, "ufw");

    // Negative control: without IPv6 in ufw, the script stops first.
    let defaults = ufws[0].config().parent().unwrap().join("default/ufw");
    let stock = std::fs::read_to_string(&defaults).unwrap();
    std::fs::write(&defaults, stock.replace("IPV6=yes", "IPV6=no")).unwrap();
    let before = ufws[0].exec(&["ip6tables-save"]).unwrap().stdout;
    let o = ufws[0]
        .install(&plan.ufw_outputs(Some("tshost")), dir.path())
        .unwrap();
    assert!(
        !o.ok() && o.stderr.contains("IPV6=yes"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    let after = ufws[0].exec(&["ip6tables-save"]).unwrap().stdout;
    assert_eq!(without_counters(&after), without_counters(&before));
    std::fs::write(&defaults, &stock).unwrap();

    for (u, (_, host)) in ufws.iter().zip(n.hosts()) {
        for _ in 0..2 {
            let o = u
                .install(&plan.ufw_outputs(Some(host)), dir.path())
                .unwrap();
            assert!(o.ok(), "{host}: {}{}", o.stdout, o.stderr);
        }
        let status = ufw(u, &["status"]);
        let v6 = status.lines().filter(|l| l.contains("2001:db8:")).count();
        let want = plan
            .policies
            .iter()
            .find(|p| plan.deployment.hosts[p.host].name == host)
            .unwrap()
            .v6
            .rules
            .iter()
            .map(|r| r.srcs.len())
            .sum::<usize>();
        assert_eq!(
            v6, want,
            "{host}: one ufw rule per opening, none twice:\n{status}"
        );
    }
    dual::amanda_passes_reserved_only(&n, "ufw");
    assert!(!connects(&n.rh, RH, 40002, TS, 22), "ssh from outside");
}

/// `apply --backend ufw` on the dual-stack router: Amanda's forwarded IPv6
/// flow passes through ufw's chains once applied, and the rollback takes
/// it away again, user6.rules back as it was.
#[test]
fn apply_through_ufw_loads_and_rolls_back_ipv6() {
    use common::dual::{self, connects, RH, TS};
    let topo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dualstack.toml");
    let n = dual::net("amwuB");
    let u = Ufw::enable(&n.fw).expect("ufw must be installed and enable");
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let amwall = |args: &[&str]| amwall_under(&u, &state, args);
    let files0 = ufw_files(&u);
    assert!(!connects(&n.ts, TS, 600, RH, 10080), "closed before");
    let (rc, said) = amwall(&[
        "apply",
        topo.to_str().unwrap(),
        "--host",
        "fwhost",
        "--backend",
        "ufw",
        "--timeout",
        "120",
        "--no-wait",
    ]);
    assert_eq!(rc, 0, "{said}");
    assert!(connects(&n.ts, TS, 600, RH, 10080), "applied: {said}");
    assert!(!connects(&n.ts, TS, 40010, RH, 10080), "unreserved port");
    assert!(connects(&n.rh, RH, 700, TS, 10080), "recovery forwarded");
    let (rc, said) = amwall(&["apply", "--rollback"]);
    assert_eq!(rc, 0, "{said}");
    assert!(!connects(&n.ts, TS, 601, RH, 10080), "rolled back");
    assert_eq!(ufw_files(&u), files0);
}
