//! nft is the judge of what an nft script means before its rules: each case
//! (variables, scopes, includes through the include path and wildcards,
//! cycles, commands beyond `table { ... }`) goes through `nft -c -f` in a
//! throwaway namespace and through amwall's reader, and both must accept it
//! or both refuse it. Needs root and nftables.

use std::path::Path;

use amwall::check::RulesFile;
use amwall::lab::Netns;
use amwall::netfilter::nft::Includes;

struct Case {
    name: &'static str,
    /// (relative path, text); the first is the main file. `@D` is the case's directory.
    files: &'static [(&'static str, &'static str)],
    /// Whether the case's directory is on the include path (`-I`).
    include_dir: bool,
    accepted: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "variables in values, sets and jumps",
        files: &[(
            "main.nft",
            "define lan = { 192.0.2.0/24, 198.51.100.7 }\ndefine p=10080\ndefine sub = amanda\n\
             table inet f {\n\tdefine one = 203.0.113.1\n\tchain amanda {\n\t\ttcp dport $p accept\n\t}\n\
             \tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\
             \t\tip saddr { $lan, $one } jump $sub\n\t\tip saddr $lan udp dport $p accept\n\t}\n}\n",
        )],
        include_dir: false,
        accepted: true,
    },
    Case {
        name: "unknown identifier",
        files: &[(
            "main.nft",
            "table ip t {\n\tchain c {\n\t\ttcp dport $nope accept\n\t}\n}\n",
        )],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "a define is local to its table",
        files: &[(
            "main.nft",
            "table ip t {\n\tdefine p = 22\n}\ntable ip u {\n\tchain c {\n\t\ttcp dport $p accept\n\t}\n}\n",
        )],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "define twice",
        files: &[("main.nft", "define p = 1\ndefine p = 2\n")],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "redefine and undefine",
        files: &[(
            "main.nft",
            "define p = 22\nredefine p = 23\nundefine q\ntable ip t {\n\tchain c {\n\t\ttcp dport $p accept\n\t}\n}\nundefine p\n",
        )],
        include_dir: false,
        accepted: true,
    },
    Case {
        name: "use after undefine",
        files: &[(
            "main.nft",
            "define p = 22\nundefine p\ntable ip t {\n\tchain c {\n\t\ttcp dport $p accept\n\t}\n}\n",
        )],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "a variable as a table name",
        files: &[("main.nft", "define t = x\ntable ip $t {\n}\n")],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "include by name through the include path, rules by wildcard",
        files: &[
            (
                "main.nft",
                "include \"defs.nft\"\ntable ip t {\n\tchain c {\n\t\tinclude \"@D/r.d/*.nft\"\n\t\tinclude \"@D/empty/*.nft\"\n\t}\n}\n",
            ),
            ("defs.nft", "define p = 22\n"),
            ("r.d/1.nft", "tcp dport $p accept\n"),
            ("r.d/2.nft", "udp dport $p accept\n"),
        ],
        include_dir: true,
        accepted: true,
    },
    Case {
        name: "a plain name is not looked up beside the including file",
        files: &[
            ("main.nft", "include \"defs.nft\"\n"),
            ("defs.nft", "define p = 22\n"),
        ],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "include cycle",
        files: &[
            ("main.nft", "include \"@D/a.nft\"\n"),
            ("a.nft", "include \"@D/b.nft\"\n"),
            ("b.nft", "include \"@D/a.nft\"\n"),
        ],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "a missing file without wildcards",
        files: &[("main.nft", "include \"@D/missing.nft\"\n")],
        include_dir: false,
        accepted: false,
    },
    Case {
        name: "commands beyond table blocks",
        files: &[(
            "main.nft",
            "add table ip t\nadd chain ip t c { type filter hook input priority 0; policy drop; }\n\
             add set ip t s { type ipv4_addr; }\nadd element ip t s { 192.0.2.1 }\n\
             add rule ip t c ip saddr @s accept\ninsert rule ip t c index 0 tcp dport 22 accept\n\
             add chain ip t x\nflush chain ip t x\ndelete chain ip t x\n",
        )],
        include_dir: false,
        accepted: true,
    },
];

fn write_case(dir: &Path, case: &Case) {
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    for (rel, text) in case.files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text.replace("@D", &dir.display().to_string())).unwrap();
    }
}

#[test]
fn amwall_reads_what_nft_reads() {
    let ns = Netns::new("amwns").expect("creating a netns needs root and iproute2");
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_case(dir, case);
        let main = dir.join(case.files[0].0);
        let (d, m) = (dir.to_str().unwrap(), main.to_str().unwrap());
        let mut argv = vec!["nft", "-c"];
        if case.include_dir {
            argv.extend(["-I", d]);
        }
        argv.extend(["-f", m]);
        let out = ns.exec(&argv, None).expect("nft must be installed");
        assert_eq!(
            out.ok(),
            case.accepted,
            "{}: nft says {}",
            case.name,
            out.stderr
        );
        let mut inc = Includes::nft_default();
        if case.include_dir {
            inc.dirs.push(dir.to_path_buf());
        }
        let ours = RulesFile::read_with(&main, &inc);
        assert_eq!(
            ours.is_ok(),
            case.accepted,
            "{}: amwall says {:?}",
            case.name,
            ours.err().map(|e| e.to_string())
        );
        if let Ok(f) = ours {
            assert_eq!(f.ruleset.unknown_count(), 0, "{}", case.name);
            assert!(f.warnings.is_empty(), "{}: {:?}", case.name, f.warnings);
        }
    }
}
