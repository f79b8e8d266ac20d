//! Tokens of Amanda's configuration language, as `get_conftoken` in
//! `A:common-src/conffile.c` cuts them:
//! - `#` starts a comment that runs to the end of the line; the newline is a token
//!   (statements end at line ends);
//! - a word starts with a letter and goes on with letters, digits, `_` and `-`
//!   (so `HP-DAT` and `comp-root` are single words);
//! - a number is digits with an optional leading `-` and an optional `.fraction`;
//!   a unit glued to it (`1280k`) is the next word, as in Amanda;
//! - a string is `"..."` on one line; `\` escapes the next character, and `\` at the
//!   end of the line continues the string with a newline. Escapes are decoded like
//!   `unquote_string` (`A:common-src/amutil.c`): `\n \t \r \f \\ \"`, octal `\ooo`.

use std::ops::Range;
use std::sync::Arc;

use super::source::{Loc, Src};
use crate::diag::InputError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Word(String),
    Str(String),
    Int(i64),
    Real(f64),
    Comma,
    LBrace,
    RBrace,
    Newline,
    Eof,
    /// Any other character; Amanda's lexer calls it CONF_UNKNOWN. Kept so that unknown
    /// keywords with odd values survive.
    Other(char),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

pub(crate) struct Lexer {
    src: Arc<Src>,
    pos: usize,
    peeked: Option<Token>,
}

impl Lexer {
    pub fn new(src: Arc<Src>, start: usize) -> Lexer {
        Lexer {
            src,
            pos: start,
            peeked: None,
        }
    }

    pub fn loc(&self, span: Range<usize>) -> Loc {
        self.src.loc(span)
    }

