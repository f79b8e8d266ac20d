//! `plan --ansible` rolled out for real: Debian's Ansible in a control
//! namespace, an OpenSSH server in every host's namespace (real Amanda there,
//! `lab::amanda`), real SSH to each host's address. No local or nsenter
//! connection: a ruleset that cuts management is a real lockout.
//!
//! Every path the playbook writes is pointed (extra vars) at a per-host
//! directory under the test's temporary directory, never /etc or /var/lib;
//! sshd runs with a config, host key and authorized_keys of the test's own
//! and a private /run (tmpfs) for its privilege-separation directory.

mod common;

use std::net::Ipv4Addr;

use common::fleet::{assert_run, fixture, fleet, task_results, Fleet};

const AMCHECK: &str = "amwall | amcheck from the Amanda server";

/// The site's NAT as it is before amwall (without it RHost is unreachable
/// from the LAN): a table of the admin's, which the rollout must leave alone.
fn site_nat(f: &Fleet) {
    let o = f
        .lab
        .namespace("fwhost")
        .unwrap()
        .exec(
            &["nft", "-f", "-"],
            Some("table ip site {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"eth1\" masquerade\n }\n}\n"),
        )
        .unwrap();
    assert!(o.ok(), "{}", o.stderr);
}

/// The wiki topology (a NAT router, a host behind it) with nft: check mode
/// changes nothing, the rollout loads and installs every host's rules in
/// order, real amcheck passes through them, and a second run changes nothing.
#[test]
fn wiki_nft_rollout_amcheck_and_idempotence() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    // The control node on the LAN; RHost is reached through FWHost's NAT.
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "nft",
    );
    let hosts: Vec<String> = f
        .plan
        .deployment
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    site_nat(&f);

    let check = f.playbook(&["--check", "--diff"]);
    assert_run(&f, &check, "--check --diff");
    assert!(
        check.out.contains("+table ip amwall {"),
        "check mode shows the rules to come:\n{}",
        check.out
    );
    for h in &hosts {
        assert!(!f.has_table(h), "{h}: --check loaded rules");
        assert!(
            !f.host_dir(h).join("etc/amwall/amwall.nft").exists(),
            "{h}: --check wrote"
        );
    }

    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    // Routers first, then the server, then the rest.
    let pos = |s: &str| {
        first
            .out
            .find(s)
            .unwrap_or_else(|| panic!("no {s:?} in\n{}", first.out))
    };
    assert!(pos("PLAY [amwall | routers") < pos("PLAY [amwall | the Amanda server"));
    assert!(pos("PLAY [amwall | the Amanda server") < pos("PLAY [amwall | clients"));
    // FWHost was confirmed through to RHost over a new connection.
    let through = task_results(
        &first.out,
        "amwall | a new SSH connection gets through to the hosts behind",
    );
    assert!(
        through
            .iter()
            .any(|l| l.starts_with("ok: [fwhost -> rhost")),
        "{through:?}"
    );
    for h in &hosts {
        assert!(f.has_table(h), "{h}: no table ip amwall after the rollout");
        assert!(
            first.recap[h].0 > 0,
            "{h} changed nothing: {:?}",
            first.recap
        );
        let installed =
            std::fs::read_to_string(f.host_dir(h).join("etc/amwall/amwall.nft")).unwrap();
        let planned = std::fs::read_to_string(f.project.join(format!("{h}.nft"))).unwrap();
        assert_eq!(installed, planned, "{h}: installed file");
        let conf = std::fs::read_to_string(f.host_dir(h).join("etc/nftables.conf")).unwrap();
        assert!(
            conf.contains("include \"") && !conf.contains("flush ruleset"),
            "{h}: {conf}"
        );
        // The rollback was cancelled, not fired.
        assert!(
            !f.host_dir(h).join("var/lib/amwall/rolled-back").exists(),
            "{h}"
        );
        assert!(
            !f.host_dir(h).join("var/lib/amwall/rollback.pid").exists(),
            "{h}"
        );
    }
    let site = f
        .lab
        .namespace("fwhost")
        .unwrap()
        .exec(&["nft", "list", "table", "ip", "site"], None)
        .unwrap();
    assert!(
        site.ok() && site.stdout.contains("masquerade"),
        "the admin's table was touched: {}",
        site.stderr
    );
    // amcheck ran after each batch: the router, the server, the two others.
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 3 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}\n{}",
        first.out
    );
    // Real Amanda through the rolled-out rules, every client.
    common::amanda::check_ok(&f.lab, "after the rollout");

    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for h in &hosts {
        assert_eq!(
            second.recap[h].0, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
    // Nothing loaded, so no batch needs amcheck.
    let checks = task_results(&second.out, AMCHECK);
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.starts_with("skipping:")),
        "{checks:?}"
    );
}

