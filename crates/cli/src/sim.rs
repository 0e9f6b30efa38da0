//! `servent sim`: list and run simulation scenarios.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_sim::{Scenario, ScenarioOpts};

/// The simulator's commands.
#[derive(Args, Debug)]
#[command(after_help = crate::common::EXIT_CODES_HELP)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// List the scenarios.
    List,
    /// Run one scenario; prints its findings and ends with one line of key=value figures.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Run {
        /// The scenario's name (see `servent sim list`).
        scenario: String,
        /// Number of nodes, 1 to 100000000 (each scenario has its own default and range,
        /// which `servent sim list` shows, and refuses a count its memory estimate does not
        /// fit).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        nodes: Option<u64>,
        /// The seed: the same seed gives the same run.
        #[arg(long, default_value_t = 1, env = "SERVENT_SEED")]
        seed: u64,
        /// Where CSV files and plots go [default: servent-report/<scenario>].
        #[arg(short = 'o', long = "output", alias = "out")]
        out: Option<PathBuf>,
        /// A scenario knob, KEY=VALUE (repeatable; `servent sim list` shows each scenario's).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
}

/// Every scenario of every system.
pub fn all() -> Vec<Box<dyn Scenario>> {
    let mut v = servent_sim::scenarios();
    v.extend(servent_bittorrent::scenarios());
    // systems add theirs here
    v.extend(servent_chord::scenarios());
    v.extend(servent_kademlia::scenarios());
    v.extend(servent_gnutella::scenarios());
    v.extend(servent_napster::scenarios());
    v.extend(servent_store::scenarios());
    v.extend(servent_coin::scenarios::scenarios());
    v.extend(servent_tv::scenarios());
    v.sort_by_key(|s| s.name());
    v
}

/// Runs `scenario` and prints its report; returns the report.
pub fn run_one(scenario: &dyn Scenario, opts: &ScenarioOpts) -> Result<servent_sim::Report> {
    let report = scenario
        .run(opts)
        .with_context(|| format!("scenario {} (seed {})", scenario.name(), opts.seed))?;
    let files = report
        .write(&opts.out)
        .with_context(|| format!("writing the report of {}", scenario.name()))?;
    for l in &report.lines {
        println!("{l}");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    println!("{}", report.headline_line());
    Ok(report)
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::List => {
            for s in all() {
                println!("{:<22} {}", s.name(), s.about());
                for (k, help) in s.params() {
                    println!("{:<22}   --param {k}=...  {help}", "");
                }
            }
            Ok(())
        }
        Action::Run {
            scenario,
            nodes,
            seed,
            out,
            params,
        } => {
            let all = all();
            let Some(s) = all.iter().find(|s| s.name() == scenario) else {
                let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
                bail!("no scenario {scenario:?}; try one of: {}", names.join(", "));
            };
            let out = out.unwrap_or_else(|| PathBuf::from("servent-report").join(s.name()));
            let nodes = nodes
                .map(usize::try_from)
                .transpose()
                .context("--nodes does not fit this machine's address width")?;
            let opts = ScenarioOpts {
                nodes,
                seed,
                out,
                params: params.into_iter().collect(),
            };
            opts.check_params(s.params())?;
            // scenarios are CPU-bound and synchronous: run off the async workers
            let name = s.name().to_string();
            tokio::task::block_in_place(|| run_one(s.as_ref(), &opts))
                .with_context(|| format!("running {name}"))?;
            Ok(())
        }
    }
}

/// `KEY=VALUE` of `--param`.
fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
