//! topology.svg: the hosts, networks and routers of a plan with every flow
//! drawn, for people who would rather look than read SUMMARY.md's flow table.
//!
//! The layout is made for this domain rather than handed to a graph layout
//! engine: networks are horizontal buses at the top, hosts hang below them
//! in columns (each network's hosts together, a router between the networks
//! it joins), and every flow is a row below the boxes, as in a sequence
//! diagram: one horizontal arrow from the initiator's column to the
//! responder's, crossing the columns of the routers on its way, with its
//! numbers, operation and ports written at the row's end. Rows never cross
//! each other and labels never collide, however many flows there are; a
//! generic layered layout puts two dozen labelled edges between four boxes
//! on top of each other. Identical clients (same networks, roles, settings
//! and flows) beyond a handful share one box, so 50 clients draw as two
//! columns. Nothing here derives a flow: rows come from `view::FlowView` and
//! the plan's paths, and in the verdict picture from a report's `Mark`s.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::path::Path as FsPath;

use crate::diag::{Error, Result};
use crate::flows::{HelperRole, Operation};
use crate::model::{Deployment, HostId, NetId};
use crate::plan::Plan;
use crate::view::{self, FlowView};

/// More identical clients than this share one box.
pub const HANDFUL: usize = 5;

/// What a report (`check`, `lab`) says of one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Pass,
    /// `host`: whose rules drop it, when the report can tell.
    Blocked {
        host: Option<String>,
    },
    /// Neither proven to pass nor to be blocked (an undecidable match, a
    /// flow the lab did not probe).
    Unknown,
}

impl Mark {
    /// The worse of two verdicts on one flow (the lab runs one per backend).
    pub fn worst(self, other: Mark) -> Mark {
        match (self, other) {
            (b @ Mark::Blocked { .. }, _) | (_, b @ Mark::Blocked { .. }) => b,
            (Mark::Unknown, _) | (_, Mark::Unknown) => Mark::Unknown,
            _ => Mark::Pass,
        }
    }
}

/// A report's verdicts, one per flow of the plan in its order, and what to
/// call them in the picture's title ("check", "lab (iptables, nft)").
#[derive(Debug, Clone)]
pub struct Verdicts {
    pub title: String,
    pub marks: Vec<Mark>,
}

impl Verdicts {
    /// Flow `id`'s verdict (1-based); a flow the report does not have is unknown.
    fn mark(&self, id: usize) -> &Mark {
        static MISSING: Mark = Mark::Unknown;
        self.marks.get(id - 1).unwrap_or(&MISSING)
    }
}

/// The picture of `plan`; with `verdicts`, each flow coloured by its verdict
/// and the hosts that block marked, instead of coloured by operation.
pub fn svg(plan: &Plan, verdicts: Option<&Verdicts>) -> String {
    let views = view::all(plan);
    let layout = Layout::new(plan, &views, verdicts);
    if layout.cols.len() > MAX_COLUMNS || layout.rows.len() > MAX_ROWS {
        return too_big(plan, verdicts, &layout);
    }
    layout.draw(plan, verdicts)
}

/// Beyond these, a drawing is no longer something to look at (hundreds of
/// clients that differ, each its own column): say so instead of writing
/// megabytes of it.
const MAX_COLUMNS: usize = 60;
const MAX_ROWS: usize = 1500;

fn too_big(plan: &Plan, verdicts: Option<&Verdicts>, l: &Layout) -> String {
    let title = title(plan, verdicts);
    let lines = [
        title.clone(),
        format!(
            "Not drawn: {} boxes and {} arrows after grouping identical clients ({} and {} at most).",
            l.cols.len(),
            l.rows.len(),
            MAX_COLUMNS,
            MAX_ROWS
        ),
        "SUMMARY.md lists every host and flow.".to_string(),
    ];
    let width = (lines.iter().map(|t| text_w(t)).fold(0.0, f64::max) + 2.0 * MARGIN).ceil();
    let mut o = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="90" viewBox="0 0 {width} 90" font-family="DejaVu Sans Mono, monospace" font-size="12"><rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    for (i, t) in lines.iter().enumerate() {
        writeln!(
            o,
            r#"<text x="{MARGIN}" y="{}">{}</text>"#,
            24.0 + 22.0 * i as f64,
            esc(t)
        )
        .unwrap();
    }
    o.push_str("</svg>\n");
    o
}

/// Writes `text` to `path` all or nothing: a temporary file beside it,
/// renamed over it, so a reader never sees half a picture and a failure
/// leaves what was there.
pub fn write(path: &FsPath, text: &str) -> Result<()> {
    use std::io::Write as _;
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => FsPath::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".amwall-svg")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // Like the files `plan` writes: readable by all, as an editor would leave it.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Whether `write` can put a file at `path`, asked before a long run (the
/// lab) so a typo does not cost its result: the directory exists and `path`
/// is not one. `write` still reports what this cannot foresee.
pub fn can_write(path: &FsPath) -> Result<()> {
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => FsPath::new("."),
    };
    if !std::fs::metadata(dir).map_err(io)?.is_dir() {
        return Err(io(std::io::Error::from_raw_os_error(nix::libc::ENOTDIR)));
    }
    if path.is_dir() {
        return Err(io(std::io::Error::from_raw_os_error(nix::libc::EISDIR)));
    }
    Ok(())
}

