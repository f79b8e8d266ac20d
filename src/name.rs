//! The one check for every name that can reach a generated file, a file name or
//! a printed command, and the escaping of what is printed into comments.
//!
//! Names come from the topology, the disklist, a hosts file, `--server` and
//! amanda-client.conf; whatever the source, they pass through here, because a
//! name is pasted into `-i NAME`, `iifname "NAME"`, `NAME.rules` and
//! `iptables-restore < NAME.rules`. A newline in an interface name would become
//! its own rule line; `../` in a host name would leave `--out`. The callers turn
//! the reason into an error at the name's file:line:col.
//!
//! A leaf: it imports nothing from the crate, so every layer can use it.

use std::path::{Component, Path, PathBuf};

/// `IFNAMSIZ` is 16 with the terminating NUL (Linux `include/uapi/linux/if.h`).
pub const IFNAME_MAX: usize = 15;
/// ipset's `IPSET_MAXNAMELEN` is 32 with the NUL (`include/uapi/linux/netfilter/ipset/ip_set.h`).
pub const IPSET_NAME_MAX: usize = 31;
/// iptables' `XT_EXTENSION_MAXNAMELEN` 29 with the NUL, minus one: `iptables -N`
/// refuses names longer than 28 (`iptables/xshared.h`, "chain name too long").
pub const CHAIN_NAME_MAX: usize = 28;
/// RFC 1035 §2.3.4 / RFC 1123 §2.1: 63 per label, 253 in text form.
pub const LABEL_MAX: usize = 63;
pub const HOSTNAME_MAX: usize = 253;

/// What the admin reads when a topology interface name has `+` or `*`.
pub const WILDCARD_HELP: &str = "a topology interface is one real interface: `+` at the end is iptables' prefix wildcard (`eth+` = every eth*), `*` is nft's; either would open the rule on every interface with that prefix, so amwall refuses both";

/// A Linux interface name as the kernel's `dev_valid_name()` (net/core/dev.c)
/// accepts it — 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace — and
/// narrower where the generated files need it: printable ASCII only (no control
/// characters, nothing a terminal or a later reader could misread), no `"`, `'`
/// or `\` (quoting in iptables-restore and nft), no `+`/`*` (see
/// [`WILDCARD_HELP`]), and not starting with `-` or `!` (an option or a
/// negation to iptables).
pub fn interface(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("an interface name may not contain {}", describe(c)));
    }
    if s.len() > IFNAME_MAX {
        return Err(format!(
            "an interface name has at most {IFNAME_MAX} characters (the kernel's IFNAMSIZ), this one {}",
            s.len()
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("`{s}` is not an interface name the kernel accepts"));
    }
    if let Some(c) = s.chars().find(|c| "/:\"'\\".contains(*c)) {
        return Err(format!("an interface name may not contain `{c}`"));
    }
    if s.contains(['+', '*']) {
        return Err("an interface name may not contain the wildcards `+` or `*`".into());
    }
    if s.starts_with(['-', '!']) {
        return Err("an interface name may not start with `-` or `!`".into());
    }
    Ok(())
}

/// A host name as RFC 1123 §2.1 allows it: dot-separated labels of ASCII
/// letters, digits and `-`, each 1-63 characters and not starting or ending
/// with `-`, 253 characters in all. That excludes `.`, `..`, `/`, spaces and
/// every shell metacharacter, so a host name is always a safe file name and
/// shell word. One trailing dot (the DNS root) is refused too: `lhost.` would
/// name the same host as `lhost` but a different file.
pub fn host(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a host name cannot be empty".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "a host name is letters, digits, `-` and `.` (RFC 1123), not {}",
            describe(c)
        ));
    }
    if s.len() > HOSTNAME_MAX {
        return Err(format!(
            "a host name has at most {HOSTNAME_MAX} characters, this one {}",
            s.len()
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err("a host name cannot start or end with `.` or have `..`".into());
        }
        if label.len() > LABEL_MAX {
            return Err(format!(
                "each dot-separated part of a host name has at most {LABEL_MAX} characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{label}`: a part of a host name cannot start or end with `-`"
            ));
        }
    }
    Ok(())
}

/// Host names are case-insensitive (RFC 4343): the key duplicates are found by.
pub fn host_key(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// A topology network name: printed in SUMMARY.md and errors, never in a rule,
/// but kept as plain as a host name (plus `_`) so nothing printed can surprise.
pub fn network(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a network name cannot be empty".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "a network name is letters, digits, `-`, `_` and `.`, not {}",
            describe(c)
        ));
    }
    if s.len() > LABEL_MAX {
        return Err(format!("a network name has at most {LABEL_MAX} characters"));
    }
    Ok(())
}

/// A set name `ipset` and nft accept as a bare word within ipset's limit.
pub fn set_name(s: &str) -> Result<(), String> {
    word(s, IPSET_NAME_MAX, "set")
}

