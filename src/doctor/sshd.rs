//! What OpenSSH reads on a host that answers Amanda's ssh auth: the ports
//! and key files of `sshd_config`, the options of each `authorized_keys`
//! line, and which source address a key's `from=` lets in. Pure text in,
//! values out; `gather` does the reading and `diagnose` the judging.
//!
//! Semantics follow sshd_config(5) and sshd(8) "AUTHORIZED_KEYS FILE
//! FORMAT" (OpenSSH 9.2, Debian 12): for each keyword the first value wins;
//! `AuthorizedKeysFile` defaults to `.ssh/authorized_keys
//! .ssh/authorized_keys2`, relative to the home directory, with `%h`, `%u`
//! and `%%` expanded; `UseDNS` defaults to no, and then a `from=` pattern is
//! matched against the address only, so a host name there never matches.

use std::net::IpAddr;

use serde::Serialize;

/// What doctor needs of `sshd_config` (global part: a `Match` block ends it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SshdConfig {
    /// `Port` lines; sshd listens on 22 when there are none.
    pub ports: Vec<u16>,
    /// `AuthorizedKeysFile`, unexpanded; `None`: the default.
    pub authorized_keys_files: Option<Vec<String>>,
    pub use_dns: bool,
    /// `Include` patterns met, in order (each read where it stands).
    pub includes: Vec<String>,
}

/// Apply one file's global lines to `c` (first value wins, `Port` adds),
/// reading each `Include` in place through `include` (pattern → the texts of
/// the files it names, in order). `depth` bounds nested includes, as sshd does.
pub fn parse_sshd_config(
    text: &str,
    c: &mut SshdConfig,
    seen: &mut Seen,
    include: &mut dyn FnMut(&str) -> Vec<String>,
    depth: usize,
) {
    for line in text.lines() {
        if seen.in_match {
            return;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|ch: char| ch.is_whitespace() || ch == '=') {
            Some((k, v)) => (
                k,
                v.trim_start_matches(|ch: char| ch.is_whitespace() || ch == '=')
                    .trim(),
            ),
            None => (line, ""),
        };
        match key.to_ascii_lowercase().as_str() {
            "match" => seen.in_match = true,
            "port" => {
                if let Ok(p) = value.parse::<u16>() {
                    c.ports.push(p);
                }
            }
            "authorizedkeysfile" if !seen.keys_file => {
                seen.keys_file = true;
                let files: Vec<String> = value.split_whitespace().map(String::from).collect();
                // "none" turns key files off.
                c.authorized_keys_files = Some(if files == ["none"] { Vec::new() } else { files });
            }
            "usedns" if !seen.use_dns => {
                seen.use_dns = true;
                c.use_dns = value.eq_ignore_ascii_case("yes");
            }
            // sshd stops at 16 levels; the count bounds the work a file
            // that includes itself many times would cause (10 lines deep 16).
            "include" if depth < 16 => {
                for pattern in value.split_whitespace() {
                    c.includes.push(pattern.to_string());
                    if seen.included >= MAX_INCLUDED {
                        return;
                    }
                    for t in include(pattern) {
                        if seen.included >= MAX_INCLUDED {
                            return;
                        }
                        seen.included += 1;
                        parse_sshd_config(&t, c, seen, include, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Which keywords already have their (first) value, across included files.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    keys_file: bool,
    use_dns: bool,
    /// A `Match` block began: nothing after it is global.
    pub in_match: bool,
    /// Included files read so far.
    included: usize,
}

/// At most this many included files are read, however they nest.
const MAX_INCLUDED: usize = 64;

impl SshdConfig {
    /// The listening ports (22 without `Port`).
    pub fn listen_ports(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            vec![22]
        } else {
            self.ports.clone()
        }
    }

    /// The key files sshd reads for `user` with home `home`, as absolute paths.
    pub fn key_files(&self, user: &str, home: &str) -> Vec<String> {
        let files = self.authorized_keys_files.clone().unwrap_or_else(|| {
            vec![
                ".ssh/authorized_keys".to_string(),
                ".ssh/authorized_keys2".to_string(),
            ]
        });
        files
            .iter()
            .map(|f| {
                let mut out = String::new();
                let mut chars = f.chars();
                while let Some(ch) = chars.next() {
                    if ch != '%' {
                        out.push(ch);
                        continue;
                    }
                    match chars.next() {
                        Some('h') => out.push_str(home),
                        Some('u') => out.push_str(user),
                        Some('%') => out.push('%'),
                        Some(other) => {
                            out.push('%');
                            out.push(other);
                        }
                        None => out.push('%'),
                    }
                }
                if out.starts_with('/') {
                    out
                } else {
                    format!("{}/{out}", home.trim_end_matches('/'))
                }
            })
            .collect()
    }
}

/// One key line's options that decide whether Amanda gets in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyLine {
    pub line: usize,
    /// `from="..."`'s patterns; `None`: any source.
    pub from: Option<Vec<String>>,
    /// `command="..."`: what runs whatever the caller asks.
    pub command: Option<String>,
    /// The key's type and the start of its base64, to name it in a report.
    pub key: String,
}

const KEY_TYPES: &[&str] = &["ssh-", "ecdsa-sha2-", "sk-"];

/// The key lines of an `authorized_keys` text (comments and blank lines skipped).
pub fn parse_authorized_keys(text: &str) -> Vec<KeyLine> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (options, rest) = if KEY_TYPES.iter().any(|t| line.starts_with(t)) {
            ("", line)
        } else {
            split_options(line)
        };
        let mut from = None;
        let mut command = None;
        for opt in split_unquoted(options, ',') {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            let v = unquote(v);
            match k.to_ascii_lowercase().as_str() {
                "from" => from = Some(v.split(',').map(|p| p.trim().to_string()).collect()),
                "command" => command = Some(v),
                _ => {}
            }
        }
        let mut words = rest.split_whitespace();
        let key = match (words.next(), words.next()) {
            (Some(t), Some(b)) => format!("{t} {}…", b.chars().take(12).collect::<String>()),
            (Some(t), None) => t.to_string(),
            _ => String::new(),
        };
        out.push(KeyLine {
            line: n + 1,
            from,
            command,
            key,
        });
    }
    out
}

/// The options field ends at the first whitespace outside quotes.
fn split_options(line: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, ch) in line.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&line[..i], line[i..].trim_start()),
            _ => {}
        }
    }
    (line, "")
}

fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        parts.push(&s[start..]);
    }
    parts
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    v.replace("\\\"", "\"")
}

/// Whether a key with `from=` `patterns` may log in from `addr`, as sshd
/// decides: a negated match refuses, any other match admits, no match
/// refuses. `names` are `addr`'s host names, which count only with
/// `UseDNS yes`. Patterns are addresses with `*`/`?`, CIDR blocks, or names.
pub fn from_allows(patterns: &[String], addr: IpAddr, names: &[String], use_dns: bool) -> bool {
    let text = addr.to_string();
    let mut allowed = false;
    for p in patterns {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let hit = if let Ok(net) = p.parse::<ipnet::IpNet>() {
            net.contains(&addr)
        } else {
            glob(p, &text)
                || (use_dns
                    && names
                        .iter()
                        .any(|n| glob(&p.to_ascii_lowercase(), &n.to_ascii_lowercase())))
        };
        if hit && negated {
            return false;
        }
        allowed |= hit;
    }
    allowed
}

/// `*` and `?` wildcards over the whole text (sshd's match_pattern).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative with one backtrack point: linear in practice, no recursion on hostile input.
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

/// A login shell that runs no command (sshd runs `command=` through it).
pub fn refuses_commands(shell: &str) -> bool {
    matches!(shell.rsplit('/').next(), Some("nologin" | "false")) || shell.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_match_ends_the_global_part() {
        let mut c = SshdConfig::default();
        let mut seen = Seen::default();
        parse_sshd_config(
            "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\nPort 2222\nAuthorizedKeysFile /etc/ssh/authorized_keys/%u\nAuthorizedKeysFile .ssh/other\nMatch User x\nPort 7\n",
            &mut c,
            &mut seen,
            &mut |p| {
                assert_eq!(p, "/etc/ssh/sshd_config.d/*.conf");
                vec!["UseDNS yes\n".into(), "UseDNS no\n".into()]
            },
            0,
        );
        assert_eq!(c.ports, [22, 2222]);
        assert!(c.use_dns && seen.in_match);
        assert_eq!(c.includes, ["/etc/ssh/sshd_config.d/*.conf"]);
        assert_eq!(
            c.key_files("backup", "/var/backups"),
            ["/etc/ssh/authorized_keys/backup"]
        );
        assert_eq!(
            SshdConfig::default().key_files("backup", "/var/backups/"),
            [
                "/var/backups/.ssh/authorized_keys",
                "/var/backups/.ssh/authorized_keys2"
            ]
        );
        assert_eq!(SshdConfig::default().listen_ports(), [22]);
    }

    #[test]
    fn options_with_quoted_commas() {
        let k = parse_authorized_keys(
            "# c\n\nfrom=\"192.0.2.2,10.*\",no-pty,command=\"/usr/lib/amanda/amandad -auth=ssh amdump\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 x@y\nssh-rsa AAAAB3 plain\n",
        );
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].line, 3);
        assert_eq!(
            k[0].from.as_deref(),
            Some(&["192.0.2.2".to_string(), "10.*".into()][..])
        );
        assert_eq!(
            k[0].command.as_deref(),
            Some("/usr/lib/amanda/amandad -auth=ssh amdump")
        );
        assert_eq!(k[0].key, "ssh-ed25519 AAAAC3NzaC1l…");
        assert_eq!(k[1].from, None);
    }

    #[test]
    fn from_patterns_as_sshd_reads_them() {
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(from_allows(&p(&["198.51.100.1"]), a, &[], false));
        assert!(from_allows(&p(&["198.51.100.*"]), a, &[], false));
        assert!(from_allows(&p(&["198.51.100.0/24"]), a, &[], false));
        assert!(!from_allows(&p(&["192.0.2.2"]), a, &[], false));
        assert!(!from_allows(
            &p(&["198.51.100.0/24", "!198.51.100.1"]),
            a,
            &[],
            false
        ));
        let names = ["fwhost-eth1".to_string()];
        assert!(!from_allows(&p(&["fwhost-eth1"]), a, &names, false));
        assert!(from_allows(&p(&["fwhost-*"]), a, &names, true));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(glob("*", ""));
    }

    #[test]
    fn a_file_including_itself_is_read_a_bounded_number_of_times() {
        let text = "Include /x\n".repeat(10) + "Port 2\n";
        let mut c = SshdConfig::default();
        let mut reads = 0;
        parse_sshd_config(
            &text,
            &mut c,
            &mut Seen::default(),
            &mut |_| {
                reads += 1;
                vec![text.clone()]
            },
            0,
        );
        assert!(reads <= MAX_INCLUDED + 1, "{reads}");
    }

    proptest::proptest! {
        /// Hostile key files and configs: never a panic, and a line number
        /// always names a line of the text.
        #[test]
        fn any_text_parses(text in "(?s).{0,400}") {
            for k in parse_authorized_keys(&text) {
                proptest::prop_assert!(k.line >= 1 && k.line <= text.lines().count());
            }
            let mut c = SshdConfig::default();
            parse_sshd_config(&text, &mut c, &mut Seen::default(), &mut |_| vec![text.clone()], 14);
            let _ = c.key_files("backup", "/var/backups");
        }

        #[test]
        fn any_from_pattern(p in ".{0,40}", a in proptest::prelude::any::<[u8; 4]>()) {
            let addr = IpAddr::from(a);
            let _ = from_allows(std::slice::from_ref(&p), addr, std::slice::from_ref(&p), true);
            // A literal address always admits itself.
            proptest::prop_assert!(from_allows(&[addr.to_string()], addr, &[], false));
        }
    }

    #[test]
    fn nologin_and_false_refuse_commands() {
        assert!(refuses_commands("/usr/sbin/nologin"));
        assert!(refuses_commands("/bin/false"));
        assert!(!refuses_commands("/bin/sh"));
    }
}
