//! The simulator scenarios of Gnutella (`servent sim run NAME`): a 0.4 flood network
//! ([`flood`]) and the 0.6 hybrid network of leaves and ultrapeers with QRP ([`hybrid`]).

pub mod flood;
pub mod hybrid;