/// A chain name `iptables -N` accepts.
pub fn chain_name(s: &str) -> Result<(), String> {
    word(s, CHAIN_NAME_MAX, "chain")
}

fn word(s: &str, max: usize, what: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!(
            "a {what} name has 1-{max} characters, `{s}` has {}",
            s.len()
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphabetic())
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-~".contains(c))
    {
        return Err(format!(
            "a {what} name starts with a letter and has only letters, digits, `_`, `-`, `~`"
        ));
    }
    Ok(())
}

/// Text for a `#` comment line, an nft `comment "..."` or an iptables
/// `--comment "..."`: every control character (a newline would end the comment
/// and start a statement) becomes a visible `<U+000A>`, so the text can never
/// end the line it sits in. Quotes are the emitters' business (each backend
/// quotes its own way). Plain text comes back as is.
pub fn comment(s: &str) -> String {
    if !s.chars().any(escaped_in_text) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escaped_in_text(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters `comment` rewrites. The parsers refuse them in what they
/// read, so that a parsed ruleset prints back as the same ruleset.
pub fn escaped_in_text(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Line and paragraph separators and bidirectional overrides: not `is_control`,
/// but they end a line for some readers or reorder what an admin sees.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one shell word: as is when it has only characters no shell treats
/// specially, else in single quotes. For the "Load: ... < NAME.rules" hints.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/:=@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `dir/name` for an output file. `name` must be one plain file name; anything
/// else (a separator, `..`, an absolute path) is a bug upstream, since names
/// were validated when loaded, so it panics rather than write outside `dir`.
pub fn out_path(dir: &Path, name: &str) -> PathBuf {
    assert!(
        is_plain_file_name(name),
        "output file name `{}` is not one plain file name",
        name.escape_debug()
    );
    dir.join(name)
}

/// One path component that stays where it is joined: not empty, `.`, `..`, no
/// separator, not absolute.
pub fn is_plain_file_name(name: &str) -> bool {
    let mut comps = Path::new(name).components();
    matches!((comps.next(), comps.next()), (Some(Component::Normal(n)), None) if n == std::ffi::OsStr::new(name))
        && !name.contains('/')
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        c if c.is_control() || !c.is_ascii() => format!("the character {}", c.escape_unicode()),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_the_kernel_takes() {
        for ok in [
            "eth0",
            "enp0s31f6",
            "br-lan",
            "eth0.100",
            "wg0",
            "a",
            "veth_x@1",
            "abcdefghijklmno",
        ] {
            assert_eq!(interface(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "eth0\n\t",
            "eth0\nCOMMIT",
            "a/b",
            "eth0:1",
            "a b",
            "e\"",
            "e'x",
            "e\\",
            "eth+",
            "eth*",
            "-j",
            "!eth0",
            "abcdefghijklmnop",
            "ethé",
            "e\u{7f}",
        ] {
            assert!(interface(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rfc1123_host_names() {
        for ok in ["lhost", "LHost", "a.example.org", "1host", "x-1", "a"] {
            assert_eq!(host(ok), Ok(()), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long = ["a"; 127].join(".") + ".bb";
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "/abs",
            "a/b",
            "a b",
            "a;rm -rf",
            "$(id)",
            "a`b`",
            "-a",
            "a-",
            "a..b",
            "a.",
            ".a",
            "a_b",
            "é",
            &long_label,
            &long,
        ] {
            assert!(host(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(host_key("LHost"), host_key("lhost"));
    }

    #[test]
    fn set_and_chain_names_within_the_tools_limits() {
        assert!(set_name("amw_helper_amrecover_hosts_99").is_ok());
        assert!(set_name(&"a".repeat(32)).is_err());
        assert!(chain_name(&"a".repeat(28)).is_ok());
        assert!(chain_name(&"a".repeat(29)).is_err());
        assert!(set_name("x y").is_err());
    }

    #[test]
    fn comments_cannot_end_their_line() {
        let c = comment("t.toml\nflush ruleset\r\n");
        assert_eq!(c, "t.toml<U+000A>flush ruleset<U+000D><U+000A>");
        assert_eq!(comment("amanda check,backup"), "amanda check,backup");
        assert!(!comment("a\u{2028}b\rc\u{202e}")
            .chars()
            .any(|c| c.is_control() || is_invisible(c)));
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("lhost.rules"), "lhost.rules");
        assert_eq!(shell_word("a;b"), "'a;b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    #[should_panic(expected = "not one plain file name")]
    fn out_path_refuses_parent() {
        out_path(Path::new("/tmp/out"), "../x.rules");
    }

    #[test]
    fn out_path_joins_plain_names() {
        assert_eq!(out_path(Path::new("o"), "a.rules"), Path::new("o/a.rules"));
        for bad in ["/abs", "a/b", "..", "."] {
            assert!(
                std::panic::catch_unwind(|| out_path(Path::new("o"), bad)).is_err(),
                "{bad}"
            );
        }
    }
}
