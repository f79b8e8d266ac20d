//! The thin CLI: parse arguments, call the library, render errors, map exit codes
//! (0 fine, 1 findings, 2 bad input or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use amwall::model;
use amwall::plan::{write_outputs, Plan};
use amwall::render::Backend;

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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
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
            (Some(t), _, _) => model::load_file_with(t, &src),
            (None, Some(server), Some(hosts)) if self.amanda_config.is_some() => {
                let text = model::flat_topology(server, hosts)?;
                model::load_str_with("(flat network from --hosts)", text, &src)
            }
            _ => Err(amwall::Error::Usage(
                "give a topology file, or --amanda-config DIR --hosts FILE --server NAME".into(),
            )),
        }
    }
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, value_enum, default_value = "both")]
        backend: Backend,
        /// Emit only this host's rules.
        #[arg(long)]
        host: Option<String>,
        /// Do not print SUMMARY.md to standard output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print every network flow Amanda needs in this topology.
    Flows {
        topology: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Build the topology in network namespaces (documentation addresses only), load
    /// the generated rules into the real kernel, and probe every flow and everything
    /// else with real sockets. Needs root. Exit 0 only when everything passes.
    Lab {
        /// Topology file (TOML); its addresses are mapped onto documentation ranges.
        topology: PathBuf,
        /// Which rules to load; both runs one lab after the other.
        #[arg(long, value_enum, default_value = "both")]
        backend: Backend,
        /// Use this auth method everywhere instead of the topology's.
        #[arg(long, value_parser = ["bsd", "bsdudp", "bsdtcp", "ssh", "local"])]
        auth: Option<String>,
        /// Turn the kernel's Amanda conntrack helper on or off everywhere (bsd, bsdudp).
        #[arg(long, value_parser = ["on", "off"])]
        helper: Option<String>,
        /// Leave the namespaces up and print how to enter them.
        #[arg(long)]
        keep: bool,
        /// Negative control: before loading, remove from HOST's generated rules every
        /// rule line containing TEXT, and see which flows fail (repeatable).
        #[arg(long, value_name = "HOST:TEXT")]
        drop: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn run(cli: Cli) -> Result<ExitCode, amwall::Error> {
    match cli.command {
        Command::Plan {
            topology,
            amanda,
            out,
            backend,
            host,
            quiet,
        } => {
            let plan = Plan::build(amanda.load(topology.as_ref())?)?;
            let files = plan.outputs(backend, host.as_deref())?;
            let written = write_outputs(&out, &files)?;
            if !quiet {
                let summary = &files.last().expect("SUMMARY.md is always produced").1;
                print!("{summary}");
            }
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
            for w in written {
                eprintln!("wrote {}", w.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Flows { topology, format } => {
            let plan = Plan::build(model::load_file(&topology)?)?;
            match format {
                Format::Json => {
                    let d = &plan.deployment;
                    let rows: Vec<serde_json::Value> = plan
                        .flows
                        .iter()
                        .zip(&plan.paths)
                        .enumerate()
                        .map(|(i, (f, p))| {
                            serde_json::json!({
                                "id": i + 1,
                                "operation": f.operation,
                                "auth": f.auth,
                                "initiator": d.hosts[f.initiator].name,
                                "responder": d.hosts[f.responder].name,
                                "proto": f.proto,
                                "dport": f.dport,
                                "sport": f.sport,
                                "stream": f.stream,
                                "helper": f.helper,
                                "target": p.target,
                                "hops": p.hops.iter().map(|h| serde_json::json!({
                                    "host": d.hosts[h.host].name, "kind": h.kind, "in": h.in_iface, "out": h.out_iface,
                                    "src": h.src, "dst": h.dst, "dnat_to": h.dnat_to, "snat_to": h.snat_to,
                                })).collect::<Vec<_>>(),
                                "why": f.why,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&rows).expect("JSON of plain data")
                    );
                }
                Format::Text => print!("{}", amwall::render::summary::flows_text(&plan)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lab {
            topology,
            backend,
            auth,
            helper,
            keep,
            drop,
            format,
        } => lab(topology, backend, auth, helper, keep, &drop, format),
    }
}

fn lab(
    topology: PathBuf,
    backend: Backend,
    auth: Option<String>,
    helper: Option<String>,
    keep: bool,
    drop: &[String],
    format: Format,
) -> Result<ExitCode, amwall::Error> {
    use amwall::lab::{Lab, Mode, Progress};
    use indicatif::{ProgressBar, ProgressStyle};

    let mut d = model::load_file(&topology)?;
    if let Some(a) = auth.as_deref().and_then(model::Auth::parse) {
        d = d.with_auth(a);
    }
    if let Some(h) = helper {
        d = d.with_helper(h == "on");
    }
    // Ctrl-C (and SIGTERM): the guards cannot run when the process is killed, so
    // remove every namespace this process made, then exit like an interrupted shell.
    let _ = ctrlc::set_handler(|| {
        let gone = amwall::lab::netns::remove_all();
        eprintln!("\ninterrupted: removed {} lab namespaces", gone.len());
        // Exit without unwinding while remove_all's refusal to create more holds.
        std::process::exit(130);
    });
    let modes: Vec<Mode> = match backend {
        Backend::Iptables => vec![Mode::Iptables],
        Backend::Nft => vec![Mode::Nft],
        Backend::Both => vec![Mode::Iptables, Mode::Nft],
    };
    let mut reports = Vec::new();
    let mut ok = true;
    for mode in modes {
        let mut l = match Lab::new(d.clone(), mode) {
            Ok(l) => l,
            Err(amwall::lab::LabError::Plan(e)) => return Err(e),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        for spec in drop {
            let (host, text) = spec.split_once(':').ok_or_else(|| {
                amwall::Error::Usage(format!("--drop {spec}: expected HOST:TEXT"))
            })?;
            let rules =
                l.rules.iter_mut().find(|r| r.host == host).ok_or_else(|| {
                    amwall::Error::Usage(format!("--drop {spec}: no host `{host}`"))
                })?;
            let gone = rules.drop_rules(&[text]);
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
