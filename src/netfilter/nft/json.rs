//! `nft -j list ruleset` (libnftables-json(5)) into the IR.
//!
//! The JSON says what the text says, object by object, so it is translated
//! into nft text and read by the one text parser: one place decides what an
//! expression means, and the two inputs cannot drift apart (a test parses the
//! text and the JSON listing of the same ruleset and compares). What JSON has
//! and the translation does not know becomes a word the text parser keeps as
//! unknown.
//!
//! JSON has no useful line numbers (nft prints one line), so a parsed rule's
//! [`Origin::line`] is the rule's `handle` — what `nft -a list ruleset` shows
//! and `nft delete rule ... handle N` takes — or, without one, its position
//! in the `nftables` array.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use serde_json::Value;

use crate::diag::InputError;
use crate::netfilter::{Origin, Parsed};

// Long: one arm per nft JSON object kind, as libnftables-json(5) lists them: the schema in
// one place
pub fn parse_json(file: &str, text: &str) -> Result<Parsed, Box<InputError>> {
    let fail = |span: std::ops::Range<usize>, msg: String, label: &str| {
        Box::new(InputError::new(
            file,
            &Arc::new(text.to_string()),
            span,
            msg,
            label,
        ))
    };
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let off = offset_of(text, e.line(), e.column());
        fail(off..off + 1, format!("bad JSON: {e}"), "here")
    })?;
    let Some(items) = v.get("nftables").and_then(Value::as_array) else {
        return Err(fail(
            0..1,
            "expected an object with an \"nftables\" array (nft -j list ruleset)".into(),
            "here",
        ));
    };
    let mut tables: Vec<TableText> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let bad = |i: usize, what: &str| {
        fail(
            0..text.len().min(1),
            format!("nftables[{i}]: {what}"),
            "in this document",
        )
    };
    for (i, item) in items.iter().enumerate() {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            return Err(bad(i, "expected an object"));
        };
        if kind == "metainfo" {
            continue;
        }
        let family = body.get("family").and_then(Value::as_str).unwrap_or("ip");
        let table = match kind.as_str() {
            "table" => body.get("name"),
            _ => body.get("table"),
        }
        .and_then(Value::as_str);
        let Some(table) = table else {
            // Objects that are not part of a table (none in a listing).
            continue;
        };
        let key = (family.to_string(), table.to_string());
        let ti = *index.entry(key).or_insert_with(|| {
            tables.push(TableText {
                family: family.to_string(),
                name: table.to_string(),
                objects: String::new(),
                chains: Vec::new(),
            });
            tables.len() - 1
        });
        let t = &mut tables[ti];
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        match kind.as_str() {
            "table" => {}
            "chain" => {
                let mut header = String::new();
                if let (Some(ty), Some(hook)) = (
                    body.get("type").and_then(Value::as_str),
                    body.get("hook").and_then(Value::as_str),
                ) {
                    let prio = body.get("prio").and_then(Value::as_i64).unwrap_or(0);
                    let policy = body
                        .get("policy")
                        .and_then(Value::as_str)
                        .unwrap_or("accept");
                    header = format!("type {ty} hook {hook} priority {prio}; policy {policy};");
                }
                match t.chains.iter_mut().find(|c| c.name == name) {
                    Some(c) => c.header = header,
                    None => t.chains.push(ChainText {
                        name: name.to_string(),
                        header,
                        rules: Vec::new(),
                        index: i + 1,
                    }),
                }
            }
            "rule" => {
                let chain = body.get("chain").and_then(Value::as_str).unwrap_or("");
                let mut words = Vec::new();
                for e in body
                    .get("expr")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    words.push(statement(e));
                }
                if let Some(c) = body.get("comment").and_then(Value::as_str) {
                    words.push(format!("comment {}", quote(c)));
                }
                let origin = body
                    .get("handle")
                    .and_then(Value::as_u64)
                    .map_or(i + 1, |h| h as usize);
                let rule = (words.join(" "), origin);
                match t.chains.iter_mut().find(|c| c.name == chain) {
                    Some(c) => c.rules.push(rule),
                    None => return Err(bad(i, &format!("rule for undeclared chain {chain}"))),
                }
            }
            "set" | "map" => {
                let ty = type_text(body.get("type"));
                let mut s = format!("\t{kind} {} {{\n\t\ttype {ty}", quote_name(name));
                if kind == "map" {
                    let data = body.get("map").and_then(Value::as_str).unwrap_or("verdict");
                    write!(s, " : {data}").unwrap();
                }
                s.push('\n');
                let elems: Vec<String> = body
                    .get("elem")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|e| match e.as_array() {
                        Some(kv) if kind == "map" && kv.len() == 2 => {
                            format!("{} : {}", value(&kv[0]), statement(&kv[1]))
                        }
                        _ => value(e),
                    })
                    .collect();
                if !elems.is_empty() {
                    writeln!(s, "\t\telements = {{ {} }}", elems.join(", ")).unwrap();
                }
                s.push_str("\t}\n");
                t.objects.push_str(&s);
            }
            "ct helper" => {
                let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
                let proto = body.get("protocol").and_then(Value::as_str).unwrap_or("");
                writeln!(
                    t.objects,
                    "\tct helper {} {{\n\t\ttype {} protocol {proto}\n\t}}",
                    quote_name(name),
                    quote(ty)
                )
                .unwrap();
            }
            // counters, quotas, limits, flowtables...: no verdicts there.
            _ => {}
        }
    }
    // One text document, then the text parser; origins become handles.
    let mut doc = String::new();
    let mut line_origin: HashMap<usize, usize> = HashMap::new();
    let mut chain_origin: HashMap<usize, usize> = HashMap::new();
    // Lines counted as they are written (counting the document each time
    // would be quadratic in the number of rules).
    let mut line = 1;
    let mut push = |doc: &mut String, l: String| {
        doc.push_str(&l);
        doc.push('\n');
        line += 1;
        line - 1
    };
    for t in &tables {
        push(
            &mut doc,
            format!("table {} {} {{", t.family, quote_name(&t.name)),
        );
        for l in t.objects.lines() {
            push(&mut doc, l.to_string());
        }
        for c in &t.chains {
            let n = push(&mut doc, format!("\tchain {} {{", quote_name(&c.name)));
            chain_origin.insert(n, c.index);
            if !c.header.is_empty() {
                push(&mut doc, format!("\t\t{}", c.header));
            }
            for (r, origin) in &c.rules {
                let n = push(&mut doc, format!("\t\t{r}"));
                line_origin.insert(n, *origin);
            }
            push(&mut doc, "\t}".to_string());
        }
        push(&mut doc, "}".to_string());
    }
    let mut parsed = super::parse(file, &doc).map_err(|e| {
        fail(
            0..text.len().min(1),
            format!(
                "{} (in the translation of the JSON: {})",
                e.message,
                doc_line(&doc, e.line)
            ),
            "in this document",
        )
    })?;
    for t in &mut parsed.ruleset.tables {
        for c in &mut t.chains {
            for r in &mut c.rules {
                if let Some(o) = r.origin.as_mut() {
                    if let Some(&h) = line_origin.get(&o.line) {
                        *o = Origin { line: h, file: 0 };
                    }
                }
            }
        }
    }
    for c in &mut parsed.chains {
        if let Some(&i) = chain_origin.get(&c.line) {
            c.line = i;
        }
    }
    Ok(parsed)
}

