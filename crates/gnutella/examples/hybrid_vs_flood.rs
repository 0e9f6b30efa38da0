//! Runs `gnutella-flood` and `gnutella-hybrid` on the same population and queries and
//! prints both reports (what `servent sim run NAME` prints, without building the binary):
//! `cargo run --release -p servent-gnutella --example hybrid_vs_flood -- [NODES] [SEED] [ONLY]`
//! (ONLY: a scenario name, to run just that one).

// Not a core: a program run by hand may read its arguments, the environment and the disk.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use servent_sim::ScenarioOpts;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().map(|s| s.parse()).transpose()?;
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let only = args.next();
    let out = std::env::temp_dir().join("servent-gnutella-scenarios");
    for s in servent_gnutella::scenarios() {
        if only.as_deref().is_some_and(|o| o != s.name()) {
            continue;
        }
        let opts = ScenarioOpts {
            params: Default::default(),
            nodes,
            seed,
            out: out.clone(),
        };
        let rep = s.run(&opts)?;
        for l in &rep.lines {
            println!("{l}");
        }
        println!("{}\n", rep.headline_line());
    }
    Ok(())
}
