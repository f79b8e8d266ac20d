//! The files we read and positions in them.
//!
//! Parsed values keep a `Loc` (file + byte range) so that a later stage — inheritance,
//! the disklist, a lint — can still put a caret under the text that caused it. The
//! public API hands out `Pos` (file:line:column), which is plain data.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::diag::{Error, InputError};

/// Why a file could not be read, without its path (the caller's message names it).
pub(crate) fn reason(e: &Error) -> String {
    match e {
        Error::Io { error, .. } => error.to_string(),
        e => e.to_string(),
    }
}

/// Where something was written: the file as the user named it, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Pos {
    #[serde(serialize_with = "as_str")]
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

fn as_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

#[cfg(test)]
thread_local! {
    /// How many times `Src::read` ran on this thread: the include tests count work, not time.
    pub(crate) static READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One file's text, shared by every location that points into it.
#[derive(Debug)]
pub(crate) struct Src {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub text: Arc<String>,
    /// Where each line starts, computed on first use: a 10,000-line disklist
    /// asks for a position per word, and counting newlines from the start
    /// each time made that quadratic.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

impl Src {
    /// One of Amanda's files, through `input` (regular files only, bounded).
    ///
    /// Not UTF-8-only like our other inputs: Amanda reads bytes, and an
    /// amanda.conf or disklist with a Latin-1 comment (common in configs older
    /// than UTF-8 locales) works with Amanda, so it must work with us. Bytes that
    /// are not UTF-8 are read as Latin-1, one character each, so every
    /// file:line:column we report is where the admin's editor shows it; the
    /// keywords and values that decide rules are ASCII either way.
    pub fn read(path: &Path) -> Result<Arc<Src>, Error> {
        #[cfg(test)]
        READS.with(|r| r.set(r.get() + 1));
        let bytes = crate::input::read_bytes(path)?;
        Ok(Src::new(path, crate::input::utf8_or_latin1(bytes)))
    }

    pub fn new(path: &Path, text: String) -> Arc<Src> {
        Arc::new(Src {
            name: Arc::from(path.display().to_string()),
            path: path.to_path_buf(),
            text: Arc::new(text),
            line_starts: std::sync::OnceLock::new(),
        })
    }

    /// As `diag::line_col` (1-based line, column in characters), by binary
    /// search over the line starts.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let text = &self.text;
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let line = starts.partition_point(|&s| s <= offset);
        let column = text[starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }

    pub fn loc(self: &Arc<Self>, span: Range<usize>) -> Loc {
        Loc {
            src: Arc::clone(self),
            span,
        }
    }
}

/// The text of every file read, by the name positions use (`Pos::file`), so
/// that an error found later (a disklist host the topology lacks) can show its
/// caret from the text that was parsed, instead of reading the file again
/// (which could have changed, or be a FIFO by now).
#[derive(Clone, Default)]
pub struct Texts(Vec<(Arc<str>, Arc<String>)>);

impl Texts {
    pub(crate) fn of(srcs: &[Arc<Src>]) -> Texts {
        Texts(
            srcs.iter()
                .map(|s| (Arc::clone(&s.name), Arc::clone(&s.text)))
                .collect(),
        )
    }

    /// The text of the file positions call `file`.
    pub fn get(&self, file: &str) -> Option<Arc<String>> {
        self.0
            .iter()
            .find(|(n, _)| &**n == file)
            .map(|(_, t)| Arc::clone(t))
    }
}

impl fmt::Debug for Texts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// A byte range in one source file.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub src: Arc<Src>,
    pub span: Range<usize>,
}

impl Loc {
    pub fn pos(&self) -> Pos {
        let (line, column) = self.src.line_col(self.span.start);
        Pos {
            file: Arc::clone(&self.src.name),
            line,
            column,
        }
    }

    pub fn error(&self, message: impl Into<String>, label: impl Into<String>) -> InputError {
        InputError::new(
            &self.src.name,
            &self.src.text,
            self.span.clone(),
            message,
            label,
        )
    }

    /// From the start of `self` to the end of `other` (same file).
    pub fn to(&self, other: &Loc) -> Loc {
        Loc {
            src: Arc::clone(&self.src),
            span: self.span.start..other.span.end.max(self.span.start),
        }
    }
}

#[cfg(test)]
mod line_col_tests {
    use super::*;
    use crate::diag::line_col;

    /// The index agrees with the plain count everywhere, multi-byte and
    /// mid-character offsets included.
    #[test]
    fn indexed_line_col_agrees_with_diag() {
        let text = "a\nbé c\n\n  ü\nlast";
        let src = Src::new(Path::new("t"), text.to_string());
        for off in 0..=text.len() + 2 {
            assert_eq!(src.line_col(off), line_col(text, off), "offset {off}");
        }
    }
}
