//! Client messages: the type number of each, encoding, and decoding what a client sent.

use super::*;

impl ClientMsg {
    /// The message type number.
    pub fn kind(&self) -> u16 {
        use kind::*;
        match self {
            ClientMsg::Login { .. } => LOGIN,
            ClientMsg::Register { .. } => REGISTER,
            ClientMsg::NickCheck { .. } => NICK_CHECK,
            ClientMsg::Share(_) => SHARE,
            ClientMsg::Unshare { .. } => UNSHARE,
            ClientMsg::UnshareAll => UNSHARE_ALL,
            ClientMsg::Search(_) => SEARCH,
            ClientMsg::DownloadRequest { .. } => DOWNLOAD_REQUEST,
            ClientMsg::PrivateMessage { .. } => PRIVATE_MESSAGE,
            ClientMsg::HotlistAdd { .. } => HOTLIST_ADD,
            ClientMsg::HotlistInit { .. } => HOTLIST_INIT,
            ClientMsg::Browse { .. } => BROWSE,
            ClientMsg::Stats => STATS,
            ClientMsg::Downloading => DOWNLOADING,
            ClientMsg::DownloadDone => DOWNLOAD_DONE,
            ClientMsg::Uploading => UPLOADING,
            ClientMsg::UploadDone => UPLOAD_DONE,
            ClientMsg::HotlistRemove { .. } => HOTLIST_REMOVE,
            ClientMsg::Join { .. } => JOIN,
            ClientMsg::Part { .. } => PART,
            ClientMsg::Say { .. } => SAY,
            ClientMsg::SetTopic { .. } => TOPIC,
            ClientMsg::AltDownloadRequest { .. } => ALT_DOWNLOAD_REQUEST,
            ClientMsg::UploadAccept { .. } => UPLOAD_ACCEPT,
            ClientMsg::Ban { .. } => BAN,
            ClientMsg::Unban { .. } => UNBAN,
            ClientMsg::ListChannels => LIST_CHANNELS,
            ClientMsg::DataPortError { .. } => DATA_PORT_ERROR,
            ClientMsg::ChangeDataPort { .. } => CHANGE_DATA_PORT,
            ClientMsg::ServerPing { .. } => SERVER_PING,
            ClientMsg::Motd => MOTD,
            ClientMsg::DirectBrowse { .. } => DIRECT_BROWSE,
            ClientMsg::DirectBrowseAccept { .. } => DIRECT_BROWSE_ACCEPT,
            ClientMsg::PingUser { .. } => PING_USER,
            ClientMsg::PongUser { .. } => PONG_USER,
        }
    }