    pub fn next(&mut self) -> Result<Token, InputError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.scan(),
        }
    }

    pub fn peek(&mut self) -> Result<&Token, InputError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.scan()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    /// Byte offset right after the last token handed out; the disklist parser takes
    /// over from here after an inline dumptype.
    pub fn offset(&self) -> usize {
        match &self.peeked {
            Some(t) => t.span.start,
            None => self.pos,
        }
    }

    fn scan(&mut self) -> Result<Token, InputError> {
        let text = Arc::clone(&self.src.text);
        let b = text.as_bytes();
        while self.pos < b.len() && b[self.pos] != b'\n' && b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if self.pos < b.len() && b[self.pos] == b'#' {
            while self.pos < b.len() && b[self.pos] != b'\n' {
                self.pos += 1;
            }
        }
        let start = self.pos;
        if start >= b.len() {
            return Ok(Token {
                tok: Tok::Eof,
                span: start..start,
            });
        }
        let c = b[start];
        let one = |lx: &mut Lexer, tok| {
            lx.pos += 1;
            Ok(Token {
                tok,
                span: start..start + 1,
            })
        };
        match c {
            b'\n' => one(self, Tok::Newline),
            b'{' => one(self, Tok::LBrace),
            b'}' => one(self, Tok::RBrace),
            b',' => one(self, Tok::Comma),
            b'"' => self.string(start),
            b'-' if b.get(start + 1).is_some_and(u8::is_ascii_digit) => self.number(start),
            b'0'..=b'9' => self.number(start),
            c if c.is_ascii_alphabetic() => {
                let mut end = start + 1;
                while end < b.len()
                    && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b'-')
                {
                    end += 1;
                }
                self.pos = end;
                Ok(Token {
                    tok: Tok::Word(text[start..end].to_string()),
                    span: start..end,
                })
            }
            _ => {
                let ch = text[start..].chars().next().expect("not at end");
                self.pos = start + ch.len_utf8();
                Ok(Token {
                    tok: Tok::Other(ch),
                    span: start..self.pos,
                })
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<Token, InputError> {
        let text = Arc::clone(&self.src.text);
        let b = text.as_bytes();
        let mut end = start + 1;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end < b.len() && b[end] == b'.' {
            end += 1;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            self.pos = end;
            let r: f64 = text[start..end].parse().unwrap_or(0.0);
            return Ok(Token {
                tok: Tok::Real(r),
                span: start..end,
            });
        }
        self.pos = end;
        match text[start..end].parse::<i64>() {
            Ok(n) => Ok(Token {
                tok: Tok::Int(n),
                span: start..end,
            }),
            Err(_) => Err(self
                .loc(start..end)
                .error("number too large", "does not fit in 64 bits")),
        }
    }

    /// Mirrors conffile.c: a newline ends the string unless a `\` precedes it.
    fn string(&mut self, start: usize) -> Result<Token, InputError> {
        let text = Arc::clone(&self.src.text);
        let b = text.as_bytes();
        let mut raw: Vec<u8> = Vec::new();
        let mut escape = false;
        let mut i = start + 1;
        loop {
            if i >= b.len() || (b[i] == b'\n' && !escape) {
                let end = i.min(b.len());
                return Err(self
                    .loc(start..end)
                    .error("unterminated string", "this string has no closing `\"`")
                    .with_help(
                        "Amanda reads a string up to the closing `\"` on the same line; \
                         end the line with `\\` to continue it on the next",
                    ));
            }
            let ch = b[i];
            if ch == b'\n' {
                // escaped newline: the backslash goes, the newline stays
                raw.pop();
                raw.push(b'\n');
                escape = false;
            } else if ch == b'\\' && !escape {
                escape = true;
                raw.push(ch);
            } else {
                if ch == b'"' && !escape {
                    break;
                }
                escape = false;
                raw.push(ch);
            }
            i += 1;
        }
        self.pos = i + 1;
        Ok(Token {
            tok: Tok::Str(unquote(&raw)),
            span: start..i + 1,
        })
    }
}

/// Decode escapes the way `unquote_string` does (`A:common-src/amutil.c`).
pub(crate) fn unquote(raw: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' || i >= raw.len() {
            out.push(c);
            continue;
        }
        let e = raw[i];
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'f' => out.push(0x0c),
            b'0'..=b'7' => {
                let mut v: u32 = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn toks(text: &str) -> Vec<Tok> {
        let mut lx = Lexer::new(Src::new(Path::new("t"), text.to_string()), 0);
        let mut v = Vec::new();
        loop {
            let t = lx.next().unwrap();
            if t.tok == Tok::Eof {
                return v;
            }
            v.push(t.tok);
        }
    }

    #[test]
    fn words_keep_dashes_and_units_split_off_numbers() {
        assert_eq!(
            toks("tapetype HP-DAT\nchunksize 1Gb # c\n"),
            vec![
                Tok::Word("tapetype".into()),
                Tok::Word("HP-DAT".into()),
                Tok::Newline,
                Tok::Word("chunksize".into()),
                Tok::Int(1),
                Tok::Word("Gb".into()),
                Tok::Newline,
            ]
        );
    }

    #[test]
    fn ranges_negatives_and_reals() {
        assert_eq!(
            toks("r 840,860 -100 0.50"),
            vec![
                Tok::Word("r".into()),
                Tok::Int(840),
                Tok::Comma,
                Tok::Int(860),
                Tok::Int(-100),
                Tok::Real(0.5),
            ]
        );
    }

    /// amgetconf prints `a"b\c<TAB>xA` for `org "a\"b\\c\tx\101"` (Debian 3.5.1).
    #[test]
    fn escapes_decode_like_amanda() {
        assert_eq!(
            toks(r#"org "a\"b\\c\tx\101""#)[1],
            Tok::Str("a\"b\\c\txA".into())
        );
    }

    /// amgetconf: `org "abc\` newline `def"` reads as "abc\ndef".
    #[test]
    fn backslash_newline_continues_a_string() {
        assert_eq!(toks("org \"abc\\\ndef\"")[1], Tok::Str("abc\ndef".into()));
    }

    #[test]
    fn unterminated_string_points_at_its_start() {
        let mut lx = Lexer::new(Src::new(Path::new("f"), "org \"abc\nx".into()), 0);
        lx.next().unwrap();
        let e = lx.next().unwrap_err();
        assert_eq!(e.to_string(), "f:1:5: unterminated string");
    }
}
