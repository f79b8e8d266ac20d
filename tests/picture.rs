//! topology.svg: well-formed XML that names every host and every flow
//! number, drawn by a real SVG renderer (`rsvg-convert`, Debian's
//! librsvg2-bin) at a sane size, and `check --svg`/`lab --svg` through the
//! CLI: the verdicts drawn, a bad path a clean exit 2.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use amwall::picture::{self, Mark, Verdicts};
use amwall::Plan;
use quick_xml::events::Event;

/// The text of `svg` (elements' text and tooltips), after checking it is one
/// well-formed `<svg>` document: tags nest and close, attributes are unique,
/// and every entity is one of XML's five.
fn xml_text(svg: &str) -> String {
    let mut r = quick_xml::Reader::from_str(svg);
    let (mut depth, mut roots, mut text) = (0usize, Vec::new(), String::new());
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"))
        {
            Event::Start(e) => {
                if depth == 0 {
                    roots.push(e.name().as_ref().to_string());
                }
                for a in e.attributes() {
                    a.unwrap_or_else(|e| panic!("bad attribute: {e}"));
                }
                depth += 1;
            }
            Event::Empty(e) => {
                assert!(depth > 0, "element outside the root");
                for a in e.attributes() {
                    a.unwrap_or_else(|e| panic!("bad attribute: {e}"));
                }
            }
            Event::End(_) => depth -= 1,
            Event::Text(t) => {
                assert!(depth > 0 || t.xml10_content().trim().is_empty());
                text.push_str(&t.xml10_content());
            }
            Event::GeneralRef(g) => text.push(match &*g {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                other => panic!("entity &{other}; is not XML's own"),
            }),
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert_eq!(roots, ["svg"], "one <svg> root");
    text
}

/// Every host's name and every flow's number appear in the picture.
fn names_everything(plan: &Plan, svg: &str, label: &str) {
    let text = xml_text(svg);
    let words: BTreeSet<&str> = text.split_whitespace().collect();
    for h in &plan.deployment.hosts {
        assert!(
            words.contains(h.name.as_str()),
            "{label}: host {} missing",
            h.name
        );
    }
    for id in 1..=plan.flows.len() {
        assert!(
            words.contains(format!("#{id}").as_str()),
            "{label}: flow #{id} missing"
        );
    }
}

#[test]
fn every_example_names_every_host_and_flow() {
    let mut plans = common::variants();
    plans.push((
        "50 clients".into(),
        Plan::build(common::generated(50)).unwrap(),
    ));
    for (label, plan) in &plans {
        names_everything(plan, &picture::svg(plan, None), label);
        // `plan` writes the same picture beside SUMMARY.md, which links it.
        let files = plan.outputs(amwall::render::BackendSet::Nft, None).unwrap();
        let svg = files
            .iter()
            .find(|(n, _)| n == "topology.svg")
            .expect("topology.svg");
        assert_eq!(svg.1, picture::svg(plan, None));
        let summary = &files.last().unwrap().1;
        assert!(summary.contains("[topology.svg](topology.svg)"), "{label}");
    }
}

#[test]
fn verdicts_are_drawn_and_text_is_escaped() {
    let mut plan = common::variants().swap_remove(0).1;
    // The topology's path is the one text no name check has seen.
    plan.deployment.source_name = r#"<a&b> "c".toml"#.into();
    let plan = &plan;
    let mut marks = vec![Mark::Pass; plan.flows.len()];
    marks[0] = Mark::Blocked {
        host: Some(plan.deployment.hosts[0].name.clone()),
    };
    marks[1] = Mark::Unknown;
    let v = Verdicts {
        title: r#"<check> & "co" 'x'"#.into(),
        marks,
    };
    let svg = picture::svg(plan, Some(&v));
    names_everything(plan, &svg, "verdicts");
    let text = xml_text(&svg);
    assert!(
        text.contains(r#"amwall <check> & "co" 'x': <a&b> "c".toml"#),
        "{text}"
    );
    assert!(text.contains("BLOCKED") && text.contains("UNKNOWN") && text.contains("PASS"));
    assert!(text.contains("blocks #1"), "{text}");
}

/// Fewer than two dozen boxes' worth of columns for 50 clients: they share one.
#[test]
fn fifty_identical_clients_share_one_box() {
    let plan = Plan::build(common::generated(50)).unwrap();
    let svg = picture::svg(&plan, None);
    assert_eq!(
        svg.matches(r#"<g class="host">"#).count(),
        2,
        "server and one group"
    );
    assert!(xml_text(&svg).contains("50 hosts alike"));
}

/// `rsvg-convert`, or `None` outside CI when it is not installed (said loudly).
fn rsvg() -> Option<&'static str> {
    let ok = Command::new("rsvg-convert")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("rsvg-convert");
    }
    let msg = "NOT RUN: rsvg-convert is missing (Debian: apt-get install librsvg2-bin)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
    None
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let n = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (n(16), n(20))
}

fn render(svg: &str, dir: &Path, name: &str) -> Option<(u32, u32, usize)> {
    let tool = rsvg()?;
    let (src, png) = (
        dir.join(format!("{name}.svg")),
        dir.join(format!("{name}.png")),
    );
    std::fs::write(&src, svg).unwrap();
    let out = Command::new(tool)
        .arg("-o")
        .arg(&png)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    let (w, h) = png_size(&bytes);
    Some((w, h, bytes.len()))
}

/// A real renderer draws each picture at its declared size: wide enough for
/// the boxes and labels, small enough to look at, and not blank.
#[test]
fn renders_to_a_png_of_sane_size() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "wiki",
            Plan::build(common::example("wiki")).unwrap(),
            (900, 2000),
            (450, 1000),
        ),
        (
            "lan",
            Plan::build(common::example("lan")).unwrap(),
            (900, 2000),
            (350, 900),
        ),
        (
            "50-clients",
            Plan::build(common::generated(50)).unwrap(),
            (600, 1400),
            (250, 600),
        ),
    ];
    for (name, plan, (w0, w1), (h0, h1)) in cases {
        let svg = picture::svg(&plan, None);
        let Some((w, h, bytes)) = render(&svg, dir.path(), name) else {
            return;
        };
        assert!(
            svg.contains(&format!(r#"width="{w}" height="{h}""#)),
            "{name}: {w}x{h}"
        );
        assert!(
            (w0..=w1).contains(&w) && (h0..=h1).contains(&h),
            "{name}: {w}x{h}"
        );
        assert!(bytes > 20_000, "{name}: {bytes} bytes, blank?");
    }
}

/// `check --svg`: the picture of what was checked; a path that cannot be
/// written, or no flows to draw, is a clean exit 2 and leaves nothing.
#[test]
fn check_svg_draws_the_verdicts_or_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let (code, _, err) = common::amwall(&["plan", "examples/wiki.toml", "--out", o, "-q"]);
    assert_eq!(code, 0, "{err}");
    // lhost loses its opening for the backup data streams.
    let rules = std::fs::read_to_string(out.join("lhost.rules")).unwrap();
    let broken: String = rules
        .lines()
        .filter(|l| !l.contains("--dport 50000:50100"))
        .map(|l| format!("{l}\n"))
        .collect();
    let lhost = dir.path().join("lhost.rules");
    std::fs::write(&lhost, broken).unwrap();
    let spec = |h: &str| format!("{h}={o}/{h}.rules");
    let mut args: Vec<String> = ["check", "examples/wiki.toml", "--no-open", "--no-redundant"]
        .map(String::from)
        .to_vec();
    for h in ["tshost", "fwhost", "rhost"] {
        args.extend(["--rules".into(), spec(h)]);
    }
    args.extend(["--rules".into(), format!("lhost={}", lhost.display())]);
    let run = |svg: &str| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--svg", svg]);
        common::amwall(&a)
    };
    let pic = dir.path().join("check.svg");
    let (code, stdout, err) = run(pic.to_str().unwrap());
    assert_eq!(code, 1, "{stdout}{err}");
    let text = xml_text(&std::fs::read_to_string(&pic).unwrap());
    assert!(text.contains("23 pass, 1 blocked"), "{text}");
    assert!(
        text.contains("BLOCKED on lhost") && text.contains("blocks #12"),
        "{text}"
    );

    for bad in ["/nonexistent/dir/x.svg", dir.path().to_str().unwrap()] {
        let (code, _, err) = run(bad);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".amwall-svg")),
        "{names:?}"
    );

    let (code, _, err) = common::amwall(&[
        "check",
        "--rules",
        &format!("{o}/lhost.rules"),
        "--svg",
        "x.svg",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--svg"), "{err}");
}

/// `lab --svg` refuses a path it cannot write before building anything.
#[test]
fn lab_svg_to_a_missing_directory_exits_2_at_once() {
    let (code, _, err) = common::amwall(&[
        "lab",
        "examples/wiki.toml",
        "--svg",
        "/nonexistent/dir/x.svg",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/dir/x.svg"), "{err}");
}
