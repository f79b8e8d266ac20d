//! Inputs a careless or hostile admin can hand amwall: a device, a FIFO with no
//! writer, a directory, a file over the size limit — for every kind of file
//! amwall reads — end at once with exit 2 and a message saying what the path is;
//! standard input where a command offers `-`; a Latin-1 Amanda file keeps its
//! line and column; and a full disk leaves `--out` exactly as it was.
//!
//! Every run is bounded (`common::amwall_bounded`), so a regression that hangs
//! on a FIFO or grows on /dev/zero fails here instead of hanging the suite.

mod common;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::amwall_bounded;

/// The limit the runs get, and a file just over it.
const LIMIT: &str = "100000";

/// Far longer than any refusal takes; a hang is killed here.
const KILL_AFTER: Duration = Duration::from_secs(20);

/// What a refusal must take at most.
const PROMPT: Duration = Duration::from_secs(5);

fn run(args: &[OsString]) -> (i32, String, Duration) {
    let a: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let start = Instant::now();
    let (code, _, err) = amwall_bounded(&a, &[("AMWALL_MAX_INPUT_BYTES", LIMIT)], None, KILL_AFTER);
    (code, err, start.elapsed())
}

fn os(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// tests/fixtures/amanda/wiki and its topology, copied under `root` (paths in
/// the topology made absolute); `conf_extra` is appended to amanda.conf and
/// `client_conf` replaces rhost's amanda-client-conf. Returns the topology.
fn wiki(root: &Path, conf_extra: &str, client_conf: Option<&Path>) -> PathBuf {
    let fix = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amanda");
    let conf = root.join("conf");
    copy_dir(&fix.join("wiki"), &conf);
    let ac = conf.join("amanda.conf");
    let text = std::fs::read_to_string(&ac).unwrap() + conf_extra;
    std::fs::write(&ac, text).unwrap();
    let cc = client_conf.map_or_else(|| conf.join("rhost/amanda-client.conf"), Path::to_path_buf);
    let topo = std::fs::read_to_string(fix.join("wiki-topology.toml"))
        .unwrap()
        .replace(
            "amanda-config = \"wiki\"",
            &format!("amanda-config = {:?}", conf.display().to_string()),
        )
        .replace(
            "amanda-client-conf = \"wiki/rhost/amanda-client.conf\"",
            &format!("amanda-client-conf = {:?}", cc.display().to_string()),
        );
    let t = root.join("topology.toml");
    std::fs::write(&t, topo).unwrap();
    t
}

/// The four hostile paths and what the refusal must call each.
fn hostile(root: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let dir = root.join("a-directory");
    // `--amanda-config DIR` reads DIR/amanda.conf: make that a directory too.
    std::fs::create_dir_all(dir.join("amanda.conf")).unwrap();
    let big = root.join("big");
    let limit: usize = LIMIT.parse().unwrap();
    std::fs::write(&big, "# padding\n".repeat(limit / 10 + 1)).unwrap();
    vec![
        (PathBuf::from("/dev/zero"), "character device"),
        (fifo, "a FIFO"),
        (dir, "a directory"),
        (
            big,
            "more than the input limit of 100000 bytes (set AMWALL_MAX_INPUT_BYTES",
        ),
    ]
}

const GOOD_RULES: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

#[test]
fn every_kind_of_input_refuses_devices_fifos_directories_and_huge_files_at_once() {
    let top = tempfile::tempdir().unwrap();
    let good_rules = top.path().join("good.rules");
    std::fs::write(&good_rules, GOOD_RULES).unwrap();
    let plain = wiki(&top.path().join("plain"), "", None);
    let bad = hostile(top.path());
    let mut n = 0;
    type Make<'a> = Box<dyn Fn(&Path, &Path) -> Vec<OsString> + 'a>;
    let kinds: Vec<(&str, Make)> = vec![
        ("topology", Box::new(|b, _| os(&[&"flows", &b]))),
        ("--rules", Box::new(|b, _| os(&[&"check", &"--rules", &b]))),
        (
            "--ipset",
            Box::new(|b, _| os(&[&"check", &"--rules", &good_rules, &"--ipset", &b])),
        ),
        (
            "--hosts",
            Box::new(|b, o| os(&[&"plan", &plain, &"--hosts", &b, &"--out", &o, &"-q"])),
        ),
        (
            "--amanda-config",
            Box::new(|b, o| os(&[&"plan", &plain, &"--amanda-config", &b, &"--out", &o, &"-q"])),
        ),
        (
            "includefile",
            Box::new(|b, o| {
                let t = wiki(
                    &o.with_extension("src"),
                    &format!("includefile {:?}\n", b.display().to_string()),
                    None,
                );
                os(&[&"plan", &t, &"--out", &o, &"-q"])
            }),
        ),
        (
            "diskfile",
            Box::new(|b, o| {
                let t = wiki(
                    &o.with_extension("src"),
                    &format!("diskfile {:?}\n", b.display().to_string()),
                    None,
                );
                os(&[&"plan", &t, &"--out", &o, &"-q"])
            }),
        ),
        (
            "amanda-client-conf",
            Box::new(|b, o| {
                let t = wiki(&o.with_extension("src"), "", Some(b));
                os(&[&"plan", &t, &"--out", &o, &"-q"])
            }),
        ),
        (
            "--security-conf",
            Box::new(|b, o| os(&[&"plan", &plain, &"--security-conf", &b, &"--out", &o, &"-q"])),
        ),
        (
            "--services",
            Box::new(|b, o| os(&[&"plan", &plain, &"--services", &b, &"--out", &o, &"-q"])),
        ),
    ];
    for (kind, make) in &kinds {
        for (path, what) in &bad {
            n += 1;
            let out = top.path().join(format!("out{n}"));
            let (code, err, took) = run(&make(path, &out));
            let case = format!("{kind} {}", path.display());
            assert_eq!(code, 2, "{case}: {err}");
            assert!(took < PROMPT, "{case}: took {took:?}");
            assert!(err.contains(what), "{case}: expected {what:?} in: {err}");
            assert!(!out.exists(), "{case}: wrote {}", out.display());
        }
    }
    // The same inputs, regular and small, work: the refusals above are about
    // the paths, not the commands.
    let (code, err, _) = run(&os(&[
        &"plan",
        &plain,
        &"--out",
        &top.path().join("ok"),
        &"-q",
    ]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn rules_ipsets_and_topology_come_from_standard_input_once() {
    let go = |args: &[&str], stdin: &str| {
        let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        amwall_bounded(&a, &[], Some(stdin.as_bytes()), KILL_AFTER)
    };
    let (code, out, err) = go(&["check", "--rules", "-"], GOOD_RULES);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ACCEPT") || !out.is_empty(), "{out}");
    let (code, out, err) = go(
        &[
            "explain",
            "--rules",
            "-",
            "tcp 192.0.2.2:516 -> 192.0.2.3:10080 in eth0",
        ],
        GOOD_RULES,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ACCEPT"), "{out}");
    // A broken ruleset on standard input is named as such in the error.
    let (code, _, err) = go(&["check", "--rules", "-"], "*filter\n-A INPUT -j\nCOMMIT\n");
    assert_eq!(code, 2);
    assert!(err.contains("(standard input)"), "{err}");
    // Two inputs cannot both be standard input.
    let (code, _, err) = go(&["check", "--rules", "-", "--ipset", "-"], GOOD_RULES);
    assert_eq!(code, 2);
    assert!(err.contains("given twice"), "{err}");
    let topo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wiki.toml"))
            .unwrap();
    let (code, out, err) = go(&["flows", "-"], &topo);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10080"), "{out}");
}

/// A Latin-1 comment in the disklist: the error about a later line names that
/// line (before, the caret text was read again as UTF-8, failed, and the error
/// pointed at 1:1).
#[test]
fn latin1_disklist_errors_keep_their_line_and_column() {
    let top = tempfile::tempdir().unwrap();
    let t = wiki(top.path(), "", None);
    let dl = top.path().join("conf/disklist");
    let mut text = b"# Sauvegarde du r\xe9seau \xe0\xa0Paris\n".to_vec();
    text.extend(std::fs::read(&dl).unwrap());
    text.extend(b"ghost /etc root-tar\n");
    std::fs::write(&dl, &text).unwrap();
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    let out = top.path().join("out");
    let (code, err, _) = run(&os(&[&"plan", &t, &"--out", &out, &"-q"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:{lines}:1: disklist host `ghost` is not in the topology",
            dl.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("ghost /etc root-tar"),
        "the caret shows the line: {err}"
    );
}

/// As root, in a private mount namespace (never the machine's own): a tiny
/// tmpfs holding an --out the admin used before, nearly full. `plan` fails
/// with ENOSPC, and the directory is byte for byte and mode for mode what it
/// was; a fresh --out on the same disk leaves nothing behind either.
#[test]
fn a_full_disk_leaves_out_as_it_was() {
    if unsafe { nix::libc::geteuid() } != 0 {
        panic!("needs root (mount in a private namespace)");
    }
    let top = tempfile::tempdir().unwrap();
    let mnt = top.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let exe = env!("CARGO_BIN_EXE_amwall");
    let topo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wiki.toml");
    // The listing: every file with mode, size and checksum, hidden ones too.
    let snap = "(cd \"$M\" && find . -printf '%p %m %y\\n' | sort && find . -type f | sort | xargs -r sha256sum)";
    let script = format!(
        r#"set -e
M={mnt}
mount -t tmpfs -o size=64k,mode=0755 amwall-test "$M"
mkdir "$M/out"
printf 'old summary\n' > "$M/out/SUMMARY.md"; chmod 0640 "$M/out/SUMMARY.md"
printf 'old\n' > "$M/out/lhost.rules"; chmod 0600 "$M/out/lhost.rules"
printf 'mine\n' > "$M/out/notes.txt"
# Fill the disk, then free 8 KiB: room for a file or two, not for nine.
dd if=/dev/zero of="$M/fill" bs=4k 2>/dev/null || true
truncate -s -8k "$M/fill"
echo BEFORE; {snap}
set +e
{exe} plan {topo} --out "$M/out" -q 2>"$M/../err1"; echo "rc1=$?"
{exe} plan {topo} --out "$M/fresh/out" -q 2>"$M/../err2"; echo "rc2=$?"
echo AFTER; {snap}
"#,
        mnt = mnt.display(),
        exe = exe,
        topo = topo.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err1 = std::fs::read_to_string(top.path().join("err1")).unwrap();
    let err2 = std::fs::read_to_string(top.path().join("err2")).unwrap();
    assert!(stdout.contains("rc1=2"), "{stdout}\n{err1}");
    assert!(stdout.contains("rc2=2"), "{stdout}\n{err2}");
    assert!(err1.contains("No space left"), "{err1}");
    assert!(err2.contains("No space left"), "{err2}");
    let listing = |part: &str| -> String {
        part.lines()
            .filter(|l| !l.starts_with("rc"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (before, after) = stdout
        .split_once("AFTER")
        .map(|(b, a)| (listing(b.split_once("BEFORE").unwrap().1), listing(a)))
        .unwrap();
    assert!(before.contains("./out/SUMMARY.md 640 f"), "{before}");
    assert_eq!(before, after, "the disk's content changed");
}

/// `doctor --root DIR` reads the host's files under DIR: each of them a
/// device, a FIFO, a directory or over the limit ends at once with exit 2
/// naming the file, and a symlink's `..` never leaves DIR.
#[test]
fn doctor_refuses_hostile_host_files() {
    let top = tempfile::tempdir().unwrap();
    let files = [
        "etc/inetd.conf",
        "etc/xinetd.d/amanda",
        "etc/services",
        "etc/amanda-security.conf",
        "etc/amanda/daily/amanda.conf",
        "etc/amanda/amanda-client.conf",
        "var/backups/.amandahosts",
    ];
    let limit: usize = LIMIT.parse().unwrap();
    let kinds = [
        "character device",
        "a FIFO",
        "a directory",
        "more than the input limit of 100000 bytes",
    ];
    let mut n = 0;
    for file in files {
        for what in kinds {
            n += 1;
            let root = top.path().join(format!("root{n}"));
            std::fs::create_dir_all(root.join("var/backups")).unwrap();
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(
                root.join("etc/passwd"),
                "backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n",
            )
            .unwrap();
            let target = root.join(file);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            match what {
                // A link that climbs far above the root lands on the root's
                // own dev/zero, never on the machine's.
                "character device" => {
                    let up = "../".repeat(file.matches('/').count() + 5);
                    std::os::unix::fs::symlink(format!("{up}dev/zero"), &target).unwrap();
                    std::fs::create_dir_all(root.join("dev")).unwrap();
                    nix::sys::stat::mknod(
                        &root.join("dev/zero"),
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::S_IRUSR,
                        nix::sys::stat::makedev(1, 5),
                    )
                    .unwrap();
                }
                "a FIFO" => nix::unistd::mkfifo(&target, nix::sys::stat::Mode::S_IRWXU).unwrap(),
                "a directory" => std::fs::create_dir_all(&target).unwrap(),
                _ => std::fs::write(&target, "# padding\n".repeat(limit / 10 + 1)).unwrap(),
            }
            let (code, err, took) = run(&os(&[&"doctor", &"--root", &root, &"--host", &"h"]));
            let case = format!("{file} as {what}");
            assert_eq!(code, 2, "{case}: {err}");
            assert!(took < PROMPT, "{case}: took {took:?}");
            assert!(err.contains(what), "{case}: expected {what:?} in: {err}");
            assert!(
                err.contains(&format!("root{n}/")),
                "{case}: names the file: {err}"
            );
        }
    }
}

/// IPv6-only topologies gone wrong, through the CLI (tests/fixtures/v6only/):
/// each refused with exit 2 and the file:line:col of the value at fault,
/// never a panic, and nothing written to `--out`.
#[test]
fn ipv6_only_topologies_are_refused_where_they_are_wrong() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v6only/upstream.toml"
    ))
    .unwrap();
    let c6 = r#"{ name = "eth0", network = "v6lan", address6 = "2001:db8:6::5" }"#;
    // (replace, with, the text the error must point at, what it says)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            c6,
            r#"{ name = "eth0", network = "v6lan", address = "203.0.113.5" }"#,
            "\"203.0.113.5\"",
            "IPv6-only",
        ),
        (
            c6,
            r#"{ name = "eth0", network = "v6lan" }"#,
            r#"{ name = "eth0", network = "v6lan" }"#,
            "has no address",
        ),
        (
            c6,
            r#"{ name = "eth0", network = "v6lan", address6 = "::" }"#,
            "\"::\"",
            "no address",
        ),
        (
            c6,
            r#"{ name = "eth0", network = "v6lan", address6 = "::ffff:192.0.2.9" }"#,
            "\"::ffff:192.0.2.9\"",
            "IPv4-mapped",
        ),
        (
            c6,
            r#"{ name = "eth0", network = "v6lan", address6 = "2001:db8:6::1" }"#,
            "\"2001:db8:6::1\"",
            "already used",
        ),
        (
            "cidr6 = \"2001:db8:6::/64\"",
            "cidr6 = \"2001:db8:6::/64\"\ncidr = \"nonsense\"",
            "\"nonsense\"",
            "not an IPv4 network",
        ),
        (
            "cidr6 = \"2001:db8:6::/64\"",
            "",
            "name = \"v6lan\"",
            "neither `cidr` nor `cidr6`",
        ),
        (
            "roles = [\"router\"]",
            "roles = [\"router\"]\nmasquerade = [{ from = \"v6lan\", to = \"lan\" }]",
            "\"v6lan\"",
            "NAT66",
        ),
    ];
    let top = tempfile::tempdir().unwrap();
    for (from, to, at, want) in cases {
        let text = src.replacen(from, to, 1);
        assert_ne!(text, src, "{from}");
        let t = top.path().join("t.toml");
        std::fs::write(&t, &text).unwrap();
        let out = top.path().join("out");
        let (code, err, _) = run(&os(&[&"plan", &t, &"--out", &out, &"-q"]));
        assert_eq!(code, 2, "{to}: {err}");
        assert!(err.contains(want), "{to}: {err}");
        assert!(!err.contains("panicked"), "{to}: {err}");
        // Inside the replacement where it is there; `name = "v6lan"` stands
        // for the name's value.
        let pos = match (text.find(to).filter(|_| !to.is_empty()), to.find(at)) {
            (Some(t0), Some(a0)) => t0 + a0,
            _ => text.find(at).unwrap() + at.strip_prefix("name = ").map_or(0, |_| "name = ".len()),
        };
        let line = text[..pos].matches('\n').count() + 1;
        let col = text[..pos].rsplit('\n').next().unwrap().chars().count() + 1;
        assert!(
            err.contains(&format!("{}:{line}:{col}:", t.display())),
            "{to}: want {line}:{col}: {err}"
        );
        assert!(!out.exists(), "nothing written for {to}");
    }
}
