//! The 50-host rollout benchmark (issue 14), run by bench/rollout.sh; ignored
//! so that `cargo test` (and CI) never runs it. Not a timed test: it asserts
//! only that every rollout succeeds, and prints wall times.
//!
//! One server and 49 clients on one LAN, no router: routers go one at a time
//! (`serial: 1`) whatever the batch size, so a router would add the same
//! constant to every figure and hide the effect of the batch size measured here.
//!
//! The rollback timeout is 120 s (AMWALL_BENCH_ROLLBACK), not the tests' 15:
//! a host's rollback is armed when its batch loads and cancelled when the
//! whole batch has been confirmed, and Ansible runs each task across the
//! batch before the next, so that window grows with the batch size (25 hosts
//! took more than 15 s on two busy cores; the play then rolled them back and
//! stopped, as it should).
//!
//! The baseline, measured in the same run and on the same fleet, is `ansible
//! all -m ping` with the same forks from cold SSH connections: it is the
//! floor any Ansible rollout pays (one SSH login and one Python module per
//! host), so the ratio says what amwall's tasks and the per-batch amcheck
//! cost on top of reaching the hosts at all.

mod common;

use std::fmt::Write as _;
use std::time::Duration;

use common::fleet::{fleet, kill_all_in, Fleet};

const CLIENTS: u32 = 49;

fn topology() -> String {
    let mut t = String::from(
        "[amanda]\nauth = \"bsdtcp\"\n\n[management]\nfrom = [\"192.0.2.240/28\"]\n\n\
         [[network]]\nname = \"lan\"\ncidr = \"192.0.2.0/24\"\n\n\
         [[host]]\nname = \"backup\"\nroles = [\"server\", \"client\"]\n\
         interfaces = [{ name = \"eth0\", network = \"lan\", address = \"192.0.2.10\" }]\n",
    );
    for i in 1..=CLIENTS {
        write!(
            t,
            "\n[[host]]\nname = \"c{i:02}\"\nroles = [\"client\", \"recover\"]\n\
             interfaces = [{{ name = \"eth0\", network = \"lan\", address = \"192.0.2.{}\" }}]\n",
            10 + i
        )
        .unwrap();
    }
    t
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every host back to no rules and no amwall files, and no SSH connection
/// left open, so that each measured run starts from the same cold state.
fn reset(f: &Fleet) {
    kill_all_in(f.control.name());
    for h in &f.plan.deployment.hosts {
        let ns = f.lab.namespace(&h.name).unwrap();
        let script = "nft delete table ip amwall 2>/dev/null; nft delete table ip6 amwall 2>/dev/null; \
            for t in iptables ip6tables; do for c in INPUT FORWARD OUTPUT; do $t -P $c ACCEPT; done; $t -F; $t -X; done; \
            ipset destroy 2>/dev/null; true";
        ns.must(&["sh", "-c", script]).unwrap();
        for d in ["etc", "var", "async", "tmp"] {
            let _ = std::fs::remove_dir_all(f.host_dir(&h.name).join(d));
        }
    }
}

/// The machine's 1-minute load average: the figures depend on what else runs.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
#[ignore = "a benchmark: bench/rollout.sh runs it"]
fn rollout_50_hosts() {
    amwall::lab::amanda::preflight().expect("root, Amanda and the lab's tools");
    let batches = list("AMWALL_BENCH_BATCHES", "10,50");
    let backends = list("AMWALL_BENCH_BACKENDS", "nft");
    let forks = (CLIENTS + 1).to_string();
    let timeout: u32 = std::env::var("AMWALL_BENCH_ROLLBACK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let text = topology();
    let t = std::time::Instant::now();
    let mut f = fleet("rollout-50.toml", &text, "lan", None, &backends[0]);
    eprintln!(
        "lab of {} hosts (namespaces, Amanda, sshd) built in {:.1} s",
        f.plan.deployment.hosts.len(),
        secs(t.elapsed())
    );

    reset(&f);
    let ping = f.ansible("ansible", &["all", "-m", "ping", "--forks", &forks]);
    assert!(ping.ok, "the baseline failed:\n{}", ping.out);
    let base = secs(ping.took);
    let mut rows = vec![format!(
        "baseline  ansible all -m ping --forks {forks}: {base:.1} s (load average {})",
        load()
    )];
    eprintln!("{}", rows[0]);

    for backend in &backends {
        let project = f.dir.path().join(format!("project-{backend}"));
        common::fleet::must(
            std::process::Command::new(env!("CARGO_BIN_EXE_amwall"))
                .args(["plan", "-q", "--backend", backend, "--ansible"])
                .arg(&project)
                .arg(f.dir.path().join("rollout-50.toml")),
        );
        f.project = project;
        for n in &batches {
            reset(&f);
            let batch = format!("amwall_batch={n}");
            let rollback = format!("amwall_rollback_timeout={timeout}");
            let r = f.playbook(&["-e", &batch, "-e", &rollback, "--forks", &forks]);
            if !r.ok {
                common::amanda::fail(&f.lab, &format!("{backend} serial {n}: failed"), &r.out);
            }
            let changed = r.recap.values().filter(|(c, _, _)| *c > 0).count();
            assert_eq!(changed, f.plan.deployment.hosts.len(), "{:?}", r.recap);
            let amchecks = r
                .out
                .matches("TASK [amwall | amcheck from the Amanda server]")
                .count();
            let row = format!(
                "{backend:<9} serial {n:>2}: {:>6.1} s  = {:>5.1} x baseline  ({amchecks} batches with amcheck; load average {})",
                secs(r.took),
                secs(r.took) / base,
                load()
            );
            eprintln!("{row}");
            rows.push(row);
        }
    }
    eprintln!(
        "\n==== rollout to {} hosts ====\n{}",
        CLIENTS + 1,
        rows.join("\n")
    );
}
