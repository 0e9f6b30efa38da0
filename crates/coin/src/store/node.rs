//! The store completing the node core's requests ([`crate::core::node::Request`]): the one
//! place where the sans-IO node meets the disk. The driver calls [`serve`] on its blocking
//! thread; the in-memory harness calls it on a store opened in memory.
use super::{Store, StoreError};
use crate::core::block::UtxoView;
use crate::core::node::{Applied, BlockFailure, Reply, Request};
use crate::wire::{Block, BlockHeader};

/// Carry out `req` on `store`; `now_unix` is the caller's clock (the 2-hour future rule).
pub fn serve(store: &mut Store, req: Request, now_unix: i64) -> Reply {
    match req {
        Request::AcceptBlock { origin, block } => {
            let hash = block.header.hash();
            let result = accept(store, &block, now_unix);
            Reply::BlockDone {
                origin,
                hash,
                result,
            }
        }
        Request::ReadBlocks { conn, hashes } => {
            let mut blocks = Vec::new();
            let mut missing = Vec::new();
            for h in hashes {
                match store.block(&h) {
                    Ok(Some(b)) => blocks.push(b),
                    _ => missing.push(h),
                }
            }
            Reply::Blocks {
                conn,
                blocks,
                missing,
            }
        }
        Request::Coins { origin, tx } => {
            let mut view = UtxoView::default();
            for i in &tx.inputs {
                if let Ok(Some(c)) = store.utxo(&i.prevout) {
                    view.coins.insert(i.prevout.clone(), c);
                }
            }
            Reply::Coins { origin, tx, view }
        }
    }
}

fn accept(store: &mut Store, block: &Block, now_unix: i64) -> Result<Applied, BlockFailure> {
    let old_height = store.height();
    match store.accept_block(block, now_unix) {
        Ok(acc) => {
            if acc.known {
                return Ok(Applied {
                    known: true,
                    ..Applied::default()
                });
            }
            let moved = acc.connected || acc.reorged;
            let mut connected = Vec::new();
            if moved {
                let fork = old_height.saturating_sub(acc.disconnected.len() as u32);
                for h in fork + 1..=acc.height {
                    let b = store
                        .hash_at(h)
                        .and_then(|hash| store.block(&hash).ok().flatten())
                        .ok_or_else(|| BlockFailure::Other(format!("store lost block at {h}")))?;
                    connected.push(b);
                }
            }
            Ok(Applied {
                known: false,
                disconnected: acc.disconnected,
                connected,
            })
        }
        Err(
            e @ (StoreError::Invalid { .. }
            | StoreError::InvalidParent(_)
            | StoreError::KnownInvalid(_)),
        ) => Err(BlockFailure::Invalid(e.to_string())),
        Err(e) => Err(BlockFailure::Other(e.to_string())),
    }
}

/// The headers of the active chain, genesis first (what [`crate::core::node::Node::new`] takes).
pub fn active_headers(store: &Store) -> Result<Vec<BlockHeader>, StoreError> {
    let mut out = Vec::with_capacity(store.height() as usize + 1);
    let mut locator = vec![];
    out.push(store.params().genesis.header.clone());
    loop {
        let batch = store.headers_after(&locator, &[0; 32], super::MAX_HEADERS)?;
        let Some(last) = batch.last() else {
            break;
        };
        locator = vec![last.hash()];
        out.extend(batch);
    }
    Ok(out)
}
