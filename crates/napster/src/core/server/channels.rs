//! Channels: join (400 → 405, 406, 408), part (401 → 407), members.

use super::*;

impl Server {
    pub(super) fn member_channel(&self, conn: ConnId, name: &str) -> Option<&Channel> {
        self.channels
            .get(&key(name))
            .filter(|c| c.members.contains(&conn))
    }

    pub(super) fn channel_user(&self, conn: ConnId, channel: &str) -> Option<ChannelUser> {
        let u = self.user(conn)?;
        Some(ChannelUser {
            channel: channel.into(),
            nick: u.nick.clone(),
            shared: u32::try_from(u.files.len()).unwrap_or(u32::MAX),
            link: u.link,
        })
    }

    pub(super) fn join(&mut self, now: Instant, conn: ConnId, channel: String) {
        if !wire::valid_channel(&channel) {
            return self.strike(now, conn, format!("Invalid channel name {channel}"));
        }
        let k = key(&channel);
        let Some(u) = self.user(conn) else { return };
        if u.channels.contains(&k) {
            return;
        }
        if u.channels.len() >= self.cfg.max_channels_per_user {
            return self.error(conn, "You are on too many channels");
        }
        let full = match self.channels.get(&k) {
            Some(c) => c.members.len() >= self.cfg.max_channel_members,
            None => self.channels.len() >= self.cfg.max_channels,
        };
        if full {
            return self.error(conn, format!("Channel {channel} is full"));
        }
        let ch = self.channels.entry(k.clone()).or_insert_with(|| Channel {
            name: channel,
            topic: String::new(),
            members: BTreeSet::new(),
        });
        ch.members.insert(conn);
        let name = ch.name.clone();
        let topic = ch.topic.clone();
        let members: Vec<ConnId> = ch.members.iter().copied().collect();
        if let Some(u) = self.user_mut(conn) {
            u.channels.insert(k);
        }
        self.send(
            conn,
            &ServerMsg::JoinAck {
                channel: name.clone(),
            },
        );
        let me = self.channel_user(conn, &name);
        for &m in &members {
            if let Some(cu) = self.channel_user(m, &name) {
                self.send(conn, &ServerMsg::ChannelUser(cu));
            }
            if m != conn {
                if let Some(me) = me.clone() {
                    self.send(m, &ServerMsg::UserJoined(me));
                }
            }
        }
        self.send(
            conn,
            &ServerMsg::ChannelUsersEnd {
                channel: name.clone(),
            },
        );
        if !topic.is_empty() {
            self.send(
                conn,
                &ServerMsg::Topic {
                    channel: name,
                    topic,
                },
            );
        }
    }

    pub(super) fn part(&mut self, now: Instant, conn: ConnId, channel: &str) {
        let k = key(channel);
        let Some(name) = self.member_channel(conn, channel).map(|c| c.name.clone()) else {
            return self.strike(now, conn, format!("You are not on channel {channel}"));
        };
        let me = self.channel_user(conn, &name);
        if let Some(u) = self.user_mut(conn) {
            u.channels.remove(&k);
        }
        let mut members = Vec::new();
        if let Some(ch) = self.channels.get_mut(&k) {
            ch.members.remove(&conn);
            members = ch.members.iter().copied().collect();
            if members.is_empty() {
                self.channels.remove(&k);
            }
        }
        self.send(conn, &ServerMsg::Parted { channel: name });
        if let Some(me) = me {
            let msg = ServerMsg::UserParted(me);
            for m in members {
                self.send(m, &msg);
            }
        }
    }
}
