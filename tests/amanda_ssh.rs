//! ssh auth with real Amanda 3.5.1, end to end, through amwall's rules.
//!
//! The wiki topology with documentation addresses and `auth "ssh"`
//! (tests/fixtures/lab/wiki-ssh.toml). Management is open only from the
//! admins' 203.0.113.0/24, so every tcp/22 Amanda uses must be opened by the
//! plan's Amanda rules, not by the management rule:
//!
//! ```text
//!                     LAN 192.0.2.0/24                       Internet 198.51.100.0/24
//!   tshost .2 (server+client) ──┬── fwhost .1 | 198.51.100.1 ───────── rhost .5
//!   lhost  .3 (client)        ──┘   (masquerades the LAN; forwards tcp/22 from rhost to tshost)
//! ```
//!
//! Each host answers with a real OpenSSH sshd in its namespace
//! (`lab::amanda` with `lab::ssh`): the server's `backup` key is pinned in each
//! client's `authorized_keys` to the address the client sees (rhost: fwhost's
//! public address, after masquerade) and to `amandad -auth=ssh amdump`; each
//! amrecover host's root key is pinned in the server's to `amindexd
//! amidxtaped`. rhost's amrecover dials fwhost's public address, port 22, and
//! the port forward takes it to tshost's sshd, whose host key rhost knows
//! under fwhost's public name.
//!
//! Positive: amcheck, amdump (two DLEs per host) and amrecover on all four
//! hosts, each backend in a fresh lab, every Amanda rule hit and nothing
//! dropped by a policy. Negative controls: lhost's tcp/22 rule removed
//! (amcheck names lhost, and only lhost); fwhost's port forward removed
//! (rhost's amrecover fails, lhost's still works); Debian's own
//! `/usr/sbin/nologin` shell for `backup` (amcheck fails for that host even
//! with the rules right: the fact SUMMARY.md tells admins). And `client-port
//! 2222`: Amanda's ssh dials 2222 everywhere, FWHost forwards 2222, and no
//! Amanda rule opens tcp/22.
//!
//! Needs root, amanda-server, amanda-client, openssh-server, openssh-client,
//! iptables, nftables, ipset: anything missing fails, never skips.

mod common;

use std::time::Instant;

use amwall::lab::amanda::{AmandaLab, Options};
use amwall::netfilter::Backend;
use amwall::Plan;

use common::amanda::{
    amcheck_problems, check_ok, count_policy_drops_nft, dump_ok, every_rule_hit_nothing_dropped,
    fail, lab_without, recover_ok, show,
};

const FIXTURE: &str = "tests/fixtures/lab/wiki-ssh.toml";

fn ssh_plan() -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let d = amwall::load::load_file(&path).unwrap_or_else(|e| panic!("{FIXTURE}: {e:?}"));
    Plan::build(d).expect("the fixture plans cleanly")
}