/// The 5-client LAN with iptables (ipsets, iptables_state's rollback), in
/// batches of two; amcheck after each; a second run changes nothing.
#[test]
fn lan_iptables_rollout_in_batches() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = lan("iptables");
    let hosts: Vec<String> = f
        .plan
        .deployment
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    // backup alone (the server), then 5 clients in batches of 2: 3 amchecks of batches.
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 4 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}\n{}",
        first.out
    );
    for h in &hosts {
        let ns = f.lab.namespace(h).unwrap();
        let live = ns.must(&["iptables-save"]).unwrap().stdout;
        assert!(
            live.contains("--dport 22"),
            "{h}: rules not loaded:\n{live}"
        );
        assert!(f.host_dir(h).join("etc/iptables/rules.v4").exists(), "{h}");
        assert!(f.host_dir(h).join("etc/iptables/rules.v6").exists(), "{h}");
    }
    assert!(f.host_dir("backup").join("etc/iptables/ipsets").exists());
    common::amanda::check_ok(&f.lab, "after the rollout");
    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for h in &hosts {
        assert_eq!(
            second.recap[h].0, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
    // Nothing loaded, so no batch needs amcheck.
    let checks = task_results(&second.out, AMCHECK);
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.starts_with("skipping:")),
        "{checks:?}"
    );
}

/// A plan whose management network leaves out the control node: the first
/// batch (the server) loses SSH, its rollback restores it, the play fails
/// saying so, and no client is touched. nft: amwall's timed revert.
#[test]
fn lockout_nft_rolls_back_the_first_batch_and_stops() {
    lockout("nft");
}

/// The same with iptables: community.general.iptables_state's rollback.
#[test]
fn lockout_iptables_rolls_back_the_first_batch_and_stops() {
    lockout("iptables");
}

fn lockout(backend: &str) {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = lan_lockout(backend);
    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    let closed = |h: &str| {
        let ns = f.lab.namespace(h).unwrap();
        f.has_table(h)
            || ns
                .must(&["iptables-save"])
                .unwrap()
                .stdout
                .contains(":INPUT DROP")
    };
    if backend == "nft" {
        assert!(
            r.out
                .contains("could not be reached over a new SSH connection")
                && r.out.contains("restored its previous ruleset")
                && r.out.contains("No later batch was touched"),
            "no clear message:\n{}",
            r.out
        );
        assert!(
            f.host_dir("backup")
                .join("var/lib/amwall/rolled-back")
                .exists(),
            "{}",
            r.out
        );
    } else {
        assert!(
            rolled_back_iptables(&r.out) && r.out.contains("No later batch was touched"),
            "no clear message:\n{}",
            r.out
        );
        // The set the play created (before the rules that name it) is gone.
        assert_eq!(ipset_save(&f, "backup"), "", "{}", r.out);
    }
    assert!(
        !closed("backup"),
        "backup's rules were not rolled back:\n{}",
        r.out
    );
    for h in ["web1", "web2", "db", "files", "print"] {
        assert!(!closed(h), "{h} was touched");
        assert!(
            !f.host_dir(h).join("var/lib/amwall").exists(),
            "{h} was touched"
        );
    }
    for boot in ["etc/amwall/amwall.nft", "etc/iptables/rules.v4"] {
        assert!(
            !f.host_dir("backup").join(boot).exists(),
            "{boot} installed after a rollback"
        );
    }
    eprintln!(
        "lockout ({backend}): failed as it should in {:.1?}\n{}",
        r.took,
        r.out
            .lines()
            .filter(|l| l.contains("fatal"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A router whose new rules still let the admins in but no longer forward
/// them to the host behind it (the project's file edited: the forward rule
/// for management removed) is rolled back before that host is touched.
#[test]
fn router_cutting_the_way_behind_it_nft() {
    router_cut(
        "nft",
        "fwhost.nft",
        "ip daddr 198.51.100.5 tcp dport 22 accept",
    );
}

#[test]
fn router_cutting_the_way_behind_it_iptables() {
    router_cut(
        "iptables",
        "fwhost.rules",
        "-d 198.51.100.5/32 -i eth0 -o eth1 -p tcp -m tcp --dport 22",
    );
}

fn router_cut(backend: &str, file: &str, line: &str) {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        backend,
    );
    site_nat(&f);
    let path = f.project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(line)).count(),
        1,
        "{text}"
    );
    let cut: String = text
        .lines()
        .filter(|l| !l.contains(line))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, cut).unwrap();
    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    assert!(
        r.out.contains(
            "the hosts behind fwhost (rhost) could not be reached over a new SSH connection"
        ) && r.out.contains("No later batch was touched"),
        "no clear message:\n{}",
        r.out
    );
    let fw = f.lab.namespace("fwhost").unwrap();
    assert!(
        !f.has_table("fwhost"),
        "fwhost's nft rules were not rolled back"
    );
    assert!(
        !fw.must(&["iptables-save"])
            .unwrap()
            .stdout
            .contains(":FORWARD DROP"),
        "fwhost's iptables rules were not rolled back"
    );
    for h in ["tshost", "lhost", "rhost"] {
        assert!(
            !f.host_dir(h).join("var/lib/amwall").exists(),
            "{h} was touched"
        );
    }
    eprintln!(
        "router cut ({backend}): failed as it should in {:.1?}",
        r.took
    );
}

