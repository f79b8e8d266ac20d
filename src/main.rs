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

#[derive(Subcommand)]
enum Command {
    /// Write per-host iptables-restore files, nft scripts and SUMMARY.md for a topology.
    Plan {
        /// Topology file (TOML).
        topology: PathBuf,
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
            out,
            backend,
            host,
            quiet,
        } => {
            let plan = Plan::build(model::load_file(&topology)?)?;
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
