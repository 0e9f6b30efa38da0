//! servent-bittorrent: BitTorrent for servent.
pub mod bencode;
pub mod client;
pub mod metainfo;
pub mod picker;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod tracker_server;
pub mod wire;