fn full_run(backend: Backend) {
    let start = Instant::now();
    let label = format!("ssh/{}", backend.name());
    let plan = ssh_plan();
    let lab = AmandaLab::build_with(&plan, &Options { dles_per_host: 2 })
        .unwrap_or_else(|e| panic!("building the Amanda lab: {e}"));
    lab.load_rules(backend)
        .unwrap_or_else(|e| panic!("{label}: loading the generated rules: {e}"));
    if backend == Backend::Nft {
        count_policy_drops_nft(&lab);
    }
    // No xinetd anywhere: sshd is the only way to amandad.
    for host in ["tshost", "fwhost", "lhost", "rhost"] {
        let ns = lab.namespace(host).unwrap();
        let udp = ns.must(&["ss", "-Hlnu"]).unwrap().stdout;
        let tcp = ns.must(&["ss", "-Hlnt"]).unwrap().stdout;
        assert!(
            !udp.contains(":10080 ") && !tcp.contains(":10080 ") && tcp.contains(":22 "),
            "{host}: only sshd should listen\n{udp}{tcp}"
        );
    }
    // rhost trusts fwhost's public address, as SUMMARY.md says: after masquerade
    // that is who the server is to it.
    let rhost_keys = std::fs::read_to_string(
        lab.etc_dir("rhost")
            .unwrap()
            .join("ssh/authorized_keys/backup"),
    )
    .unwrap();
    assert!(
        rhost_keys.starts_with("from=\"198.51.100.1\",")
            && rhost_keys.contains("command=\"/usr/lib/amanda/amandad -auth=ssh amdump\""),
        "{rhost_keys}"
    );

    // ...and every key line the lab wrote is one SUMMARY.md tells the admin to
    // write, `from=` and `command=` included (the key itself aside).
    let summary = amwall::summary::summary(
        &plan,
        None,
        amwall::summary::Files {
            iptables: None,
            nft: true,
            firewalld: false,
            ufw: false,
        },
    );
    for host in ["tshost", "fwhost", "lhost", "rhost"] {
        let keys = std::fs::read_to_string(
            lab.etc_dir(host)
                .unwrap()
                .join("ssh/authorized_keys/backup"),
        )
        .unwrap();
        for line in keys.lines().filter(|l| l.contains("amdump\"")) {
            let options = line.split(" ssh-ed25519 ").next().unwrap();
            assert!(
                summary.contains(&format!("`{options} KEY`")),
                "{host}: SUMMARY.md does not give `{options}`"
            );
        }
    }
    check_ok(&lab, &label);
    dump_ok(&lab, &label);
    for host in ["lhost", "rhost", "fwhost", "tshost"] {
        recover_ok(&lab, &label, host);
    }
    // The conversations really went over ssh, from the addresses the plan says.
    let rhost_log = lab.sshd_log("rhost").unwrap();
    let tshost_log = lab.sshd_log("tshost").unwrap();
    assert!(
        rhost_log.contains("Accepted publickey for backup from 198.51.100.1"),
        "{rhost_log}"
    );
    assert!(
        tshost_log.contains("Accepted publickey for backup from 198.51.100.5"),
        "rhost's amrecover reaches tshost through the port forward with its own address:\n{tshost_log}"
    );
    every_rule_hit_nothing_dropped(&lab, &label, backend);
    eprintln!("{label}: whole run {:.1?}", start.elapsed());
}

#[test]
fn ssh_iptables() {
    full_run(Backend::Iptables);
}

#[test]
fn ssh_nft() {
    full_run(Backend::Nft);
}

