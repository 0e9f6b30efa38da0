#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // an example program, not a core
//! Runs the `napster` simulator scenario and prints its report:
//! `cargo run --release -p servent-napster --example napster_sim -- [clients] [seed]`.

use servent_sim::{Scenario, ScenarioOpts};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().map(|s| s.parse()).transpose()?;
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let out = std::env::temp_dir().join("servent-napster-sim");
    let rep = servent_napster::sim::NapsterScenario.run(&ScenarioOpts {
        params: Default::default(),
        nodes,
        seed,
        out: out.clone(),
    })?;
    for l in &rep.lines {
        println!("{l}");
    }
    println!("{}", rep.headline_line());
    for p in rep.write(&out)? {
        println!("wrote {}", p.display());
    }
    Ok(())
}
