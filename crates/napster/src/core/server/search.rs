//! Shares (100) into the index and searches (200 → 201, 202).

use super::*;

impl Server {
    pub(super) fn share(&mut self, now: Instant, conn: ConnId, f: FileInfo) {
        let limit = self.cfg.max_shares_per_user;
        let Some(u) = self.user_mut(conn) else { return };
        if u.files.contains_key(f.name.as_str()) {
            return;
        }
        if u.files.len() >= limit {
            if !u.share_limit_told {
                u.share_limit_told = true;
                self.error(conn, format!("Share limit reached ({limit} files)"));
            }
            return;
        }
        if f.name.is_empty() || f.name.contains('"') {
            return self.strike(now, conn, "Invalid file name".into());
        }
        let name: Box<str> = f.name.as_str().into();
        let r = self.index.insert(conn, f);
        if let Some(u) = self.user_mut(conn) {
            u.files.insert(name, r);
        }
    }

    pub(super) fn search(&mut self, now: Instant, conn: ConnId, q: &SearchQuery) {
        let rate = self.cfg.search_rate;
        let Some(u) = self.user_mut(conn) else { return };
        if !u.search.take(now, rate) {
            self.send(conn, &ServerMsg::SearchEnd);
            return self.strike(now, conn, "Search rate limit exceeded".into());
        }
        let nick = u.nick.clone();
        let limit = q
            .max_results
            .unwrap_or(self.cfg.default_results)
            .min(self.cfg.max_results) as usize;
        let speed: Vec<_> = q
            .constraints
            .iter()
            .filter(|c| c.attr == Attr::LineSpeed)
            .copied()
            .collect();
        let conns = &self.conns;
        let hits = self.index.search(q, limit, |owner| {
            owner != conn
                && conns
                    .get(&owner)
                    .and_then(|c| c.user.as_deref())
                    .is_some_and(|u| {
                        speed
                            .iter()
                            .all(|c| c.cmp.holds(u64::from(u.link.get()), c.value))
                    })
        });
        let msgs: Vec<ServerMsg> = hits
            .into_iter()
            .filter_map(|(_, e)| {
                let u = conns.get(&e.owner)?.user.as_deref()?;
                Some(ServerMsg::SearchResult(SearchHit {
                    file: e.info.clone(),
                    nick: u.nick.clone(),
                    ip: u.ip,
                    link: u.link,
                }))
            })
            .collect();
        let n = msgs.len();
        for m in msgs {
            self.send(conn, &m);
        }
        self.send(conn, &ServerMsg::SearchEnd);
        self.stats.searches += 1;
        self.emit(ServerEvent::Searched { nick, results: n });
    }
}
