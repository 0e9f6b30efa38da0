//! The client's side of the server connection as a sans-IO core: log in, upload the share
//! list, search, browse, ask for downloads, accept upload requests, chat.
//!
//! The server answers in the order it was asked and tags nothing, so the client matches
//! answers to commands by order (searches end with 202) and by key (a browse ends with 213
//! naming the user; a download ack names the holder and the file). Each command carries an
//! id that its completion event repeats.
//!
//! File transfers happen on separate data connections between clients; this core only
//! reports where to connect ([`ClientEvent::DownloadReady`]) or whom to push to
//! ([`ClientEvent::PushRequested`]). The [`crate::transfer`] codecs speak that exchange.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Core, Input, Instant, Transmit};

use crate::wire::{
    self, ClientMsg, FileInfo, LinkType, PeerFile, SearchHit, SearchQuery, ServerMsg,
};

/// Who we are and where the server is.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server.
    pub server: SocketAddr,
    /// Our nick.
    pub nick: String,
    /// Our password.
    pub password: String,
    /// Our data port; 0 when we are firewalled (uploads are pushed).
    pub data_port: u16,
    /// Our link type.
    pub link: LinkType,
    /// Register the nick with this e-mail (message 6) instead of logging in (2).
    pub register_email: Option<String>,
    /// The client string sent at login.
    pub client_info: String,
    /// Largest payload accepted from the server.
    pub max_payload: usize,
    /// How long a command waits for its answer.
    pub command_timeout: Duration,
    /// Most commands waiting for an answer.
    pub max_pending: usize,
}

impl ClientConfig {
    /// Defaults for `nick` at `server`.
    pub fn new(server: SocketAddr, nick: &str, password: &str) -> ClientConfig {
        ClientConfig {
            server,
            nick: nick.into(),
            password: password.into(),
            data_port: 0,
            link: LinkType::CABLE,
            register_email: None,
            client_info: concat!("servent ", env!("CARGO_PKG_VERSION")).into(),
            max_payload: wire::MAX_WIRE_PAYLOAD,
            command_timeout: Duration::from_secs(60),
            max_pending: 1024,
        }
    }
}