/// Each negative control in its own lab: one thing wrong, and Amanda says so
/// for that host only.
#[test]
fn negative_ssh_controls() {
    let plan = ssh_plan();
    let start = Instant::now();

    // 1. lhost's Amanda tcp/22 rule gone (nft): amcheck reports lhost, only lhost.
    let lab = lab_without(&plan, Backend::Nft, "lhost", &["tcp dport 22", "amanda"]);
    let o = lab.amcheck().expect("running amcheck");
    let problems = amcheck_problems(&o, "lhost");
    if o.stdout.contains("0 problems found")
        || problems.is_empty()
        || !o.stdout.contains("1 problem found")
    {
        fail(
            &lab,
            "negative control: amcheck should report exactly lhost failing",
            &show(&o),
        );
    }
    eprintln!("negative ssh/nft, lhost's rule removed: {problems:?}");
    drop(lab);

    // 2. fwhost's port forward gone (iptables): rhost's amrecover cannot reach
    //    tshost, lhost's still can. A recovery needs a dump first.
    let lab = lab_without(
        &plan,
        Backend::Iptables,
        "fwhost",
        &["-j DNAT", "--dport 22"],
    );
    check_ok(&lab, "ssh negative 2");
    dump_ok(&lab, "ssh negative 2");
    recover_ok(&lab, "ssh negative 2", "lhost");
    let r = lab.amrecover("rhost").expect("running amrecover");
    if r.ok() {
        fail(
            &lab,
            "negative control: rhost's amrecover passed without the port forward",
            &show(&r.output),
        );
    }
    eprintln!(
        "negative ssh/iptables, port forward removed: rhost's amrecover failed in {:.1?}: {}",
        r.took,
        r.output
            .stdout
            .lines()
            .chain(r.output.stderr.lines())
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // 3. The rules right, but Debian's nologin shell for backup on lhost: sshd
    //    runs `amandad` through it, so lhost fails and no firewall is to blame.
    let passwd = lab.etc_dir("lhost").unwrap().join("passwd");
    let text = std::fs::read_to_string(&passwd).unwrap();
    let nologin: String = text
        .lines()
        .map(|l| {
            if l.starts_with("backup:") {
                let mut f: Vec<&str> = l.split(':').collect();
                f[6] = "/usr/sbin/nologin";
                f.join(":") + "\n"
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    // Written in place: the sshd already runs with this file mounted over /etc/passwd.
    std::fs::write(&passwd, nologin).unwrap();
    let o = lab.amcheck().expect("running amcheck");
    let problems = amcheck_problems(&o, "lhost");
    if o.stdout.contains("0 problems found") || problems.is_empty() {
        fail(
            &lab,
            "negative control: amcheck should fail for lhost with backup's shell nologin",
            &show(&o),
        );
    }
    eprintln!("negative ssh, backup's shell nologin on lhost: {problems:?}");
    eprintln!("ssh negative controls: {:.1?}", start.elapsed());
}

/// `client-port 2222` with ssh auth: Amanda passes it to ssh as `-p 2222`
/// (A:common-src/ssh-security.c), for the dumpers and for amrecover alike, so
/// every sshd answers on 2222, FWHost forwards 2222 to TSHost, and the
/// callers know the host keys as `[name]:2222`. Nothing Amanda does may need
/// tcp/22 then: the plan opens no tcp/22 for Amanda, and the run passes.
#[test]
fn ssh_on_port_2222_iptables() {
    use amwall::amanda::settings::ClientPort;
    let start = Instant::now();
    let label = "ssh:2222/iptables";
    let mut d = ssh_plan().deployment;
    for s in std::iter::once(&mut d.amanda).chain(
        d.hosts
            .iter_mut()
            .flat_map(|h| [&mut h.amanda, &mut h.client_conf]),
    ) {
        s.client_port = Some(ClientPort::Number(2222));
    }
    let plan = Plan::build(d).expect("plans");
    let lab = AmandaLab::build(&plan).unwrap_or_else(|e| panic!("building the Amanda lab: {e}"));
    for host in ["tshost", "fwhost", "lhost", "rhost"] {
        let rules = lab.ruleset(host, Backend::Iptables).unwrap();
        assert!(
            !rules
                .lines()
                .any(|l| l.contains("--dport 22 ") && l.contains("amanda")),
            "{host}: an Amanda rule for tcp/22\n{rules}"
        );
    }
    assert!(lab
        .ruleset("fwhost", Backend::Iptables)
        .unwrap()
        .contains("--dport 2222 -m comment --comment \"amanda recovery\" -j DNAT"));
    lab.load_rules(Backend::Iptables)
        .unwrap_or_else(|e| panic!("{label}: loading the generated rules: {e}"));
    check_ok(&lab, label);
    dump_ok(&lab, label);
    for host in ["rhost", "lhost", "fwhost", "tshost"] {
        recover_ok(&lab, label, host);
    }
    assert!(
        lab.sshd_log("rhost")
            .unwrap()
            .contains("Accepted publickey for backup from 198.51.100.1"),
        "{}",
        lab.sshd_log("rhost").unwrap()
    );
    every_rule_hit_nothing_dropped(&lab, label, Backend::Iptables);
    eprintln!("{label}: whole run {:.1?}", start.elapsed());
}
