//! Runs the `gnutella-flood` scenario without the `servent` binary:
//! `cargo run --release -p servent-gnutella --example gnutella_flood -- [NODES] [SEED] [OUT]`.

// Not a core: a program run by hand may read its arguments, the environment and the disk.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use servent_sim::{Scenario, ScenarioOpts};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().map(|s| s.parse()).transpose()?;
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let out = args
        .next()
        .unwrap_or_else(|| "target/sim/gnutella-flood".into());
    let opts = ScenarioOpts {
        params: Default::default(),
        nodes,
        seed,
        out: out.into(),
    };
    let rep = servent_gnutella::flood::FloodScenario.run(&opts)?;
    for l in &rep.lines {
        println!("{l}");
    }
    for p in rep.write(&opts.out)? {
        println!("wrote {}", p.display());
    }
    println!("{}", rep.headline_line());
    Ok(())
}
