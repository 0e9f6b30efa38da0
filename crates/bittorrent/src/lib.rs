//! servent-bittorrent: BitTorrent for servent.
pub mod bencode;
pub mod metainfo;
pub mod storage;
pub mod tracker;
pub mod tracker_server;
pub mod wire;
