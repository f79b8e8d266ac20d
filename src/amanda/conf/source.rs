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

use crate::diag::{line_col, InputError};

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

/// One file's text, shared by every location that points into it.
#[derive(Debug)]
pub(crate) struct Src {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub text: Arc<String>,
}

impl Src {
    pub fn read(path: &Path) -> std::io::Result<Arc<Src>> {
        let bytes = std::fs::read(path)?;
        // Amanda reads bytes; configs in Latin-1 must not stop us, so decode lossily.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(Src::new(path, text))
    }

    pub fn new(path: &Path, text: String) -> Arc<Src> {
        Arc::new(Src {
            name: Arc::from(path.display().to_string()),
            path: path.to_path_buf(),
            text: Arc::new(text),
        })
    }

    pub fn loc(self: &Arc<Self>, span: Range<usize>) -> Loc {
        Loc {
            src: Arc::clone(self),
            span,
        }
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
        let (line, column) = line_col(&self.src.text, self.span.start);
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
