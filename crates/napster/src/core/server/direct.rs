//! Direct browsing (640 → 640 to the browsee, its 641 → 641 with its address, or 642), the
//! message of the day (621) and server pings (750), as OpenNap-NG answers them.

use super::*;

impl Server {
    /// 640 from `conn`: relay the request to `nick`, or answer 642 at once when the browse
    /// cannot happen (offline, sharing nothing, both firewalled, too many waiting).
    pub(super) fn direct_browse(&mut self, now: Instant, conn: ConnId, nick: &str) {
        let fail = |nick: &str, text: String| ServerMsg::DirectBrowseError {
            nick: nick.into(),
            text,
        };
        let Some(me) = self.user(conn) else { return };
        let (my_nick, my_ip, my_port) = (me.nick.clone(), me.ip, me.port);
        let Some(&browsee) = self.online.get(&key(nick)) else {
            return self.send(conn, &fail(nick, format!("{nick} is not online.")));
        };
        let Some(u) = self.user(browsee) else { return };
        let (their_nick, their_port, sharing) = (u.nick.clone(), u.port, u.files.len());
        if their_port == 0 && my_port == 0 {
            let text = format!("Both you and {their_nick} are firewalled; you cannot browse them.");
            return self.send(conn, &fail(&their_nick, text));
        }
        if sharing == 0 {
            let text = format!("{their_nick} is not sharing any files.");
            return self.send(conn, &fail(&their_nick, text));
        }
        if their_port == 0 {
            // The browsee cannot be reached: it connects to us and pushes the list
            // (`SENDLIST`); no 641 follows, so nothing waits here.
            let addr = Some((my_ip, my_port));
            return self.send(
                browsee,
                &ServerMsg::DirectBrowseRequest {
                    nick: my_nick,
                    addr,
                },
            );
        }
        let waiting = self
            .direct
            .values()
            .filter(|p| p.browsee == browsee)
            .count();
        if waiting >= self.cfg.max_pending_per_holder {
            let text = format!("{their_nick} has too many pending requests.");
            return self.send(conn, &fail(&their_nick, text));
        }
        let id = self.next_pending;
        self.next_pending += 1;
        let deadline = now + self.cfg.download_timeout;
        self.direct.insert(
            id,
            PendingBrowse {
                browsee,
                requester: conn,
                deadline,
            },
        );
        self.timers.insert((deadline, Timer::DirectBrowse(id)));
        self.send(
            browsee,
            &ServerMsg::DirectBrowseRequest {
                nick: my_nick,
                addr: None,
            },
        );
    }

    /// 641 from the browsee `conn` for requester `nick`: tell the requester where to
    /// connect. An accept nobody asked for is ignored.
    pub(super) fn direct_browse_accept(&mut self, conn: ConnId, nick: &str) {
        let Some(&requester) = self.online.get(&key(nick)) else {
            return;
        };
        let Some(id) = self
            .direct
            .iter()
            .find(|(_, p)| p.browsee == conn && p.requester == requester)
            .map(|(id, _)| *id)
        else {
            return;
        };
        let Some(p) = self.direct.remove(&id) else {
            return;
        };
        self.timers.remove(&(p.deadline, Timer::DirectBrowse(id)));
        let Some(u) = self.user(conn) else { return };
        let msg = ServerMsg::DirectBrowseAccept {
            nick: u.nick.clone(),
            ip: u.ip,
            port: u.port,
        };
        self.send(requester, &msg);
    }

    pub(super) fn direct_browse_expired(&mut self, id: u64) {
        let Some(p) = self.direct.remove(&id) else {
            return;
        };
        if let Some(nick) = self.user(p.browsee).map(|u| u.nick.clone()) {
            let text = format!("{nick} did not accept the browse request.");
            self.send(p.requester, &ServerMsg::DirectBrowseError { nick, text });
        }
    }

    /// `conn` (user `nick`) is gone: its requests are dropped, and whoever waited for its
    /// accept is told.
    pub(super) fn forget_direct_browses(&mut self, conn: ConnId, nick: &str) {
        let stale: Vec<u64> = self
            .direct
            .iter()
            .filter(|(_, p)| p.browsee == conn || p.requester == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let Some(p) = self.direct.remove(&id) else {
                continue;
            };
            self.timers.remove(&(p.deadline, Timer::DirectBrowse(id)));
            if p.browsee == conn {
                let msg = ServerMsg::DirectBrowseError {
                    nick: nick.into(),
                    text: format!("{nick} is not online."),
                };
                self.send(p.requester, &msg);
            }
        }
    }

    /// The message of the day: the server's own lines (version, name, welcome), as
    /// OpenNap-NG starts it, then the operator's lines.
    pub(super) fn motd(&mut self, conn: ConnId) {
        let Some(nick) = self.user(conn).map(|u| u.nick.clone()) else {
            return;
        };
        let mut lines = vec![
            format!("VERSION servent {}", env!("CARGO_PKG_VERSION")),
            format!("SERVER {}", self.cfg.name),
            format!("Welcome {nick}!"),
            String::new(),
        ];
        lines.extend(self.cfg.motd.iter().cloned());
        for text in lines {
            self.send(conn, &ServerMsg::Motd { text });
        }
    }

    /// 750: a ping of this server (no name, or ours) is answered with our name and the
    /// ping's text; a user's own nick is Napster 2.0b5a's answer to a server ping and
    /// needs none; any other name is a server we are not linked to.
    pub(super) fn server_ping(
        &mut self,
        conn: ConnId,
        server: Option<String>,
        args: Option<String>,
    ) {
        let me = self.user(conn).map(|u| u.key.clone());
        match server {
            Some(s) if !s.eq_ignore_ascii_case(&self.cfg.name) => {
                if me != Some(key(&s)) {
                    self.error(conn, "server ping failed: no such server");
                }
            }
            _ => {
                let msg = ServerMsg::ServerPing {
                    server: Some(self.cfg.name.clone()),
                    args,
                };
                self.send(conn, &msg);
            }
        }
    }
}
