//! The disklist, as `parse_diskline` in `A:server-src/diskfile.c` reads it:
//! `host disk [device] dumptype [spindle [interface]]`, one entry per line, or
//! `host disk [device] {` followed by an inline dumptype whose `}` line carries the
//! optional spindle and interface. Words are runs of non-blanks where `"..."` may
//! hold blanks; `#` at the start of a word begins a comment; `includefile NAME`
//! reads another disklist, relative to the configuration directory.
//!
//! A dumptype token that names no dumptype is the device when another token
//! follows (Amanda looks it up first, so a device may not share a dumptype's name).
//!
//! Each included disklist is read once. Amanda reads it again at every
//! `includefile`, which is harmless for a file without entries and fails for
//! one with entries ("duplicate disk record"): both are decided from the first
//! reading, so a chain of files that include each other twice costs one read
//! per file, not 2^n.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keywords::Kind;
use super::lexer::{unquote, Lexer};
use super::parse;
use super::source::{Loc, Spanned, Src};
use super::values::{self, Defs, Resolved};
use super::Warning;
use super::{Pos, Setting};
use crate::amanda::settings::{Auth, ClientPort};
use crate::diag::{Error, InputError};
use serde::Serialize;

/// The disklist at `path` and its includes; every file read is added to `srcs`.
pub(crate) fn read(
    path: &Path,
    config_dir: &Path,
    defs: &Defs,
    warnings: &mut Vec<Warning>,
    srcs: &mut Vec<Arc<Src>>,
) -> Result<Vec<DiskEntry>, Error> {
    let src = Src::read(path)?;
    let mut st = State {
        config_dir,
        defs,
        warnings,
        srcs,
        stack: Vec::new(),
        done: HashMap::new(),
        out: Vec::new(),
        by_host: HashMap::new(),
        by_disk: HashMap::new(),
    };
    st.file(src, None)?;
    Ok(st.out)
}

struct State<'a> {
    config_dir: &'a Path,
    defs: &'a Defs,
    warnings: &'a mut Vec<Warning>,
    srcs: &'a mut Vec<Arc<Src>>,
    /// Files being read, outermost first: canonical path, name, the include that opened it.
    stack: Vec<(PathBuf, Arc<str>, Option<Loc>)>,
    /// Files read completely: the first entry they added (with includes), and
    /// where they were first included.
    done: HashMap<PathBuf, (Option<usize>, Option<Loc>)>,
    out: Vec<DiskEntry>,
    /// The first entry of each host name, lower-cased: the two checks below
    /// look entries up here, so reading a disklist stays linear in its
    /// entries (10,000 clients are a real disklist).
    by_host: HashMap<String, usize>,
    /// The first entry of each (host, disk) as written.
    by_disk: HashMap<(String, String), usize>,
}

#[derive(Clone)]
struct Word {
    text: String,
    span: Range<usize>,
}

