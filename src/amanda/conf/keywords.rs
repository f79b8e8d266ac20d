//! The keywords Amanda 3.5.1 knows, per section. Only used to tell a known keyword
//! from an unknown one (unknown ones are kept and reported as warnings, because admins
//! carry configs across versions) and to tell a bare boolean (`index`) from the name
//! of a definition to inherit (`global`).
//!
//! Source: `amadmin CONF config` (which prints every parameter of every section) on
//! Debian's amanda-server 1:3.5.1-11+deb12u2, plus the proplist keywords it leaves
//! out when empty (`property`, `device-property`), cross-checked with amanda.conf(5)
//! and amanda-client.conf(5) and the keytables in `A:common-src/conffile.c`.

use serde::Serialize;

#[rustfmt::skip]
const SERVER: &[&str] = &[
    "active-storage", "amrecover-changer", "amrecover-check-label", "amrecover-do-fsf",
    "autoflush", "autolabel", "bumpdays", "bumpmult", "bumppercent", "bumpsize", "changerdev",
    "changerfile", "columnspec", "command-file", "compress-index", "connect-tries", "ctimeout",
    "debug-amandad", "debug-amidxtaped", "debug-amindexd", "debug-amrecover", "debug-auth",
    "debug-chunker", "debug-days", "debug-driver", "debug-dumper", "debug-event",
    "debug-holding", "debug-planner", "debug-protocol", "debug-recovery", "debug-selfcheck",
    "debug-sendbackup", "debug-sendsize", "debug-taper", "device-output-buffer-size",
    "device-property", "diskfile", "displayunit", "dtimeout", "dumpcycle", "dumporder",
    "dumpuser", "eject-volume", "etimeout", "flush-threshold-dumped",
    "flush-threshold-scheduled", "holdingdisk", "indexdir", "infofile", "inparallel",
    "interactivity", "krb5keytab", "krb5principal", "label-new-tapes", "labelstr", "logdir",
    "mailer", "mailto", "max-dle-by-volume", "maxdumps", "maxdumpsize", "meta-autolabel",
    "netusage", "org", "printer", "property", "recovery-limit", "rep-tries",
    "report-next-media", "report-use-media", "req-tries", "reserve", "reserved-tcp-port",
    "reserved-udp-port", "rest-api-port", "rest-ssl-cert", "rest-ssl-key", "runspercycle",
    "runtapes", "send-amreport-on", "sort-index", "ssl-dir", "storage", "tapecycle", "tapedev",
    "tapelist", "taper-parallel-write", "taperalgo", "taperflush", "taperscan", "tapetype",
    "timeout", "tmpdir", "tpchanger", "unreserved-tcp-port", "usetimestamps", "vault-storage",
    // statements handled by the parser itself
    "includefile", "define",
];

#[rustfmt::skip]
const CLIENT: &[&str] = &[
    "amandad-path", "amandates", "amdump-server", "auth", "client-name", "client-port",
    "client-username", "conf", "connect-tries", "debug-amandad", "debug-amidxtaped",
    "debug-amindexd", "debug-amrecover", "debug-auth", "debug-chunker", "debug-days",
    "debug-driver", "debug-dumper", "debug-event", "debug-holding", "debug-planner",
    "debug-protocol", "debug-recovery", "debug-selfcheck", "debug-sendbackup",
    "debug-sendsize", "debug-taper", "gnutar-list-dir", "hostname", "index-server",
    "krb5keytab", "krb5principal", "mailer", "property", "rep-tries", "req-tries",
    "reserved-tcp-port", "reserved-udp-port", "ssh-keys", "ssl-ca-cert-file", "ssl-cert-file",
    "ssl-check-certificate-host", "ssl-check-fingerprint", "ssl-check-host", "ssl-cipher-list",
    "ssl-dir", "ssl-fingerprint-file", "ssl-key-file", "tape-server", "tapedev",
    "unreserved-tcp-port", "includefile", "define",
];

#[rustfmt::skip]
const DUMPTYPE: &[&str] = &[
    "allow-split", "amandad-path", "application", "auth", "bumpdays", "bumpmult",
    "bumppercent", "bumpsize", "client-custom-compress", "client-decrypt-option",
    "client-encrypt", "client-port", "client-username", "comment", "comprate", "compress",
    "data-path", "dump-limit", "dumpcycle", "encrypt", "estimate", "exclude",
    "fallback-splitsize", "holdingdisk", "ignore", "include", "index", "kencrypt",
    "max-warnings", "maxcycle", "maxdumps", "maxpromoteday", "priority", "program", "property",
    "record", "recovery-limit", "retry-dump", "script", "server-custom-compress",
    "server-decrypt-option", "server-encrypt", "skip-full", "skip-incr", "split-diskbuffer",
    "ssh-keys", "ssl-ca-cert-file", "ssl-cert-file", "ssl-check-certificate-host",
    "ssl-check-fingerprint", "ssl-check-host", "ssl-cipher-list", "ssl-fingerprint-file",
    "ssl-key-file", "starttime", "strategy", "tag", "tape-splitsize",
];

