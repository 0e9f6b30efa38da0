//! Our QRP table and the peers that get it: rebuilt from the library (and a leaf's
//! tables), sent as RESET + PATCH or as a PATCH of the difference.

use super::descriptors::raw_header;
use super::links::State;
use super::qrp::{self, Table};
use super::{PeerRole, Role, Servent};
use crate::wire::{Guid, HEADER_LEN};
use servent_core::ConnId;
use std::sync::Arc;

impl Servent {
    /// Rebuilds our QRP table when it is stale: a leaf's from its files; an ultrapeer's from
    /// its files merged with every leaf's table.
    pub(super) fn rebuild_qrp(&mut self) {
        if !self.qrp_dirty && self.qrp_local.is_some() {
            return;
        }
        let Ok(mut t) = Table::new(self.cfg.qrp_slots, self.cfg.qrp_infinity) else {
            return;
        };
        for f in self.library.files() {
            t.insert_text(&f.name);
            if let Some(urn) = f.urn() {
                t.insert_urn(&urn);
            }
        }
        if self.cfg.role == Role::Ultrapeer {
            for c in self.conns.values() {
                if c.role != Some(PeerRole::Leaf) || !matches!(c.state, State::Overlay) {
                    continue;
                }
                if let Some(lt) = c.ext.as_ref().and_then(|e| e.qrp_in.table()) {
                    t.merge(lt);
                }
            }
        }
        self.qrp_dirty = false;
        if self.qrp_local.as_deref() != Some(&t) {
            self.qrp_local = Some(Arc::new(t));
        }
    }

    /// Sends `conn` what it lacks of our current table (RESET + PATCH, or a PATCH of the
    /// difference to the table it has).
    pub(super) fn send_qrp(&mut self, conn: ConnId) {
        let Some(table) = self.qrp_local.clone() else {
            return;
        };
        let Some(ext) = self
            .conns
            .get_mut(&conn)
            .map(|c| c.ext.get_or_insert_with(Box::default))
        else {
            return;
        };
        if ext
            .qrp_sent
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &table))
        {
            return;
        }
        let updates = table.encode_updates(ext.qrp_sent.as_deref(), 4, true, qrp::DEFAULT_FRAGMENT);
        ext.qrp_sent = Some(table);
        let Ok(updates) = updates else {
            return;
        };
        for u in updates {
            let payload = u.to_bytes();
            let id = Guid::random(&mut self.rng);
            let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
            v.extend_from_slice(&raw_header(
                id,
                qrp::ROUTE_TABLE_UPDATE,
                1,
                0,
                payload.len(),
            ));
            v.extend_from_slice(&payload);
            self.stats.qrp_tx += 1;
            self.send_bytes(conn, v, None);
        }
    }

    /// Sends our (rebuilt) table to every peer that should have it.
    pub(super) fn push_qrp(&mut self) {
        if !self.cfg.role.is_06() {
            return;
        }
        self.rebuild_qrp();
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.role == Some(PeerRole::Ultrapeer) && matches!(c.state, State::Overlay)
            })
            .map(|(id, _)| *id)
            .collect();
        for t in targets {
            self.send_qrp(t);
        }
    }
}
