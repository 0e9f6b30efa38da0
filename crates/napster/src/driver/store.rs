//! Accounts, bans and statistics in SQLite (WAL mode): what survives a restart or a
//! `kill -9` of the server.
//!
//! Every change is its own transaction, committed before the core learns it succeeded;
//! `synchronous=FULL` makes a committed change survive a power cut as well as a killed
//! process. Passwords are stored only as the argon2 PHC strings the server core made.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::server::{Account, Ban, Journal, JournalError, Level, Persist, ServerStats};

/// What can go wrong with the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored row is not valid.
    #[error("corrupt row in {table}: {why}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Cumulative counters kept across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Logins accepted.
    pub logins: u64,
    /// Accounts created.
    pub registrations: u64,
    /// Searches answered.
    pub searches: u64,
    /// Downloads brokered.
    pub downloads_brokered: u64,
    /// Connections kicked.
    pub kicks: u64,
}

/// The server's database.
#[derive(Debug)]
pub struct Store {
    db: Connection,
    base: Totals,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    nick_key TEXT PRIMARY KEY,
    nick TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    email TEXT NOT NULL,
    level TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS bans (
    target TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    set_by TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS totals (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        let mut s = Store {
            db,
            base: Totals::default(),
        };
        s.base = s.totals()?;
        Ok(s)
    }

    /// Every stored account.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut q = self
            .db
            .prepare("SELECT nick, password_hash, email, level FROM accounts ORDER BY nick_key")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (nick, password_hash, email, level) = row?;
            let level = Level::parse(&level).ok_or_else(|| StoreError::Corrupt {
                table: "accounts",
                why: format!("unknown level {level:?} for {nick}"),
            })?;
            out.push(Account {
                nick,
                password_hash,
                email,
                level,
            });
        }
        Ok(out)
    }

    /// Every stored ban.
    pub fn bans(&self) -> Result<Vec<Ban>, StoreError> {
        let mut q = self
            .db
            .prepare("SELECT target, reason, set_by FROM bans ORDER BY target")?;
        let rows = q.query_map([], |r| {
            Ok(Ban {
                target: r.get(0)?,
                reason: r.get(1)?,
                by: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes one change.
    pub fn apply(&mut self, p: &Persist) -> Result<(), StoreError> {
        match p {
            Persist::AccountCreated(a) => {
                self.db.execute(
                    "INSERT OR REPLACE INTO accounts (nick_key, nick, password_hash, email, level)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        a.nick.to_ascii_lowercase(),
                        a.nick,
                        a.password_hash,
                        a.email,
                        a.level.as_str()
                    ],
                )?;
            }
            Persist::BanAdded(b) => {
                self.db.execute(
                    "INSERT OR REPLACE INTO bans (target, reason, set_by) VALUES (?1, ?2, ?3)",
                    params![b.target, b.reason, b.by],
                )?;
            }
            Persist::BanRemoved { target } => {
                self.db
                    .execute("DELETE FROM bans WHERE target = ?1", params![target])?;
            }
        }
        Ok(())
    }

    /// Sets a stored account's level; `false` if there is no such account.
    pub fn set_level(&mut self, nick: &str, level: Level) -> Result<bool, StoreError> {
        let n = self.db.execute(
            "UPDATE accounts SET level = ?1 WHERE nick_key = ?2",
            params![level.as_str(), nick.to_ascii_lowercase()],
        )?;
        Ok(n > 0)
    }

    /// The cumulative counters as stored.
    pub fn totals(&self) -> Result<Totals, StoreError> {
        let get = |name: &str| -> Result<u64, StoreError> {
            let v: Option<i64> = self
                .db
                .query_row(
                    "SELECT value FROM totals WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(v.unwrap_or(0).max(0) as u64)
        };
        Ok(Totals {
            logins: get("logins")?,
            registrations: get("registrations")?,
            searches: get("searches")?,
            downloads_brokered: get("downloads_brokered")?,
            kicks: get("kicks")?,
        })
    }

    /// Stores the totals: what was stored at open plus this session's counters.
    pub fn save_stats(&mut self, s: &ServerStats) -> Result<(), StoreError> {
        let b = self.base;
        let tx = self.db.transaction()?;
        for (name, v) in [
            ("logins", b.logins + s.logins),
            ("registrations", b.registrations + s.registrations),
            ("searches", b.searches + s.searches),
            (
                "downloads_brokered",
                b.downloads_brokered + s.downloads_brokered,
            ),
            ("kicks", b.kicks + s.kicks),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO totals (name, value) VALUES (?1, ?2)",
                params![name, i64::try_from(v).unwrap_or(i64::MAX)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// One store shared by the driver's writer, which completes the server core's
/// [`crate::server::Job::Write`]s through it as a [`Journal`] on a blocking thread, and the
/// saving of the counters.
#[derive(Clone, Debug)]
pub struct SharedStore(pub Arc<Mutex<Store>>);

impl SharedStore {
    /// Shares `store`.
    pub fn new(store: Store) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` on the store.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.0.lock().map_err(|_| StoreError::Corrupt {
            table: "*",
            why: "the store's lock was poisoned by a panic".into(),
        })?;
        f(&mut guard)
    }
}

impl Journal for SharedStore {
    /// Commits the change (WAL, `synchronous=FULL`) before returning.
    fn write(&mut self, change: &Persist) -> Result<(), JournalError> {
        self.with(|s| s.apply(change))
            .map_err(|e| JournalError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_bans_and_totals_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nap.db");
        {
            let mut s = Store::open(&path).unwrap();
            s.apply(&Persist::AccountCreated(Account {
                nick: "Lefty".into(),
                password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                email: "l@x".into(),
                level: Level::User,
            }))
            .unwrap();
            s.apply(&Persist::BanAdded(Ban {
                target: "10.0.0.1".into(),
                reason: "flood".into(),
                by: "op".into(),
            }))
            .unwrap();
            s.apply(&Persist::BanAdded(Ban {
                target: "gone".into(),
                reason: "".into(),
                by: "op".into(),
            }))
            .unwrap();
            s.apply(&Persist::BanRemoved {
                target: "gone".into(),
            })
            .unwrap();
            assert!(s.set_level("lefty", Level::Admin).unwrap());
            assert!(!s.set_level("nobody", Level::Admin).unwrap());
            s.save_stats(&ServerStats {
                logins: 5,
                searches: 7,
                ..Default::default()
            })
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        let a = s.accounts().unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].nick, "Lefty");
        assert_eq!(a[0].level, Level::Admin);
        assert_eq!(s.bans().unwrap().len(), 1);
        assert_eq!(s.totals().unwrap().logins, 5);
        // A new session adds to what was stored.
        s.save_stats(&ServerStats {
            logins: 2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.totals().unwrap().logins, 7);
        assert_eq!(s.totals().unwrap().searches, 7);
    }
}
