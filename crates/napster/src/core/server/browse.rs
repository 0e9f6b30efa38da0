//! Hotlists (207/208 → 209/210) and browsing a user's files (211 → 212, 213).

use super::*;

impl Server {
    pub(super) fn hotlist_add(&mut self, conn: ConnId, nick: String) {
        let max = self.cfg.max_hotlist;
        let k = key(&nick);
        let ok = wire::valid_nick(&nick)
            && self
                .user_mut(conn)
                .is_some_and(|u| u.hotlist.len() < max || u.hotlist.contains(&k));
        if !ok {
            return self.send(conn, &ServerMsg::HotlistError { nick });
        }
        if let Some(u) = self.user_mut(conn) {
            u.hotlist.insert(k.clone());
        }
        self.watchers.entry(k.clone()).or_default().insert(conn);
        self.send(conn, &ServerMsg::HotlistAck { nick });
        if let Some(friend) = self.online.get(&k).and_then(|c| self.user(*c)) {
            let msg = ServerMsg::HotlistSignon {
                nick: friend.nick.clone(),
                link: friend.link,
            };
            self.send(conn, &msg);
        }
    }

    pub(super) fn browse(&mut self, conn: ConnId, nick: &str) {
        let Some(u) = self.online.get(&key(nick)).and_then(|c| self.user(*c)) else {
            self.send(conn, &ServerMsg::HotlistSignoff { nick: nick.into() });
            return self.send(
                conn,
                &ServerMsg::BrowseEnd {
                    nick: nick.into(),
                    ip: None,
                },
            );
        };
        let mut files: Vec<&FileInfo> = u
            .files
            .values()
            .filter_map(|r| self.index.get(*r).map(|e| &e.info))
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut msgs: Vec<ServerMsg> = files
            .into_iter()
            .map(|f| ServerMsg::BrowseEntry {
                nick: u.nick.clone(),
                file: f.clone(),
            })
            .collect();
        msgs.push(ServerMsg::BrowseEnd {
            nick: u.nick.clone(),
            ip: Some(u.ip),
        });
        for m in msgs {
            self.send(conn, &m);
        }
    }
}
