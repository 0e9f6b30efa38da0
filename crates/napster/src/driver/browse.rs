//! Direct browsing over data connections (napster.txt §5.3): serving our list to
//! `GETLIST`, taking a list a firewalled browsee pushes (`SENDLIST`), pushing ours, and the
//! browser's side of the whole exchange ([`direct_browse`]).

use super::*;

/// A direct browse waiting for the browsee's `SENDLIST`: the connection and the bytes read
/// past the command.
pub(super) type ListWaiter = oneshot::Sender<(TcpStream, Vec<u8>)>;

/// Longest a whole list may take to arrive, however it trickles.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

impl DataPort {
    /// Serve `files` as `nick`'s list to `GETLIST` from now on (until then, a `GETLIST` is
    /// answered `INVALID REQUEST`).
    pub fn publish_list(&self, nick: &str, files: &[FileInfo]) {
        let bytes = Arc::new(transfer::encode_list(nick, files));
        if let Ok(mut l) = self.list.lock() {
            *l = Some(bytes);
        }
    }

    pub(super) async fn serve_list(&self, mut s: TcpStream) -> Result<(), NetError> {
        let list = self.list.lock().ok().and_then(|l| l.clone());
        let Some(list) = list else {
            let _ = s.write_all(b"INVALID REQUEST").await;
            return Err(NetError::Refused(
                "GETLIST before our list was published".into(),
            ));
        };
        tokio::time::timeout(LIST_TIMEOUT, s.write_all(&list))
            .await
            .map_err(|_| NetError::Timeout("browser stopped reading".into()))?
            .map_err(io("sending our list"))?;
        let _ = s.shutdown().await;
        Ok(())
    }

    /// `SENDLIST <nick>\n`: hands the connection to the direct browse of `nick` waiting
    /// for it; anyone else's push is refused.
    pub(super) async fn take_pushed_list(
        &self,
        mut s: TcpStream,
        mut buf: Vec<u8>,
    ) -> Result<(), NetError> {
        let (nick, used) = read_until(&mut s, &mut buf, transfer::parse_list_line).await?;
        buf.drain(..used);
        let waiter = self
            .lists
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&nick.trim().to_ascii_lowercase()));
        match waiter {
            Some(w) => {
                let _ = w.send((s, buf));
                Ok(())
            }
            None => Err(NetError::Refused(format!(
                "unexpected SENDLIST from {nick}"
            ))),
        }
    }

    fn expect_list(&self, nick: &str) -> oneshot::Receiver<(TcpStream, Vec<u8>)> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.lists.lock() {
            if m.len() < 1024 {
                m.insert(nick.to_ascii_lowercase(), tx);
            }
        }
        rx
    }

    fn cancel_list(&self, nick: &str) {
        if let Ok(mut m) = self.lists.lock() {
            m.remove(&nick.to_ascii_lowercase());
        }
    }
}

/// Reads list lines (after the nick line) until the empty line or the end of the stream;
/// lines that do not parse are skipped, at most [`crate::client::MAX_COLLECTED`] files kept.
async fn read_list(s: &mut TcpStream, mut buf: Vec<u8>) -> Result<Vec<FileInfo>, NetError> {
    let mut files = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + LIST_TIMEOUT;
    loop {
        while let Some((line, used)) = transfer::parse_list_line(&buf)? {
            buf.drain(..used);
            if line.is_empty() {
                return Ok(files);
            }
            match FileInfo::parse_share_fields(&line) {
                Ok(f) if files.len() < crate::client::MAX_COLLECTED => files.push(f),
                Ok(_) => {}
                Err(e) => tracing::debug!("skipping list line: {e}"),
            }
        }
        let read = tokio::time::timeout(TRANSFER_IDLE, s.read(&mut chunk));
        let n = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| NetError::Timeout("the list took too long".into()))?
            .map_err(|_| NetError::Timeout("browsee went silent".into()))?
            .map_err(io("reading the list"))?;
        if n == 0 {
            // Some clients close without the final empty line: what arrived is the list.
            return Ok(files);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to `to`, waits for `1`, and pushes `list` (from [`transfer::encode_list`]) as
/// `SENDLIST`: what a firewalled browsee does.
pub(super) async fn push_list(to: SocketAddr, list: &[u8]) -> Result<(), NetError> {
    let mut s = connect_hello(to).await?;
    let mut msg = b"SENDLIST ".to_vec();
    msg.extend_from_slice(list);
    tokio::time::timeout(LIST_TIMEOUT, s.write_all(&msg))
        .await
        .map_err(|_| NetError::Timeout("browser stopped reading".into()))?
        .map_err(io("pushing our list"))?;
    let _ = s.shutdown().await;
    Ok(())
}

/// Browses `nick`'s files directly (640): the server relays the request, `nick` accepts
/// (641) and we fetch the list from its data port with `GETLIST`; or `nick` is firewalled
/// and pushes the list to `data`, our data port (`SENDLIST`). Fails with the server's 642
/// text (offline, sharing nothing, both firewalled) or on a timeout.
pub async fn direct_browse(
    session: &mut Session,
    data: Option<&DataPort>,
    nick: &str,
) -> Result<Vec<FileInfo>, NetError> {
    let pushed = data.map(|d| d.expect_list(nick));
    let r = browse_inner(session, pushed, nick).await;
    if let Some(d) = data {
        d.cancel_list(nick);
    }
    r
}

async fn browse_inner(
    session: &mut Session,
    pushed: Option<oneshot::Receiver<(TcpStream, Vec<u8>)>>,
    nick: &str,
) -> Result<Vec<FileInfo>, NetError> {
    let id = session.id();
    session
        .command(ClientCommand::DirectBrowse {
            id,
            nick: nick.into(),
        })
        .await?;
    // A receiver whose sender is gone (no data port, or too many waiting) never resolves.
    let push = async move {
        match pushed {
            Some(rx) => match rx.await {
                Ok(v) => v,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    let answer = session.wait(|e| match e {
        ClientEvent::DirectBrowseReady {
            id: i, ip, port, ..
        } if *i == id => Some(Ok(SocketAddr::new(IpAddr::V4(*ip), *port))),
        ClientEvent::DirectBrowseFailed { id: i, reason, .. }
        | ClientEvent::Refused { id: i, reason }
            if *i == id =>
        {
            Some(Err(reason.clone()))
        }
        _ => None,
    });
    // Either the server says where to fetch the list, or the browsee pushes it.
    let pushed = tokio::select! {
        a = answer => Err(a?.map_err(NetError::Refused)?),
        p = push => Ok(p),
    };
    let (mut s, buf) = match pushed {
        Ok(p) => {
            let _ = session
                .command(ClientCommand::DirectBrowseDone { id })
                .await;
            p
        }
        Err(to) => fetch_list(to).await?,
    };
    read_list(&mut s, buf).await
}

/// Connects to a browsee's data port, waits for `1`, sends `GETLIST` and reads its nick
/// line; the file lines follow on the returned connection.
async fn fetch_list(to: SocketAddr) -> Result<(TcpStream, Vec<u8>), NetError> {
    let mut s = connect_hello(to).await?;
    let mut buf = Vec::new();
    s.write_all(b"GETLIST")
        .await
        .map_err(io("sending GETLIST"))?;
    let (_nick, used) = read_until(&mut s, &mut buf, transfer::parse_list_line).await?;
    buf.drain(..used);
    Ok((s, buf))
}