struct TableText {
    family: String,
    name: String,
    objects: String,
    chains: Vec<ChainText>,
}

struct ChainText {
    name: String,
    header: String,
    rules: Vec<(String, usize)>,
    index: usize,
}

fn doc_line(doc: &str, line: usize) -> &str {
    doc.lines().nth(line.saturating_sub(1)).unwrap_or("").trim()
}

/// serde_json's 1-based line and column as a byte offset.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)).min(text.len())
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'").replace('\n', " "))
}

/// Names are bare words unless they need quotes.
fn quote_name(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        s.to_string()
    } else {
        quote(s)
    }
}

fn type_text(t: Option<&Value>) -> String {
    match t {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" . "),
        _ => "?".into(),
    }
}

/// A right-hand side or set element.
fn value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if s.starts_with('@')
                || (!s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c)))
            {
                s.clone()
            } else {
                quote(s)
            }
        }
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "exists".into(),
        Value::Bool(false) => "missing".into(),
        Value::Array(a) => a.iter().map(value).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            if let Some(s) = o.get("set").and_then(Value::as_array) {
                let items: Vec<String> = s
                    .iter()
                    .map(|e| match e.as_array() {
                        // vmap elements: [key, verdict]
                        Some(kv) if kv.len() == 2 && kv[1].is_object() => {
                            format!("{} : {}", value(&kv[0]), statement(&kv[1]))
                        }
                        _ => value(e),
                    })
                    .collect();
                format!("{{ {} }}", items.join(", "))
            } else if let Some(r) = o.get("range").and_then(Value::as_array) {
                r.iter().map(value).collect::<Vec<_>>().join("-")
            } else if let Some(p) = o.get("prefix") {
                format!(
                    "{}/{}",
                    p.get("addr").map(value).unwrap_or_default(),
                    p.get("len").map(value).unwrap_or_default()
                )
            } else if let Some(c) = o.get("concat").and_then(Value::as_array) {
                c.iter().map(value).collect::<Vec<_>>().join(" . ")
            } else if let Some((k, _)) = o.iter().next() {
                // An expression as a value (`ct mark set meta mark`).
                expr(v).unwrap_or_else(|| format!("json:{k}"))
            } else {
                "json:{}".into()
            }
        }
        Value::Null => "null".into(),
    }
}

