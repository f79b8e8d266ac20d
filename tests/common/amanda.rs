//! The real-Amanda tests' shared steps: the wiki lab and its checks, each
//! failing with the lab's diagnostics.

use std::time::Instant;

use amwall::amanda::settings::Auth;
use amwall::lab::amanda::{AmandaLab, Dump, Recovery};
use amwall::lab::Output;
use amwall::Plan;

pub const FIXTURE: &str = "tests/fixtures/lab/wiki-doc.toml";

pub fn plan(auth: Auth, helper: bool) -> Plan {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let d = amwall::load::load_file(&path).unwrap_or_else(|e| panic!("{FIXTURE}: {e:?}"));
    Plan::build(d.with_auth(auth).with_helper(helper)).expect("the fixture plans cleanly")
}

pub fn lab(plan: &Plan) -> AmandaLab {
    AmandaLab::build(plan).unwrap_or_else(|e| panic!("building the Amanda lab: {e}"))
}

pub fn show(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status, o.stdout, o.stderr
    )
}

pub fn fail(lab: &AmandaLab, what: &str, detail: &str) -> ! {
    panic!(
        "{what}\n{detail}\n\n======== lab diagnostics ========\n{}",
        lab.diagnostics()
    )
}

pub fn check_ok(lab: &AmandaLab, label: &str) {
    let t = Instant::now();
    let o = lab.amcheck().expect("running amcheck");
    // amcheck can exit 0 while printing ERROR lines (docs/design.md "Lab-verified").
    if !(o.ok() && o.stdout.contains("0 problems found")) {
        fail(lab, &format!("{label}: amcheck failed"), &show(&o));
    }
    eprintln!("{label}: amcheck ok in {:.1?}", t.elapsed());
}

pub fn dump_ok(lab: &AmandaLab, label: &str) -> Dump {
    let d = lab.amdump().expect("running amdump");
    if !d.ok() {
        fail(
            lab,
            &format!("{label}: amdump failed"),
            &format!("{}\n--- amreport\n{}", show(&d.output), d.report),
        );
    }
    // Every client's DLE made it to tape.
    for host in ["tshost", "fwhost", "lhost", "rhost"] {
        for dle in lab.dles(host).unwrap() {
            let dle = format!("{} ", dle.display());
            if !d
                .report
                .lines()
                .any(|l| l.starts_with(host) && l.contains(&dle))
            {
                fail(
                    lab,
                    &format!("{label}: amreport does not list {host}:{dle}"),
                    &d.report,
                );
            }
        }
    }
    eprintln!("{label}: amdump ok in {:.1?}", d.took);
    d
}

pub fn recover_ok(lab: &AmandaLab, label: &str, host: &str) -> Recovery {
    let r = lab.amrecover(host).expect("running amrecover");
    if let Err(e) = &r.compared {
        fail(
            lab,
            &format!("{label}: amrecover on {host} did not restore the files: {e}"),
            &show(&r.output),
        );
    }
    eprintln!("{label}: amrecover on {host} ok in {:.1?}", r.took);
    r
}
