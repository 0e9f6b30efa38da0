//! Server messages: the type number of each, encoding, and decoding what a server sent.

use super::*;

impl ServerMsg {
    /// The message type number.
    pub fn kind(&self) -> u16 {
        use kind::*;
        match self {
            ServerMsg::Error { .. } => ERROR,
            ServerMsg::LoginAck { .. } => LOGIN_ACK,
            ServerMsg::NickFree => NICK_FREE,
            ServerMsg::NickTaken => NICK_TAKEN,
            ServerMsg::NickInvalid => NICK_INVALID,
            ServerMsg::SearchResult(_) => SEARCH_RESULT,
            ServerMsg::SearchEnd => SEARCH_END,
            ServerMsg::DownloadAck(_) => DOWNLOAD_ACK,
            ServerMsg::PrivateMessage { .. } => PRIVATE_MESSAGE,
            ServerMsg::GetError { .. } => GET_ERROR,
            ServerMsg::HotlistSignon { .. } => HOTLIST_SIGNON,
            ServerMsg::HotlistSignoff { .. } => HOTLIST_SIGNOFF,
            ServerMsg::BrowseEntry { .. } => BROWSE_ENTRY,
            ServerMsg::BrowseEnd { .. } => BROWSE_END,
            ServerMsg::Stats { .. } => STATS,
            ServerMsg::HotlistAck { .. } => HOTLIST_ACK,
            ServerMsg::HotlistError { .. } => HOTLIST_ERROR,
            ServerMsg::Parted { .. } => PART,
            ServerMsg::ChannelMessage { .. } => CHANNEL_MESSAGE,
            ServerMsg::ErrorMessage { .. } => ERROR_MESSAGE,
            ServerMsg::JoinAck { .. } => JOIN_ACK,
            ServerMsg::UserJoined(_) => USER_JOINED,
            ServerMsg::UserParted(_) => USER_PARTED,
            ServerMsg::ChannelUser(_) => CHANNEL_USER,
            ServerMsg::ChannelUsersEnd { .. } => CHANNEL_USERS_END,
            ServerMsg::Topic { .. } => TOPIC,
            ServerMsg::AltDownloadAck(_) => ALT_DOWNLOAD_ACK,
            ServerMsg::UploadRequest { .. } => UPLOAD_REQUEST,
            ServerMsg::AcceptFailed { .. } => ACCEPT_FAILED,
            ServerMsg::ChannelListEnd => LIST_CHANNELS,
            ServerMsg::ChannelEntry { .. } => CHANNEL_ENTRY,
            ServerMsg::DataPortError { .. } => DATA_PORT_ERROR,
            ServerMsg::ServerPing { .. } => SERVER_PING,
            ServerMsg::Motd { .. } => MOTD,
            ServerMsg::DirectBrowseRequest { .. } => DIRECT_BROWSE,
            ServerMsg::DirectBrowseAccept { .. } => DIRECT_BROWSE_ACCEPT,
            ServerMsg::DirectBrowseError { .. } => DIRECT_BROWSE_ERROR,
            ServerMsg::PingUser { .. } => PING_USER,
            ServerMsg::PongUser { .. } => PONG_USER,
        }
    }

