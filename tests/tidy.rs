//! Tidy: the code keeps the shape ARCHITECTURE.md gives it.
//!
//! - Every `crate::` and `super::` path in `src/` (outside test code) points
//!   along an arrow of ARCHITECTURE.md's "Layers" table, every arrow there is
//!   used, and the arrows form no cycle: layers only point down.
//! - A function longer than `LONG` lines says why, in a `// Long:` comment just
//!   above it.
//!
//! Rust-analyzer keeps a test like this; so does this project, without a
//! parser crate: comments and literals are blanked first, then paths are read
//! token by token. Its own unit tests below feed it a deliberate violation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lines a function may have before it needs a `// Long:` reason.
const LONG: usize = 150;

type Table = BTreeMap<String, BTreeSet<String>>;

/// The "Layers" table: `| `unit` | `dep`, `dep` | ... |` rows under a heading
/// `## Layers`, up to the next heading. A unit with no dependencies writes `—`.
fn parse_layers(md: &str) -> Result<Table, String> {
    let start = md
        .find("\n## Layers")
        .ok_or("ARCHITECTURE.md has no `## Layers` section")?;
    let section = &md[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let mut table = Table::new();
    for (i, line) in section[..end].lines().enumerate() {
        let cells: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let unit = cells[1].trim_matches('`').to_string();
        let mut deps = BTreeSet::new();
        if cells[2] != "—" {
            for d in cells[2].split(',') {
                let d = d.trim();
                if !(d.starts_with('`') && d.ends_with('`') && d.len() > 2) {
                    return Err(format!(
                        "Layers line {}: `{d}` is not a `module` in backquotes",
                        i + 1
                    ));
                }
                deps.insert(d.trim_matches('`').to_string());
            }
        }
        if table.insert(unit.clone(), deps).is_some() {
            return Err(format!("Layers: `{unit}` has two rows"));
        }
    }
    if table.is_empty() {
        return Err("the Layers section has no rows".into());
    }
    for (u, deps) in &table {
        for d in deps {
            if !table.contains_key(d) {
                return Err(format!("Layers: `{u}` may use `{d}`, which has no row"));
            }
        }
    }
    Ok(table)
}

/// `text` with comments, string and char literals replaced by spaces (newlines
/// kept, so line numbers still hold).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let clear = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |e| i + e);
            clear(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            clear(&mut out, i, j);
            i = j;
        } else if let Some(hashes) = raw_string_start(rest) {
            let body = i + 2 + hashes + if rest[0] == b'b' { 1 } else { 0 };
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat(b'#').take(hashes))
                .collect();
            let end = find(b, body, &close).map_or(b.len(), |e| e + close.len());
            clear(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            clear(&mut out, i, (j + 1).min(b.len()));
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), else a lifetime or label.
            let lit = if rest.get(1) == Some(&b'\\') {
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|e| e + 4)
            } else {
                text[i + 1..].chars().next().and_then(|c| {
                    let n = 1 + c.len_utf8();
                    (rest.get(n) == Some(&b'\'')).then_some(n + 1)
                })
            };
            match lit {
                Some(n) => {
                    clear(&mut out, i, i + n);
                    i += n;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// `r"`, `r#"`, `br"`...: the number of `#`s.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Removes each item marked `#[cfg(test)]` (a module, a function, a `mod x;`):
/// tests may reach anything.
fn without_tests(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]").map(|p| p + from) {
        let b = code.as_bytes();
        let mut j = at;
        let mut depth = 0usize;
        while j < b.len() {
            match b[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b';' if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        let end = (j + 1).min(b.len());
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`; `lib.rs`, `main.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// The identifiers and `::`/`{`/`}`/`,` of `code`, with the line each is on.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((code[i..end].to_string(), line));
        } else if c == ':' && chars.peek().map(|p| p.1) == Some(':') {
            chars.next();
            out.push(("::".into(), line));
        } else if !c.is_whitespace() {
            out.push((c.to_string(), line));
        }
    }
    out
}

/// Every module path `code` names through `crate::` or `super::`, absolute,
/// with its line. Groups (`crate::a::{b, c::d}`) give one path each.
fn references(code: &str, own: &[String], is_mod_rs: bool) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (t, line) = (&toks[i].0, toks[i].1);
        let after_path = i > 0 && toks[i - 1].0 == "::";
        let base: Option<Vec<String>> = match t.as_str() {
            "crate" if !after_path => Some(Vec::new()),
            "super" if !after_path => {
                // `super` of a file module `a::b` (a/b.rs) is `a`; of `a/mod.rs` it is the parent of `a`.
                let mut p = own.to_vec();
                if !is_mod_rs || !p.is_empty() {
                    p.pop();
                }
                let mut j = i;
                while toks.get(j + 1).map(|t| t.0.as_str()) == Some("::")
                    && toks.get(j + 2).map(|t| t.0.as_str()) == Some("super")
                {
                    p.pop();
                    j += 2;
                }
                i = j;
                Some(p)
            }
            _ => None,
        };
        if let Some(base) = base {
            i = path_tail(&toks, i + 1, base, line, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads `::seg::seg` or `::{...}` from `toks[i]` on, pushing each full path.
fn path_tail(
    toks: &[(String, usize)],
    mut i: usize,
    mut path: Vec<String>,
    line: usize,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    loop {
        if toks.get(i).map(|t| t.0.as_str()) != Some("::") {
            out.push((path, line));
            return i;
        }
        match toks.get(i + 1).map(|t| t.0.as_str()) {
            Some("{") => {
                i += 2;
                loop {
                    match toks.get(i).map(|t| t.0.as_str()) {
                        None => return i,
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        Some("self") => {
                            out.push((path.clone(), line));
                            i += 1;
                        }
                        Some("*") => {
                            out.push((path.clone(), line));
                            i += 1;
                        }
                        Some(seg) => {
                            let mut p = path.clone();
                            p.push(seg.to_string());
                            i = path_tail(toks, i + 1, p, line, out);
                            // `as name`
                            if toks.get(i).map(|t| t.0.as_str()) == Some("as") {
                                i += 2;
                            }
                        }
                    }
                }
            }
            Some("*") => {
                out.push((path, line));
                return i + 2;
            }
            Some(seg)
                if seg
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_') =>
            {
                path.push(seg.to_string());
                i += 2;
            }
            _ => {
                out.push((path, line));
                return i;
            }
        }
    }
}

/// The unit a module path belongs to: the longest row of the table it starts with.
fn unit_of<'t>(path: &[String], table: &'t Table) -> Option<&'t str> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find_map(|p| table.get_key_value(&p).map(|(k, _)| k.as_str()))
}

struct Source {
    rel: std::path::PathBuf,
    text: String,
}

/// Re-exports at the crate root (`pub use plan::Plan;`): name → module.
fn root_aliases(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let code = blank(lib);
    let toks = tokens(&code);
    for w in 0..toks.len() {
        if toks[w].0 == "pub" && toks.get(w + 1).map(|t| t.0.as_str()) == Some("use") {
            let mut paths = Vec::new();
            let first = toks[w + 2].0.clone();
            path_tail(&toks, w + 3, vec![first], 0, &mut paths);
            for (p, _) in paths {
                if let Some(name) = p.last() {
                    out.insert(name.clone(), p[..p.len() - 1].to_vec());
                }
            }
        }
    }
    out
}

/// Every arrow the sources draw, with where: (from, to) → "file:line".
fn arrows(
    sources: &[Source],
    table: &Table,
) -> Result<BTreeMap<(String, String), String>, Vec<String>> {
    let aliases = sources
        .iter()
        .find(|s| s.rel == Path::new("lib.rs"))
        .map(|s| root_aliases(&s.text))
        .unwrap_or_default();
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for s in sources {
        let own = module_path(&s.rel);
        if own.is_empty() {
            continue; // lib.rs and main.rs sit above every layer
        }
        let Some(from) = unit_of(&own, table) else {
            errors.push(format!(
                "src/{}: module `{}` has no row in ARCHITECTURE.md's Layers table",
                s.rel.display(),
                own.join("::")
            ));
            continue;
        };
        let is_mod_rs = s.rel.file_name().is_some_and(|f| f == "mod.rs");
        let code = without_tests(&blank(&s.text));
        for (mut path, line) in references(&code, &own, is_mod_rs) {
            if let Some(target) = path.first().and_then(|f| aliases.get(f)) {
                path = target.clone();
            }
            let Some(to) = unit_of(&path, table) else {
                continue; // the crate root itself, or a name the crate root defines
            };
            if to != from {
                found
                    .entry((from.to_string(), to.to_string()))
                    .or_insert_with(|| format!("src/{}:{line}", s.rel.display()));
            }
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// What is wrong with the layering: arrows the table does not allow, rows
/// that allow what nothing uses, and cycles in the table.
fn layer_errors(sources: &[Source], table: &Table) -> Vec<String> {
    let found = match arrows(sources, table) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut errors = Vec::new();
    for ((from, to), at) in &found {
        if !table[from].contains(to) {
            errors.push(format!(
                "{at}: `{from}` uses `{to}`, which the Layers table does not allow"
            ));
        }
    }
    for (from, deps) in table {
        for to in deps {
            if !found.contains_key(&(from.clone(), to.clone())) {
                errors.push(format!(
                    "Layers table: `{from}` may use `{to}` but does not; remove the arrow"
                ));
            }
        }
    }
    if let Some(cycle) = cycle(table) {
        errors.push(format!("Layers table has a cycle: {}", cycle.join(" → ")));
    }
    errors
}

fn cycle(table: &Table) -> Option<Vec<String>> {
    fn visit<'t>(
        u: &'t str,
        table: &'t Table,
        state: &mut BTreeMap<&'t str, bool>,
        stack: &mut Vec<&'t str>,
    ) -> Option<Vec<String>> {
        match state.get(u) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|s| *s == u).unwrap_or(0);
                let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                c.push(u.to_string());
                return Some(c);
            }
            None => {}
        }
        state.insert(u, false);
        stack.push(u);
        for d in &table[u] {
            if let Some(c) = visit(d, table, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(u, true);
        None
    }
    let mut state = BTreeMap::new();
    for u in table.keys() {
        if let Some(c) = visit(u, table, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Functions longer than `LONG` lines without a `// Long:` line in the
/// comments and attributes just above them.
fn long_functions(sources: &[Source]) -> Vec<String> {
    let mut errors = Vec::new();
    for s in sources {
        let code = blank(&s.text);
        let lines: Vec<&str> = s.text.lines().collect();
        let blanked: Vec<&str> = code.lines().collect();
        for (n, l) in blanked.iter().enumerate() {
            let t = l.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "const fn ",
                "pub const fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
            if !is_fn {
                continue;
            }
            let Some(len) = body_lines(&blanked, n) else {
                continue;
            };
            if len <= LONG {
                continue;
            }
            let reason = lines[..n]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|l| l.trim_start().starts_with("// Long:"));
            if !reason {
                let name = t
                    .split("fn ")
                    .nth(1)
                    .unwrap_or("")
                    .split(['(', '<'])
                    .next()
                    .unwrap_or("");
                errors.push(format!(
                    "src/{}:{}: fn {name} is {len} lines (over {LONG}) and no `// Long:` comment above it says why",
                    s.rel.display(),
                    n + 1
                ));
            }
        }
    }
    errors
}

/// Lines from the `fn` line to its closing brace, or None for a declaration.
fn body_lines(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0i64;
    let mut opened = false;
    for (k, l) in lines[start..].iter().enumerate() {
        for c in l.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened && depth == 0 => return None,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return Some(k + 1);
        }
    }
    None
}

fn read_sources(root: &Path) -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(Source {
                    rel: p.strip_prefix(root).unwrap().to_path_buf(),
                    text: std::fs::read_to_string(&p).unwrap(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn layers_only_point_down_as_architecture_md_says() {
    let md = std::fs::read_to_string("ARCHITECTURE.md").unwrap();
    let table = parse_layers(&md).unwrap_or_else(|e| panic!("{e}"));
    let sources = read_sources(Path::new("src"));
    assert!(sources.len() > 40, "read the crate's sources");
    let errors = layer_errors(&sources, &table);
    assert!(errors.is_empty(), "layering:\n{}", errors.join("\n"));
}

#[test]
fn long_functions_say_why() {
    let sources = read_sources(Path::new("src"));
    let errors = long_functions(&sources);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

fn src(rel: &str, text: &str) -> Source {
    Source {
        rel: rel.into(),
        text: text.into(),
    }
}

const TABLE: &str = "# x\n\n## Layers\n\n| unit | may use | why |\n| --- | --- | --- |\n| `low` | — | leaf |\n| `mid` | `low` | |\n| `top` | `mid`, `low` | |\n\n## Next\n| `ignored` | — | |\n";

#[test]
fn the_table_parser_reads_rows_and_refuses_unknown_units() {
    let t = parse_layers(TABLE).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t["top"], ["low".to_string(), "mid".to_string()].into());
    assert!(t["low"].is_empty());
    let bad = TABLE.replace("`mid`, `low`", "`mid`, `nowhere`");
    assert!(parse_layers(&bad).unwrap_err().contains("nowhere"));
    assert!(parse_layers("no section").is_err());
}

#[test]
fn an_upward_arrow_a_stale_arrow_and_a_cycle_are_each_reported() {
    let t = parse_layers(TABLE).unwrap();
    let good = [
        src("lib.rs", "pub mod low; pub mod mid; pub mod top;\npub use mid::Thing;"),
        src("low.rs", "pub struct L;\n#[cfg(test)]\nmod tests { use crate::top::T; }"),
        src("mid/mod.rs", "use crate::low::L; // crate::top in a comment\nconst S: &str = \"crate::top\";\nmod sub;"),
        src("mid/sub.rs", "use super::super::low::{self, L};"),
        src("top.rs", "use crate::{mid::{self, X}, low::*};\nfn f() -> crate::Thing { todo!() }"),
    ];
    assert_eq!(layer_errors(&good, &t), Vec::<String>::new());

    // low reaching up to mid: refused at the line.
    let mut up = good;
    up[1] = src("low.rs", "pub struct L;\nfn f() { let _ = crate::mid::M; }");
    let e = layer_errors(&up, &t);
    assert!(
        e.iter()
            .any(|e| e.starts_with("src/low.rs:2: `low` uses `mid`")),
        "{e:?}"
    );

    // top no longer using low: the arrow is stale.
    let mut stale = up;
    stale[1] = src("low.rs", "pub struct L;");
    stale[4] = src("top.rs", "use crate::mid::X;");
    let e = layer_errors(&stale, &t);
    assert_eq!(
        e,
        vec!["Layers table: `top` may use `low` but does not; remove the arrow".to_string()]
    );

    let cyc = TABLE.replace("| `low` | — |", "| `low` | `top` |");
    let e = layer_errors(&stale, &parse_layers(&cyc).unwrap());
    assert!(e.iter().any(|e| e.contains("cycle")), "{e:?}");

    // A module without a row.
    let e = layer_errors(&[src("lib.rs", ""), src("stray.rs", "")], &t);
    assert!(e[0].contains("`stray` has no row"), "{e:?}");
}

#[test]
fn a_long_function_needs_a_reason() {
    let body = "    x();\n".repeat(LONG);
    let plain = format!("fn short() {{}}\n/// Doc.\nfn long() {{\n{body}}}\n");
    let e = long_functions(&[src("a.rs", &plain)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("src/a.rs:3: fn long is 152 lines"),
        "{e:?}"
    );
    let why =
        format!("/// Doc.\n// Long: one arm per keyword.\n#[inline]\nfn long() {{\n{body}}}\n");
    assert!(long_functions(&[src("a.rs", &why)]).is_empty());
    // Braces in strings and comments do not count.
    let tricky = format!("fn f() {{\n    let s = \"}}\"; // }}\n{body}}}\n");
    assert_eq!(long_functions(&[src("a.rs", &tricky)]).len(), 1);
}

#[test]
fn blanking_keeps_lifetimes_and_lines_and_drops_literals() {
    let b = blank(
        "fn f<'a>(x: &'a str) -> char { '\\'' } // crate::x\nlet r = r#\"crate::y\"#; 'é';\n",
    );
    assert!(b.contains("fn f<'a>(x: &'a str)"));
    assert!(!b.contains("crate"));
    assert!(!b.contains('é'));
    assert_eq!(b.lines().count(), 2);
}