/// A left-hand side expression as nft text.
fn expr(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let (k, b) = o.iter().next()?;
    Some(match k.as_str() {
        "payload" => match (b.get("protocol"), b.get("field")) {
            (Some(p), Some(f)) => format!("{} {}", p.as_str()?, f.as_str()?),
            _ => return None,
        },
        "meta" => format!("meta {}", b.get("key")?.as_str()?),
        "ct" => {
            let key = b.get("key")?.as_str()?;
            match (
                b.get("dir").and_then(Value::as_str),
                b.get("family").and_then(Value::as_str),
            ) {
                (Some(d), Some(f)) => format!("ct {d} {f} {key}"),
                (Some(d), None) => format!("ct {d} {key}"),
                _ => format!("ct {key}"),
            }
        }
        "fib" => {
            let flags: Vec<&str> = match b.get("flags") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => vec![],
            };
            format!("fib {} {}", flags.join(" . "), b.get("result")?.as_str()?)
        }
        "&" | "|" | "^" => {
            let a = b.as_array()?;
            let left = expr(a.first()?)?;
            let right = value(a.get(1)?);
            // Flag lists as masks print as `(fin|syn)`.
            let right = if a.get(1)?.is_array() {
                format!("({})", right.replace(',', "|"))
            } else {
                right
            };
            format!("{left} {k} {right}")
        }
        "concat" => b
            .as_array()?
            .iter()
            .map(expr)
            .collect::<Option<Vec<_>>>()?
            .join(" . "),
        _ => return None,
    })
}

fn nat_text(kind: &str, b: &Value) -> String {
    let mut s = kind.to_string();
    if b.is_null() {
        return s;
    }
    let addr = b.get("addr").map(value);
    let port = b.get("port").map(value);
    if addr.is_some() || port.is_some() {
        if let Some(f) = b.get("family").and_then(Value::as_str) {
            write!(s, " {f}").unwrap();
        }
        s.push_str(" to ");
        if let Some(a) = &addr {
            if a.contains(':') && port.is_some() {
                let (x, y) = a.split_once('-').unwrap_or((a, ""));
                write!(s, "[{x}]").unwrap();
                if !y.is_empty() {
                    write!(s, "-[{y}]").unwrap();
                }
            } else {
                s.push_str(a);
            }
        }
        if let Some(p) = &port {
            write!(s, ":{p}").unwrap();
        }
    }
    match b.get("flags") {
        Some(Value::String(f)) => write!(s, " {f}").unwrap(),
        Some(Value::Array(a)) => {
            let f: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            write!(s, " {}", f.join(",")).unwrap();
        }
        _ => {}
    }
    s
}