    /// Appends the whole message (header and payload) to `buf`; on error `buf` is unchanged.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        encode_with(buf, self.kind(), |o| {
            match self {
                ClientMsg::Login {
                    nick,
                    password,
                    port,
                    client,
                    link,
                } => {
                    o.word("nick", nick)?
                        .word("password", password)?
                        .num(port)
                        .quoted("client-info", client)?
                        .num(link.get());
                }
                ClientMsg::Register {
                    nick,
                    password,
                    port,
                    client,
                    link,
                    email,
                } => {
                    o.word("nick", nick)?
                        .word("password", password)?
                        .num(port)
                        .quoted("client-info", client)?
                        .num(link.get())
                        .word("email", email)?;
                }
                ClientMsg::NickCheck { nick }
                | ClientMsg::HotlistAdd { nick }
                | ClientMsg::HotlistInit { nick }
                | ClientMsg::Browse { nick }
                | ClientMsg::HotlistRemove { nick }
                | ClientMsg::DataPortError { nick }
                | ClientMsg::PingUser { nick }
                | ClientMsg::PongUser { nick }
                | ClientMsg::DirectBrowse { nick }
                | ClientMsg::DirectBrowseAccept { nick } => {
                    o.word("nick", nick)?;
                }
                ClientMsg::ServerPing { server, args } => {
                    o.ping(server, args)?;
                }
                ClientMsg::Share(f) => {
                    o.file_info(f)?;
                }
                ClientMsg::Unshare { name } => {
                    o.quoted("filename", name)?;
                }
                ClientMsg::Search(q) => q.encode_into(o)?,
                ClientMsg::DownloadRequest { nick, file }
                | ClientMsg::AltDownloadRequest { nick, file }
                | ClientMsg::UploadAccept { nick, file } => {
                    o.word("nick", nick)?.quoted("filename", file)?;
                }
                ClientMsg::PrivateMessage { to, text } => {
                    o.word("nick", to)?.rest("message", text)?;
                }
                ClientMsg::Join { channel } | ClientMsg::Part { channel } => {
                    o.word("channel", channel)?;
                }
                ClientMsg::Say { channel, text } => {
                    o.word("channel", channel)?.rest("message", text)?;
                }
                ClientMsg::SetTopic { channel, topic } => {
                    o.word("channel", channel)?.rest("topic", topic)?;
                }
                ClientMsg::Ban { target, reason } => {
                    o.word("target", target)?;
                    if let Some(r) = reason {
                        o.quoted("reason", r)?;
                    }
                }
                ClientMsg::Unban { target } => {
                    o.word("target", target)?;
                }
                ClientMsg::ChangeDataPort { port } => {
                    o.num(port);
                }
                ClientMsg::UnshareAll
                | ClientMsg::Stats
                | ClientMsg::Downloading
                | ClientMsg::DownloadDone
                | ClientMsg::Uploading
                | ClientMsg::UploadDone
                | ClientMsg::ListChannels
                | ClientMsg::Motd => {}
            }
            Ok(())
        })
    }

    /// Decodes the payload of a message of type `kind` sent by a client.
    pub fn decode(kind: u16, payload: &[u8]) -> Result<ClientMsg, DecodeError> {
        use kind::*;
        let text = payload_text(payload);
        let mut f = Fields::new(kind, &text);
        let s = |v: &str| v.to_string();
        let msg = match kind {
            LOGIN => {
                let m = ClientMsg::Login {
                    nick: s(f.word("nick")?),
                    password: s(f.word("password")?),
                    port: f.num("port")?,
                    client: s(f.quoted("client-info")?),
                    link: f.link("link-type")?,
                };
                // The Windows client appends its build number.
                if !f.at_end() {
                    let _build: u32 = f.num("num")?;
                }
                m
            }
            REGISTER => ClientMsg::Register {
                nick: s(f.word("nick")?),
                password: s(f.word("password")?),
                port: f.num("port")?,
                client: s(f.quoted("client-info")?),
                link: f.link("speed")?,
                email: s(f.word("email-address")?),
            },
            NICK_CHECK => ClientMsg::NickCheck {
                nick: s(f.word("nick")?),
            },
            SHARE => ClientMsg::Share(f.file_info()?),
            UNSHARE => {
                // Spec: `<filename>`; clients send it with or without quotes, with spaces.
                let t = f.rest("filename")?;
                let name = t
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(t);
                return Ok(ClientMsg::Unshare { name: s(name) });
            }
            UNSHARE_ALL => {
                empty(kind, &text)?;
                ClientMsg::UnshareAll
            }
            SEARCH => return SearchQuery::parse(&text).map(ClientMsg::Search),
            DOWNLOAD_REQUEST => ClientMsg::DownloadRequest {
                nick: s(f.word("nick")?),
                file: s(f.quoted("filename")?),
            },
            ALT_DOWNLOAD_REQUEST => ClientMsg::AltDownloadRequest {
                nick: s(f.word("nick")?),
                file: s(f.quoted("filename")?),
            },
            UPLOAD_ACCEPT => ClientMsg::UploadAccept {
                nick: s(f.word("nick")?),
                file: s(f.quoted("filename")?),
            },
            PRIVATE_MESSAGE => ClientMsg::PrivateMessage {
                to: s(f.word("nick")?),
                text: s(f.rest("message")?),
            },
            HOTLIST_ADD => ClientMsg::HotlistAdd {
                nick: s(f.word("user")?),
            },
            HOTLIST_INIT => ClientMsg::HotlistInit {
                nick: s(f.word("user")?),
            },
            HOTLIST_REMOVE => ClientMsg::HotlistRemove {
                nick: s(f.word("user")?),
            },
            BROWSE => ClientMsg::Browse {
                nick: s(f.word("nick")?),
            },
            STATS | DOWNLOADING | DOWNLOAD_DONE | UPLOADING | UPLOAD_DONE | LIST_CHANNELS => {
                empty(kind, &text)?;
                match kind {
                    STATS => ClientMsg::Stats,
                    DOWNLOADING => ClientMsg::Downloading,
                    DOWNLOAD_DONE => ClientMsg::DownloadDone,
                    UPLOADING => ClientMsg::Uploading,
                    UPLOAD_DONE => ClientMsg::UploadDone,
                    _ => ClientMsg::ListChannels,
                }
            }
            SERVER_PING => {
                let (server, args) = f.ping()?;
                return Ok(ClientMsg::ServerPing { server, args });
            }
            MOTD => {
                empty(kind, &text)?;
                ClientMsg::Motd
            }
            DIRECT_BROWSE => ClientMsg::DirectBrowse {
                nick: s(f.word("nick")?),
            },
            DIRECT_BROWSE_ACCEPT => ClientMsg::DirectBrowseAccept {
                nick: s(f.word("nick")?),
            },
            JOIN => ClientMsg::Join {
                channel: s(f.word("channel-name")?),
            },
            PART => ClientMsg::Part {
                channel: s(f.word("channel-name")?),
            },
            SAY => ClientMsg::Say {
                channel: s(f.word("channel")?),
                text: s(f.rest("message")?),
            },
            TOPIC => ClientMsg::SetTopic {
                channel: s(f.word("channel")?),
                topic: s(f.rest("topic")?),
            },
            BAN => {
                let target = s(f.word("nick|ip")?);
                let reason = if f.at_end() {
                    None
                } else {
                    Some(s(f.quoted("reason")?))
                };
                ClientMsg::Ban { target, reason }
            }
            UNBAN => {
                let target = s(f.word("nick|ip")?);
                // An optional quoted reason is accepted and not kept.
                if !f.at_end() {
                    f.quoted("reason")?;
                }
                ClientMsg::Unban { target }
            }
            DATA_PORT_ERROR => ClientMsg::DataPortError {
                nick: s(f.word("user")?),
            },
            CHANGE_DATA_PORT => ClientMsg::ChangeDataPort {
                port: f.num("port")?,
            },
            PING_USER => ClientMsg::PingUser {
                nick: s(f.word("user")?),
            },
            PONG_USER => ClientMsg::PongUser {
                nick: s(f.word("user")?),
            },
            other => return Err(DecodeError::Unknown(other)),
        };
        f.end()?;
        Ok(msg)
    }
}
