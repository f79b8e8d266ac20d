//! The thin CLI: parse arguments, call the library, render errors, map exit codes
//! (0 fine, 1 findings, 2 bad input or usage).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};

use amwall::amanda::settings::Auth;
use amwall::model;
use amwall::netfilter::Backend;
use amwall::output::write_outputs;
use amwall::plan::Plan;
use amwall::render::{BackendSet, IptablesMode};

#[derive(Parser)]
#[command(
    name = "amwall",
    version,
    about = "Derive, check and prove the firewall rules Amanda backups need"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--backend` of plan, check and lab: the library's [`BackendSet`] knows no clap.
fn backend_set() -> impl TypedValueParser<Value = BackendSet> {
    PossibleValuesParser::new(["iptables", "nft", "both"])
        .map(|s| s.parse().expect("a possible value"))
}

/// `--iptables`: how amwall's iptables rules meet the host's (`IptablesMode::ALL`).
fn iptables_mode() -> impl TypedValueParser<Value = IptablesMode> {
    PossibleValuesParser::new(IptablesMode::ALL.map(|m| m.name())).map(|s| {
        *IptablesMode::ALL
            .iter()
            .find(|m| m.name() == s)
            .expect("a possible value")
    })
}

/// `--auth`: one of the auth methods Debian's Amanda is built with, as the
/// library names them (`Auth::ALL`), so the CLI and the topology agree.
fn auth() -> impl TypedValueParser<Value = Auth> {
    PossibleValuesParser::new(Auth::ALL.map(|a| a.name()))
        .map(|s| Auth::parse(&s).expect("a possible value"))
}

/// `HOST=FILE`, or a bare `FILE` (`host` None): the host part is what stands
/// before the first `=`, when that is not empty and not a path.
#[derive(Clone, Debug)]
struct HostFile {
    host: Option<String>,
    path: PathBuf,
}

fn host_file(spec: &str) -> Result<HostFile, std::convert::Infallible> {
    Ok(match spec.split_once('=') {
        Some((h, f)) if !h.is_empty() && !h.contains('/') => HostFile {
            host: Some(h.to_string()),
            path: f.into(),
        },
        _ => HostFile {
            host: None,
            path: spec.into(),
        },
    })
}

/// `HOST:TEXT`.
#[derive(Clone, Debug)]
struct HostText {
    host: String,
    text: String,
}

fn host_text(spec: &str) -> Result<HostText, String> {
    let (host, text) = spec
        .split_once(':')
        .ok_or_else(|| "expected HOST:TEXT".to_string())?;
    Ok(HostText {
        host: host.into(),
        text: text.into(),
    })
}

/// `--helper on|off`.
fn on_off() -> impl TypedValueParser<Value = bool> {
    PossibleValuesParser::new(["on", "off"]).map(|s| s == "on")
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// How `check` and `lab` report: the format on standard output, and the
/// picture with `--svg`.
struct Reporting {
    format: Format,
    svg: Option<PathBuf>,
}

/// Where the Amanda side comes from when not (only) from the topology.
#[derive(clap::Args)]
struct AmandaArgs {
    /// The server's Amanda config directory (amanda.conf + disklist).
    #[arg(long, value_name = "DIR")]
    amanda_config: Option<PathBuf>,
    /// A hosts file (/etc/hosts format) for hosts the topology does not list.
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
    /// Without a topology: the server's name (looked up in --hosts).
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// Debian's /etc/amanda-security.conf to check ranges against.
    #[arg(long, value_name = "FILE")]
    security_conf: Option<PathBuf>,
    /// A services(5) file to resolve client-port names against.
    #[arg(long, value_name = "FILE")]
    services: Option<PathBuf>,
}

impl AmandaArgs {
    fn sources(&self) -> model::AmandaSources {
        model::AmandaSources {
            config: self.amanda_config.clone(),
            client_confs: vec![],
            hosts_file: self.hosts.clone(),
            security_conf: self.security_conf.clone(),
            services: self.services.clone(),
        }
    }

    fn load(&self, topology: Option<&PathBuf>) -> Result<model::Deployment, amwall::Error> {
        let src = self.sources();
        match (topology, &self.server, &self.hosts) {
            // Ignoring it would plan for a server the admin did not mean.
            (Some(_), Some(_), _) => Err(amwall::Error::Usage(
                "--server names the server only when there is no topology file; in a topology, give the server roles = [\"server\"]".into(),
            )),
            (Some(t), _, _) => amwall::load::load_file_with(t, &src),
            (None, Some(server), Some(hosts)) if self.amanda_config.is_some() => {
                let text = amwall::load::flat_topology(server, hosts)?;
                amwall::load::load_str_with("(flat network from --hosts)", text, &src)
            }
            _ => Err(amwall::Error::Usage(
                "give a topology file, or --amanda-config DIR --hosts FILE --server NAME".into(),
            )),
        }
    }
}

/// `apply`'s modes as the flags users type; clap refuses two at once (exit 2),
/// and [`ApplyFlags::mode`] turns them into the one [`ApplyMode`] dispatched on.
#[derive(clap::Args)]
struct ApplyFlags {
    /// Keep the rules of the pending apply (run it from a new login).
    #[arg(long, conflicts_with_all = ["rollback", "watchdog", "host"])]
    confirm: bool,
    /// Put the previous rules back now.
    #[arg(long, conflicts_with_all = ["confirm", "watchdog", "host"])]
    rollback: bool,
    /// Internal: the detached process that rolls back at the deadline.
    #[arg(long, hide = true)]
    watchdog: bool,
}

enum ApplyMode {
    /// Load this host's planned rules.
    Load(String),
    Confirm,
    Rollback,
    Watchdog,
}

impl ApplyFlags {
    /// `host` is clap's `--host`, required unless another mode is given.
    fn mode(&self, host: Option<String>) -> ApplyMode {
        match (self.confirm, self.rollback, self.watchdog, host) {
            (true, _, _, _) => ApplyMode::Confirm,
            (_, true, _, _) => ApplyMode::Rollback,
            (_, _, true, _) => ApplyMode::Watchdog,
            (_, _, _, Some(h)) => ApplyMode::Load(h),
            (_, _, _, None) => unreachable!("clap requires --host without another mode"),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print shell completions (from the same definitions as --help).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `amwall man > amwall.1`.
    Man,
    /// Write per-host iptables-restore files, nft scripts and SUMMARY.md for a topology.
    Plan {
        /// Topology file (TOML). Optional with --amanda-config, --hosts and --server:
        /// then every host is assumed on one flat network.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Write an Ansible project into DIR instead of --out: inventory.yml
        /// (hosts by role), site.yml (the rollout: routers, the server, then
        /// batches; each load rolled back unless a new SSH connection confirms
        /// it; amcheck after each batch), each host's files and SUMMARY.md.
        /// With --backend both, hosts load nft (amwall_backend per host).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "host", "ufw", "firewalld", "iptables", "format"])]
        ansible: Option<PathBuf>,
        #[arg(long, default_value = "both", value_parser = backend_set())]
        backend: BackendSet,
        /// iptables files for hosts whose firewall amwall is (`owned`: HOST.rules
        /// replaces the tables it names), or beside the rules already there
        /// (`merged`: chains AMWALL-* in HOST.merged.rules, loaded with
        /// HOST.merged.sh; Docker's, fail2ban's and the admin's rules stay).
        #[arg(long, default_value = "owned", value_parser = iptables_mode())]
        iptables: IptablesMode,
        /// Also write HOST.ufw.sh: ufw commands for hosts whose firewall ufw
        /// manages, and for hosts with NAT or the conntrack helper
        /// HOST.ufw-before.init, ufw's hook for what it has no command for.
        #[arg(long)]
        ufw: bool,
        /// Also write firewalld's files for every host (HOST.firewalld.sh
        /// installs them): a service with the amanda helper, ipsets, policies
        /// at priority -1 before the zones, and HOST.firewalld-sport.nft for
        /// the source ports firewalld cannot tie to a destination port.
        #[arg(long)]
        firewalld: bool,
        /// json: also write plan.json (the whole plan, docs/plan.schema.json)
        /// and print it instead of SUMMARY.md.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Emit only this host's rules.
        #[arg(long)]
        host: Option<String>,
        /// Do not print SUMMARY.md to standard output.
        #[arg(long, short)]
        quiet: bool,
        /// Print the whole SUMMARY.md even on a terminal (where a per-host
        /// table of the openings is printed instead).
        #[arg(long)]
        markdown: bool,
    },
    /// Print every network flow Amanda needs in this topology.
    Flows {
        /// Topology file (TOML), as for `plan`.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Build the topology in network namespaces (documentation addresses only), load
    /// the generated rules into the real kernel, and probe every flow and everything
    /// else with real sockets, over IPv4 and IPv6 (with neighbour discovery on every
    /// link). Needs root. Exit 0 only when everything passes.
    Lab {
        /// Topology file (TOML), as for `plan`; its addresses are mapped onto
        /// documentation ranges.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        /// Which rules to load; both runs one lab after the other.
        #[arg(long, default_value = "both", value_parser = backend_set())]
        backend: BackendSet,
        /// Use this auth method everywhere instead of the topology's.
        #[arg(long, value_parser = auth())]
        auth: Option<Auth>,
        /// Turn the kernel's Amanda conntrack helper on or off everywhere (bsd, bsdudp).
        #[arg(long, value_parser = on_off())]
        helper: Option<bool>,
        /// Leave the namespaces up and print how to enter them.
        #[arg(long)]
        keep: bool,
        /// Negative control: before loading, remove from HOST's generated rules (IPv4
        /// and IPv6) every rule line containing TEXT, and see which flows fail
        /// (repeatable).
        #[arg(long, value_name = "HOST:TEXT", value_parser = host_text)]
        drop: Vec<HostText>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also draw the topology to FILE (SVG) with each flow PASS or
        /// BLOCKED (with both backends: blocked when either blocks it).
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Check existing rulesets against the flows Amanda needs: per flow PASS, or
    /// BLOCKED on HOST at FILE:LINE with the rule, the chain path and the message
    /// Amanda prints; then per host what the ruleset accepts for new connections
    /// beyond that need, and its redundant and shadowed rules. Exit 1 when a flow
    /// is blocked. Without a topology, audits the rulesets alone.
    #[command(
        after_help = "Files are told apart by their content: iptables-save, ip6tables-save, `nft list ruleset`, `nft -j list ruleset`. A host of the topology without --rules is treated as accepting everything (with a warning)."
    )]
    Check {
        /// Topology file (TOML). Optional: with --amanda-config, --hosts and --server
        /// the flows come from the Amanda config on a flat network; with neither,
        /// every ruleset is audited on its own.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        /// A host's ruleset, HOST=FILE (repeatable; several files for one host merge,
        /// e.g. rules.v4 and rules.v6). Without a topology FILE alone is enough.
        #[arg(long = "rules", value_name = "HOST=FILE", required = true, value_parser = host_file)]
        rules: Vec<HostFile>,
        /// The members of the sets rules name: `ipset save` output or an `ipset
        /// restore` script such as plan's HOST.ipset (read as ipset runs it), FILE
        /// for every host, or HOST=FILE. Sets without members make matches unknown.
        #[arg(long, value_name = "[HOST=]FILE", value_parser = host_file)]
        ipset: Vec<HostFile>,
        /// A directory where nft `include "NAME"` looks for NAME, after /etc (as
        /// `nft -I DIR`; repeatable). nft looks there, not next to the including file.
        #[arg(long = "nft-include", value_name = "DIR")]
        nft_include: Vec<PathBuf>,
        /// Skip the over-permissive analysis.
        #[arg(long)]
        no_open: bool,
        /// Skip the search for redundant and shadowed rules.
        #[arg(long)]
        no_redundant: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also draw the topology to FILE (SVG) with each flow PASS or
        /// BLOCKED and the host whose rule blocks it marked (needs the flows:
        /// a topology or --amanda-config).
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Load one host's planned rules into this machine's kernel in one transaction,
    /// keep what was loaded before, and roll it back unless confirmed in time from
    /// a new login (`amwall apply --confirm`). Refuses rules that would drop a new
    /// connection like the admin's own SSH session (SSH_CONNECTION). Needs root.
    Apply {
        /// Topology file (TOML), as for `plan`.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        /// The host this machine is in the topology.
        #[arg(long, required_unless_present_any = ["confirm", "rollback", "watchdog"])]
        host: Option<String>,
        /// nft replaces only `table ip amwall`; iptables replaces the tables its
        /// file names (filter, and raw/nat when used) and fills its ipsets;
        /// firewalld loads amwall's services, ipsets and policies into the
        /// running firewalld (reload) and keeps them in its configuration only
        /// once confirmed, with `table ip amwall_sport` beside; ufw runs
        /// `plan --ufw`'s commands and hook on an active ufw and keeps its
        /// files (/etc/ufw/user.rules, user6.rules, before.init) only once
        /// confirmed.
        /// Without it, what manages the host's firewall decides (and is said):
        /// a running firewalld → firewalld; ufw's chains → ufw; amwall's
        /// earlier rules → the same again; other iptables rules (Docker,
        /// fail2ban, the admin's) → iptables merged; else nft.
        #[arg(long, value_parser = PossibleValuesParser::new(["nft", "iptables", "firewalld", "ufw"]))]
        backend: Option<String>,
        /// firewalld's configuration directory (with --backend firewalld).
        #[arg(
            long,
            value_name = "DIR",
            env = "FIREWALLD_CONFIG",
            default_value = "/etc/firewalld"
        )]
        firewalld_config: PathBuf,
        /// With --backend iptables: `owned` replaces the tables (HOST.rules);
        /// `merged` loads only amwall's chains AMWALL-* beside the rules already
        /// there (--noflush, one jump each) and a rollback restores only those.
        /// Given alone, it implies --backend iptables. Owned without this
        /// option is refused when the tables hold rules amwall did not write.
        #[arg(long, value_parser = iptables_mode())]
        iptables: Option<IptablesMode>,
        /// Seconds until the previous rules come back unless confirmed.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Where the previous rules and the pending apply are kept.
        #[arg(long, value_name = "DIR", default_value = amwall::apply::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Return right after loading (the rollback still happens unless confirmed).
        #[arg(long)]
        no_wait: bool,
        /// Load even if a new connection like the admin's would be dropped.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        mode: ApplyFlags,
    },
    /// On the host where Amanda fails (as root): read its Amanda files, inetd/xinetd,
    /// ~backup/.amandahosts, services file, amanda-security.conf, kernel, live
    /// ruleset and listening sockets, and say what will fail and what to change,
    /// most likely cause first. Exit 0: nothing found that breaks Amanda; 1: a
    /// finding breaks it; 2: bad input or usage.
    Doctor {
        /// Topology file (TOML): the peers' addresses, so the live ruleset's flows and
        /// .amandahosts can be judged. Without it (and without --amanda-config,
        /// --hosts and --server) only the host's own files are.
        topology: Option<PathBuf>,
        #[command(flatten)]
        amanda: AmandaArgs,
        /// This host's name in the topology (default: /etc/hostname under --root).
        #[arg(long)]
        host: Option<String>,
        /// Read the host's files under DIR (a copy of another host's /etc, /var,
        /// /proc, ...); then no command is run, as the live state would be this
        /// machine's.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The message Amanda printed (amcheck, amdump, amrecover): causes that
        /// print it come first.
        #[arg(long, value_name = "MESSAGE")]
        error: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the full trace of one packet through one host's ruleset: every table
    /// and chain in hook order, every rule tried, the verdict.
    #[command(after_help = sim_packet_help())]
    Explain {
        /// The ruleset (iptables-save, ip6tables-save, nft list ruleset, nft -j);
        /// repeat to merge several files of one host.
        #[arg(long = "rules", value_name = "FILE", required = true)]
        rules: Vec<PathBuf>,
        /// `ipset save` output or an `ipset restore` script (plan's HOST.ipset) with
        /// the members of the sets the rules name.
        #[arg(long, value_name = "FILE")]
        ipset: Option<PathBuf>,
        /// A directory where nft `include "NAME"` looks for NAME, after /etc (as
        /// `nft -I DIR`; repeatable). nft looks there, not next to the including file.
        #[arg(long = "nft-include", value_name = "DIR")]
        nft_include: Vec<PathBuf>,
        /// The packet, e.g. 'tcp 192.0.2.2:516 -> 192.0.2.3:10080 [in eth0]' (see
        /// below); quoted or as separate words, after the options.
        #[arg(value_name = "PACKET", required = true, num_args = 1.., allow_hyphen_values = true)]
        packet: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

const fn sim_packet_help() -> &'static str {
    "PACKET: PROTO SRC[:SPORT] -> DST[:DPORT] [in IF] [out IF] [state S] [reply] [flags F,...] [mark N] [ctmark N] [ttl N] [len N] [type T[/CODE]] [helper NAME]

  PROTO       tcp, udp, icmp, icmpv6, any name from /etc/protocols, or a number
  SRC, DST    IPv4 or IPv6 address ([2001:db8::1]:22 with a port); a prefix
              (192.0.2.0/24) evaluates every address of it at once
  SPORT       a port or a range N-M (default: 32768-60999, the ephemeral range)
  DPORT       a port or a range N-M (required for tcp, udp, sctp, dccp, udplite)
  in IF       arrives on IF; alone: for this host (prerouting, input)
  in IF out O forwarded (prerouting, forward, postrouting)
  out IF      sent by this host (output, postrouting)
              without in/out: arrives on any interface but lo
  state S     new (default), established, related, invalid, untracked
  reply       the packet goes in the reply direction of its connection
  flags F     TCP flags, e.g. SYN,ACK (default SYN for new, ACK otherwise)
  type T      ICMP type name or number, optionally /CODE
  helper NAME the connection already has this conntrack helper
Brackets and commas between options are optional.

Examples:
  amwall explain --rules rules.v4 'tcp 192.0.2.2:516 -> 192.0.2.3:10080 [in eth0]'
  amwall explain --rules fw.nft 'udp 198.51.100.7:840-860 -> 203.0.113.1:10080 in eth1 out eth0'
  amwall explain --rules rules.v4 'tcp 192.0.2.3:10080 -> 192.0.2.2:516 in eth0 state established reply'"
}

// Long: one arm per subcommand, each only parsing its flags into a library call
fn run(cli: Cli) -> Result<ExitCode, amwall::Error> {
    use clap::CommandFactory;
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "amwall", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let io = |source| amwall::Error::Io {
                path: "stdout".into(),
                error: source,
            };
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(io)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            topology,
            amanda,
            out,
            ansible,
            backend,
            iptables,
            ufw,
            firewalld,
            format,
            host,
            quiet,
            markdown,
        } => {
            let plan = Plan::build(amanda.load(topology.as_ref())?)?;
            if let Some(dir) = ansible {
                return plan_ansible(&plan, &amanda, backend, &dir, quiet);
            }
            let want = amwall::summary::Files {
                ufw,
                firewalld,
                ..amwall::summary::Files::new(backend, iptables)
            };
            let mut files = plan.outputs_for(want, backend, host.as_deref())?;
            let summary = files.pop().expect("SUMMARY.md is always produced");
            let json = (format == Format::Json).then(|| amwall::export::plan_json_text(&plan));
            if let Some(j) = &json {
                files.push(("plan.json".into(), format!("{j}\n")));
            }
            files.push(summary);
            let written = write_outputs(&out, &files)?;
            use std::io::IsTerminal;
            let terminal = std::io::stdout().is_terminal() && !markdown;
            if !quiet {
                match &json {
                    Some(j) => println!("{j}"),
                    None if terminal => {
                        let width = std::env::var("COLUMNS")
                            .ok()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(100);
                        print!(
                            "{}",
                            amwall::summary::brief(
                                &plan,
                                host.as_deref(),
                                width,
                                &amwall::name::shell_word(&out.display().to_string()),
                                written.len()
                            )
                        );
                    }
                    None => print!("{}", files.last().expect("SUMMARY.md").1),
                }
            }
            print_warnings(&plan);
            if terminal && !quiet {
                // The brief view said where the files went.
            } else if written.len() <= 20 {
                for w in &written {
                    eprintln!("wrote {}", w.display());
                }
            } else {
                eprintln!("wrote {} files to {}", written.len(), out.display());
            }
            // A 10,000-client plan holds a few hundred thousand small allocations;
            // the process ends here, so let the OS reclaim them instead of freeing
            // each one.
            std::mem::forget((plan, files));
            Ok(ExitCode::SUCCESS)
        }
        Command::Flows {
            topology,
            amanda,
            format,
        } => {
            let plan = Plan::build(amanda.load(topology.as_ref())?)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&amwall::view::all_json(&plan))
                        .expect("JSON of plain data")
                ),
                Format::Text => {
                    // One write: stdout is line-buffered, and 10,000 clients
                    // make some 100,000 lines.
                    let mut text = String::new();
                    for f in amwall::view::all(&plan)
                        .into_iter()
                        .chain(amwall::view::all6(&plan))
                    {
                        let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{f}\n"));
                    }
                    print!("{text}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab {
            topology,
            amanda,
            backend,
            auth,
            helper,
            keep,
            drop,
            format,
            svg,
        } => lab(
            amanda.load(topology.as_ref())?,
            backend,
            auth,
            helper,
            keep,
            &drop,
            Reporting { format, svg },
        ),
        Command::Check {
            topology,
            amanda,
            rules,
            ipset,
            nft_include,
            no_open,
            no_redundant,
            format,
            svg,
        } => check(
            topology,
            &amanda,
            &rules,
            &ipset,
            &nft_includes(nft_include),
            amwall::check::Options {
                open: !no_open,
                redundant: !no_redundant,
            },
            Reporting { format, svg },
        ),
        Command::Apply {
            topology,
            amanda,
            host,
            backend,
            iptables,
            firewalld_config,
            timeout,
            state_dir,
            no_wait,
            force,
            mode,
        } => {
            let state = amwall::apply::StateDir::new(state_dir);
            match mode.mode(host) {
                ApplyMode::Watchdog => Ok(match amwall::apply::watchdog(&state)? {
                    amwall::apply::Outcome::Confirmed => ExitCode::SUCCESS,
                    amwall::apply::Outcome::RolledBack => ExitCode::from(1),
                    amwall::apply::Outcome::RollbackFailed => ExitCode::from(2),
                }),
                ApplyMode::Confirm => {
                    amwall::apply::request(&state, true)?;
                    Ok(wait_apply(&state, Duration::from_secs(10), false))
                }
                ApplyMode::Rollback => {
                    amwall::apply::request(&state, false)?;
                    Ok(wait_apply(&state, Duration::from_secs(10), true))
                }
                ApplyMode::Load(host) => {
                    let plan = Plan::build(amanda.load(topology.as_ref())?)?;
                    let (backend, mode) = match (backend.as_deref(), iptables) {
                        (Some("firewalld"), _) => (ApplyBackend::Firewalld(firewalld_config), None),
                        (Some("ufw"), _) => (ApplyBackend::Ufw, None),
                        (Some(b), m) => {
                            (ApplyBackend::Plain(b.parse().expect("a possible value")), m)
                        }
                        (None, Some(m)) => (ApplyBackend::Plain(Backend::Iptables), Some(m)),
                        (None, None) => {
                            use amwall::apply::Choice;
                            let declared = plan
                                .deployment
                                .host_by_name(&host)
                                .and_then(|h| plan.deployment.hosts[h].firewall);
                            let found = amwall::apply::reconcile(
                                declared,
                                &host,
                                amwall::apply::detect(&state)?,
                            )?;
                            eprintln!(
                                "note: {}; so: {} (give --backend to choose)",
                                found.why,
                                found.choice.flags()
                            );
                            match found.choice {
                                Choice::Nft => (ApplyBackend::Plain(Backend::Nft), None),
                                Choice::Iptables(m) => {
                                    (ApplyBackend::Plain(Backend::Iptables), Some(m))
                                }
                                Choice::Firewalld => {
                                    (ApplyBackend::Firewalld(firewalld_config), None)
                                }
                                Choice::Ufw => (ApplyBackend::Ufw, None),
                            }
                        }
                    };
                    apply(
                        &plan,
                        &host,
                        (backend, mode, iptables == Some(IptablesMode::Owned)),
                        timeout,
                        &state,
                        no_wait,
                        force,
                    )
                }
            }
        }
        Command::Doctor {
            topology,
            amanda,
            host,
            root,
            error,
            format,
        } => doctor(topology, &amanda, host, root, error, format),
        Command::Explain {
            rules,
            ipset,
            nft_include,
            packet,
            format,
        } => explain(
            &rules,
            ipset,
            &nft_includes(nft_include),
            &packet.join(" "),
            format,
        ),
    }
}

