//! `plan --format json` against its published schema (docs/plan.schema.json):
//! every example × auth mode, a plan read from the admin's Amanda files, and
//! the CLI's plan.json; and the schema is strict enough to refuse a plan with
//! a field it does not describe or a value of the wrong kind.

mod common;

use serde_json::Value;

fn schema() -> (boon::Schemas, boon::SchemaIndex) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/plan.schema.json");
    let text = std::fs::read_to_string(path).unwrap();
    let value: Value = serde_json::from_str(&text).expect("the schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut c = boon::Compiler::new();
    c.enable_format_assertions();
    c.add_resource("plan.schema.json", value).unwrap();
    let idx = c
        .compile("plan.schema.json", &mut schemas)
        .unwrap_or_else(|e| panic!("{e:#}"));
    (schemas, idx)
}

fn valid(s: &(boon::Schemas, boon::SchemaIndex), v: &Value) -> Result<(), String> {
    s.0.validate(v, s.1).map_err(|e| format!("{e:#}"))
}

#[test]
fn every_plan_matches_the_schema() {
    let s = schema();
    let mut plans: Vec<(String, amwall::Plan)> = common::variants();
    let t = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/amanda/wiki-topology.toml"
    );
    let d = amwall::load::load_file(std::path::Path::new(t)).unwrap();
    plans.push((
        "from the Amanda files".into(),
        amwall::Plan::build(d).unwrap(),
    ));
    // IPv6-only networks and hosts: no `cidr`, no `address`, IPv6 targets.
    plans.extend(common::v6only());
    // Debian's build leaves C6Host's flows out, and says so in the JSON.
    let deb = plans.iter().find(|(l, _)| l == "v6only-debian").unwrap();
    let v: Value = serde_json::from_str(&amwall::export::plan_json_text(&deb.1)).unwrap();
    assert_eq!(v["left_out"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["left_out"][0]["responder"], "c6host", "{v}");
    let mut flows = 0;
    for (label, plan) in &plans {
        let v: Value = serde_json::from_str(&amwall::export::plan_json_text(plan)).unwrap();
        valid(&s, &v).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            v["flows"].as_array().unwrap().len(),
            plan.flows.len() + plan.flows6.len()
        );
        assert_eq!(
            v["hosts"].as_array().unwrap().len(),
            plan.deployment.hosts.len()
        );
        flows += plan.flows.len();
    }
    assert!(flows > 300, "{flows}");
}

#[test]
fn the_schema_refuses_what_it_does_not_describe() {
    let s = schema();
    let plan = common::variants().remove(0).1;
    let good: Value = serde_json::from_str(&amwall::export::plan_json_text(&plan)).unwrap();
    valid(&s, &good).unwrap();
    let mut extra = good.clone();
    extra["flows"][0]["colour"] = "red".into();
    assert!(valid(&s, &extra).is_err(), "an undescribed field");
    let mut wrong = good.clone();
    wrong["flows"][0]["dport"] = "10080".into();
    assert!(valid(&s, &wrong).is_err(), "a port range as a string");
    let mut missing = good.clone();
    missing["hosts"][0].as_object_mut().unwrap().remove("roles");
    assert!(valid(&s, &missing).is_err(), "a required field gone");
    let mut bad_addr = good;
    bad_addr["flows"][0]["target"] = "999.1.1.1".into();
    assert!(valid(&s, &bad_addr).is_err(), "not an IPv4 address");
}

#[test]
fn cli_prints_and_writes_the_same_plan_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = common::amwall(&[
        "plan",
        "examples/wiki.toml",
        "--format",
        "json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let written = std::fs::read_to_string(out.join("plan.json")).unwrap();
    assert_eq!(stdout, written);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    valid(&schema(), &v).unwrap();
    assert!(out.join("SUMMARY.md").exists());
}
