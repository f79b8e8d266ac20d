//! Reading the files an admin hands us. amwall runs as root, so a path that
//! names a device, a FIFO, a directory or a huge file must be refused at once
//! (exit 2) instead of hanging or eating memory: every file input goes through
//! here, never through `std::fs::read*` directly.
//!
//! The limit: 64 MiB per file (`DEFAULT_LIMIT`), raised or lowered with the
//! environment variable `AMWALL_MAX_INPUT_BYTES` (a number of bytes).

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::diag::{Error, InputError, Result};

/// The largest input read unless `AMWALL_MAX_INPUT_BYTES` says otherwise.
/// 64 MiB is about 50 times the largest real ruleset in the test corpus
/// (4,841 rules, 1.3 MB) and far above any Amanda config or topology, yet
/// small enough that a mistaken path fails fast.
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// Environment variable that raises (or lowers) the limit, in bytes.
pub const LIMIT_ENV: &str = "AMWALL_MAX_INPUT_BYTES";

/// The limit in force: `AMWALL_MAX_INPUT_BYTES` when it is a number, else the
/// default. A malformed value is an error rather than silently ignored, so an
/// admin who raised the limit learns why it did not take.
pub fn limit() -> Result<u64> {
    match std::env::var(LIMIT_ENV) {
        Err(_) => Ok(DEFAULT_LIMIT),
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            Error::Usage(format!(
                "{LIMIT_ENV}={v:?}: expected a size in bytes (default {DEFAULT_LIMIT})"
            ))
        }),
    }
}

fn refuse(path: &Path, why: String) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The bytes of a regular file, at most `limit()` of them.
///
/// The path is looked at (`stat`) before it is opened, because opening is not
/// harmless for every device: closing a tape device such as `/dev/st0` rewinds
/// the tape of the Amanda server we may be running on. It is opened with
/// `O_NONBLOCK` so that a FIFO put there after the look does not block the
/// open, and the type is taken again from the open descriptor (`fstat`), so a
/// swap between look and read cannot slip a device past us.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let limit = limit()?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let ft = std::fs::metadata(path).map_err(io)?.file_type();
    if !ft.is_file() {
        return Err(refuse(
            path,
            format!("is {}; amwall reads regular files only", kind_of(ft)),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(refuse(
            path,
            format!(
                "is {}; amwall reads regular files only",
                kind_of(meta.file_type())
            ),
        ));
    }
    let too_big = |size: u64| {
        refuse(
            path,
            format!(
                "is {size} bytes, more than the input limit of {limit} bytes \
                 (set {LIMIT_ENV} to raise it)"
            ),
        )
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after fstat: read one byte past the limit to tell.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A regular file's text. Invalid UTF-8 is an error that names the line and
/// column of the first bad byte (Latin-1 files are common in old configs).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bytes(path)?;
    utf8(&path.display().to_string(), bytes)
}

/// Whether standard input was read already: a second `-` would get nothing
/// and must be an error rather than an empty file.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// What error messages call standard input.
pub const STDIN_NAME: &str = "(standard input)";

/// `-` (standard input) where a command offers it, else a regular file.
pub fn read_text_or_stdin(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        read_stdin_text()
    } else {
        read_text(path)
    }
}

/// What errors call `path`: the path, or `STDIN_NAME` for `-`.
pub fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

/// Standard input, bounded like a file; for commands that take `-`. Only once
/// per run: two inputs cannot both come from it.
pub fn read_stdin_text() -> Result<String> {
    if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::Usage(
            "`-` (standard input) given twice: only one input can come from it".into(),
        ));
    }
    let limit = limit()?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: STDIN_NAME.into(),
            error: source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(refuse(
            Path::new(STDIN_NAME),
            format!(
                "standard input is more than the input limit of {limit} bytes \
                 (set {LIMIT_ENV} to raise it)"
            ),
        ));
    }
    utf8(STDIN_NAME, bytes)
}

/// `bytes` as text, or an error at the first byte that is not UTF-8.
pub fn utf8(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        // Up to `at` the lossy text is byte-identical, so the offset holds.
        let shown = Arc::new(String::from_utf8_lossy(e.as_bytes()).into_owned());
        Error::from(
            InputError::new(name, &shown, at..at + 1, "not valid UTF-8", "this byte")
                .with_help("amwall reads UTF-8; convert the file, e.g. `iconv -f latin1 -t utf-8`"),
        )
    })
}

/// Text where every byte that is not part of valid UTF-8 stands for itself as
/// Latin-1 (U+0080..U+00FF), for files whose reader takes bytes (Amanda's).
///
/// Why not `String::from_utf8_lossy`: it folds a run of bad bytes into one
/// U+FFFD, so columns after it are off and the caret shows `�` where the admin
/// wrote `é`. One byte, one character keeps line and column what a Latin-1
/// editor shows, and valid UTF-8 is read unchanged.
pub fn utf8_or_latin1(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let bytes = e.into_bytes();
            let mut out = String::with_capacity(bytes.len() + bytes.len() / 8);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        out.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let good = e.valid_up_to();
                        out.push_str(std::str::from_utf8(&rest[..good]).expect("checked"));
                        // One bad byte as Latin-1; the next one starts afresh.
                        out.push(char::from(rest[good]));
                        rest = &rest[good + 1..];
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a = 1\n");
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (p, what) in [
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
            (fifo.as_path(), "FIFO"),
        ] {
            let e = read_text(p).unwrap_err().to_string();
            assert!(e.contains(what), "{p:?}: {e}");
        }
    }

    #[test]
    fn latin1_bytes_count_one_column_each() {
        let t = utf8_or_latin1(b"# caf\xe9 \xe9\xe9 \xc3\xa9\nx\xff\n".to_vec());
        assert_eq!(t, "# caf\u{e9} \u{e9}\u{e9} \u{e9}\nx\u{ff}\n");
        assert_eq!(crate::diag::line_col(&t, t.find('x').unwrap() + 1), (2, 2));
        assert_eq!(utf8_or_latin1(b"plain".to_vec()), "plain");
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let e = utf8("f.conf", b"ok\nab\xe9c\n".to_vec()).unwrap_err();
        match e {
            Error::Input(ie) => assert_eq!((ie.line, ie.column), (2, 3)),
            e => panic!("{e}"),
        }
    }
}