/// nft's include path: its default, then the `--nft-include` directories.
fn nft_includes(extra: Vec<PathBuf>) -> amwall::netfilter::nft::Includes {
    let mut inc = amwall::netfilter::nft::Includes::nft_default();
    inc.dirs.extend(extra);
    inc
}

/// `--ipset` values: FILE (every host) or HOST=FILE.
fn ipsets_for(
    specs: &[HostFile],
    host: &str,
) -> Result<Option<amwall::netfilter::ipset::IpSets>, amwall::Error> {
    use amwall::check::load::read_ipsets;
    let mut acc: Option<amwall::netfilter::ipset::IpSets> = None;
    for spec in specs {
        if spec.host.as_deref().is_some_and(|h| h != host) {
            continue;
        }
        let sets = read_ipsets(&spec.path)?;
        let a = acc.get_or_insert_with(Default::default);
        a.sets.extend(sets.sets);
        a.unsupported.extend(sets.unsupported);
    }
    Ok(acc)
}

fn check(
    topology: Option<PathBuf>,
    amanda: &AmandaArgs,
    rules: &[HostFile],
    ipset: &[HostFile],
    nft_include: &amwall::netfilter::nft::Includes,
    opts: amwall::check::Options,
    out: Reporting,
) -> Result<ExitCode, amwall::Error> {
    use amwall::check::{self, HostRules, RulesFile};
    let with_flows = topology.is_some() || amanda.amanda_config.is_some();
    if out.svg.is_some() && !with_flows {
        return Err(amwall::Error::Usage(
            "--svg draws the flows: give a topology or --amanda-config".into(),
        ));
    }
    let bar = late_progress();
    let step = |s: check::Stage| {
        bar.set_message(match s {
            check::Stage::Compiling(h) => format!("compiling {h}'s rules"),
            check::Stage::Flows { done, total } => format!("walking flow {} of {total}", done + 1),
            check::Stage::Analysing(h) => {
                format!("{h}: what is open beyond need, redundant and shadowed rules")
            }
        })
    };
    // HOST=FILE, in the order given; several files per host merge.
    let mut order: Vec<String> = Vec::new();
    let mut files: std::collections::HashMap<String, Vec<RulesFile>> = Default::default();
    for spec in rules {
        let host = match &spec.host {
            Some(h) => h.clone(),
            None if !with_flows => spec.path.file_name().map_or_else(
                || spec.path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            None => {
                return Err(amwall::Error::Usage(format!(
                    "--rules {}: expected HOST=FILE (the host's name in the topology)",
                    spec.path.display()
                )))
            }
        };
        bar.set_message(format!("reading {}", spec.path.display()));
        let f = RulesFile::read_with(&spec.path, nft_include)?;
        if !files.contains_key(&host) {
            order.push(host.clone());
        }
        files.entry(host).or_default().push(f);
    }
    let mut hosts = Vec::new();
    for h in order {
        let fs = files.remove(&h).expect("collected above");
        let sets = ipsets_for(ipset, &h)?;
        hosts.push((h, HostRules::new(fs, sets)));
    }
    let report = if with_flows {
        let plan = Plan::build(amanda.load(topology.as_ref())?)?;
        let report = check::check_with(&plan, &hosts, opts, &step);
        if let Some(path) = &out.svg {
            let verdicts = check::report::verdicts(&report);
            amwall::picture::write(path, &amwall::picture::svg(&plan, Some(&verdicts)))?;
        }
        report
    } else {
        check::audit_with(&hosts, opts, &step)
    };
    bar.finish_and_clear();
    match out.format {
        Format::Text => print!("{}", check::report::text(&report)),
        Format::Json => println!("{}", check::report::json(&report)),
    }
    Ok(if report.blocked() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The plan's lints and the warnings about the admin's Amanda files, on
/// stderr, as every command that writes a plan says them.
fn print_warnings(plan: &Plan) {
    for l in &plan.lints {
        eprintln!(
            "warning[{}]: {}{}",
            l.code,
            l.host
                .as_deref()
                .map(|h| format!("{h}: "))
                .unwrap_or_default(),
            l.message
        );
    }
    for (code, w) in &plan.deployment.provenance.warnings {
        eprintln!("warning[{code}]: {w}");
    }
}

/// A spinner on stderr that shows only once a run has taken a second, and
/// only on a terminal: quick runs and pipes stay as they were.
fn late_progress() -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {wide_msg}").expect("a valid template"),
    );
    if std::io::stderr().is_terminal() {
        let later = bar.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            if !later.is_finished() {
                later.set_draw_target(ProgressDrawTarget::stderr());
                later.enable_steady_tick(std::time::Duration::from_millis(120));
            }
        });
    }
    bar
}