impl State<'_> {
    fn file(&mut self, src: Arc<Src>, from: Option<Loc>) -> Result<(), Error> {
        let canon = std::fs::canonicalize(&src.path).unwrap_or_else(|_| src.path.clone());
        self.stack
            .push((canon.clone(), Arc::clone(&src.name), from.clone()));
        self.srcs.push(Arc::clone(&src));
        let first = self.out.len();
        let len = src.text.len();
        let mut off = 0;
        while off < len {
            off = self.line(&src, off)?;
        }
        self.stack.pop();
        let added = (self.out.len() > first).then_some(first);
        self.done.insert(canon, (added, from));
        Ok(())
    }

    fn chain(&self, i: usize, last: &str) -> String {
        let mut names: Vec<&str> = self.stack[i..].iter().map(|(_, n, _)| &**n).collect();
        names.push(last);
        names.join(" → ")
    }

    /// One entry starting at `start`; returns where the next one starts.
    // Long: one disklist line as Amanda's read_diskline reads it, token by token in its
    // order; the steps share the lexer's position and the line's partial entry
    fn line(&mut self, src: &Arc<Src>, start: usize) -> Result<usize, Error> {
        let end = line_end(&src.text, start);
        let words = split(src, start, end)?;
        let Some(first) = words.first() else {
            return Ok(end + 1);
        };
        let loc = |w: &Word| src.loc(w.span.clone());
        let spanned = |w: &Word| Spanned {
            value: w.text.clone(),
            pos: loc(w).pos(),
        };

        if first.text == "includefile" {
            let Some(name) = words.get(1) else {
                return Err(loc(first)
                    .error("includefile needs a file name", "name missing")
                    .into());
            };
            self.include(&name.text, &loc(name))?;
            return Ok(end + 1);
        }

        let host = first;
        // Amanda compares host names without case but refuses two spellings.
        // Every earlier entry of one lower-cased name has the same spelling
        // (another would have stopped here), so the first one stands for all.
        if let Some(prev) = self
            .by_host
            .get(&host.text.to_ascii_lowercase())
            .map(|&i| &self.out[i])
            .filter(|d| d.host.value != host.text)
        {
            return Err(loc(host)
                .error(
                    format!(
                        "same host with different case: `{}` and `{}`",
                        prev.host.value, host.text
                    ),
                    "spelled differently before",
                )
                .with_help(format!("first written at {}", prev.host.pos))
                .into());
        }
        let Some(disk) = words.get(1) else {
            return Err(loc(host)
                .error(
                    format!("disk name expected after host `{}`", host.text),
                    "entry ends here",
                )
                .into());
        };
        if disk.text.is_empty() {
            return Err(loc(disk).error("invalid empty disk name", "empty").into());
        }
        if let Some(prev) = self
            .by_disk
            .get(&(host.text.clone(), disk.text.clone()))
            .map(|&i| &self.out[i])
        {
            return Err(loc(disk)
                .error(
                    format!("duplicate disk record `{} {}`", host.text, disk.text),
                    "listed twice",
                )
                .with_help(format!("previous entry at {}", prev.disk.pos))
                .into());
        }
        let Some(third) = words.get(2) else {
            return Err(loc(disk)
                .error(
                    format!("dumptype expected after disk `{}`", disk.text),
                    "entry ends here",
                )
                .into());
        };

        // [device] dumptype
        let mut device = None;
        let mut dt = third;
        let mut next = 3;
        if !dt.text.starts_with('{') && self.defs.get(Kind::Dumptype, &dt.text).is_none() {
            match words.get(3) {
                Some(w) => {
                    device = Some(spanned(dt));
                    dt = w;
                    next = 4;
                }
                None => return Err(self.unknown_dumptype(src, dt).into()),
            }
        }

        let (dumptype, resolved, rest, resume) = if dt.text.starts_with('{') {
            if dt.text != "{" || words.len() > next {
                let bad = if dt.text != "{" {
                    src.loc(dt.span.start + 1..dt.span.end)
                } else {
                    loc(&words[next])
                };
                return Err(bad
                    .error("expected a line break after `{`", "move this to the next line")
                    .with_help("an inline dumptype starts on the line after `{`; its `}` line may carry the spindle and interface")
                    .into());
            }
            let open = loc(dt);
            let mut lx = Lexer::new(Arc::clone(src), end);
            let block = parse::inline_block(&mut lx, Kind::Dumptype, open.clone(), self.warnings)?;
            let resolved = self.defs.resolve(Kind::Dumptype, &block, &[])?;
            let after = lx.offset();
            let close_end = line_end(&src.text, after);
            let rest = split(src, after, close_end)?;
            (
                DumptypeRef::Inline(open.pos()),
                resolved,
                rest,
                close_end + 1,
            )
        } else {
            let def = self
                .defs
                .get(Kind::Dumptype, &dt.text)
                .ok_or_else(|| self.unknown_dumptype(src, dt))?;
            let rest: Vec<Word> = words[next..].to_vec();
            (
                DumptypeRef::Named(spanned(dt)),
                def.resolved.clone(),
                rest,
                end + 1,
            )
        };
        let (auth, index, client_port) = dle_settings(&resolved)?;

        let spindle = match rest.first() {
            None => None,
            Some(w) => {
                let digits = w.text.strip_prefix('-').unwrap_or(&w.text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(loc(w)
                        .error(format!("non-integer spindle `{}`", w.text), "not a number")
                        .with_help("after the dumptype come an optional spindle number and an optional interface name")
                        .into());
                }
                Some(Spanned {
                    value: w.text.parse::<i64>().unwrap_or(-1),
                    pos: loc(w).pos(),
                })
            }
        };
        let interface = match rest.get(1) {
            None => None,
            Some(w) => {
                // update_derived_values always adds an interface "default".
                if !w.text.eq_ignore_ascii_case("default")
                    && self.defs.get(Kind::Interface, &w.text).is_none()
                {
                    return Err(loc(w)
                        .error(format!("undefined network interface `{}`", w.text), "not defined")
                        .with_help(format!(
                            "define it in amanda.conf: `define interface {} {{`, then `use 400 kbps` and `}}` on lines of their own",
                            w.text
                        ))
                        .into());
                }
                Some(spanned(w))
            }
        };
        if let Some(w) = rest.get(2) {
            return Err(loc(w)
                .error("end of line expected", "unexpected after the interface")
                .into());
        }

        let i = self.out.len();
        self.by_host
            .entry(host.text.to_ascii_lowercase())
            .or_insert(i);
        self.by_disk
            .entry((host.text.clone(), disk.text.clone()))
            .or_insert(i);
        self.out.push(DiskEntry {
            host: spanned(host),
            disk: spanned(disk),
            device,
            dumptype,
            auth,
            index,
            client_port,
            spindle,
            interface,
        });
        Ok(resume)
    }

    fn unknown_dumptype(&self, src: &Arc<Src>, w: &Word) -> InputError {
        src.loc(w.span.clone())
            .error(
                format!("unknown dumptype `{}`", w.text),
                "not defined in amanda.conf",
            )
            .with_help(format!(
                "dumptypes: {}",
                self.defs.names(Kind::Dumptype).join(", ")
            ))
    }

    fn include(&mut self, name: &str, loc: &Loc) -> Result<(), Error> {
        // diskfile.c: config_dir_relative(include_name), as for amanda.conf.
        let path = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            self.config_dir.join(name)
        };
        let canon = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let from: Vec<String> = self
            .stack
            .iter()
            .rev()
            .filter_map(|(_, _, l)| l.as_ref().map(|l| l.pos().to_string()))
            .collect();
        let from = if from.is_empty() {
            String::new()
        } else {
            format!("included from {}", from.join(", "))
        };
        if let Some(i) = self.stack.iter().position(|(p, _, _)| *p == canon) {
            return Err(loc
                .error(
                    format!("includefile cycle: {}", self.chain(i, &self.stack[i].1)),
                    "this includes a file that is already being read",
                )
                .with_help(format!(
                    "Amanda would recurse until \"Too many open files\"; remove one of the includes{}",
                    if from.is_empty() { String::new() } else { format!("; {from}") }
                ))
                .into());
        }
        if let Some((added, first)) = self.done.get(&canon) {
            let Some(i) = added else {
                // Nothing in it (comments, or includes of empty files): reading
                // it again adds nothing.
                return Ok(());
            };
            let d = &self.out[*i];
            let first = first.as_ref().map_or_else(
                || "as the diskfile".to_string(),
                |l| format!("at {}", l.pos()),
            );
            return Err(loc
                .error(
                    format!(
                        "duplicate disk record: \"{name}\" is included a second time, so `{} {}` ({}) would be listed twice",
                        d.host.value, d.disk.value, d.disk.pos
                    ),
                    "included again here",
                )
                .with_help(format!(
                    "first included {first}; Amanda reads the file again and stops with \"duplicate disk record\": include it once"
                ))
                .into());
        }
        if self.stack.len() >= parse::MAX_INCLUDE_DEPTH {
            return Err(loc
                .error(
                    format!(
                        "includefile nested more than {} deep: {}",
                        parse::MAX_INCLUDE_DEPTH,
                        self.chain(0, name)
                    ),
                    "one include too many",
                )
                .with_help(format!(
                    "real disklists nest a few levels; look for a generated or recursive chain{}",
                    if from.is_empty() {
                        String::new()
                    } else {
                        format!("; {from}")
                    }
                ))
                .into());
        }
        let src = Src::read(&path).map_err(|e| {
            loc.error(
                format!(
                    "could not open disklist \"{}\": {}",
                    path.display(),
                    super::source::reason(&e)
                ),
                "included here",
            )
        })?;
        self.file(src, Some(loc.clone()))
    }
}