    /// Appends the whole message (header and payload) to `buf`; on error `buf` is unchanged.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_with(buf, self.kind(), |o| {
            match self {
                ServerMsg::Error { text } | ServerMsg::ErrorMessage { text } => {
                    o.rest("message", text)?;
                }
                ServerMsg::LoginAck { email } => {
                    o.word("email", email)?;
                }
                ServerMsg::SearchResult(h) => {
                    o.file_info(&h.file)?
                        .word("nick", &h.nick)?
                        .num(ip_to_wire(h.ip))
                        .num(h.link.get());
                }
                ServerMsg::DownloadAck(p) | ServerMsg::AltDownloadAck(p) => {
                    o.peer_file(p)?;
                }
                ServerMsg::PrivateMessage { from, text } => {
                    o.word("nick", from)?.rest("message", text)?;
                }
                ServerMsg::GetError { nick, file } | ServerMsg::AcceptFailed { nick, file } => {
                    o.word("nick", nick)?.quoted("filename", file)?;
                }
                ServerMsg::HotlistSignon { nick, link } => {
                    o.word("user", nick)?.num(link.get());
                }
                ServerMsg::HotlistSignoff { nick }
                | ServerMsg::HotlistAck { nick }
                | ServerMsg::HotlistError { nick }
                | ServerMsg::DataPortError { nick }
                | ServerMsg::PingUser { nick }
                | ServerMsg::PongUser { nick } => {
                    o.word("user", nick)?;
                }
                ServerMsg::BrowseEntry { nick, file } => {
                    o.word("nick", nick)?.file_info(file)?;
                }
                ServerMsg::BrowseEnd { nick, ip } => {
                    o.word("nick", nick)?;
                    if let Some(ip) = ip {
                        o.num(ip_to_wire(*ip));
                    }
                }
                ServerMsg::Stats {
                    users,
                    files,
                    gigabytes,
                } => {
                    o.num(users).num(files).num(gigabytes);
                }
                ServerMsg::Parted { channel }
                | ServerMsg::JoinAck { channel }
                | ServerMsg::ChannelUsersEnd { channel } => {
                    o.word("channel", channel)?;
                }
                ServerMsg::ChannelMessage {
                    channel,
                    nick,
                    text,
                } => {
                    o.word("channel", channel)?
                        .word("nick", nick)?
                        .rest("text", text)?;
                }
                ServerMsg::UserJoined(u) | ServerMsg::UserParted(u) | ServerMsg::ChannelUser(u) => {
                    o.channel_user(u)?;
                }
                ServerMsg::Topic { channel, topic } => {
                    o.word("channel", channel)?.rest("topic", topic)?;
                }
                ServerMsg::UploadRequest { nick, file, link } => {
                    o.word("nick", nick)?.quoted("filename", file)?;
                    if let Some(l) = link {
                        o.num(l.get());
                    }
                }
                ServerMsg::ChannelEntry {
                    channel,
                    users,
                    topic,
                } => {
                    o.word("channel", channel)?
                        .num(users)
                        .rest("topic", topic)?;
                }
                ServerMsg::NickFree
                | ServerMsg::NickTaken
                | ServerMsg::NickInvalid
                | ServerMsg::SearchEnd
                | ServerMsg::ChannelListEnd => {}
                ServerMsg::ServerPing { server, args } => {
                    o.ping(server, args)?;
                }
                ServerMsg::Motd { text } => {
                    // An empty line is an empty payload, as OpenNap sends it.
                    o.buf.extend_from_slice(text.as_bytes());
                }
                ServerMsg::DirectBrowseRequest { nick, addr } => {
                    o.word("nick", nick)?;
                    if let Some((ip, port)) = addr {
                        o.num(ip_to_wire(*ip)).num(port);
                    }
                }
                ServerMsg::DirectBrowseAccept { nick, ip, port } => {
                    o.word("nick", nick)?.num(ip_to_wire(*ip)).num(port);
                }
                ServerMsg::DirectBrowseError { nick, text } => {
                    o.word("nick", nick)?.quoted("message", text)?;
                }
            }
            Ok(())
        })
    }

    /// Decodes the payload of a message of type `kind` sent by a server.
    pub fn decode(kind: u16, payload: &[u8]) -> Result<ServerMsg, DecodeError> {
        use kind::*;
        let text = payload_text(payload);
        let mut f = Fields::new(kind, &text);
        let s = |v: &str| v.to_string();
        let msg = match kind {
            ERROR => ServerMsg::Error {
                text: s(f.rest("message")?),
            },
            ERROR_MESSAGE => ServerMsg::ErrorMessage {
                text: s(f.rest("text")?),
            },
            LOGIN_ACK => ServerMsg::LoginAck {
                email: s(f.word("email")?),
            },
            NICK_FREE | NICK_TAKEN | NICK_INVALID | SEARCH_END | LIST_CHANNELS => {
                empty(kind, &text)?;
                match kind {
                    NICK_FREE => ServerMsg::NickFree,
                    NICK_TAKEN => ServerMsg::NickTaken,
                    NICK_INVALID => ServerMsg::NickInvalid,
                    SEARCH_END => ServerMsg::SearchEnd,
                    _ => ServerMsg::ChannelListEnd,
                }
            }
            SERVER_PING => {
                let (server, args) = f.ping()?;
                return Ok(ServerMsg::ServerPing { server, args });
            }
            MOTD => {
                return Ok(ServerMsg::Motd {
                    text: text.into_owned(),
                });
            }
            DIRECT_BROWSE => {
                let nick = s(f.word("nick")?);
                let addr = if f.at_end() {
                    None
                } else {
                    Some((f.ip("ip")?, f.num("port")?))
                };
                ServerMsg::DirectBrowseRequest { nick, addr }
            }
            DIRECT_BROWSE_ACCEPT => ServerMsg::DirectBrowseAccept {
                nick: s(f.word("nick")?),
                ip: f.ip("ip")?,
                port: f.num("port")?,
            },
            DIRECT_BROWSE_ERROR => {
                let nick = s(f.word("nick")?);
                // `"message"`, quoted; servers that leave the quotes off are accepted.
                let t = f.rest("message")?;
                let text = t
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(t);
                return Ok(ServerMsg::DirectBrowseError {
                    nick,
                    text: s(text),
                });
            }
            SEARCH_RESULT => {
                let hit = ServerMsg::SearchResult(SearchHit {
                    file: f.file_info()?,
                    nick: s(f.word("nick")?),
                    ip: f.ip("ip")?,
                    link: f.link("link-type")?,
                });
                // An optional weight (a signed number) may follow.
                if !f.at_end() {
                    let w = f.word("weight")?;
                    let digits = w.strip_prefix('-').unwrap_or(w);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(f.invalid("weight"));
                    }
                }
                hit
            }
            DOWNLOAD_ACK => ServerMsg::DownloadAck(f.peer_file()?),
            ALT_DOWNLOAD_ACK => ServerMsg::AltDownloadAck(f.peer_file()?),
            PRIVATE_MESSAGE => ServerMsg::PrivateMessage {
                from: s(f.word("nick")?),
                text: s(f.rest("message")?),
            },
            GET_ERROR => ServerMsg::GetError {
                nick: s(f.word("nick")?),
                file: s(f.quoted("filename")?),
            },
            ACCEPT_FAILED => ServerMsg::AcceptFailed {
                nick: s(f.word("nick")?),
                file: s(f.quoted("filename")?),
            },
            HOTLIST_SIGNON => ServerMsg::HotlistSignon {
                nick: s(f.word("user")?),
                link: f.link("speed")?,
            },
            HOTLIST_SIGNOFF => ServerMsg::HotlistSignoff {
                nick: s(f.word("user")?),
            },
            HOTLIST_ACK => ServerMsg::HotlistAck {
                nick: s(f.word("user")?),
            },
            HOTLIST_ERROR => ServerMsg::HotlistError {
                nick: s(f.word("user")?),
            },
            DATA_PORT_ERROR => ServerMsg::DataPortError {
                nick: s(f.word("user")?),
            },
            PING_USER => ServerMsg::PingUser {
                nick: s(f.word("user")?),
            },
            PONG_USER => ServerMsg::PongUser {
                nick: s(f.word("user")?),
            },
            BROWSE_ENTRY => ServerMsg::BrowseEntry {
                nick: s(f.word("nick")?),
                file: f.file_info()?,
            },
            BROWSE_END => {
                let nick = s(f.word("nick")?);
                let ip = if f.at_end() { None } else { Some(f.ip("ip")?) };
                ServerMsg::BrowseEnd { nick, ip }
            }
            STATS => {
                let m = ServerMsg::Stats {
                    users: f.num("users")?,
                    files: f.num("files")?,
                    gigabytes: f.num("size")?,
                };
                // Napster 10.3 appends `GB <myfiles>`.
                if !f.at_end() {
                    if f.word("GB")? != "GB" {
                        return Err(f.invalid("GB"));
                    }
                    let _mine: u64 = f.num("myfiles")?;
                }
                m
            }
            PART => ServerMsg::Parted {
                channel: s(f.word("channel-name")?),
            },
            CHANNEL_MESSAGE => ServerMsg::ChannelMessage {
                channel: s(f.word("channel")?),
                nick: s(f.word("nick")?),
                text: s(f.rest("text")?),
            },
            JOIN_ACK => ServerMsg::JoinAck {
                channel: s(f.word("channel")?),
            },
            USER_JOINED => ServerMsg::UserJoined(f.channel_user()?),
            USER_PARTED => ServerMsg::UserParted(f.channel_user()?),
            CHANNEL_USER => ServerMsg::ChannelUser(f.channel_user()?),
            CHANNEL_USERS_END => ServerMsg::ChannelUsersEnd {
                channel: s(f.word("channel")?),
            },
            TOPIC => ServerMsg::Topic {
                channel: s(f.word("channel")?),
                topic: s(f.rest("topic")?),
            },
            UPLOAD_REQUEST => {
                let nick = s(f.word("nick")?);
                let file = s(f.quoted("filename")?);
                let link = if f.at_end() {
                    None
                } else {
                    Some(f.link("speed")?)
                };
                ServerMsg::UploadRequest { nick, file, link }
            }
            CHANNEL_ENTRY => ServerMsg::ChannelEntry {
                channel: s(f.word("channel-name")?),
                users: f.num("number-of-users")?,
                topic: s(f.rest("topic")?),
            },
            other => return Err(DecodeError::Unknown(other)),
        };
        f.end()?;
        Ok(msg)
    }
}
