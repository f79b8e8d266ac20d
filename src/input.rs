//! Reading the files an admin hands us. amwall runs as root, so a path that
//! names a device, a FIFO, a directory or a huge file must be refused at once
//! (exit 2) instead of hanging or eating memory: every file input goes through
//! here, never through `std::fs::read*` directly.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
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
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
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
/// Opened with `O_NONBLOCK` so that opening a FIFO with no writer does not
/// block before we can look at what it is; the type is then taken from the
/// open descriptor (`fstat`), not from the path, so a swap between check and
/// read cannot slip a device past us.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let limit = limit()?;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
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

/// Standard input, bounded like a file; for commands that take `-`.
pub fn read_stdin_text() -> Result<String> {
    let limit = limit()?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: "-".into(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(refuse(
            Path::new("-"),
            format!(
                "standard input is more than the input limit of {limit} bytes \
                 (set {LIMIT_ENV} to raise it)"
            ),
        ));
    }
    utf8("-", bytes)
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
    fn invalid_utf8_names_line_and_column() {
        let e = utf8("f.conf", b"ok\nab\xe9c\n".to_vec()).unwrap_err();
        match e {
            Error::Input(ie) => assert_eq!((ie.line, ie.column), (2, 3)),
            e => panic!("{e}"),
        }
    }
}