/// The wiki topology with iptables: the router through iptables_state and
/// confirmed through to RHost, amcheck after each batch, then `changed=0`.
#[test]
fn wiki_iptables_rollout_and_idempotence() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = fleet(
        "wiki-doc.toml",
        &fixture("wiki-doc.toml"),
        "lan",
        Some(Ipv4Addr::new(192, 0, 2, 1)),
        "iptables",
    );
    site_nat(&f);
    let first = f.playbook(&[]);
    assert_run(&f, &first, "rollout");
    let through = task_results(
        &first.out,
        "amwall | a new SSH connection gets through to the hosts behind",
    );
    assert!(
        through
            .iter()
            .any(|l| l.starts_with("ok: [fwhost -> rhost")),
        "{through:?}"
    );
    let checks = task_results(&first.out, AMCHECK);
    assert!(
        checks.len() == 3 && checks.iter().all(|l| l.starts_with("ok: [")),
        "{checks:?}"
    );
    for h in ["tshost", "fwhost", "lhost", "rhost"] {
        let live = stdout_in(&f, h, &["iptables-save"]);
        assert!(
            live.contains(":INPUT DROP"),
            "{h}: rules not loaded:\n{live}"
        );
    }
    common::amanda::check_ok(&f.lab, "after the rollout");
    let second = f.playbook(&[]);
    assert_run(&f, &second, "second run");
    for (h, (changed, _, _)) in &second.recap {
        assert_eq!(
            *changed, 0,
            "{h}: a second run changed something:\n{}",
            second.out
        );
    }
}

/// What `argv` prints in `host`'s namespace (it must succeed).
fn stdout_in(f: &Fleet, host: &str, argv: &[&str]) -> String {
    f.lab.namespace(host).unwrap().must(argv).unwrap().stdout
}

fn ipset_save(f: &Fleet, host: &str) -> String {
    stdout_in(f, host, &["ipset", "save"])
}

/// iptables-save without its comments and counters, and without tables that
/// hold no rule and accept everything: the rollback can only restore a table
/// the host did not have as such an empty one (iptables-restore has no
/// "delete table"), which filters nothing.
fn iptables_rules(f: &Fleet, host: &str) -> String {
    let save = stdout_in(f, host, &["iptables-save"]);
    let mut out = String::new();
    let mut table = String::new();
    for l in save.lines().filter(|l| !l.starts_with('#')) {
        let l = match l.split_once(" [") {
            Some((chain, _)) if l.starts_with(':') => chain,
            _ => l,
        };
        table.push_str(l);
        table.push('\n');
        if l == "COMMIT" {
            let empty = table.lines().all(|l| {
                l.starts_with('*')
                    || l == "COMMIT"
                    || (l.starts_with(':') && l.ends_with(" ACCEPT"))
            });
            if !empty {
                out.push_str(&table);
            }
            table.clear();
        }
    }
    out + &table
}