/// What the user asks the client to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCommand {
    /// Announce files (100 each); done as [`ClientEvent::Shared`].
    Share {
        /// Command id.
        id: u64,
        /// The files.
        files: Vec<FileInfo>,
    },
    /// Stop sharing a file (102).
    Unshare {
        /// Command id.
        id: u64,
        /// File name.
        name: String,
    },
    /// Search (200); answered by [`ClientEvent::SearchDone`].
    Search {
        /// Command id.
        id: u64,
        /// The query.
        query: SearchQuery,
    },
    /// Browse a user's files (211); answered by [`ClientEvent::BrowseDone`].
    Browse {
        /// Command id.
        id: u64,
        /// Whose.
        nick: String,
    },
    /// Ask for a file (203); answered by [`ClientEvent::DownloadReady`] or
    /// [`ClientEvent::DownloadFailed`]. A firewalled holder is asked to push (500).
    Download {
        /// Command id.
        id: u64,
        /// The holder.
        nick: String,
        /// The file.
        file: String,
    },
    /// Ask to browse a user's files directly (640); answered by
    /// [`ClientEvent::DirectBrowseReady`] (connect and `GETLIST`) or
    /// [`ClientEvent::DirectBrowseFailed`]. A firewalled browsee gets no 641 from the
    /// server: it pushes its list to our data port (`SENDLIST`) instead, and the caller that
    /// received it ends the wait with [`ClientCommand::DirectBrowseDone`].
    DirectBrowse {
        /// Command id.
        id: u64,
        /// Whose files.
        nick: String,
    },
    /// The direct browse `id` got its list some other way (pushed): stop waiting for 641.
    DirectBrowseDone {
        /// Command id of the [`ClientCommand::DirectBrowse`].
        id: u64,
    },
    /// Send a raw protocol message (chat, hotlist, stats, …); done as [`ClientEvent::Sent`].
    Send {
        /// Command id.
        id: u64,
        /// The message.
        msg: ClientMsg,
    },
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Logged in.
    LoggedIn {
        /// The e-mail the server has for us.
        email: String,
    },
    /// The server refused the login or closed the connection; the client is finished.
    Disconnected {
        /// The server's last error text, or why the connection ended.
        reason: String,
    },
    /// Files announced.
    Shared {
        /// Command id.
        id: u64,
        /// How many.
        count: usize,
    },
    /// A search finished.
    SearchDone {
        /// Command id.
        id: u64,
        /// The results.
        hits: Vec<SearchHit>,
    },
    /// A browse finished (`files` empty and `ip` absent when the user is not online).
    BrowseDone {
        /// Command id.
        id: u64,
        /// Whose.
        nick: String,
        /// Their files.
        files: Vec<FileInfo>,
        /// Their address.
        ip: Option<std::net::Ipv4Addr>,
    },
    /// Connect to `peer` and `GET` the file (port 0 never appears here: then the holder is
    /// asked to push and [`ClientEvent::PushExpected`] is reported instead).
    DownloadReady {
        /// Command id.
        id: u64,
        /// Where.
        peer: PeerFile,
    },
    /// The firewalled holder was asked to push the file to our data port.
    PushExpected {
        /// Command id.
        id: u64,
        /// The holder.
        peer: PeerFile,
    },
    /// The download cannot happen (not shared, holder offline, no accept, both firewalled).
    DownloadFailed {
        /// Command id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// The server says where to fetch `nick`'s list directly: connect to `ip:port` and
    /// send `GETLIST`.
    DirectBrowseReady {
        /// Command id.
        id: u64,
        /// The browsee.
        nick: String,
        /// Their address.
        ip: std::net::Ipv4Addr,
        /// Their data port.
        port: u16,
    },
    /// The direct browse cannot happen (642, or no answer in time).
    DirectBrowseFailed {
        /// Command id.
        id: u64,
        /// The browsee.
        nick: String,
        /// Why.
        reason: String,
    },
    /// `nick` asked to browse our files directly and we accepted (641): they will connect
    /// to our data port and send `GETLIST`.
    DirectBrowseAccepted {
        /// The requester.
        nick: String,
    },
    /// `nick` wants to browse our files and we are firewalled: connect to `ip:port` and
    /// push the list (`SENDLIST`).
    ListPushRequested {
        /// The requester.
        nick: String,
        /// Their address.
        ip: std::net::Ipv4Addr,
        /// Their data port.
        port: u16,
    },
    /// A command without its own answer was sent.
    Sent {
        /// Command id.
        id: u64,
    },
    /// A command was refused locally (malformed values, too many pending, not logged in).
    Refused {
        /// Command id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Someone asked for a file we share; we accepted (608).
    UploadAccepted {
        /// The requester.
        nick: String,
        /// The file.
        file: String,
    },
    /// Someone asked for a file we do not share (we ignored it).
    UploadIgnored {
        /// The requester.
        nick: String,
        /// The file.
        file: String,
    },
    /// We are firewalled and must connect to `peer` and `SEND` the file.
    PushRequested {
        /// The downloader and the file.
        peer: PeerFile,
    },
    /// Any other server message (chat, private messages, hotlist news, errors, stats).
    Server(ServerMsg),
}

#[derive(Debug)]
enum Waiting {
    Search { id: u64, hits: Vec<SearchHit> },
}

#[derive(Debug)]
struct PendingDirect {
    id: u64,
    nick: String,
    deadline: Instant,
}

#[derive(Debug)]
struct PendingGet {
    id: u64,
    nick: String,
    file: String,
    deadline: Instant,
}

const SERVER: ConnId = ConnId::outbound(0);
const MAX_QUEUE: usize = 1 << 16;
/// Most results or browse entries kept for one command.
pub const MAX_COLLECTED: usize = 100_000;

/// The client core. Drive it as [`servent_core::contract`] describes.
#[derive(Debug)]
pub struct Client {
    cfg: ClientConfig,
    buf: RecvBuf,
    /// The connection to the server is opened on the first timer (at once), so that any
    /// driver starts the session the same way.
    must_connect: bool,
    connected: bool,
    logged_in: bool,
    finished: bool,
    /// Shares announced before login wait here.
    backlog: Vec<Vec<u8>>,
    shared: BTreeSet<String>,
    searches: VecDeque<(Waiting, Instant)>,
    browses: BTreeMap<String, (u64, Vec<FileInfo>, Instant)>,
    gets: Vec<PendingGet>,
    /// Direct browses waiting for 641/642, by lower-cased nick.
    directs: BTreeMap<String, PendingDirect>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    last_error: Option<String>,
}

impl Client {
    /// A client that connects to its server as soon as it is driven (its first timer is
    /// due at once).
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            buf: RecvBuf::new(wire::HEADER_LEN + cfg.max_payload),
            cfg,
            must_connect: true,
            connected: false,
            logged_in: false,
            finished: false,
            backlog: Vec::new(),
            shared: BTreeSet::new(),
            searches: VecDeque::new(),
            browses: BTreeMap::new(),
            gets: Vec::new(),
            directs: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_error: None,
        }
    }

    /// Whether the login was acknowledged.
    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether the session is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether we share `name`.
    pub fn shares(&self, name: &str) -> bool {
        self.shared.contains(name)
    }

    /// Our nick.
    pub fn nick(&self) -> &str {
        &self.cfg.nick
    }

    fn emit(&mut self, e: ClientEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn send_bytes(&mut self, data: Vec<u8>) {
        if self.logged_in {
            if self.transmits.len() < MAX_QUEUE {
                self.transmits
                    .push_back(Transmit::Send { conn: SERVER, data });
            }
        } else if self.backlog.len() < MAX_QUEUE {
            self.backlog.push(data);
        }
    }

    fn send(&mut self, msg: &ClientMsg) -> Result<(), String> {
        let mut data = Vec::new();
        msg.encode(&mut data).map_err(|e| e.to_string())?;
        self.send_bytes(data);
        Ok(())
    }

    fn pending(&self) -> usize {
        self.searches.len() + self.browses.len() + self.gets.len() + self.directs.len()
    }

    fn finish(&mut self, reason: String) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.logged_in = false;
        let reason = self.last_error.take().unwrap_or(reason);
        for (w, _) in std::mem::take(&mut self.searches) {
            let Waiting::Search { id, hits } = w;
            self.emit(ClientEvent::SearchDone { id, hits });
        }
        for (nick, (id, files, _)) in std::mem::take(&mut self.browses) {
            self.emit(ClientEvent::BrowseDone {
                id,
                nick,
                files,
                ip: None,
            });
        }
        for g in std::mem::take(&mut self.gets) {
            self.emit(ClientEvent::DownloadFailed {
                id: g.id,
                reason: reason.clone(),
            });
        }
        for (_, d) in std::mem::take(&mut self.directs) {
            self.emit(ClientEvent::DirectBrowseFailed {
                id: d.id,
                nick: d.nick,
                reason: reason.clone(),
            });
        }
        self.emit(ClientEvent::Disconnected { reason });
    }

    fn command(&mut self, now: Instant, cmd: ClientCommand) {
        let deadline = now + self.cfg.command_timeout;
        let id = match &cmd {
            ClientCommand::Share { id, .. }
            | ClientCommand::Unshare { id, .. }
            | ClientCommand::Search { id, .. }
            | ClientCommand::Browse { id, .. }
            | ClientCommand::Download { id, .. }
            | ClientCommand::DirectBrowse { id, .. }
            | ClientCommand::DirectBrowseDone { id }
            | ClientCommand::Send { id, .. } => *id,
        };
        if let ClientCommand::DirectBrowseDone { id } = cmd {
            self.directs.retain(|_, d| d.id != id);
            return;
        }
        if self.finished {
            return self.emit(ClientEvent::Refused {
                id,
                reason: "not connected".into(),
            });
        }
        let waits = matches!(
            cmd,
            ClientCommand::Search { .. }
                | ClientCommand::Browse { .. }
                | ClientCommand::Download { .. }
                | ClientCommand::DirectBrowse { .. }
        );
        if waits && self.pending() >= self.cfg.max_pending {
            return self.emit(ClientEvent::Refused {
                id,
                reason: "too many commands waiting".into(),
            });
        }
        let r = match cmd {
            ClientCommand::Share { id, files } => {
                let mut count = 0;
                let mut err = Ok(());
                for f in files {
                    let name = f.name.clone();
                    match self.send(&ClientMsg::Share(f)) {
                        Ok(()) => {
                            self.shared.insert(name);
                            count += 1;
                        }
                        Err(e) => err = Err(e),
                    }
                }
                err.map(|()| ClientEvent::Shared { id, count })
            }
            ClientCommand::Unshare { id, name } => {
                let r = self.send(&ClientMsg::Unshare { name: name.clone() });
                if r.is_ok() {
                    self.shared.remove(&name);
                }
                r.map(|()| ClientEvent::Sent { id })
            }
            ClientCommand::Search { id, query } => self.send(&ClientMsg::Search(query)).map(|()| {
                self.searches.push_back((
                    Waiting::Search {
                        id,
                        hits: Vec::new(),
                    },
                    deadline,
                ));
                ClientEvent::Sent { id }
            }),
            ClientCommand::Browse { id, nick } => {
                if self.browses.contains_key(&nick.to_ascii_lowercase()) {
                    Err(format!("already browsing {nick}"))
                } else {
                    self.send(&ClientMsg::Browse { nick: nick.clone() })
                        .map(|()| {
                            self.browses
                                .insert(nick.to_ascii_lowercase(), (id, Vec::new(), deadline));
                            ClientEvent::Sent { id }
                        })
                }
            }
            ClientCommand::Download { id, nick, file } => self
                .send(&ClientMsg::DownloadRequest {
                    nick: nick.clone(),
                    file: file.clone(),
                })
                .map(|()| {
                    self.gets.push(PendingGet {
                        id,
                        nick,
                        file,
                        deadline,
                    });
                    ClientEvent::Sent { id }
                }),
            ClientCommand::DirectBrowse { id, nick } => {
                let k = nick.to_ascii_lowercase();
                if self.directs.contains_key(&k) {
                    Err(format!("already browsing {nick}"))
                } else {
                    self.send(&ClientMsg::DirectBrowse { nick: nick.clone() })
                        .map(|()| {
                            self.directs.insert(k, PendingDirect { id, nick, deadline });
                            ClientEvent::Sent { id }
                        })
                }
            }
            ClientCommand::DirectBrowseDone { id } => Ok(ClientEvent::Sent { id }),
            ClientCommand::Send { id, msg } => self.send(&msg).map(|()| ClientEvent::Sent { id }),
        };
        match r {
            // Commands that wait for an answer report only their answer.
            Ok(ClientEvent::Sent { .. }) if waits => {}
            Ok(e) => self.emit(e),
            Err(reason) => self.emit(ClientEvent::Refused { id, reason }),
        }
    }

    fn take_get(&mut self, nick: &str, file: &str) -> Option<PendingGet> {
        let i = self
            .gets
            .iter()
            .position(|g| g.nick.eq_ignore_ascii_case(nick) && g.file == file)?;
        Some(self.gets.remove(i))
    }

    fn server_msg(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::LoginAck { email } => {
                self.logged_in = true;
                for data in std::mem::take(&mut self.backlog) {
                    if self.transmits.len() < MAX_QUEUE {
                        self.transmits
                            .push_back(Transmit::Send { conn: SERVER, data });
                    }
                }
                self.emit(ClientEvent::LoggedIn { email });
            }
            ServerMsg::Error { text } => {
                self.last_error = Some(text.clone());
                if !self.logged_in {
                    self.transmits.push_back(Transmit::Close { conn: SERVER });
                    self.finish(text);
                } else {
                    self.emit(ClientEvent::Server(ServerMsg::Error { text }));
                }
            }
            ServerMsg::SearchResult(hit) => {
                if let Some((Waiting::Search { hits, .. }, _)) = self.searches.front_mut() {
                    if hits.len() < MAX_COLLECTED {
                        hits.push(hit);
                    }
                }
            }
            ServerMsg::SearchEnd => {
                if let Some((Waiting::Search { id, hits }, _)) = self.searches.pop_front() {
                    self.emit(ClientEvent::SearchDone { id, hits });
                }
            }
            ServerMsg::BrowseEntry { nick, file } => {
                if let Some((_, files, _)) = self.browses.get_mut(&nick.to_ascii_lowercase()) {
                    if files.len() < MAX_COLLECTED {
                        files.push(file);
                    }
                }
            }
            ServerMsg::BrowseEnd { nick, ip } => {
                if let Some((id, files, _)) = self.browses.remove(&nick.to_ascii_lowercase()) {
                    self.emit(ClientEvent::BrowseDone {
                        id,
                        nick,
                        files,
                        ip,
                    });
                }
            }
            ServerMsg::DownloadAck(peer) => {
                let Some(g) = self.take_get(&peer.nick, &peer.file) else {
                    return;
                };
                if peer.port != 0 {
                    return self.emit(ClientEvent::DownloadReady { id: g.id, peer });
                }
                if self.cfg.data_port == 0 {
                    return self.emit(ClientEvent::DownloadFailed {
                        id: g.id,
                        reason: format!("both {} and we are firewalled", peer.nick),
                    });
                }
                let _ = self.send(&ClientMsg::AltDownloadRequest {
                    nick: peer.nick.clone(),
                    file: peer.file.clone(),
                });
                self.emit(ClientEvent::PushExpected { id: g.id, peer });
            }
            ServerMsg::GetError { nick, file } => {
                if let Some(g) = self.take_get(&nick, &file) {
                    self.emit(ClientEvent::DownloadFailed {
                        id: g.id,
                        reason: format!("{nick} does not share \"{file}\" or is offline"),
                    });
                }
            }
            ServerMsg::AcceptFailed { nick, file } => {
                if let Some(g) = self.take_get(&nick, &file) {
                    self.emit(ClientEvent::DownloadFailed {
                        id: g.id,
                        reason: format!("{nick} did not accept the request"),
                    });
                }
            }
            ServerMsg::UploadRequest { nick, file, .. } => {
                if self.shared.contains(&file) {
                    let _ = self.send(&ClientMsg::UploadAccept {
                        nick: nick.clone(),
                        file: file.clone(),
                    });
                    self.emit(ClientEvent::UploadAccepted { nick, file });
                } else {
                    self.emit(ClientEvent::UploadIgnored { nick, file });
                }
            }
            ServerMsg::AltDownloadAck(peer) => {
                if self.shared.contains(&peer.file) {
                    self.emit(ClientEvent::PushRequested { peer });
                } else {
                    self.emit(ClientEvent::UploadIgnored {
                        nick: peer.nick,
                        file: peer.file,
                    });
                }
            }
            ServerMsg::PingUser { nick } => {
                let _ = self.send(&ClientMsg::PongUser { nick: nick.clone() });
                self.emit(ClientEvent::Server(ServerMsg::PingUser { nick }));
            }
            ServerMsg::ServerPing { server: None, .. } => {
                // The server pings us: answer with our nick, as Napster 2.0b5a does.
                let _ = self.send(&ClientMsg::ServerPing {
                    server: Some(self.cfg.nick.clone()),
                    args: None,
                });
            }
            ServerMsg::DirectBrowseRequest { nick, addr } => match addr {
                Some((ip, port)) => self.emit(ClientEvent::ListPushRequested { nick, ip, port }),
                None if self.cfg.data_port != 0 => {
                    let _ = self.send(&ClientMsg::DirectBrowseAccept { nick: nick.clone() });
                    self.emit(ClientEvent::DirectBrowseAccepted { nick });
                }
                // Nobody can connect to us: no accept, the server answers 642 in time.
                None => {}
            },
            ServerMsg::DirectBrowseAccept { nick, ip, port } => {
                if let Some(d) = self.directs.remove(&nick.to_ascii_lowercase()) {
                    self.emit(ClientEvent::DirectBrowseReady {
                        id: d.id,
                        nick,
                        ip,
                        port,
                    });
                }
            }
            ServerMsg::DirectBrowseError { nick, text } => {
                if let Some(d) = self.directs.remove(&nick.to_ascii_lowercase()) {
                    self.emit(ClientEvent::DirectBrowseFailed {
                        id: d.id,
                        nick,
                        reason: text,
                    });
                } else {
                    self.emit(ClientEvent::Server(ServerMsg::DirectBrowseError {
                        nick,
                        text,
                    }));
                }
            }
            other => self.emit(ClientEvent::Server(other)),
        }
    }

    /// Bytes from the server, taken through the bounded buffer a piece at a time.
    fn stream(&mut self, mut data: &[u8]) {
        let spec = wire::frame_spec(self.cfg.max_payload);
        while !data.is_empty() {
            let n = self
                .buf
                .capacity_limit()
                .saturating_sub(self.buf.len())
                .min(data.len());
            let (piece, rest) = data.split_at(n);
            data = rest;
            if n == 0 || self.buf.extend(piece).is_err() {
                self.transmits.push_back(Transmit::Close { conn: SERVER });
                return self.finish("server sent an oversized message".into());
            }
            loop {
                let (t, payload) = match self.buf.next_frame(&spec) {
                    Ok(Some(f)) => {
                        let (_, t) = wire::parse_header(f.header).unwrap_or((0, 0));
                        (t, f.payload.to_vec())
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.transmits.push_back(Transmit::Close { conn: SERVER });
                        return self.finish(format!("server framing error: {e}"));
                    }
                };
                // Messages we cannot decode are skipped: a newer server may send more.
                if let Ok(m) = ServerMsg::decode(t, &payload) {
                    self.server_msg(m);
                }
                if self.finished {
                    return;
                }
            }
        }
    }
}

