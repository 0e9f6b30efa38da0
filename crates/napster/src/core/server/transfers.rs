//! Download brokering: requests to a holder (203 → 607), its accept (608 → 204), timeouts (609), and pushes for firewalled holders (500 → 501).

use super::*;

impl Server {
    /// The holder's connection and the file's info, if `nick` is online and shares `file`.
    pub(super) fn holder_file(&self, nick: &str, file: &str) -> Option<(ConnId, FileInfo)> {
        let c = *self.online.get(&key(nick))?;
        let u = self.user(c)?;
        let r = u.files.get(file)?;
        Some((c, self.index.get(*r)?.info.clone()))
    }

    pub(super) fn download_request(&mut self, now: Instant, conn: ConnId, nick: &str, file: &str) {
        let Some((holder, _)) = self.holder_file(nick, file) else {
            return self.send(
                conn,
                &ServerMsg::GetError {
                    nick: nick.into(),
                    file: file.into(),
                },
            );
        };
        let per_holder = self.pending.values().filter(|p| p.holder == holder).count();
        if per_holder >= self.cfg.max_pending_per_holder {
            return self.error(conn, format!("{nick} has too many pending requests"));
        }
        let Some(me) = self.user(conn) else { return };
        let (my_nick, my_link) = (me.nick.clone(), me.link);
        let id = self.next_pending;
        self.next_pending += 1;
        let deadline = now + self.cfg.download_timeout;
        self.pending.insert(
            id,
            PendingDownload {
                holder,
                requester: conn,
                file: file.into(),
                deadline,
            },
        );
        self.timers.insert((deadline, Timer::Download(id)));
        self.send(
            holder,
            &ServerMsg::UploadRequest {
                nick: my_nick,
                file: file.into(),
                link: Some(my_link),
            },
        );
    }

    pub(super) fn upload_accept(&mut self, conn: ConnId, nick: &str, file: &str) {
        let Some(&requester) = self.online.get(&key(nick)) else {
            return;
        };
        let Some(id) = self
            .pending
            .iter()
            .find(|(_, p)| p.holder == conn && p.requester == requester && p.file == file)
            .map(|(id, _)| *id)
        else {
            // An accept nobody asked for is ignored (it could only be a forgery).
            return;
        };
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.timers.remove(&(p.deadline, Timer::Download(id)));
        let Some(holder) = self.user(conn) else {
            return;
        };
        let Some(r) = holder.files.get(file).copied() else {
            return;
        };
        let md5 = self
            .index
            .get(r)
            .map(|e| e.info.md5.clone())
            .unwrap_or_default();
        let ack = ServerMsg::DownloadAck(PeerFile {
            nick: holder.nick.clone(),
            ip: holder.ip,
            port: holder.port,
            file: file.into(),
            md5,
            link: holder.link,
        });
        self.stats.downloads_brokered += 1;
        self.send(requester, &ack);
    }

    pub(super) fn alt_download(&mut self, now: Instant, conn: ConnId, nick: &str, file: &str) {
        let Some((holder, info)) = self.holder_file(nick, file) else {
            return self.send(
                conn,
                &ServerMsg::GetError {
                    nick: nick.into(),
                    file: file.into(),
                },
            );
        };
        let Some(me) = self.user(conn) else { return };
        if me.port == 0 {
            return self.strike(
                now,
                conn,
                "Both you and the holder are firewalled; no transfer is possible".into(),
            );
        }
        let push = ServerMsg::AltDownloadAck(PeerFile {
            nick: me.nick.clone(),
            ip: me.ip,
            port: me.port,
            file: file.into(),
            md5: info.md5,
            link: me.link,
        });
        self.stats.downloads_brokered += 1;
        self.send(holder, &push);
    }
}
