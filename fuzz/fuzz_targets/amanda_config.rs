//! The admin's Amanda files, as one input cut into files at lines that read
//! `%%` : amanda.conf, a disklist, two files for `includefile`, an
//! amanda-client.conf and a hosts file. Reading them (directly, and through
//! the topology loader on a flat network) returns values or errors, never
//! panics or hangs, whatever includes what.
#![no_main]

use std::path::PathBuf;

use amwall::amanda::conf::{self, LoadOptions};
use amwall::model::AmandaSources;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "amanda.conf",
    "disklist",
    "a.conf",
    "b.conf",
    "amanda-client.conf",
    "hosts",
];

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("amwall-fuzz-amanda-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let d = dir();
    let mut parts = text.split("\n%%\n");
    for name in NAMES {
        std::fs::write(d.join(name), parts.next().unwrap_or("")).unwrap();
    }
    let opts = LoadOptions::default();
    let _ = conf::load_server_config(&d.join("amanda.conf"), &opts);
    let _ = conf::load_client_conf(&d.join("amanda-client.conf"), &opts);
    let hosts = std::fs::read_to_string(d.join("hosts")).unwrap();
    let _ = amwall::load::amanda_config::parse_hosts(&hosts);
    // The whole way in: a flat network of the hosts file, the server named
    // by its first entry, the disklist deciding who is a client.
    let server = hosts
        .split_whitespace()
        .nth(1)
        .unwrap_or("server")
        .to_string();
    let src = AmandaSources {
        config: Some(d.clone()),
        client_confs: vec![(server.clone(), d.join("amanda-client.conf"))],
        hosts_file: Some(d.join("hosts")),
        ..AmandaSources::default()
    };
    if let Ok(topo) = amwall::load::amanda_config::flat_topology(&server, &d.join("hosts")) {
        let _ = amwall::load::load_str_with("flat.toml", topo, &src);
    }
});
