//! The simulator side: [`swarm`] runs the tracker and client cores on the virtual network
//! (one seeder, N leechers), shared by the tests and the `bittorrent-swarm` scenario.

pub mod swarm;

pub use swarm::scenarios;
