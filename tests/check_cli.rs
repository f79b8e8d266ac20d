//! `amwall check` and `amwall explain` end to end: exit codes (0 fine, 1 a
//! flow blocked, 2 bad input), the text an admin reads, JSON for pipelines.

mod common;

use common::amwall;
use std::path::{Path, PathBuf};

/// The wiki example's rules, written by `amwall plan`.
fn planned(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    let (code, _, err) = amwall(&[
        "plan",
        "examples/wiki.toml",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(code, 0, "{err}");
    out
}

fn rules_args(out: &Path, lhost: &str) -> Vec<String> {
    let mut v = Vec::new();
    for (h, f) in [
        ("tshost", out.join("tshost.rules")),
        ("fwhost", out.join("fwhost.nft")),
        ("lhost", PathBuf::from(lhost)),
        ("rhost", out.join("rhost.rules")),
    ] {
        v.push("--rules".to_string());
        v.push(format!("{h}={}", f.display()));
    }
    v
}

#[test]
fn planned_rules_pass_and_a_dropped_rule_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let out = planned(dir.path());
    let lhost = out.join("lhost.rules");
    let mut args = vec!["check".to_string(), "examples/wiki.toml".into()];
    args.extend(rules_args(&out, lhost.to_str().unwrap()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = amwall(&a);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("Verdict: PASS: 24 of 24 flows pass."),
        "{stdout}"
    );

    // lhost without its udp 10080 rule: exit 1, BLOCKED at the policy line.
    let text = std::fs::read_to_string(&lhost).unwrap();
    let broken = dir.path().join("lhost-broken.rules");
    std::fs::write(
        &broken,
        text.lines()
            .filter(|l| !l.contains("--dport 10080"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let policy = text
        .lines()
        .position(|l| l.starts_with(":INPUT DROP"))
        .unwrap()
        + 1;
    let mut args = vec!["check".to_string(), "examples/wiki.toml".into()];
    args.extend(rules_args(&out, broken.to_str().unwrap()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, _) = amwall(&a);
    assert_eq!(code, 1, "{stdout}");
    let at = format!("BLOCKED on lhost at {}:{policy}", broken.display());
    assert!(stdout.contains(&at), "{at}\n{stdout}");
    assert!(
        stdout.contains("Amanda: amcheck: \"selfcheck request failed: timeout waiting for ACK\"")
    );

    // The same as JSON.
    args.push("--format".into());
    args.push("json".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, _) = amwall(&a);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let blocked = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"]["status"] == "blocked")
        .count();
    assert!(blocked >= 3, "{blocked}");
}

#[test]
fn bad_input_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rules");
    std::fs::write(
        &bad,
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport\nCOMMIT\n",
    )
    .unwrap();
    let (code, _, stderr) = amwall(&["check", "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.rules:3:"), "{stderr}");
    // A topology needs HOST=FILE.
    let (code, _, stderr) = amwall(&[
        "check",
        "examples/wiki.toml",
        "--rules",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expected HOST=FILE"), "{stderr}");
    let (code, _, stderr) = amwall(&[
        "explain",
        "--rules",
        "missing.rules",
        "tcp 192.0.2.1:1 -> 192.0.2.2:2",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.rules"), "{stderr}");
}

#[test]
fn explain_traces_the_issue_example() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rules.v4");
    std::fs::write(
        &f,
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:AMANDA - [0:0]\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -i eth0 -p tcp -m tcp --dport 10080 -j AMANDA\n\
         -A AMANDA -s 192.0.2.2/32 -p tcp -m tcp --sport 512:1023 -j ACCEPT\n\
         -A AMANDA -j LOG --log-prefix \"amanda: \"\nCOMMIT\n",
    )
    .unwrap();
    let (code, stdout, stderr) = amwall(&[
        "explain",
        "--rules",
        f.to_str().unwrap(),
        "tcp 192.0.2.2:516 -> 192.0.2.3:10080 [in eth0]",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ip filter INPUT (priority 0, policy drop)"),
        "{stdout}"
    );
    assert!(stdout.contains("jump ip filter AMANDA"), "{stdout}");
    assert!(
        stdout.contains(":8") && stdout.contains("MATCH"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("Verdict: ACCEPT"), "{stdout}");
    // From a non-privileged port the AMANDA chain returns and the policy drops.
    let (_, stdout, _) = amwall(&[
        "explain",
        "--rules",
        f.to_str().unwrap(),
        "tcp",
        "192.0.2.2:40000",
        "->",
        "192.0.2.3:10080",
        "in",
        "eth0",
    ]);
    assert!(
        stdout.contains("end of AMANDA: back to the caller"),
        "{stdout}"
    );
    assert!(stdout.contains("→ DROP at"), "{stdout}");
    assert!(stdout.contains(":INPUT DROP (policy)"), "{stdout}");
    // A range of source ports splits into parts.
    let (_, stdout, _) = amwall(&[
        "explain",
        "--rules",
        f.to_str().unwrap(),
        "--format",
        "json",
        "tcp 192.0.2.2:1000-1100 -> 192.0.2.3:10080 in eth0",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["verdict"], "mixed");
    assert_eq!(v["parts"].as_array().unwrap().len(), 2);
    // A bad packet is a usage error that points at the syntax.
    let (code, _, stderr) = amwall(&[
        "explain",
        "--rules",
        f.to_str().unwrap(),
        "tcp 192.0.2.2 -> nowhere",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("see amwall explain --help"), "{stderr}");
    let (code, _, stderr) = amwall(&[
        "explain",
        "--rules",
        f.to_str().unwrap(),
        "tcp 192.0.2.2:1 -> 192.0.2.3:2",
        "--format",
        "json",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("give options before PACKET"), "{stderr}");
    let (code, stdout, _) = amwall(&["explain", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("PROTO SRC[:SPORT] -> DST[:DPORT]") && stdout.contains("state S"));
}

/// `check` takes its flows from the admin's Amanda files as `plan` does
/// (flat network from --hosts and --server): the rules planned from them
/// pass, and a client whose rules are another host's is BLOCKED with
/// amcheck's message.
#[test]
fn check_from_amanda_config_without_topology() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "192.0.2.2 tshost\n192.0.2.1 fwhost\n192.0.2.3 lhost\n192.0.2.5 rhost\n",
    )
    .unwrap();
    let src = [
        "--amanda-config",
        "tests/fixtures/amanda/wiki",
        "--hosts",
        hosts.to_str().unwrap(),
        "--server",
        "tshost",
    ];
    let out = dir.path().join("out");
    let mut args = vec!["plan", "-q", "--out", out.to_str().unwrap()];
    args.extend(src);
    let (code, _, err) = amwall(&args);
    assert_eq!(code, 0, "{err}");
    let rules = |lhost: &str| -> Vec<String> {
        let mut v: Vec<String> = vec!["check".into()];
        v.extend(src.iter().map(|s| s.to_string()));
        for h in ["tshost", "fwhost", "lhost", "rhost"] {
            let f = if h == "lhost" { lhost } else { h };
            v.push("--rules".into());
            v.push(format!("{h}={}", out.join(format!("{f}.rules")).display()));
        }
        v
    };
    let a = rules("lhost");
    let (code, stdout, stderr) = amwall(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("flows pass."), "{stdout}");
    assert!(!stdout.contains("BLOCKED"), "{stdout}");
    // lhost loaded with the server's rules: they accept what the server
    // receives, not the server's requests to amandad on lhost.
    let a = rules("tshost");
    let (code, stdout, stderr) = amwall(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("BLOCKED on lhost"), "{stdout}");
    assert!(
        stdout.contains("selfcheck request failed: timeout waiting for ACK"),
        "{stdout}"
    );
}

/// A dump pasted from a terminal: the prompt that ran iptables-save before
/// the first table, the next prompt after the last COMMIT. Both are skipped
/// with a warning naming FILE:LINE, and the rules are read as iptables-save
/// (today the file was taken for nft and refused at the prompt).
#[test]
fn pasted_dump_with_prompts_is_read_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pasted.txt");
    std::fs::write(
        &f,
        "root@backup:~# iptables-save\n# Generated by iptables-save v1.8.9\n*filter\n\
         :INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 10080 -j ACCEPT\nCOMMIT\n\
         # Completed\nroot@backup:~# \n",
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let (code, stdout, stderr) = amwall(&["check", "--rules", path]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("(iptables-save), 1 rules"), "{stdout}");
    assert!(
        stdout.contains(&format!("{path}:1: skipped `root@backup:~# iptables-save`")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{path}:8: skipped `root@backup:~#`")),
        "{stdout}"
    );
    let (code, stdout, stderr) = amwall(&[
        "explain",
        "--rules",
        path,
        "tcp 192.0.2.2:600 -> 192.0.2.3:10080",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {path}:1: skipped")),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("{path}:5")), "{stdout}");
    assert!(stdout.trim_end().ends_with("Verdict: ACCEPT"), "{stdout}");
    // The same for `nft list ruleset` pasted with its prompt.
    std::fs::write(
        &f,
        "root@backup:~# nft list ruleset\ntable inet filter {\n\tchain input {\n\
         \t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 10080 accept\n\t}\n}\nroot@backup:~#\n",
    )
    .unwrap();
    let (code, stdout, stderr) = amwall(&["check", "--rules", path]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("(nft list ruleset), 1 rules"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{path}:1: skipped `root@backup:~# nft list ruleset`"
        )),
        "{stdout}"
    );
}

/// A file that is neither format: exit 2, and the error says what each
/// format looks like instead of nft's "expected `table`...".
#[test]
fn neither_format_says_what_each_expects() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.txt");
    std::fs::write(&f, "our firewall allows ssh\nand amanda\n").unwrap();
    let (code, _, stderr) = amwall(&["check", "--rules", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr
            .contains("neither an iptables-save dump (`*filter` ... `COMMIT`) nor an nft ruleset"),
        "{stderr}"
    );
    assert!(stderr.contains("notes.txt:1:1"), "{stderr}");
    // A rule line outside any table is still an error, not skipped.
    std::fs::write(&f, "-A INPUT -j ACCEPT\n*filter\nCOMMIT\n").unwrap();
    let (code, _, stderr) = amwall(&["check", "--rules", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must be inside a table"), "{stderr}");
}

/// An nft setup split over files with variables, as admins write it: the
/// main file includes its defines by name from the include path
/// (`--nft-include`, nft's `-I`) and its rules through a wildcard. `check`
/// and `explain` read it whole, and point at FILE:LINE of the file each rule
/// is written in. Today's reader stopped at the first `include`.
#[test]
fn nft_defines_and_includes_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("rules.d")).unwrap();
    std::fs::write(
        d.join("defines.nft"),
        "define clients = { 192.0.2.2, 192.0.2.5 }\ndefine amanda = 10080\n",
    )
    .unwrap();
    std::fs::write(
        d.join("rules.d/10-amanda.nft"),
        "# Amanda\nip saddr $clients tcp dport $amanda accept\n",
    )
    .unwrap();
    let main = d.join("nftables.conf");
    std::fs::write(
        &main,
        format!(
            "#!/usr/sbin/nft -f\nflush ruleset\ninclude \"defines.nft\"\ntable inet filter {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy drop;\n\t\tinclude \"{}/rules.d/*.nft\"\n\t}}\n}}\n",
            d.display()
        ),
    )
    .unwrap();
    let (m, inc) = (main.to_str().unwrap(), d.to_str().unwrap());
    let (code, stdout, stderr) = amwall(&["check", "--nft-include", inc, "--rules", m]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("1 rules, 0 not understood"), "{stdout}");
    let rules_file = d.join("rules.d/10-amanda.nft");
    assert!(
        stdout.contains(&format!("{}:2 ip saddr $clients", rules_file.display())),
        "{stdout}"
    );
    let packet = "tcp 192.0.2.5:40000 -> 192.0.2.3:10080";
    let (code, stdout, stderr) = amwall(&["explain", "--nft-include", inc, "--rules", m, packet]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim_end().ends_with("Verdict: ACCEPT"), "{stdout}");
    // Without the include path nft itself would not find defines.nft.
    let (code, _, stderr) = amwall(&["check", "--rules", m]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not found in the include path (/etc)"),
        "{stderr}"
    );
    // An undefined variable is an error at its line:col in its own file.
    std::fs::write(&rules_file, "tcp dport $nope accept\n").unwrap();
    let (code, _, stderr) = amwall(&["check", "--nft-include", inc, "--rules", m]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:1:12: unknown identifier 'nope'",
            rules_file.display()
        )),
        "{stderr}"
    );
}

/// Valid commands that used to stop the parse (`add chain`, `add element`,
/// iptables-restore's `-D`/`-X`/`-Z`) now shape the ruleset; what amwall does
/// not model (`replace rule`) is skipped with a note at its FILE:LINE.
#[test]
fn valid_commands_no_longer_stop_the_parse() {
    let dir = tempfile::tempdir().unwrap();
    let nft = dir.path().join("script.nft");
    std::fs::write(
        &nft,
        "add table ip t\nadd chain ip t in { type filter hook input priority 0; policy drop; }\n\
         add set ip t ok { type ipv4_addr; }\nadd element ip t ok { 192.0.2.2 }\n\
         add rule ip t in ip saddr @ok tcp dport 10080 accept\nreplace rule ip t in handle 9 drop\n",
    )
    .unwrap();
    let n = nft.to_str().unwrap();
    let (code, stdout, stderr) = amwall(&["check", "--rules", n]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(
        stdout.contains(&format!("note: {n}:6: `replace rule")),
        "{stdout}"
    );
    let (code, stdout, _) = amwall(&[
        "explain",
        "--rules",
        n,
        "tcp 192.0.2.2:40000 -> 192.0.2.3:10080",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("{n}:5")), "{stdout}");
    assert!(stdout.trim_end().ends_with("Verdict: ACCEPT"), "{stdout}");
    let ipt = dir.path().join("rules.v4");
    std::fs::write(
        &ipt,
        "*filter\n:INPUT DROP [0:0]\n:OLD - [0:0]\n-A INPUT -p tcp -m tcp --dport 10080 -j ACCEPT\n\
         -Z\n-X OLD\n-D INPUT -p tcp -m tcp --dport 10080 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let (code, stdout, stderr) = amwall(&[
        "explain",
        "--rules",
        ipt.to_str().unwrap(),
        "tcp 192.0.2.2:40000 -> 192.0.2.3:10080",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.trim_end().ends_with("Verdict: DROP"), "{stdout}");
}

/// On a combined ruleset, a blocked flow says whose rule blocks it: here a
/// fail2ban-style ban chain in front of amwall's own chain.
#[test]
fn a_blocking_rule_names_its_manager() {
    let dir = tempfile::tempdir().unwrap();
    let out = planned(dir.path());
    let lhost = dir.path().join("lhost.rules");
    std::fs::write(
        &lhost,
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-amanda - [0:0]\n\
         -A INPUT -p udp -m udp --dport 10080 -j f2b-amanda\n\
         -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A f2b-amanda -s 192.168.2.2/32 -j DROP\n-A f2b-amanda -j RETURN\nCOMMIT\n",
    )
    .unwrap();
    let mut args = vec!["check".to_string(), "examples/wiki.toml".into()];
    args.extend(rules_args(&out, lhost.to_str().unwrap()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = amwall(&args);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("whose rule: fail2ban's chain"), "{stdout}");
}

/// A blocklist-sized check shows a spinner with where it is, but only on a
/// terminal and only once it has taken a second; piped, stderr stays empty
/// of it. `script` (util-linux) gives the run a real pseudo-terminal.
#[test]
fn a_long_check_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allow.rules");
    let mut text =
        String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..30_000u32 {
        text.push_str(&format!(
            "-A INPUT -s 10.{}.{}.{}/32 -p tcp -m tcp --dport {} -j ACCEPT\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255,
            1000 + i % 500
        ));
    }
    text.push_str("COMMIT\n");
    std::fs::write(&file, text).unwrap();
    let spec = format!("h={}", file.display());
    let start = std::time::Instant::now();
    let (code, _, stderr) = amwall(&["check", "--rules", &spec]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        start.elapsed() > std::time::Duration::from_millis(1500),
        "the ruleset must take longer than a second for this test to mean anything"
    );
    assert!(
        !stderr.contains("open beyond need"),
        "no spinner in a pipe: {stderr}"
    );
    let cmd = format!(
        "{} check --rules {} >/dev/null",
        env!("CARGO_BIN_EXE_amwall"),
        spec
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) must be installed");
    assert!(out.status.success(), "{out:?}");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        tty.contains("h: what is open beyond need, redundant and shadowed rules"),
        "{tty}"
    );
}