fn line_end(text: &str, from: usize) -> usize {
    text[from..].find('\n').map_or(text.len(), |i| from + i)
}

/// Words of one line (`skip_quoted_string` in diskfile.c), up to a `#` comment.
fn split(src: &Arc<Src>, start: usize, end: usize) -> Result<Vec<Word>, InputError> {
    let b = src.text.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    loop {
        while i < end && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end || b[i] == b'#' {
            return Ok(out);
        }
        let s = i;
        let mut quoted = false;
        let mut raw: Vec<u8> = Vec::new();
        let mut had_quote = false;
        while i < end && (quoted || !b[i].is_ascii_whitespace()) {
            match b[i] {
                b'\\' if quoted && i + 1 < end => {
                    raw.extend_from_slice(&b[i..i + 2]);
                    i += 2;
                    continue;
                }
                b'"' => {
                    quoted = !quoted;
                    had_quote = true;
                }
                c => raw.push(c),
            }
            i += 1;
        }
        if quoted {
            return Err(src
                .loc(s..end)
                .error("unterminated string", "this string has no closing `\"`"));
        }
        let text = if had_quote {
            unquote(&raw)
        } else {
            String::from_utf8_lossy(&raw).into_owned()
        };
        out.push(Word { text, span: s..i });
    }
}