#[rustfmt::skip]
const TAPETYPE: &[&str] = &[
    "blocksize", "comment", "filemark", "lbl-templ", "length", "part-cache-dir",
    "part-cache-max-size", "part-cache-type", "part-size", "readblocksize", "speed",
];
const HOLDINGDISK: &[&str] = &["chunksize", "comment", "directory", "use"];
const INTERFACE: &[&str] = &["comment", "src-ip", "use"];
const APPLICATION: &[&str] = &["client-name", "comment", "plugin", "property"];
#[rustfmt::skip]
const SCRIPT: &[&str] = &[
    "client-name", "comment", "execute-on", "execute-where", "order", "plugin", "property",
    "single-execution",
];
const DEVICE: &[&str] = &["comment", "device-property", "tapedev"];
#[rustfmt::skip]
const CHANGER: &[&str] = &[
    "changerdev", "changerfile", "comment", "device-property", "property", "tapedev",
    "tpchanger",
];
const PLUGIN_ONLY: &[&str] = &["comment", "plugin", "property"];
#[rustfmt::skip]
const POLICY: &[&str] = &[
    "comment", "retention-days", "retention-full", "retention-recover", "retention-tapes",
];
#[rustfmt::skip]
const STORAGE: &[&str] = &[
    "autoflush", "autolabel", "comment", "device-output-buffer-size", "dump-selection",
    "eject-volume", "erase-on-failure", "erase-on-full", "erase-volume",
    "flush-threshold-dumped", "flush-threshold-scheduled", "interactivity", "labelstr",
    "max-dle-by-volume", "meta-autolabel", "policy", "report-next-media", "report-use-media",
    "runtapes", "set-no-reuse", "tapedev", "tapepool", "taper-parallel-write", "taperalgo",
    "taperflush", "taperscan", "tapetype", "tpchanger", "vault",
];

/// Which table a statement is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Server,
    Client,
    Block(Kind),
}

/// Amanda folds case and treats `-` and `_` alike (`lookup_keyword`); so do we.
pub(crate) fn normalize(word: &str) -> String {
    word.to_ascii_lowercase().replace('_', "-")
}

pub(crate) fn known(section: Section, key: &str) -> bool {
    let table = match section {
        Section::Server => SERVER,
        Section::Client => CLIENT,
        Section::Block(k) => match k {
            Kind::Dumptype => DUMPTYPE,
            Kind::Tapetype => TAPETYPE,
            Kind::Holdingdisk => HOLDINGDISK,
            Kind::Interface => INTERFACE,
            Kind::Application => APPLICATION,
            Kind::Script => SCRIPT,
            Kind::Device => DEVICE,
            Kind::Changer => CHANGER,
            Kind::Interactivity | Kind::Taperscan => PLUGIN_ONLY,
            Kind::Policy => POLICY,
            Kind::Storage => STORAGE,
        },
    };
    table.contains(&key)
}

/// The kinds of `define` block in Amanda 3.5.1 (`read_confline` in conffile.c, and
/// amanda.conf(5) for storage and policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dumptype,
    Interface,
    Holdingdisk,
    Application,
    Script,
    Tapetype,
    Changer,
    Storage,
    Policy,
    Device,
    Interactivity,
    Taperscan,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Dumptype,
        Kind::Interface,
        Kind::Holdingdisk,
        Kind::Application,
        Kind::Script,
        Kind::Tapetype,
        Kind::Changer,
        Kind::Storage,
        Kind::Policy,
        Kind::Device,
        Kind::Interactivity,
        Kind::Taperscan,
    ];

    /// `application-tool` and `script-tool` are the older spellings Amanda still accepts.
    pub fn parse(normalized: &str) -> Option<Kind> {
        Some(match normalized {
            "dumptype" => Kind::Dumptype,
            "interface" => Kind::Interface,
            "holdingdisk" => Kind::Holdingdisk,
            "application" | "application-tool" => Kind::Application,
            "script" | "script-tool" => Kind::Script,
            "tapetype" => Kind::Tapetype,
            "changer" => Kind::Changer,
            "storage" => Kind::Storage,
            "policy" => Kind::Policy,
            "device" => Kind::Device,
            "interactivity" => Kind::Interactivity,
            "taperscan" => Kind::Taperscan,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dumptype => "dumptype",
            Kind::Interface => "interface",
            Kind::Holdingdisk => "holdingdisk",
            Kind::Application => "application",
            Kind::Script => "script",
            Kind::Tapetype => "tapetype",
            Kind::Changer => "changer",
            Kind::Storage => "storage",
            Kind::Policy => "policy",
            Kind::Device => "device",
            Kind::Interactivity => "interactivity",
            Kind::Taperscan => "taperscan",
        }
    }

    /// Parameters that may carry an anonymous block of this kind
    /// (`application { ... }` in a dumptype: `read_dapplication` in conffile.c).
    pub fn of_inline_param(key: &str) -> Option<Kind> {
        match key {
            "holdingdisk" => Some(Kind::Holdingdisk),
            "application" => Some(Kind::Application),
            "script" => Some(Kind::Script),
            "interactivity" => Some(Kind::Interactivity),
            "taperscan" => Some(Kind::Taperscan),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_underscore_and_case_are_one_keyword() {
        assert_eq!(normalize("Reserved_UDP-port"), "reserved-udp-port");
        assert!(known(Section::Server, &normalize("RESERVED_UDP_PORT")));
        assert!(known(Section::Block(Kind::Dumptype), "client-port"));
        assert!(!known(Section::Block(Kind::Dumptype), "global"));
    }
}
