//! Bytes in: framing through the bounded receive buffer, decoding, and the dispatch of each
//! message to the sub-machine that handles it (before and after login).

use super::*;

impl Server {
    pub(super) fn oversized(&mut self, conn: ConnId, e: FrameError) {
        self.error(conn, format!("Message too long: {e}"));
        self.kick(conn, Kick::Oversized);
    }

    /// Bytes from a connection. A read may hold many messages (a share list arrives in
    /// 64 KiB reads): it is taken through the bounded buffer a piece at a time, and whole
    /// messages are handled one by one — none while the connection's login waits for a job.
    pub(super) fn stream(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        let spec = self.spec;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let cap = c.buf.capacity_limit();
            let n = cap.saturating_sub(c.buf.len()).min(data.len());
            let (piece, rest) = data.split_at(n);
            data = rest;
            if let Err(e) = c.buf.extend(piece) {
                return self.oversized(conn, e);
            }
            loop {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                if c.waiting.is_some() {
                    break;
                }
                if c.skip > 0 {
                    let n = c.buf.take_upto(c.skip).len();
                    c.skip -= n;
                    if c.skip > 0 {
                        break;
                    }
                }
                let (t, payload) = match c.buf.next_frame(&spec) {
                    Ok(Some(f)) => {
                        let (_, t) = wire::parse_header(f.header).unwrap_or((0, 0));
                        (t, f.payload.to_vec())
                    }
                    Ok(None) => break,
                    // Before login nothing legitimate is that long (a login is a few dozen
                    // bytes): the connection is closed, as for any other oversized frame.
                    Err(FrameError::TooLarge { announced, .. }) if c.user.is_some() => {
                        // The header is all we keep of it; the payload is skipped.
                        let (len, t) = wire::parse_header(c.buf.as_slice()).unwrap_or((0, 0));
                        c.buf.consume(wire::HEADER_LEN);
                        c.skip = usize::from(len);
                        let announced = usize::try_from(announced).unwrap_or(usize::MAX);
                        self.too_long(now, conn, t, announced);
                        continue;
                    }
                    Err(e) => return self.oversized(conn, e),
                };
                self.message(now, conn, t, &payload);
            }
            if data.is_empty() {
                return;
            }
            // Still bytes to take and no room: either a login is waiting and the client
            // sent more than the buffer holds meanwhile, or the buffer holds no whole frame
            // (the limits were misconfigured). Refuse either way; never spin.
            let full = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.buf.len() >= c.buf.capacity_limit());
            if full {
                return self.oversized(conn, FrameError::BufferFull(cap));
            }
        }
    }

    /// A message announcing more than `max_payload` bytes: its payload is discarded as it
    /// arrives (never buffered), the sender is told, and a search among them still ends
    /// with 202. Counted as a refused message, so a stream of them ends in a kick.
    fn too_long(&mut self, now: Instant, conn: ConnId, t: u16, announced: usize) {
        let logged_in = self.conns.get(&conn).is_some_and(|c| c.user.is_some());
        self.stats.bad_messages += 1;
        let max = self.cfg.max_payload;
        let text = format!("Message too long: {announced} bytes, the limit is {max}");
        self.error(conn, text);
        if t == kind::SEARCH && logged_in {
            self.send(conn, &ServerMsg::SearchEnd);
        }
        self.penalize(now, conn);
    }

    pub(super) fn message(&mut self, now: Instant, conn: ConnId, t: u16, payload: &[u8]) {
        let logged_in = self.conns.get(&conn).is_some_and(|c| c.user.is_some());
        if t == kind::SEARCH && logged_in && payload.len() > self.cfg.max_search_len {
            let max = self.cfg.max_search_len;
            self.error(
                conn,
                format!(
                    "Search too long: {} bytes, the limit is {max}",
                    payload.len()
                ),
            );
            self.send(conn, &ServerMsg::SearchEnd);
            return self.penalize(now, conn);
        }
        let msg = match ClientMsg::decode(t, payload) {
            Ok(m) => m,
            Err(e) => {
                self.stats.bad_messages += 1;
                let text = match e {
                    DecodeError::Unknown(k) => format!("Unknown command code {k}"),
                    e => format!("Invalid message: {e}"),
                };
                // A search that fails to parse still ends with 202, so clients stop waiting.
                if t == kind::SEARCH && logged_in {
                    self.send(conn, &ServerMsg::SearchEnd);
                }
                return self.strike(now, conn, text);
            }
        };
        if !logged_in {
            return match msg {
                ClientMsg::Login {
                    nick,
                    password,
                    port,
                    link,
                    ..
                } => self.login(now, conn, nick, password, port, link, None),
                ClientMsg::Register {
                    nick,
                    password,
                    port,
                    link,
                    email,
                    ..
                } => self.login(now, conn, nick, password, port, link, Some(email)),
                ClientMsg::NickCheck { nick } => {
                    let reply = self.nick_check(&nick);
                    self.send(conn, &reply);
                }
                ClientMsg::ServerPing { server, args } => self.server_ping(conn, server, args),
                _ => self.strike(now, conn, "You must log in first".into()),
            };
        }
        self.logged_in(now, conn, msg);
    }

    pub(super) fn logged_in(&mut self, now: Instant, conn: ConnId, msg: ClientMsg) {
        match msg {
            ClientMsg::Login { .. } | ClientMsg::Register { .. } => {
                self.strike(now, conn, "You are already logged in".into())
            }
            ClientMsg::NickCheck { nick } => {
                let reply = self.nick_check(&nick);
                self.send(conn, &reply);
            }
            ClientMsg::Share(f) => self.share(now, conn, f),
            ClientMsg::Unshare { name } => {
                let r = self
                    .user_mut(conn)
                    .and_then(|u| u.files.remove(name.as_str()));
                match r {
                    Some(r) => {
                        self.index.remove(r);
                    }
                    None => self.strike(now, conn, format!("You are not sharing \"{name}\"")),
                }
            }
            ClientMsg::UnshareAll => {
                let files = self
                    .user_mut(conn)
                    .map(|u| std::mem::take(&mut u.files))
                    .unwrap_or_default();
                for (_, r) in files {
                    self.index.remove(r);
                }
            }
            ClientMsg::Search(q) => self.search(now, conn, &q),
            ClientMsg::DownloadRequest { nick, file } => {
                self.download_request(now, conn, &nick, &file)
            }
            ClientMsg::UploadAccept { nick, file } => self.upload_accept(conn, &nick, &file),
            ClientMsg::AltDownloadRequest { nick, file } => {
                self.alt_download(now, conn, &nick, &file)
            }
            ClientMsg::PrivateMessage { to, text } => {
                let from = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                match self.online.get(&key(&to)).copied() {
                    Some(dest) => self.send(dest, &ServerMsg::PrivateMessage { from, text }),
                    None => self.error(conn, format!("User {to} is not currently online.")),
                }
            }
            ClientMsg::HotlistAdd { nick } | ClientMsg::HotlistInit { nick } => {
                self.hotlist_add(conn, nick)
            }
            ClientMsg::HotlistRemove { nick } => {
                let k = key(&nick);
                if let Some(u) = self.user_mut(conn) {
                    u.hotlist.remove(&k);
                }
                if let Some(w) = self.watchers.get_mut(&k) {
                    w.remove(&conn);
                    if w.is_empty() {
                        self.watchers.remove(&k);
                    }
                }
            }
            ClientMsg::Browse { nick } => self.browse(conn, &nick),
            ClientMsg::Stats => {
                let st = self.stats();
                self.send(
                    conn,
                    &ServerMsg::Stats {
                        users: st.users,
                        files: st.files,
                        gigabytes: st.bytes >> 30,
                    },
                );
            }
            ClientMsg::Downloading => {
                if let Some(u) = self.user_mut(conn) {
                    u.downloads = u.downloads.saturating_add(1);
                }
            }
            ClientMsg::DownloadDone => {
                if let Some(u) = self.user_mut(conn) {
                    u.downloads = u.downloads.saturating_sub(1);
                }
            }
            ClientMsg::Uploading => {
                if let Some(u) = self.user_mut(conn) {
                    u.uploads = u.uploads.saturating_add(1);
                }
            }
            ClientMsg::UploadDone => {
                if let Some(u) = self.user_mut(conn) {
                    u.uploads = u.uploads.saturating_sub(1);
                }
            }
            ClientMsg::Join { channel } => self.join(now, conn, channel),
            ClientMsg::Part { channel } => self.part(now, conn, &channel),
            ClientMsg::Say { channel, text } => {
                let Some(ch) = self.member_channel(conn, &channel) else {
                    return self.strike(now, conn, format!("You are not on channel {channel}"));
                };
                let nick = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                let msg = ServerMsg::ChannelMessage {
                    channel: ch.name.clone(),
                    nick,
                    text,
                };
                for m in ch.members.clone() {
                    self.send(m, &msg);
                }
            }
            ClientMsg::SetTopic { channel, topic } => {
                let Some(name) = self.member_channel(conn, &channel).map(|c| c.name.clone()) else {
                    return self.strike(now, conn, format!("You are not on channel {channel}"));
                };
                let Some(ch) = self.channels.get_mut(&key(&name)) else {
                    return;
                };
                ch.topic = topic.clone();
                let members = ch.members.clone();
                let msg = ServerMsg::Topic {
                    channel: name,
                    topic,
                };
                for m in members {
                    self.send(m, &msg);
                }
            }
            ClientMsg::ListChannels => {
                let entries: Vec<ServerMsg> = self
                    .channels
                    .values()
                    .map(|c| ServerMsg::ChannelEntry {
                        channel: c.name.clone(),
                        users: u32::try_from(c.members.len()).unwrap_or(u32::MAX),
                        topic: if c.topic.is_empty() {
                            "-".into()
                        } else {
                            c.topic.clone()
                        },
                    })
                    .collect();
                for e in entries {
                    self.send(conn, &e);
                }
                self.send(conn, &ServerMsg::ChannelListEnd);
            }
            ClientMsg::Ban { target, reason } => {
                if self.user(conn).map(|u| u.level) != Some(Level::Admin) {
                    return self.strike(now, conn, "permission denied".into());
                }
                let by = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                let ban = Ban {
                    target: key(&target),
                    reason: reason.unwrap_or_default(),
                    by,
                };
                self.ban(ban, Origin::Admin(conn));
            }
            ClientMsg::Unban { target } => {
                if self.user(conn).map(|u| u.level) != Some(Level::Admin) {
                    return self.strike(now, conn, "permission denied".into());
                }
                self.unban(&target, Origin::Admin(conn));
            }
            ClientMsg::DataPortError { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                if let Some(&dest) = self.online.get(&key(&nick)) {
                    self.send(dest, &ServerMsg::DataPortError { nick: me });
                }
            }
            ClientMsg::ChangeDataPort { port } => {
                if let Some(u) = self.user_mut(conn) {
                    u.port = port;
                }
            }
            ClientMsg::ServerPing { server, args } => self.server_ping(conn, server, args),
            ClientMsg::Motd => self.motd(conn),
            ClientMsg::DirectBrowse { nick } => self.direct_browse(now, conn, &nick),
            ClientMsg::DirectBrowseAccept { nick } => self.direct_browse_accept(conn, &nick),
            ClientMsg::PingUser { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                match self.online.get(&key(&nick)).copied() {
                    Some(dest) => self.send(dest, &ServerMsg::PingUser { nick: me }),
                    None => self.error(conn, format!("ping failed, {nick} is not online")),
                }
            }
            ClientMsg::PongUser { nick } => {
                let me = self.user(conn).map(|u| u.nick.clone()).unwrap_or_default();
                if let Some(&dest) = self.online.get(&key(&nick)) {
                    self.send(dest, &ServerMsg::PongUser { nick: me });
                }
            }
        }
    }
}
