//! The Debian package, built with `packaging/build-deb.sh`, installed into
//! this machine with `dpkg -i` (CI runs as root on a fresh machine), used as
//! an admin would, checked by lintian, and purged again without a trace.
//! Needs root, dpkg-dev, lintian and man-db: CI installs them, and a missing
//! one fails here loudly.

use std::path::Path;
use std::process::Command;

fn run(argv: &[&str]) -> String {
    let o = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{argv:?} failed:\n{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Purges the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "amwall"]).output();
    }
}

#[test]
fn the_package_installs_works_and_purges_cleanly() {
    let status = Command::new("dpkg")
        .args(["-s", "amwall"])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "an amwall package is already installed here; this test installs and purges its own"
    );
    assert!(
        !Path::new("/var/lib/amwall/apply").exists(),
        "/var/lib/amwall/apply exists here (a real apply's state?); this test purges that directory"
    );
    let deb = run(&["bash", "packaging/build-deb.sh"]);
    let deb = deb
        .lines()
        .last()
        .expect("the script names the package")
        .to_string();
    let lint = Command::new("lintian")
        .args(["--fail-on", "error", &deb])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lintian must be installed");
    assert!(
        lint.status.success(),
        "lintian: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let fields = run(&["dpkg-deb", "-f", &deb, "Depends"]);
    assert!(
        fields.contains("libc6"),
        "Depends computed from the binary: {fields}"
    );

    let _purge = Installed;
    run(&["dpkg", "-i", &deb]);
    let files: Vec<String> = run(&["dpkg", "-L", "amwall"])
        .lines()
        .map(String::from)
        .collect();
    for want in [
        "/usr/bin/amwall",
        "/usr/share/man/man1/amwall.1.gz",
        "/usr/share/bash-completion/completions/amwall",
        "/usr/share/zsh/vendor-completions/_amwall",
        "/usr/share/fish/vendor_completions.d/amwall.fish",
        "/usr/share/doc/amwall/examples/wiki.toml",
        "/var/lib/amwall",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in the package");
    }
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("plan");
    run(&[
        "/usr/bin/amwall",
        "plan",
        "/usr/share/doc/amwall/examples/wiki.toml",
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(dir.join("SUMMARY.md").exists() && dir.join("tshost.rules").exists());
    let man = run(&["man", "-w", "amwall"]);
    assert!(man.trim().ends_with("amwall.1.gz"), "{man}");
    run(&[
        "bash",
        "-n",
        "/usr/share/bash-completion/completions/amwall",
    ]);

    // apply's state (as `amwall apply` leaves it after a confirm) goes with a purge.
    std::fs::create_dir_all("/var/lib/amwall/apply").unwrap();
    std::fs::write("/var/lib/amwall/apply/result.json", "\"confirmed\"").unwrap();
    run(&["dpkg", "--purge", "amwall"]);
    assert!(
        !Path::new("/var/lib/amwall").exists(),
        "apply's state left after purge"
    );
    for f in &files {
        // Directories other packages own stay; ours go.
        let p = Path::new(f);
        if f.contains("amwall") {
            assert!(!p.exists(), "{f} left behind after purge");
        }
    }
}