impl Core for Client {
    type Command = ClientCommand;
    type Event = ClientEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, ClientCommand>) {
        match input {
            Input::Command(cmd) => self.command(now, cmd),
            Input::Connected { conn, .. } if conn == SERVER => {
                self.connected = true;
                let c = &self.cfg;
                let login = match &c.register_email {
                    Some(email) => ClientMsg::Register {
                        nick: c.nick.clone(),
                        password: c.password.clone(),
                        port: c.data_port,
                        client: c.client_info.clone(),
                        link: c.link,
                        email: email.clone(),
                    },
                    None => ClientMsg::Login {
                        nick: c.nick.clone(),
                        password: c.password.clone(),
                        port: c.data_port,
                        client: c.client_info.clone(),
                        link: c.link,
                    },
                };
                let mut data = Vec::new();
                match login.encode(&mut data) {
                    Ok(()) => self
                        .transmits
                        .push_back(Transmit::Send { conn: SERVER, data }),
                    Err(e) => {
                        self.transmits.push_back(Transmit::Close { conn: SERVER });
                        self.finish(format!("cannot log in: {e}"));
                    }
                }
            }
            Input::ConnectFailed { conn } if conn == SERVER => {
                self.finish("cannot connect to the server".into())
            }
            Input::Received { conn, data } if conn == SERVER => self.stream(data),
            Input::Closed { conn, .. } if conn == SERVER => {
                self.finish("the server closed the connection".into())
            }
            Input::Connected { conn, .. } => {
                // The client accepts no connections of its own.
                self.transmits.push_back(Transmit::Close { conn });
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.must_connect {
            self.must_connect = false;
            self.transmits.push_back(Transmit::Connect {
                conn: SERVER,
                to: self.cfg.server,
            });
        }
        while let Some((_, at)) = self.searches.front() {
            if *at > now {
                break;
            }
            if let Some((Waiting::Search { id, hits }, _)) = self.searches.pop_front() {
                self.emit(ClientEvent::SearchDone { id, hits });
            }
        }
        let due: Vec<String> = self
            .browses
            .iter()
            .filter(|(_, (_, _, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some((id, files, _)) = self.browses.remove(&k) {
                self.emit(ClientEvent::BrowseDone {
                    id,
                    nick: k,
                    files,
                    ip: None,
                });
            }
        }
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.gets)
            .into_iter()
            .partition(|g| g.deadline <= now);
        self.gets = keep;
        for g in due {
            self.emit(ClientEvent::DownloadFailed {
                id: g.id,
                reason: "no answer from the server".into(),
            });
        }
        let due: Vec<String> = self
            .directs
            .iter()
            .filter(|(_, d)| d.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(d) = self.directs.remove(&k) {
                self.emit(ClientEvent::DirectBrowseFailed {
                    id: d.id,
                    nick: d.nick,
                    reason: "no answer from the server".into(),
                });
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.must_connect {
            return Some(Instant::ZERO);
        }
        let s = self.searches.front().map(|(_, at)| *at);
        let b = self.browses.values().map(|(_, _, at)| *at).min();
        let g = self.gets.iter().map(|g| g.deadline).min();
        let d = self.directs.values().map(|d| d.deadline).min();
        [s, b, g, d].into_iter().flatten().min()
    }
}
