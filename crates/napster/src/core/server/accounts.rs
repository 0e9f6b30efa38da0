//! Logins, accounts and bans: the checks, the jobs they hand out (password hash or check, durable write) and what happens when each comes back.

use super::*;

impl Server {
    /// Hands out `job` for the caller to complete; its result goes to `waiter`.
    pub(super) fn submit(&mut self, job: Job, waiter: Waiter) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.waiters.insert(id, waiter);
        self.jobs.push_back((id, job));
        id
    }

    /// The next job for the caller (see the module documentation); the caller completes it
    /// and feeds the result back as [`ServerCommand::Complete`].
    pub fn poll_job(&mut self) -> Option<(u64, Job)> {
        self.jobs.pop_front()
    }

    /// Jobs handed out (or waiting to be) whose results have not come back.
    pub fn jobs_in_flight(&self) -> usize {
        self.waiters.len()
    }

    /// Asks for `change` to be made durable, unless too much work is in flight.
    pub(super) fn write(&mut self, change: Persist, waiter: Waiter) -> bool {
        if self.waiters.len() >= self.cfg.max_jobs.max(1) {
            return false;
        }
        self.submit(Job::Write(change), waiter);
        true
    }

    /// A write that failed: counted and reported; the caller refuses what needed it.
    pub(super) fn write_failed(&mut self, change: Persist, error: JournalError) {
        self.stats.journal_failures += 1;
        self.emit(ServerEvent::JournalFailed { change, error });
    }

    /// A write that succeeded, reported. Never dropped: at most a few per input, and the
    /// caller drains events after every input.
    pub(super) fn written(&mut self, change: Persist) {
        self.events.push_back(ServerEvent::Persist(change));
    }

    pub(super) fn refuse_login(&mut self, conn: ConnId, text: &str) {
        self.stats.refused_logins += 1;
        self.send(
            conn,
            &ServerMsg::Error {
                text: text.to_string(),
            },
        );
        self.kick(conn, Kick::LoginRefused(text.to_string()));
    }

    /// A login or registration (2, 6): checked here, then its password check or hash leaves
    /// as a job; [`Server::complete`] finishes it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn login(
        &mut self,
        now: Instant,
        conn: ConnId,
        nick: String,
        password: String,
        port: u16,
        link: LinkType,
        register_email: Option<String>,
    ) {
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else {
            return;
        };
        let ip = v4(peer);
        if !wire::valid_nick(&nick) {
            return self.refuse_login(conn, "Invalid nickname");
        }
        let k = key(&nick);
        if self.bans.contains_key(&k) || self.bans.contains_key(&ip.to_string()) {
            return self.refuse_login(conn, "You are banned from this server");
        }
        // The login rate has two views: attempts on an existing account are counted per
        // account (guessing one password is slow from any number of addresses, and a flood
        // of other nicks from the owner's address does not lock the owner out); attempts
        // that would create an account are counted per address.
        let rate = self.cfg.login_rate;
        let allowed = if self.accounts.contains_key(&k) {
            if self.account_buckets.len() > 100_000 {
                self.account_buckets.clear();
            }
            self.account_buckets
                .entry(k.clone())
                .or_insert_with(|| Bucket::new(now, rate))
                .take(now, rate)
        } else {
            if self.login_buckets.len() > 100_000 {
                // Forget the buckets' history rather than grow without bound.
                self.login_buckets.clear();
            }
            self.login_buckets
                .entry(peer.ip())
                .or_insert_with(|| Bucket::new(now, rate))
                .take(now, rate)
        };
        if !allowed {
            return self.refuse_login(conn, "Too many login attempts, try again later");
        }
        if self.waiters.len() >= self.cfg.max_jobs.max(1) {
            return self.refuse_login(conn, "Server busy, try again later");
        }
        let (job, waiter) = match (self.accounts.get(&k), register_email) {
            (Some(_), Some(_)) => {
                return self.refuse_login(conn, "Nickname is already registered");
            }
            (Some(a), None) => (
                Job::VerifyPassword {
                    hash: a.password_hash.clone(),
                    password,
                },
                Waiter::Verify {
                    conn,
                    key: k,
                    port,
                    link,
                },
            ),
            (None, email) => {
                if email.is_none() && !self.cfg.auto_register {
                    return self.refuse_login(conn, "Nickname is not registered");
                }
                // One creation per nick at a time: two racing registrations must not both
                // be acknowledged.
                if !self.registering.insert(k) {
                    return self.refuse_login(conn, "Nickname is being registered, try again");
                }
                let salt = self.rng.bytes::<16>();
                (
                    Job::HashPassword {
                        password,
                        salt,
                        cost: self.cfg.argon2,
                    },
                    Waiter::Hash {
                        conn,
                        nick,
                        email: email.unwrap_or_else(|| self.cfg.anon_email.clone()),
                        port,
                        link,
                    },
                )
            }
        };
        let id = self.submit(job, waiter);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.waiting = Some(id);
        }
    }

    /// Whether `conn` is still open and waiting for job `id`; clears the wait.
    pub(super) fn take_wait(&mut self, conn: ConnId, id: u64) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.waiting == Some(id) => {
                c.waiting = None;
                true
            }
            _ => false,
        }
    }

    /// Takes the result of job `id` and carries on what waited for it.
    pub(super) fn complete(&mut self, now: Instant, id: u64, result: JobResult) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        let mut resume = None;
        match (waiter, result) {
            (
                Waiter::Verify {
                    conn,
                    key,
                    port,
                    link,
                },
                JobResult::Verified(ok),
            ) => {
                if self.take_wait(conn, id) {
                    let account = self.accounts.get(&key).cloned();
                    match account {
                        Some(a) if ok => {
                            if self.is_banned(&key) {
                                self.refuse_login(conn, "You are banned from this server");
                            } else {
                                self.finish_login(now, conn, a, port, link);
                                resume = Some(conn);
                            }
                        }
                        _ => self.refuse_login(conn, "Invalid Password"),
                    }
                }
            }
            (
                Waiter::Hash {
                    conn,
                    nick,
                    email,
                    port,
                    link,
                },
                JobResult::Hashed(hash),
            ) => {
                let k = key(&nick);
                match hash {
                    Some(hash) if self.take_wait(conn, id) => {
                        let account = Account {
                            nick,
                            password_hash: hash,
                            email,
                            level: Level::User,
                        };
                        // Durable first: the login ack must never announce an account
                        // that a crash could lose.
                        let wid = self.submit(
                            Job::Write(Persist::AccountCreated(account.clone())),
                            Waiter::Register {
                                conn,
                                account,
                                port,
                                link,
                            },
                        );
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.waiting = Some(wid);
                        }
                    }
                    Some(_) => {
                        // The connection went away: nobody was told of the account, so
                        // it is not created.
                        self.registering.remove(&k);
                    }
                    None => {
                        self.registering.remove(&k);
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error");
                        }
                    }
                }
            }
            (
                Waiter::Register {
                    conn,
                    account,
                    port,
                    link,
                },
                JobResult::Written(result),
            ) => {
                let k = key(&account.nick);
                self.registering.remove(&k);
                let change = Persist::AccountCreated(account.clone());
                match result {
                    Ok(()) => {
                        // Stored: the account exists whether or not its connection is
                        // still here to be told.
                        self.accounts.insert(k, account.clone());
                        self.stats.registrations += 1;
                        self.written(change);
                        if self.take_wait(conn, id) {
                            self.finish_login(now, conn, account, port, link);
                            resume = Some(conn);
                        }
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error: could not store the account");
                        }
                    }
                }
            }
            (Waiter::Ban { from, ban }, JobResult::Written(result)) => {
                let change = Persist::BanAdded(ban.clone());
                let ok = match result {
                    Ok(()) => {
                        self.written(change);
                        self.apply_ban(ban);
                        true
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        false
                    }
                };
                self.answer(from, ok, "Server error: could not store the ban");
            }
            (Waiter::Unban { from, target }, JobResult::Written(result)) => {
                let change = Persist::BanRemoved {
                    target: target.clone(),
                };
                let ok = match result {
                    Ok(()) => {
                        self.written(change);
                        self.bans.remove(&target).is_some()
                    }
                    Err(e) => {
                        self.write_failed(change, e);
                        false
                    }
                };
                self.answer(from, ok, "Server error: could not lift the ban");
            }
            (waiter, result) => {
                // A result of the wrong kind for its job: a driver bug. Refuse what waited.
                self.stats.bad_messages += 1;
                match waiter {
                    Waiter::Verify { conn, .. }
                    | Waiter::Hash { conn, .. }
                    | Waiter::Register { conn, .. } => {
                        if let Waiter::Hash { nick, .. }
                        | Waiter::Register {
                            account: Account { nick, .. },
                            ..
                        } = &waiter
                        {
                            self.registering.remove(&key(nick));
                        }
                        if self.take_wait(conn, id) {
                            self.refuse_login(conn, "Server error");
                        }
                    }
                    Waiter::Ban { from, .. } | Waiter::Unban { from, .. } => {
                        self.answer(from, false, "Server error");
                    }
                }
                let _ = result;
            }
        }
        // Bytes that arrived while the login waited are read now.
        if let Some(conn) = resume {
            self.stream(now, conn, &[]);
        }
    }

    /// Tells whoever asked for a ban or unban how it went.
    pub(super) fn answer(&mut self, from: Origin, ok: bool, failure: &str) {
        match from {
            Origin::Operator(id) => self.emit(ServerEvent::Done { id, ok }),
            Origin::Admin(conn) => {
                if !ok {
                    self.error(conn, failure.to_string());
                }
            }
        }
    }

    /// The password matched (and a new account is stored): the user is online.
    pub(super) fn finish_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        account: Account,
        port: u16,
        link: LinkType,
    ) {
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else {
            return;
        };
        let ip = v4(peer);
        let k = key(&account.nick);
        // An older session with this nick is a ghost.
        if let Some(&old) = self.online.get(&k) {
            if old != conn {
                self.error(old, "You logged in from another location");
                self.kick(old, Kick::Ghost);
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.timers.remove(&(c.login_deadline, Timer::Login(conn)));
        let pending_ip = c.user.is_none().then_some(c.peer.ip());
        c.user = Some(Box::new(User {
            nick: account.nick.clone(),
            key: k.clone(),
            ip,
            port,
            link,
            level: account.level,
            files: FxMap::default(),
            share_limit_told: false,
            hotlist: BTreeSet::new(),
            channels: BTreeSet::new(),
            search: Bucket::new(now, self.cfg.search_rate),
            downloads: 0,
            uploads: 0,
        }));
        if let Some(ip) = pending_ip {
            self.unpend(ip, conn);
        }
        self.online.insert(k.clone(), conn);
        self.stats.logins += 1;
        self.send(
            conn,
            &ServerMsg::LoginAck {
                email: account.email.clone(),
            },
        );
        let st = self.stats();
        self.send(
            conn,
            &ServerMsg::Stats {
                users: st.users,
                files: st.files,
                gigabytes: st.bytes >> 30,
            },
        );
        self.motd(conn);
        if let Some(w) = self.watchers.get(&k) {
            let msg = ServerMsg::HotlistSignon {
                nick: account.nick.clone(),
                link,
            };
            for m in w.clone() {
                if m != conn {
                    self.send(m, &msg);
                }
            }
        }
        self.emit(ServerEvent::LoggedIn {
            nick: account.nick,
            peer,
        });
    }

    /// Asks for the ban to be stored; it is applied when that succeeded.
    pub(super) fn ban(&mut self, ban: Ban, from: Origin) {
        let ban = Ban {
            target: key(&ban.target),
            ..ban
        };
        if !self.write(Persist::BanAdded(ban.clone()), Waiter::Ban { from, ban }) {
            self.answer(from, false, "Server busy, try again later");
        }
    }

    /// A stored ban in force: whoever matches it is kicked.
    pub(super) fn apply_ban(&mut self, ban: Ban) {
        let target = ban.target.clone();
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                v4(c.peer).to_string() == target || c.user.as_ref().is_some_and(|u| u.key == target)
            })
            .map(|(id, _)| *id)
            .collect();
        for v in victims {
            self.error(v, "You have been banned");
            self.kick(v, Kick::Banned);
        }
        self.bans.insert(ban.target.clone(), ban);
    }

    /// Asks for the lifting of a ban to be stored; it is lifted when that succeeded. Refused
    /// at once if there is no such ban.
    pub(super) fn unban(&mut self, target: &str, from: Origin) {
        let target = key(target);
        if !self.bans.contains_key(&target) {
            return self.answer(from, false, "No such ban");
        }
        let change = Persist::BanRemoved {
            target: target.clone(),
        };
        if !self.write(change, Waiter::Unban { from, target }) {
            self.answer(from, false, "Server busy, try again later");
        }
    }

    /// The answer to a nick check (7): invalid, taken or free.
    pub(super) fn nick_check(&self, nick: &str) -> ServerMsg {
        if !wire::valid_nick(nick) {
            ServerMsg::NickInvalid
        } else if self.accounts.contains_key(&key(nick)) {
            ServerMsg::NickTaken
        } else {
            ServerMsg::NickFree
        }
    }

    /// Makes `nick` an administrator (operator action; not persisted by itself).
    pub fn set_level(&mut self, nick: &str, level: Level) -> bool {
        let k = key(nick);
        let found = match self.accounts.get_mut(&k) {
            Some(a) => {
                a.level = level;
                true
            }
            None => false,
        };
        if let Some(u) = self.online.get(&k).copied().and_then(|c| self.user_mut(c)) {
            u.level = level;
        }
        found
    }
}
