//! Runs one Chord scenario without the `servent` binary:
//! `cargo run --release -p servent-chord --example scenario -- chord-pathlen [NODES] [SEED]`.

// An example program, not a core: it may exit and read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "chord-pathlen".into());
    let nodes = args.next().and_then(|s| s.parse().ok());
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let out = std::path::PathBuf::from(format!("target/sim/{name}"));
    let Some(sc) = servent_chord::scenarios()
        .into_iter()
        .find(|s| s.name() == name)
    else {
        eprintln!(
            "unknown scenario {name}; try chord-pathlen, chord-failures, chord-load, chord-churn"
        );
        std::process::exit(2);
    };
    let opts = servent_sim::ScenarioOpts {
        params: Default::default(),
        nodes,
        seed,
        out: out.clone(),
    };
    match sc.run(&opts) {
        Ok(rep) => {
            for l in &rep.lines {
                println!("{l}");
            }
            if let Err(e) = rep.write(&out) {
                eprintln!("writing {}: {e}", out.display());
            }
            println!("{}", rep.headline_line());
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