/// `amwall doctor`: the topology (if any) gives the flows; the host's own
/// files and live state come from `--root`.
fn doctor(
    topology: Option<PathBuf>,
    amanda: &AmandaArgs,
    host: Option<String>,
    root: PathBuf,
    error: Option<String>,
    format: Format,
) -> Result<ExitCode, amwall::Error> {
    let plan = if topology.is_some() || amanda.amanda_config.is_some() {
        Some(Plan::build(amanda.load(topology.as_ref())?)?)
    } else {
        None
    };
    let report = amwall::doctor::doctor(
        &amwall::doctor::Live::new(root),
        &amwall::doctor::Ask {
            plan: plan.as_ref(),
            host,
            error,
        },
    )?;
    match format {
        Format::Text => print!("{report}"),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        ),
    }
    Ok(if report.breaks() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Wait for the watchdog's outcome and say it; exit 0 when the rules stay
/// (or, for a requested rollback, when it happened), 1 when rolled back.
fn wait_apply(state: &amwall::apply::StateDir, limit: Duration, want_rollback: bool) -> ExitCode {
    use amwall::apply::Outcome;
    match amwall::apply::wait_outcome(state, limit) {
        Some(Outcome::Confirmed) => {
            eprintln!("confirmed: the new rules stay");
            ExitCode::SUCCESS
        }
        Some(Outcome::RolledBack) => {
            eprintln!("rolled back: the previous rules are loaded again");
            ExitCode::from(if want_rollback { 0 } else { 1 })
        }
        Some(Outcome::RollbackFailed) => {
            eprintln!("ROLLBACK FAILED: {}", state.log().trim());
            ExitCode::from(2)
        }
        None => {
            eprintln!(
                "no answer from the watchdog in {}; see {}",
                limit.as_secs(),
                state.dir.display()
            );
            ExitCode::from(2)
        }
    }
}

/// What `apply --backend` loads into: a ruleset language, or firewalld
/// (whose own language is nft) with its configuration directory.
enum ApplyBackend {
    Plain(Backend),
    Firewalld(PathBuf),
    Ufw,
}

#[allow(clippy::too_many_arguments)]
fn apply(
    plan: &Plan,
    host: &str,
    (backend, choice, replace_foreign): (ApplyBackend, Option<IptablesMode>, bool),
    timeout: u64,
    state: &amwall::apply::StateDir,
    no_wait: bool,
    force: bool,
) -> Result<ExitCode, amwall::Error> {
    use amwall::apply::{self, AdminConn, Payload};
    let d = &plan.deployment;
    let h = d
        .host_by_name(host)
        .ok_or_else(|| amwall::Error::Usage(format!("no host `{host}` in {}", d.source_name)))?;
    let hp = plan
        .policies
        .iter()
        .find(|p| p.host == h)
        .expect("every host has a policy");
    let iptables = choice.unwrap_or(IptablesMode::Owned);
    let payload = match backend {
        ApplyBackend::Plain(Backend::Nft) => Payload {
            kind: Backend::Nft,
            host: host.into(),
            rules: plan.nft(hp),
            ipset: None,
            rules6: None,
            merged: vec![],
            merged6: vec![],
            firewalld: None,
            ufw: None,
        },
        ApplyBackend::Plain(Backend::Iptables) => Payload {
            kind: Backend::Iptables,
            host: host.into(),
            rules: match iptables {
                IptablesMode::Owned => plan.iptables(hp),
                IptablesMode::Merged => plan.iptables_merged(hp),
            },
            ipset: plan.ipset(hp),
            rules6: match iptables {
                IptablesMode::Owned => Some(plan.ip6tables(hp)),
                IptablesMode::Merged => plan.ip6tables_merged(hp),
            },
            merged: match iptables {
                IptablesMode::Owned => vec![],
                IptablesMode::Merged => amwall::render::iptables_merged(hp).1,
            },
            merged6: match iptables {
                IptablesMode::Owned => vec![],
                IptablesMode::Merged => amwall::render::ip6tables_merged(hp)
                    .map(|(_, j)| j)
                    .unwrap_or_default(),
            },
            firewalld: None,
            ufw: None,
        },
        ApplyBackend::Firewalld(ref config) => {
            let install = plan.firewalld_install(hp);
            Payload {
                kind: Backend::Nft,
                host: host.into(),
                rules: install.sport.unwrap_or_default(),
                ipset: None,
                rules6: None,
                merged: vec![],
                merged6: vec![],
                firewalld: Some(apply::FirewalldPayload {
                    config: config.clone(),
                    objects: install.objects,
                }),
                ufw: None,
            }
        }
        ApplyBackend::Ufw => {
            use amwall::apply::ufw::{CONFIG, STOCK_HOOK};
            let stock = std::path::Path::new(STOCK_HOOK);
            Payload {
                kind: Backend::Iptables,
                host: host.into(),
                rules: String::new(),
                ipset: None,
                rules6: None,
                merged: vec![],
                merged6: vec![],
                firewalld: None,
                ufw: Some(apply::UfwPayload {
                    config: CONFIG.into(),
                    commands: amwall::render::ufw_argv(hp),
                    hook: plan.ufw_before_init(hp),
                    stock: stock
                        .exists()
                        .then(|| amwall::input::read_text(stock))
                        .transpose()?,
                }),
            }
        }
    };
    let opts = apply::Options {
        timeout: Duration::from_secs(timeout),
        admin: std::env::var("SSH_CONNECTION")
            .ok()
            .and_then(|v| AdminConn::from_env_value(&v)),
        force,
        watchdog_exe: std::env::current_exe().map_err(|source| amwall::Error::Io {
            path: "/proc/self/exe".into(),
            error: source,
        })?,
        replace_foreign,
        flows: Some((plan, host)),
    };
    let done = apply::apply(state, &payload, &opts)?;
    for n in &done.notes {
        eprintln!("note: {n}");
    }
    // Printed to be pasted into a shell: quoted when the path needs it.
    let dir = amwall::name::shell_word(&state.dir.display().to_string());
    eprintln!(
        "loaded {host}'s rules ({}); they are rolled back in {timeout} s unless confirmed.\n\
         From a NEW login (that proves new connections still pass), run:\n    \
         amwall apply --confirm --state-dir {dir}\n\
         To go back now: amwall apply --rollback --state-dir {dir}",
        match backend {
            ApplyBackend::Plain(Backend::Nft) => "nft table ip amwall",
            ApplyBackend::Plain(Backend::Iptables) => "iptables",
            ApplyBackend::Firewalld(_) =>
                "firewalld's runtime and table ip amwall_sport; its configuration on confirm",
            ApplyBackend::Ufw => "ufw's running rules; its files in /etc/ufw on confirm",
        }
    );
    if no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Or press Enter here (proves only that this session survives).");
        let dir = state.dir.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = amwall::apply::request(&amwall::apply::StateDir::new(dir), true);
            }
        });
    }
    Ok(wait_apply(state, Duration::from_secs(timeout + 10), false))
}