/// The ipsets load before the iptables_state-protected rules (the rules name
/// them), so iptables_state's rollback alone would leave the new contents.
/// The server already has amwall's set with other members (an earlier
/// rollout's, named by a rule of that time) and a set of the admin's; a plan
/// that cuts management changes the set, is locked out, and afterwards `ipset
/// save` and the rules are exactly as before the play.
#[test]
fn lockout_iptables_restores_the_ipsets() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = lan_lockout("iptables");
    let set = "amw_in_amrecover_hosts";
    let earlier = format!(
        "set -e
        ipset create {set} hash:ip family inet hashsize 1024 maxelem 65536
        ipset add {set} 192.0.2.99
        ipset add {set} 192.0.2.21
        ipset create site_block hash:net family inet
        ipset add site_block 203.0.113.128/25
        iptables -A INPUT -p tcp --dport 10080 -m set --match-set {set} src -j ACCEPT"
    );
    let ns = f.lab.namespace("backup").unwrap();
    ns.must(&["sh", "-c", &earlier]).unwrap();
    let sets = ipset_save(&f, "backup");
    let rules = iptables_rules(&f, "backup");
    // Negative control: the plan's set differs from what is there, so a
    // rollback that left the sets alone would fail the comparison below.
    let planned = std::fs::read_to_string(f.project.join("backup.ipset")).unwrap();
    assert!(
        planned.contains(&format!("add {set}~ 192.0.2.22")) && !sets.contains("192.0.2.22"),
        "{planned}\n{sets}"
    );

    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    // The new contents were loaded (swapped in) before the lockout.
    let load = task_results(
        &r.out,
        "amwall | iptables | load the ipsets (before the rules that name them)",
    );
    assert!(
        load.iter().any(|l| l.starts_with("changed: [backup]")),
        "{load:?}\n{}",
        r.out
    );
    assert!(
        rolled_back_iptables(&r.out) && r.out.contains("No later batch was touched"),
        "no clear message:\n{}",
        r.out
    );
    assert_eq!(ipset_save(&f, "backup"), sets, "{}", r.out);
    assert_eq!(iptables_rules(&f, "backup"), rules, "{}", r.out);
    assert!(f
        .host_dir("backup")
        .join("var/lib/amwall/rolled-back")
        .exists());
    clients_untouched(&f);
}

/// The rules and ipsets were put back, whichever way the lockout showed:
/// iptables_state's own rollback ("Firewall has been rolled back to its
/// initial state"), its async wrapper killing it first ("Timeout exceeded",
/// the new rules still loaded), or its confirmation travelling over a
/// connection opened before the rules were in (then amwall's own timer).
/// The play says so only after its restore or the timer succeeded.
fn rolled_back_iptables(out: &str) -> bool {
    out.contains("ipsets are as they were before this run")
}

/// A set of amwall's name already there with other sizes: ipset refuses the
/// file's `create ... -exist` ("set with the same name already exists"), the
/// play stops at that load with ipset's own words, restores at once and
/// touches no other host; `ipset save` is as before.
#[test]
fn ipset_load_refused_restores_and_stops() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let f = lan("iptables");
    stdout_in(
        &f,
        "backup",
        &[
            "sh",
            "-c",
            "ipset create amw_in_amrecover_hosts hash:ip family inet hashsize 64 maxelem 100 \
             && ipset add amw_in_amrecover_hosts 192.0.2.99",
        ],
    );
    let sets = ipset_save(&f, "backup");
    let rules = iptables_rules(&f, "backup");
    let r = f.playbook(&[]);
    assert!(!r.ok, "the rollout must fail:\n{}", r.out);
    assert!(
        r.out.contains("load the ipsets")
            && r.out.contains("set with the same name already exists")
            && r.out
                .contains("ipsets are as they were before this run (restored at once)")
            && r.out.contains("No later batch was touched"),
        "no clear message:\n{}",
        r.out
    );
    assert_eq!(ipset_save(&f, "backup"), sets, "{}", r.out);
    assert_eq!(iptables_rules(&f, "backup"), rules, "{}", r.out);
    clients_untouched(&f);
}

/// The 5-client LAN, the control node among the admins on it.
fn lan(backend: &str) -> Fleet {
    fleet(
        "lan-doc.toml",
        &fixture("lan-doc.toml"),
        "lan",
        None,
        backend,
    )
}

/// The 5-client LAN whose management network leaves the control node out.
fn lan_lockout(backend: &str) -> Fleet {
    let text = fixture("lan-doc.toml")
        .replace("from = [\"192.0.2.240/28\"]", "from = [\"203.0.113.0/28\"]");
    fleet("lan-lockout.toml", &text, "lan", None, backend)
}

/// No client of the LAN was reached: the server's batch stopped the play.
fn clients_untouched(f: &Fleet) {
    for h in ["web1", "web2", "db", "files", "print"] {
        assert!(
            !f.host_dir(h).join("var/lib/amwall").exists(),
            "{h} was touched"
        );
    }
}