/// One element of a rule's `expr` array as nft text.
fn statement(v: &Value) -> String {
    let Some((k, b)) = v.as_object().and_then(|o| o.iter().next()) else {
        return "json:?".into();
    };
    let unknown = || format!("json:{}", k.replace(' ', "_"));
    match k.as_str() {
        "match" => {
            let (Some(left), Some(right)) = (b.get("left").and_then(expr), b.get("right")) else {
                return unknown();
            };
            let op = match b.get("op").and_then(Value::as_str).unwrap_or("==") {
                "==" | "in" => "",
                "!=" => "!= ",
                "<" => "< ",
                ">" => "> ",
                "<=" => "<= ",
                ">=" => ">= ",
                _ => return unknown(),
            };
            format!("{left} {op}{}", value(right))
        }
        "accept" | "drop" | "return" | "continue" | "notrack" => k.clone(),
        "jump" | "goto" => match b.get("target").and_then(Value::as_str) {
            Some(t) => format!("{k} {}", quote_name(t)),
            None => unknown(),
        },
        "reject" => {
            let ty = b.get("type").and_then(Value::as_str);
            let e = b.get("expr").and_then(Value::as_str);
            match (ty, e) {
                (Some(t), Some(e)) => format!("reject with {t} {e}"),
                (Some(t), None) => format!("reject with {t}"),
                _ => "reject".into(),
            }
        }
        "counter" => format!(
            "counter packets {} bytes {}",
            b.get("packets").and_then(Value::as_u64).unwrap_or(0),
            b.get("bytes").and_then(Value::as_u64).unwrap_or(0)
        ),
        "log" => {
            let mut s = String::from("log");
            if let Some(p) = b.get("prefix").and_then(Value::as_str) {
                write!(s, " prefix {}", quote(p)).unwrap();
            }
            for key in ["level", "group", "snaplen", "queue-threshold"] {
                if let Some(x) = b.get(key) {
                    write!(s, " {key} {}", value(x)).unwrap();
                }
            }
            if let Some(f) = b.get("flags") {
                write!(s, " flags {}", value(f)).unwrap();
            }
            s
        }
        "limit" => {
            let over = if b.get("inv").and_then(Value::as_bool) == Some(true) {
                "over "
            } else {
                ""
            };
            let rate = b.get("rate").map(value).unwrap_or_default();
            let per = b.get("per").and_then(Value::as_str).unwrap_or("second");
            let unit = b
                .get("rate_unit")
                .and_then(Value::as_str)
                .filter(|u| *u != "packets")
                .map(|u| format!(" {u}"))
                .unwrap_or_default();
            let mut s = format!("limit rate {over}{rate}{unit}/{per}");
            // nft's listing leaves out the default burst of 5 packets.
            let burst = b.get("burst").and_then(Value::as_u64).unwrap_or(5);
            if burst != 5 || !unit.is_empty() {
                write!(s, " burst {burst} packets").unwrap();
            }
            s
        }
        "snat" | "dnat" | "masquerade" | "redirect" => nat_text(k, b),
        "mangle" => match (b.get("key").and_then(expr), b.get("value")) {
            (Some(key), Some(val)) => format!("{key} set {}", value(val)),
            _ => unknown(),
        },
        "ct helper" => match b.as_str() {
            Some(h) => format!("ct helper set {}", quote(h)),
            None => unknown(),
        },
        "xt" => match (
            b.get("type").and_then(Value::as_str),
            b.get("name").and_then(Value::as_str),
        ) {
            (Some(t), Some(n)) => format!("xt {t} {}", quote_name(n)),
            _ => unknown(),
        },
        "vmap" => match (b.get("key").and_then(expr), b.get("data")) {
            (Some(key), Some(data)) => format!("{key} vmap {}", value(data)),
            _ => unknown(),
        },
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::*;
    use crate::ports::{PortRange, Proto};

    #[test]
    fn rules_sets_and_handles() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "t", "handle": 1}},
            {"set": {"family": "ip", "name": "h", "table": "t", "type": "ipv4_addr", "flags": ["interval"], "elem": [{"prefix": {"addr": "192.0.2.0", "len": 24}}, "198.51.100.7"]}},
            {"chain": {"family": "ip", "table": "t", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "ip", "table": "t", "chain": "input", "handle": 7, "comment": "amanda", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@h"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [10080, {"range": [50000, 50100]}]}}},
                {"counter": {"packets": 2, "bytes": 120}}, {"accept": null}]}}]}"#;
        let p = parse_json("t.json", j).unwrap();
        let t = &p.ruleset.tables[0];
        assert_eq!(t.sets[0].elements.len(), 2);
        let r = &t.chains[0].rules[0];
        assert_eq!(
            r.matches,
            vec![
                Match::Src(Addr::Set("h".into())),
                Match::Proto(Proto::Tcp),
                Match::DPort(vec![PortRange::single(10080), PortRange::new(50000, 50100)]),
            ]
        );
        assert_eq!(r.origin, Some(Origin { line: 7, file: 0 }));
        assert_eq!(
            r.counters,
            Some(Counters {
                packets: 2,
                bytes: 120
            })
        );
        assert_eq!(r.comment.as_deref(), Some("amanda"));
        assert_eq!(t.chains[0].base.as_ref().unwrap().policy, Policy::Drop);
    }

    #[test]
    fn bad_json_says_where() {
        let e = parse_json("t.json", "{\"nftables\": [\n  {\"table\": }\n]}").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_json("t.json", "[]").unwrap_err();
        assert!(e.message.contains("nftables"), "{e}");
    }
}
