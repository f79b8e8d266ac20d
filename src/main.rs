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
    }
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
