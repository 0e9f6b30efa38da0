//! Push: a Push for our servent id makes us connect out and send `GIV`.

use super::links::{Conn, State};
use super::{Event, MAX_HANDSHAKE, MAX_PUSH_CONNS, Servent};
use crate::wire::Push;
use crate::wire::http::Giv;
use servent_core::{Instant, Transmit};
use std::net::{SocketAddr, SocketAddrV4};

impl Servent {
    pub(super) fn pushed(&mut self, now: Instant, p: Push) {
        let Some(file) = self.library.get(p.index) else {
            return;
        };
        let pushing = self
            .conns
            .values()
            .filter(|c| matches!(c.state, State::PushConnecting { .. }))
            .count();
        if pushing >= MAX_PUSH_CONNS || p.port == 0 || p.ip.is_unspecified() {
            return;
        }
        let giv = Giv {
            index: p.index,
            servent_id: self.cfg.servent_id,
            name: file.name.clone(),
        };
        let to = SocketAddrV4::new(p.ip, p.port);
        let conn = self.new_conn_id();
        self.conns.insert(
            conn,
            Conn::new(
                State::PushConnecting { giv },
                SocketAddr::V4(to),
                MAX_HANDSHAKE,
                None,
                now,
            ),
        );
        self.transmit(Transmit::Connect {
            conn,
            to: SocketAddr::V4(to),
        });
        self.emit(Event::PushRequested { index: p.index, to });
        self.arm_tick(now);
    }
}