/// One disklist entry (DLE).
#[derive(Debug, Clone, Serialize)]
pub struct DiskEntry {
    pub host: Spanned<String>,
    pub disk: Spanned<String>,
    pub device: Option<Spanned<String>>,
    pub dumptype: DumptypeRef,
    pub auth: Setting<Auth>,
    pub index: Setting<bool>,
    pub client_port: Setting<Option<ClientPort>>,
    pub spindle: Option<Spanned<i64>>,
    pub interface: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DumptypeRef {
    Named(Spanned<String>),
    /// `host disk { ... }`: a dumptype written in the disklist, opened here.
    Inline(Pos),
}

/// The dumptype values a DLE gets, with Amanda's defaults.
/// The three values a DLE's dumptype decides.
pub(crate) type DleSettings = (Setting<Auth>, Setting<bool>, Setting<Option<ClientPort>>);

pub(crate) fn dle_settings(r: &Resolved) -> Result<DleSettings, crate::diag::InputError> {
    let auth = values::setting(
        r,
        "auth",
        values::auth,
        |s| Auth::parse(&s.to_ascii_lowercase()).unwrap_or(Auth::Bsdtcp),
        // conffile.c init_dumptype_defaults: conf_init_str(DUMPTYPE_AUTH, "BSDTCP");
        // amgetconf prints BSDTCP for a dumptype that sets nothing.
        (
            Auth::Bsdtcp,
            "conffile.c init_dumptype_defaults: auth \"BSDTCP\"",
        ),
    )?;
    let index = values::setting(
        r,
        "index",
        values::boolean,
        |_| true,
        // conffile.c init_dumptype_defaults: conf_init_bool(DUMPTYPE_INDEX, 1), and
        // amgetconf prints "yes"; amanda.conf(5)'s "Default: no" is wrong for 3.5.1.
        (true, "conffile.c init_dumptype_defaults: index yes"),
    )?;
    let client_port = values::setting(
        r,
        "client-port",
        values::client_port,
        |_| None,
        // conffile.c init_dumptype_defaults: "" — the drivers then use service "amanda".
        (
            None,
            "conffile.c init_dumptype_defaults: \"\", service \"amanda\"",
        ),
    )?;
    Ok((auth, index, client_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let src = Src::new(Path::new("d"), line.to_string());
        split(&src, 0, line.len())
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn quoted_words_keep_blanks_and_comments_end_the_line() {
        assert_eq!(
            words("host.example.org \"/my disk\" comp-root 1 # note"),
            ["host.example.org", "/my disk", "comp-root", "1"]
        );
        assert_eq!(words("  # only a comment"), Vec::<String>::new());
    }
}
