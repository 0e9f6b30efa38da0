//! Runs the `bittorrent-swarm` scenario without the CLI:
//! `cargo run --release -p servent-bittorrent --example swarm -- [MAX_N] [SEED]`.

use servent_sim::{Scenario, ScenarioOpts};

#[allow(clippy::disallowed_methods)] // an example, not a core: it times itself
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().map(|s| s.parse()).transpose()?;
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let opts = ScenarioOpts {
        params: Default::default(),
        nodes,
        seed,
        out: "servent-report/bittorrent-swarm".into(),
    };
    let started = std::time::Instant::now();
    let report = servent_bittorrent::swarm::SwarmScenario.run(&opts)?;
    for l in &report.lines {
        println!("{l}");
    }
    for f in report.write(&opts.out)? {
        println!("wrote {}", f.display());
    }
    println!("{}", report.headline_line());
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