fn explain(
    rules: &[PathBuf],
    ipset: Option<PathBuf>,
    nft_include: &amwall::netfilter::nft::Includes,
    packet: &str,
    format: Format,
) -> Result<ExitCode, amwall::Error> {
    use amwall::check::{explain, load, HostRules, RulesFile};
    if let Some(o) = packet
        .split_whitespace()
        .find(|w| w.starts_with("--") && w.len() > 2)
    {
        return Err(amwall::Error::Usage(format!(
            "`{o}` after the packet: give options before PACKET"
        )));
    }
    let p = amwall::sim::packet::parse(packet).map_err(|e| {
        amwall::Error::Usage(format!(
            "packet `{packet}`: {e} (see amwall explain --help)"
        ))
    })?;
    let mut files = Vec::new();
    for r in rules {
        files.push(RulesFile::read_with(r, nft_include)?);
    }
    let sets = ipset.map(|p| load::read_ipsets(&p)).transpose()?;
    for w in files.iter().flat_map(|f| &f.warnings) {
        eprintln!("warning: {w}");
    }
    let hr = HostRules::new(files, sets);
    if !hr.has_family(p.v6) {
        eprintln!(
            "warning: the ruleset has no {} tables: nothing filters this packet",
            if p.v6 { "IPv6" } else { "IPv4" }
        );
    }
    let ex = amwall::sim::explain(&hr.ruleset, hr.ipsets.as_ref(), &p);
    match format {
        Format::Text => print!("{}", explain::render_text(&hr, &ex, packet)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&explain::render_json(&hr, &ex, packet))
                .expect("JSON of plain data")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn lab(
    mut d: model::Deployment,
    backend: BackendSet,
    auth: Option<Auth>,
    helper: Option<bool>,
    keep: bool,
    drop: &[HostText],
    out: Reporting,
) -> Result<ExitCode, amwall::Error> {
    use amwall::lab::{Lab, Progress};
    use indicatif::{ProgressBar, ProgressStyle};

    let format = out.format;
    if let Some(a) = auth {
        d = d.with_auth(a);
    }
    if let Some(h) = helper {
        d = d.with_helper(h);
    }
    // The picture shows the topology's own addresses, not the lab's; the
    // lab refuses a mapping that would route a flow differently.
    let drawn = match &out.svg {
        Some(path) => {
            amwall::picture::can_write(path)?;
            Some((path, Plan::build(d.clone())?))
        }
        None => None,
    };
    // Ctrl-C (and SIGTERM): the guards cannot run when the process is killed, so
    // remove every namespace this process made, then exit like an interrupted shell.
    let _ = ctrlc::set_handler(|| {
        let gone = amwall::lab::netns::remove_all();
        eprintln!("\ninterrupted: removed {} lab namespaces", gone.len());
        // Exit without unwinding while remove_all's refusal to create more holds.
        std::process::exit(130);
    });
    let mut reports = Vec::new();
    let mut ok = true;
    for &mode in backend.members() {
        let mut l = match Lab::new(d.clone(), mode) {
            Ok(l) => l,
            Err(amwall::lab::LabError::Plan(e)) => return Err(e),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        for HostText { host, text } in drop {
            let spec = format!("{host}:{text}");
            let rules = l
                .rules
                .iter_mut()
                .find(|r| r.host == *host)
                .ok_or_else(|| amwall::Error::Usage(format!("--drop {spec}: no host `{host}`")))?;
            let gone = rules.drop_rules(&[text.as_str()]);
            if gone.is_empty() {
                return Err(amwall::Error::Usage(format!(
                    "--drop {spec}: no rule of `{host}` contains `{text}`"
                )));
            }
            for g in gone {
                eprintln!("dropped from {host}: {}", g.trim());
            }
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        let mut progress = |p: Progress| match p {
            Progress::Stage(s) => {
                bar.set_length(0);
                bar.set_message(s);
            }
            Progress::Probes { what, done, total } => {
                bar.set_message(format!("probing {what}"));
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let res = l.run(&mut progress);
        bar.finish_and_clear();
        let report = match res {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        ok &= report.passed();
        if format == Format::Text {
            println!("{report}");
        }
        if keep {
            println!("Kept ({}); enter a host with:", report.backend_name());
            for k in l.keep() {
                println!("  ip netns exec {} bash    # {}", k.namespace, k.host);
            }
            println!("Remove them with: ip netns del NAME");
            println!();
        }
        reports.push(report);
    }
    if let Some((path, plan)) = drawn {
        let mut marks = vec![amwall::picture::Mark::Pass; plan.flows.len()];
        for r in &reports {
            let mut seen = r.marks();
            seen.resize(marks.len(), amwall::picture::Mark::Unknown);
            for (m, seen) in marks.iter_mut().zip(seen) {
                *m = std::mem::replace(m, amwall::picture::Mark::Pass).worst(seen);
            }
        }
        let backends: Vec<&str> = reports.iter().map(|r| r.backend_name()).collect();
        let verdicts = amwall::picture::Verdicts {
            title: format!("lab ({})", backends.join(", ")),
            marks,
        };
        amwall::picture::write(path, &amwall::picture::svg(&plan, Some(&verdicts)))?;
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("JSON of plain data")
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader goes away
    // (`amwall flows ... | head`) instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of one signal at start-up, before
    // any thread exists.
    unsafe {
        nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL);
    }
    // Keep "FILE:LINE:COL: message" on one line so it stays greppable.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(2)
        }
    }
}

/// `plan --ansible DIR`: the project, written all or nothing like `--out`.
fn plan_ansible(
    plan: &Plan,
    amanda: &AmandaArgs,
    backend: BackendSet,
    dir: &std::path::Path,
    quiet: bool,
) -> amwall::Result<ExitCode> {
    let opts = amwall::ansible::Options {
        amanda_config: amanda
            .amanda_config
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let files = amwall::ansible::project(plan, backend, &opts)?;
    let written = write_outputs(dir, &files)?;
    print_warnings(plan);
    if !quiet {
        let d = amwall::name::shell_word(&dir.display().to_string());
        println!(
            "wrote an Ansible project ({} files) to {}\n\n  cd {d}\n  ansible-playbook site.yml --check --diff   # what would change\n  ansible-playbook site.yml                  # roll out, batch by batch",
            written.len(),
            dir.display()
        );
    }
    std::mem::forget(files);
    Ok(ExitCode::SUCCESS)
}