/// Text for SVG: names are validated when loaded, but nothing that reaches
/// markup should rely on that (the topology's path is never checked). A
/// control or invisible character shows as `<U+000A>`, as in every other
/// file `plan` writes (`name::comment`).
/// A network's prefixes as its label shows them: IPv4 first, as before
/// IPv6-only networks, then IPv6.
fn net_prefixes(net: &crate::model::Network) -> String {
    match (net.cidr, net.cidr6) {
        (Some(c), Some(c6)) => format!("{c}, {c6}"),
        (Some(c), None) => c.to_string(),
        (None, Some(c6)) => c6.to_string(),
        (None, None) => String::new(),
    }
}

fn esc(s: &str) -> String {
    let s = crate::name::comment(s);
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Flow numbers, shortened beyond four: "#3 #12 … #444 (50)".
fn ids_text(ids: &[usize]) -> String {
    if ids.len() <= 4 {
        ids.iter()
            .map(|i| format!("#{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        format!(
            "#{} #{} … #{} ({})",
            ids[0],
            ids[1],
            ids[ids.len() - 1],
            ids.len()
        )
    }
}

/// Every flow number, for the tooltip (the drawing shows `ids_text`); a
/// long regular run (one flow of each of thousands of alike clients) as its
/// ends and step, which says the same in a line.
fn ids_all(ids: &[usize]) -> String {
    let step = ids.get(1).map_or(0, |b| b - ids[0]);
    let regular = ids.windows(2).all(|w| w[1] - w[0] == step);
    if ids.len() > 200 && regular {
        return format!(
            "#{} #{} … #{} (step {step}, {} flows)",
            ids[0],
            ids[1],
            ids[ids.len() - 1],
            ids.len()
        );
    }
    ids.iter()
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// Geometry, in pixels; text is DejaVu Sans Mono (or another monospace font) at
// 12 px, whose advance is 0.6 em, so widths can be computed without a font.
const CH: f64 = 7.25;
const LINE: f64 = 15.0;
const PAD: f64 = 8.0;
const GAP: f64 = 36.0;
const MARGIN: f64 = 20.0;
const BUS_GAP: f64 = 28.0;
const ROW: f64 = 22.0;

fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CH
}

/// The colour class of a flow in the plan picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    CheckEstimate,
    Backup,
    Recovery,
}

impl Class {
    fn of(op: Operation) -> Class {
        match op {
            Operation::Check | Operation::Estimate => Class::CheckEstimate,
            Operation::Backup => Class::Backup,
            Operation::Recover | Operation::LegacyRecover => Class::Recovery,
        }
    }
    fn colour(self) -> &'static str {
        match self {
            Class::CheckEstimate => "#1f6fd1",
            Class::Backup => "#e07000",
            Class::Recovery => "#8a3ccf",
        }
    }
    const ALL: [(Class, &'static str); 3] = [
        (Class::CheckEstimate, "check / estimate"),
        (Class::Backup, "backup"),
        (Class::Recovery, "recovery"),
    ];
}

const PASS: &str = "#1a8a3a";
const BLOCKED: &str = "#d11a1a";
const UNKNOWN: &str = "#777777";

/// One box: a host, or identical clients together.
struct Column {
    hosts: Vec<HostId>,
    lines: Vec<String>,
    /// Every member's name, for the tooltip of a group.
    title: String,
    /// Flows blocked on (one of) its hosts, in the verdict picture.
    blocks: Vec<usize>,
    x: f64,
    w: f64,
}

impl Column {
    fn centre(&self) -> f64 {
        self.x + self.w / 2.0
    }
    /// Where the box meets `k` of its `n` buses.
    fn stub(&self, k: usize, n: usize) -> f64 {
        self.x + self.w * (k + 1) as f64 / (n + 1) as f64
    }
}

/// A router the row's flow crosses: its column, and whether it rewrites.
struct Via {
    col: usize,
    nat: bool,
}

/// One arrow: flows with the same ends, ports, path and colour class.
struct Row {
    from: usize,
    to: usize,
    via: Vec<Via>,
    ids: Vec<usize>,
    ops: Vec<Operation>,
    class: Class,
    related: bool,
    text: String,
}

struct Layout {
    cols: Vec<Column>,
    /// Per flow (id - 1), the column of the host that blocks it.
    blocked_at: Vec<Option<usize>>,
    /// Networks in drawing order, with the columns on each.
    buses: Vec<(NetId, Vec<usize>)>,
    rows: Vec<Row>,
}

impl Layout {
    fn new(plan: &Plan, views: &[FlowView<'_>], verdicts: Option<&Verdicts>) -> Layout {
        let d = &plan.deployment;
        let net_order = network_order(d);
        let groups = group_hosts(plan, views);
        let mut cols: Vec<Column> = order_columns(d, &net_order, groups)
            .into_iter()
            .map(|hosts| Column {
                lines: box_lines(plan, &hosts),
                title: hosts
                    .iter()
                    .map(|&h| d.hosts[h].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                hosts,
                blocks: Vec::new(),
                x: 0.0,
                w: 0.0,
            })
            .collect();
        let mut col_of = vec![0; d.hosts.len()];
        for (c, col) in cols.iter().enumerate() {
            for &h in &col.hosts {
                col_of[h] = c;
            }
        }
        // Per flow, the column of the host that blocks it; a lookup by
        // name per flow would be quadratic at 10,000 clients.
        let mut blocked_at = Vec::new();
        if let Some(v) = verdicts {
            let by_name: HashMap<&str, HostId> = d
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.name.as_str(), i))
                .collect();
            blocked_at = v
                .marks
                .iter()
                .map(|m| match m {
                    Mark::Blocked { host: Some(h) } => by_name.get(h.as_str()).map(|&h| col_of[h]),
                    _ => None,
                })
                .collect();
            for (i, c) in blocked_at.iter().enumerate() {
                if let Some(c) = c {
                    cols[*c].blocks.push(i + 1);
                }
            }
            for c in &mut cols {
                if !c.blocks.is_empty() {
                    c.lines.push(format!("blocks {}", ids_text(&c.blocks)));
                }
            }
        }
        let buses = net_order
            .iter()
            .map(|&n| {
                let on: Vec<usize> = (0..cols.len())
                    .filter(|&c| {
                        d.hosts[cols[c].hosts[0]]
                            .interfaces
                            .iter()
                            .any(|i| i.network == n)
                    })
                    .collect();
                (n, on)
            })
            .filter(|(_, on)| !on.is_empty())
            .collect();
        let rows = rows(plan, views, &col_of);
        let mut l = Layout {
            cols,
            blocked_at,
            buses,
            rows,
        };
        l.place();
        l
    }

    /// Box widths and column positions, left to right.
    fn place(&mut self) {
        let mut x = MARGIN;
        for c in &mut self.cols {
            let widest = c.lines.iter().map(|l| text_w(l)).fold(0.0, f64::max);
            c.w = (widest + 2.0 * PAD).max(110.0).ceil();
            c.x = x;
            x += c.w + GAP;
        }
    }

    fn boxes_top(&self) -> f64 {
        64.0 + BUS_GAP * self.buses.len() as f64
    }

    fn box_h(&self) -> f64 {
        let most = self.cols.iter().map(|c| c.lines.len()).max().unwrap_or(1);
        most as f64 * LINE + PAD * 1.5
    }

    fn rows_top(&self) -> f64 {
        self.boxes_top() + self.box_h() + 28.0
    }

    fn labels_x(&self) -> f64 {
        self.cols.last().map_or(MARGIN, |c| c.x + c.w + 16.0)
    }

    /// The document in drawing order: header and legend, buses, boxes, rows.
    fn draw(&self, plan: &Plan, verdicts: Option<&Verdicts>) -> String {
        let d = &plan.deployment;
        let labels: Vec<String> = self.rows.iter().map(|r| row_label(r, verdicts)).collect();
        let title = title(plan, verdicts);
        let legend = legend(verdicts);
        let label_w = labels.iter().map(|l| text_w(l)).fold(0.0, f64::max);
        let width = (self.labels_x() + label_w + MARGIN)
            .max(MARGIN * 2.0 + text_w(&title))
            .max(MARGIN * 2.0 + legend.1)
            .ceil();
        let bottom = self.rows_top() + ROW * self.rows.len() as f64;
        let height = (bottom + 16.0).ceil();
        let mut o = String::new();
        writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, monospace" font-size="12" xml:space="preserve">"#
        )
        .unwrap();
        writeln!(o, "<title>{}</title>", esc(&title)).unwrap();
        o.push_str("<defs>\n");
        let colours: Vec<&str> = match verdicts {
            None => Class::ALL.iter().map(|(c, _)| c.colour()).collect(),
            Some(_) => vec![PASS, BLOCKED, UNKNOWN],
        };
        for c in colours {
            writeln!(
                o,
                r#"<marker id="head{}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"#,
                &c[1..]
            )
            .unwrap();
        }
        o.push_str("</defs>\n");
        writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##).unwrap();
        writeln!(
            o,
            r#"<text x="{MARGIN}" y="22" font-size="14" font-weight="bold">{}</text>"#,
            esc(&title)
        )
        .unwrap();
        o.push_str(&legend.0);
        self.draw_buses(&mut o, d);
        self.draw_boxes(&mut o, bottom);
        self.draw_rows(&mut o, &labels, verdicts, width);
        o.push_str("</svg>\n");
        o
    }

    /// Networks: one bus each, every box it reaches joined to it.
    fn draw_buses(&self, o: &mut String, d: &Deployment) {
        let top = self.boxes_top();
        for (b, (n, on)) in self.buses.iter().enumerate() {
            let y = 64.0 + BUS_GAP * b as f64;
            let xs: Vec<f64> = on.iter().map(|&c| self.stub_x(d, c, *n)).collect();
            let (x0, x1) = (
                xs.iter().cloned().fold(f64::MAX, f64::min) - 12.0,
                xs.iter().cloned().fold(0.0, f64::max) + 12.0,
            );
            let net = &d.networks[*n];
            writeln!(o, r##"<g class="network"><line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#444" stroke-width="3"/>"##).unwrap();
            writeln!(
                o,
                r##"<text x="{x0}" y="{}" fill="#444">{} {}</text>"##,
                y - 5.0,
                esc(&net.name),
                net_prefixes(net)
            )
            .unwrap();
            for x in xs {
                writeln!(o, r##"<line x1="{x}" y1="{y}" x2="{x}" y2="{top}" stroke="#444" stroke-width="1.5"/><circle cx="{x}" cy="{y}" r="3" fill="#444"/>"##).unwrap();
            }
            o.push_str("</g>\n");
        }
    }

    /// Boxes, and a lifeline below each for the flows.
    fn draw_boxes(&self, o: &mut String, bottom: f64) {
        let (top, bh) = (self.boxes_top(), self.box_h());
        let life_end = bottom - ROW / 2.0 + 6.0;
        for c in &self.cols {
            let (stroke, sw) = if c.blocks.is_empty() {
                ("#333", 1.2)
            } else {
                (BLOCKED, 3.0)
            };
            let cx = c.centre();
            writeln!(o, r#"<g class="host"><title>{}</title>"#, esc(&c.title)).unwrap();
            writeln!(o, r##"<line x1="{cx}" y1="{}" x2="{cx}" y2="{life_end}" stroke="#bbb" stroke-dasharray="4 3"/>"##, top + bh).unwrap();
            let fill = if c.hosts.len() > 1 {
                "#eef3f8"
            } else {
                "#f7f7f2"
            };
            writeln!(
                o,
                r#"<rect x="{}" y="{top}" width="{}" height="{bh}" rx="5" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                c.x, c.w
            )
            .unwrap();
            for (i, line) in c.lines.iter().enumerate() {
                let y = top + PAD + LINE * (i as f64 + 0.75);
                let weight = if i == 0 { r#" font-weight="bold""# } else { "" };
                let fill = if line.starts_with("blocks ") {
                    BLOCKED
                } else {
                    "#222"
                };
                writeln!(
                    o,
                    r#"<text x="{}" y="{y}"{weight} fill="{fill}">{}</text>"#,
                    c.x + PAD,
                    esc(line)
                )
                .unwrap();
            }
            o.push_str("</g>\n");
        }
    }

    /// Flows: one row per arrow, its label at the row's end.
    fn draw_rows(
        &self,
        o: &mut String,
        labels: &[String],
        verdicts: Option<&Verdicts>,
        width: f64,
    ) {
        let rows_top = self.rows_top();
        for (i, (r, label)) in self.rows.iter().zip(labels).enumerate() {
            let y = rows_top + ROW * i as f64;
            let colour = row_colour(r, verdicts);
            if i % 2 == 0 {
                // Bands lead the eye from an arrow to its label at the row's end.
                writeln!(
                    o,
                    r##"<rect x="{}" y="{}" width="{}" height="{ROW}" fill="#f2f2f2"/>"##,
                    MARGIN / 2.0,
                    y - ROW / 2.0,
                    width - MARGIN
                )
                .unwrap();
            }
            writeln!(
                o,
                r#"<g class="flow"><title>{} {}</title>"#,
                ids_all(&r.ids),
                esc(&r.text)
            )
            .unwrap();
            self.arrow(o, r, y, colour);
            if verdicts.is_some() {
                self.block_marks(o, r, y);
            }
            writeln!(
                o,
                r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
                self.labels_x(),
                y + 4.0,
                esc(label)
            )
            .unwrap();
            o.push_str("</g>\n");
        }
    }

    /// Where `col`'s box meets the bus of `net`.
    fn stub_x(&self, d: &Deployment, col: usize, net: NetId) -> f64 {
        let c = &self.cols[col];
        let mine: Vec<NetId> = self
            .buses
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| {
                d.hosts[c.hosts[0]]
                    .interfaces
                    .iter()
                    .any(|i| i.network == *n)
            })
            .collect();
        if mine.len() <= 1 {
            return c.centre();
        }
        let k = mine.iter().position(|n| *n == net).unwrap_or(0);
        c.stub(k, mine.len())
    }

    /// The row's arrow: from the initiator's lifeline to the responder's,
    /// a marker where it crosses a router (filled: the router rewrites it);
    /// a loop when both ends share a column (a server backing itself up).
    fn arrow(&self, o: &mut String, r: &Row, y: f64, colour: &str) {
        let x0 = self.cols[r.from].centre();
        let x1 = self.cols[r.to].centre();
        let dash = if r.related {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let head = &colour[1..];
        if r.from == r.to {
            writeln!(
                o,
                r#"<path d="M{x0},{} h22 v10 h-20" fill="none" stroke="{colour}" stroke-width="2"{dash} marker-end="url(#head{head})"/>"#,
                y - 5.0
            )
            .unwrap();
        } else {
            // Hop by hop, so a router off the straight line still shows.
            let mut pts = vec![x0];
            pts.extend(r.via.iter().map(|v| self.cols[v.col].centre()));
            pts.push(x1);
            let d: Vec<String> = pts
                .iter()
                .enumerate()
                .map(|(i, x)| format!("{}{x},{y}", if i == 0 { "M" } else { "L" }))
                .collect();
            writeln!(
                o,
                r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"{dash} marker-end="url(#head{head})"/>"#,
                d.join(" ")
            )
            .unwrap();
        }
        for v in &r.via {
            let x = self.cols[v.col].centre();
            if v.nat {
                writeln!(
                    o,
                    r#"<path d="M{x},{} l5,5 l-5,5 l-5,-5 z" fill="{colour}"/>"#,
                    y - 5.0
                )
                .unwrap();
            } else {
                writeln!(o, r##"<circle cx="{x}" cy="{y}" r="4" fill="#fff" stroke="{colour}" stroke-width="2"/>"##).unwrap();
            }
        }
    }

    /// A cross on the lifeline of each host that blocks one of the row's flows.
    fn block_marks(&self, o: &mut String, r: &Row, y: f64) {
        let at: BTreeSet<usize> = r
            .ids
            .iter()
            .filter_map(|id| self.blocked_at.get(id - 1).copied().flatten())
            .collect();
        for c in at {
            let x = self.cols[c].centre();
            writeln!(
                o,
                r#"<path d="M{},{} l12,12 m0,-12 l-12,12" stroke="{BLOCKED}" stroke-width="3"/>"#,
                x - 6.0,
                y - 6.0
            )
            .unwrap();
        }
    }
}

/// The picture's title: the topology, its auth, and the verdict count.
fn title(plan: &Plan, verdicts: Option<&Verdicts>) -> String {
    let d = &plan.deployment;
    let base = format!("{} (auth {})", d.source_name, d.amanda.auth);
    match verdicts {
        None => format!("amwall plan: {base}"),
        Some(v) => {
            let count = |f: fn(&Mark) -> bool| v.marks.iter().filter(|m| f(m)).count();
            let pass = count(|m| *m == Mark::Pass);
            let blocked = count(|m| matches!(m, Mark::Blocked { .. }));
            let unknown = v.marks.len() - pass - blocked;
            let mut t = format!("amwall {}: {base}: {pass} pass, {blocked} blocked", v.title);
            if unknown > 0 {
                t.push_str(&format!(", {unknown} unknown"));
            }
            t
        }
    }
}

/// The key under the title, and its width. Each symbol is drawn at the
/// origin of its own `translate`, 18 px wide.
fn legend(verdicts: Option<&Verdicts>) -> (String, f64) {
    let line = |c: &str, w: f64, extra: &str| {
        format!(r#"<path d="M0,0 h18" stroke="{c}" stroke-width="{w}"{extra}/>"#)
    };
    let mut items: Vec<(String, &str)> = match verdicts {
        None => Class::ALL
            .iter()
            .map(|(c, n)| (line(c.colour(), 3.0, ""), *n))
            .collect(),
        Some(_) => vec![
            (line(PASS, 3.0, ""), "pass"),
            (
                line(BLOCKED, 3.0, ""),
                "blocked (× on the host that drops it)",
            ),
            (line(UNKNOWN, 3.0, ""), "unknown"),
        ],
    };
    let grey = "#444";
    items.push((
        line(grey, 2.0, r#" stroke-dasharray="5 3""#),
        "RELATED via the conntrack helper",
    ));
    items.push((
        line(grey, 2.0, "")
            + &format!(
                r##"<circle cx="9" cy="0" r="4" fill="#fff" stroke="{grey}" stroke-width="2"/>"##
            ),
        "router forwards",
    ));
    items.push((
        line(grey, 2.0, "") + &format!(r#"<path d="M9,-5 l5,5 l-5,5 l-5,-5 z" fill="{grey}"/>"#),
        "router rewrites (NAT)",
    ));
    let mut o = String::from("<g class=\"legend\">\n");
    let mut x = MARGIN;
    for (symbol, text) in items {
        writeln!(
            o,
            r##"<g transform="translate({x},38)">{symbol}</g><text x="{}" y="42" fill="#333">{}</text>"##,
            x + 24.0,
            esc(text)
        )
        .unwrap();
        x += 24.0 + text_w(text) + 18.0;
    }
    o.push_str("</g>\n");
    (o, x)
}

fn row_colour(r: &Row, verdicts: Option<&Verdicts>) -> &'static str {
    let Some(v) = verdicts else {
        return r.class.colour();
    };
    match r
        .ids
        .iter()
        .map(|&id| v.mark(id).clone())
        .fold(Mark::Pass, Mark::worst)
    {
        Mark::Pass => PASS,
        Mark::Blocked { .. } => BLOCKED,
        Mark::Unknown => UNKNOWN,
    }
}

/// "#5 #6  check, estimate  udp 10080 (from 840-860)  via fwhost (masquerade)",
/// and in the verdict picture what the report said.
fn row_label(r: &Row, verdicts: Option<&Verdicts>) -> String {
    let mut s = format!("{}  {}", ids_text(&r.ids), r.text);
    let Some(v) = verdicts else { return s };
    let with = |f: fn(&Mark) -> bool| -> Vec<usize> {
        r.ids.iter().copied().filter(|&id| f(v.mark(id))).collect()
    };
    let pass = with(|m| *m == Mark::Pass);
    let blocked = with(|m| matches!(m, Mark::Blocked { .. }));
    let unknown = with(|m| *m == Mark::Unknown);
    // A word alone when it covers the row, else with its flow numbers.
    let part = |word: &str, ids: &[usize]| match ids.len() {
        0 => String::new(),
        n if n == r.ids.len() => format!("  {word}"),
        _ => format!("  {word} {}", ids_text(ids)),
    };
    s.push_str(&part("PASS", &pass));
    s.push_str(&part("BLOCKED", &blocked));
    let hosts: BTreeSet<&str> = blocked
        .iter()
        .filter_map(|&id| match v.mark(id) {
            Mark::Blocked { host: Some(h) } => Some(h.as_str()),
            _ => None,
        })
        .collect();
    if !hosts.is_empty() {
        let hosts: Vec<&str> = hosts.into_iter().collect();
        s.push_str(&format!(" on {}", hosts.join(", ")));
    }
    s.push_str(&part("UNKNOWN", &unknown));
    s
}

/// The networks from the server's outwards (breadth first through the hosts
/// on two networks), so a router stands between the networks it joins.
fn network_order(d: &Deployment) -> Vec<NetId> {
    let start = d
        .hosts
        .iter()
        .find(|h| h.roles.server)
        .and_then(|h| h.interfaces.first())
        .map_or(0, |i| i.network);
    let mut seen = vec![false; d.networks.len()];
    let mut order = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    for s in std::iter::once(start).chain(0..d.networks.len()) {
        if seen.get(s).copied().unwrap_or(true) {
            continue;
        }
        seen[s] = true;
        queue.push_back(s);
        while let Some(n) = queue.pop_front() {
            order.push(n);
            for h in &d.hosts {
                if h.interfaces.len() > 1 && h.interfaces.iter().any(|i| i.network == n) {
                    for i in &h.interfaces {
                        if !seen[i.network] {
                            seen[i.network] = true;
                            queue.push_back(i.network);
                        }
                    }
                }
            }
        }
    }
    order
}

/// Hosts in groups of identical clients (more than `HANDFUL` alike) or
/// alone, in file order of their first member.
fn group_hosts(plan: &Plan, views: &[FlowView<'_>]) -> Vec<Vec<HostId>> {
    let d = &plan.deployment;
    let mut mine: Vec<Vec<usize>> = vec![Vec::new(); d.hosts.len()];
    for (i, f) in plan.flows.iter().enumerate() {
        mine[f.initiator].push(i);
        if f.responder != f.initiator {
            mine[f.responder].push(i);
        }
    }
    let mut by_sig: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<HostId>> = Vec::new();
    for (h, host) in d.hosts.iter().enumerate() {
        let alike = !host.roles.server && !host.roles.router && host.masquerade.is_empty();
        if !alike {
            groups.push(vec![h]);
            continue;
        }
        let sig = signature(plan, views, h, &mine[h]);
        match by_sig.get(&sig) {
            Some(&g) => groups[g].push(h),
            None => {
                by_sig.insert(sig, groups.len());
                groups.push(vec![h]);
            }
        }
    }
    let mut out = Vec::new();
    for g in groups {
        if g.len() > HANDFUL {
            out.push(g);
        } else {
            out.extend(g.into_iter().map(|h| vec![h]));
        }
    }
    out.sort_by_key(|g| g[0]);
    out
}

/// What makes two clients draw alike: networks and interface names,
/// gateway, roles, server, settings, firewall manager, and their flows with
/// everything but the client itself.
fn signature(plan: &Plan, views: &[FlowView<'_>], h: HostId, flows: &[usize]) -> String {
    let d = &plan.deployment;
    let host = &d.hosts[h];
    let mut s = String::new();
    for i in &host.interfaces {
        write!(s, "{}@{};", i.name, i.network).unwrap();
    }
    write!(
        s,
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|",
        host.gateway, host.roles, host.server, host.amanda, host.client_conf, host.firewall
    )
    .unwrap();
    for &i in flows {
        let (f, v) = (&plan.flows[i], &views[i]);
        let other = |x: HostId| {
            if x == h {
                "self".to_string()
            } else {
                x.to_string()
            }
        };
        write!(
            s,
            "{:?} {} {} {} {} {:?} {:?} {:?} {};",
            f.operation,
            other(f.initiator),
            other(f.responder),
            f.proto,
            f.dport,
            f.sport,
            f.helper,
            v.via,
            v.stream
        )
        .unwrap();
    }
    s
}

/// Columns left to right: per network in drawing order its one-network
/// hosts (the server first), then the hosts that join it to the next.
fn order_columns(d: &Deployment, nets: &[NetId], mut groups: Vec<Vec<HostId>>) -> Vec<Vec<HostId>> {
    let rank: HashMap<NetId, usize> = nets.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    groups.sort_by_key(|g| {
        let h = &d.hosts[g[0]];
        let home = h
            .interfaces
            .iter()
            .filter_map(|i| rank.get(&i.network))
            .min()
            .copied()
            .unwrap_or(usize::MAX);
        (home, h.interfaces.len() > 1, !h.roles.server, g[0])
    });
    groups
}

/// The text of a box: name, roles, addresses; a router's masquerades and
/// port forwards; for a group, its size and its first and last member.
fn box_lines(plan: &Plan, hosts: &[HostId]) -> Vec<String> {
    let d = &plan.deployment;
    let first = &d.hosts[hosts[0]];
    let last = &d.hosts[hosts[hosts.len() - 1]];
    let mut lines = Vec::new();
    if hosts.len() > 1 {
        lines.push(format!("{} … {}", first.name, last.name));
        lines.push(format!("{} hosts alike", hosts.len()));
    } else {
        lines.push(first.name.clone());
    }
    lines.push(roles(first.roles));
    for (k, i) in first.interfaces.iter().enumerate() {
        let net = &d.networks[i.network].name;
        // An IPv6-only interface is named by its IPv6 address here.
        let addr = |i: &crate::model::Interface| match (i.address, i.address6) {
            (Some(a), _) => a.to_string(),
            (None, Some(a6)) => a6.to_string(),
            (None, None) => String::new(),
        };
        if hosts.len() > 1 {
            lines.push(format!(
                "{} {} … {}",
                i.name,
                addr(i),
                addr(&last.interfaces[k])
            ));
        } else if first.interfaces.len() > 1 {
            lines.push(format!("{} {} ({net})", i.name, addr(i)));
        } else {
            lines.push(format!("{} {}", i.name, addr(i)));
        }
        // A dual-stack interface's IPv6 address on a line of its own, under
        // the interface's name.
        if let (1, Some(a6), Some(_)) = (hosts.len(), i.address6, i.address) {
            lines.push(format!("{} {a6}", " ".repeat(i.name.chars().count())));
        }
    }
    for m in &first.masquerade {
        lines.push(format!(
            "masquerade {} → {}",
            d.networks[m.from].name, d.networks[m.to].name
        ));
    }
    if hosts.len() == 1 {
        lines.extend(port_forwards(plan, hosts[0]));
    }
    lines
}

fn roles(r: crate::model::Roles) -> String {
    let v: Vec<&str> = [
        (r.server, "server"),
        (r.client, "client"),
        (r.recover, "amrecover"),
        (r.router, "router"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    if v.is_empty() {
        "no Amanda role".into()
    } else {
        v.join(", ")
    }
}

/// The port forwards the plan's paths take through `router`, at most six
/// lines (then how many more).
fn port_forwards(plan: &Plan, router: HostId) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for (f, p) in plan.flows.iter().zip(&plan.paths) {
        for h in p.routers().filter(|h| h.host == router) {
            if let Some(to) = h.dnat_to {
                let line = format!("forward {} {}:{} → {to}", f.proto, h.dst, f.dport);
                if seen.insert(line.clone()) {
                    order.push(line);
                }
            }
        }
    }
    if order.len() > 6 {
        let more = order.len() - 5;
        order.truncate(5);
        order.push(format!("… {more} more port forwards"));
    }
    order
}

/// One row per arrow: flows with the same columns, ports, path and colour
/// share it, in the order of their first flow.
fn rows(plan: &Plan, views: &[FlowView<'_>], col_of: &[usize]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let v4 = views.iter().zip(&plan.paths).map(|(v, p)| {
        let via: Vec<Via> = p
            .routers()
            .map(|h| Via {
                col: col_of[h.host],
                nat: h.dnat_to.is_some() || h.snat_to.is_some(),
            })
            .collect();
        (
            std::borrow::Cow::Borrowed(v),
            &plan.flows[v.id - 1],
            via,
            "",
        )
    });
    // IPv6-only flows (`Plan::flows6`): routed, never NATed.
    let v6 = view::all6(plan)
        .into_iter()
        .zip(&plan.paths6)
        .zip(&plan.flows6)
        .map(|((v, p), f)| {
            let via = p
                .routers()
                .map(|h| Via {
                    col: col_of[h.host],
                    nat: false,
                })
                .collect();
            (std::borrow::Cow::Owned(v), f, via, "  IPv6 only")
        });
    for (v, f, via, family) in v4.chain(v6) {
        let (from, to) = (col_of[f.initiator], col_of[f.responder]);
        let class = Class::of(v.operation);
        let related = v.helper == HelperRole::Expected;
        let mut text = format!(
            "{} {} (from {}){}",
            v.proto,
            v.dport,
            v.sport_cell(),
            v.helper_note()
        );
        if !v.via.is_empty() {
            text.push_str(&format!("  via {}", v.via.join(", ")));
        }
        if f.initiator == f.responder {
            text.push_str("  loopback");
        }
        text.push_str(family);
        let key = format!("{from} {to} {class:?} {text}");
        match index.get(&key) {
            Some(&r) => {
                let row = &mut rows[r];
                row.ids.push(v.id);
                if !row.ops.contains(&v.operation) {
                    row.ops.push(v.operation);
                }
            }
            None => {
                index.insert(key, rows.len());
                rows.push(Row {
                    from,
                    to,
                    via,
                    ids: vec![v.id],
                    ops: vec![v.operation],
                    class,
                    related,
                    text,
                });
            }
        }
    }
    for r in &mut rows {
        let ops: Vec<&str> = r.ops.iter().map(|o| o.name()).collect();
        r.text = format!("{}  {}", ops.join(", "), r.text);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amanda::settings::Auth;

    fn wiki() -> Plan {
        let text = include_str!("../examples/wiki.toml").to_string();
        let d = crate::load::load_str("wiki.toml", text).unwrap();
        Plan::build(d.with_auth(Auth::Bsd)).unwrap()
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(esc("x\ny"), "x&lt;U+000A&gt;y");
    }

    #[test]
    fn a_router_stands_between_the_networks_it_joins() {
        let plan = wiki();
        let views = view::all(&plan);
        let l = Layout::new(&plan, &views, None);
        let names: Vec<&str> = l
            .cols
            .iter()
            .map(|c| plan.deployment.hosts[c.hosts[0]].name.as_str())
            .collect();
        assert_eq!(names, ["tshost", "lhost", "fwhost", "rhost"]);
        // Check and estimate share an arrow; every flow is on one.
        let mut ids: Vec<usize> = l.rows.iter().flat_map(|r| r.ids.clone()).collect();
        ids.sort();
        assert_eq!(ids, (1..=plan.flows.len()).collect::<Vec<_>>());
        assert!(l.rows.len() < plan.flows.len());
    }

    #[test]
    fn a_blocked_flow_marks_its_host_and_the_worst_verdict_wins() {
        let plan = wiki();
        let mut marks = vec![Mark::Pass; plan.flows.len()];
        marks[12] = Mark::Blocked {
            host: Some("fwhost".into()),
        };
        let v = Verdicts {
            title: "check".into(),
            marks,
        };
        let s = svg(&plan, Some(&v));
        assert!(s.contains("blocks #13"), "{s}");
        assert!(s.contains("BLOCKED #13 on fwhost"), "{s}");
        assert!(s.contains(": 23 pass, 1 blocked"));
        assert_eq!(
            Mark::Unknown.worst(Mark::Blocked { host: None }),
            Mark::Blocked { host: None }
        );
        assert_eq!(Mark::Pass.worst(Mark::Unknown), Mark::Unknown);
    }

    #[test]
    fn hundreds_of_distinct_hosts_are_not_drawn_but_said() {
        // Every client its own kind: each has its own client-port.
        let mut t = String::from("[amanda]\nauth = \"bsd\"\n[[network]]\nname = \"n\"\ncidr = \"10.0.0.0/16\"\n[[host]]\nname = \"s\"\nroles = [\"server\"]\ninterfaces = [{ name = \"eth0\", network = \"n\", address = \"10.0.0.1\" }]\n");
        for i in 0..70 {
            t.push_str(&format!("[[host]]\nname = \"c{i}\"\nroles = [\"client\"]\namanda = {{ client-port = {} }}\ninterfaces = [{{ name = \"eth0\", network = \"n\", address = \"10.0.1.{}\" }}]\n", 20000 + i, i + 2));
        }
        let d = crate::load::load_str("many.toml", t).unwrap();
        let s = svg(&Plan::build(d).unwrap(), None);
        assert!(s.contains("Not drawn: 71 boxes"), "{s}");
        assert!(s.len() < 2000);
    }

    #[test]
    fn many_flow_numbers_are_shortened_but_all_kept_for_the_tooltip() {
        let ids: Vec<usize> = (1..=50).map(|i| i * 9).collect();
        assert_eq!(ids_text(&ids), "#9 #18 … #450 (50)");
        assert!(ids_all(&ids).ends_with("#441 #450"));
        let many: Vec<usize> = (0..10_000).map(|i| 3 + i * 9).collect();
        assert_eq!(ids_all(&many), "#3 #12 … #89994 (step 9, 10000 flows)");
        assert_eq!(ids_text(&[1, 2]), "#1 #2");
    }
}
