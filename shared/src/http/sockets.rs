//! TCP options for every socket Kotoba opens or accepts.
//!
//! Nagle's algorithm holds a small write back while an earlier segment is unacknowledged, and Linux
//! delays an ACK by up to 40 ms: a server that writes a response (or an SSE event, or a WebSocket
//! frame) in more than one small write waits ~40 ms for the peer's delayed ACK. Kotoba's writes are
//! latency-bound messages, never bulk transfers, so every socket gets `TCP_NODELAY`. `axum::serve`
//! does not set it on accepted sockets; reqwest does by default, which [`client_builder`] pins.

use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};

/// A listener whose accepted sockets have `TCP_NODELAY` set (give it to `axum::serve`).
pub type NoDelayListener = axum::serve::TapIo<TcpListener, fn(&mut TcpStream)>;

/// Wraps `listener` so every socket it accepts has `TCP_NODELAY`.
pub fn nodelay(listener: TcpListener) -> NoDelayListener {
    listener.tap_io(set_nodelay as fn(&mut TcpStream))
}

/// Sets `TCP_NODELAY` on an accepted or connected stream; a failure is logged, not fatal (the socket
/// still works, only slower).
pub fn set_nodelay(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "could not set TCP_NODELAY");
    }
}

/// The HTTP client builder for every outbound client (models, embeddings, reranker, Stripe, the
/// crawler): `TCP_NODELAY` pinned rather than left to the library's default.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tcp_nodelay(true)
}

/// The address the wrapped listener is bound to.
pub fn local_addr(listener: &NoDelayListener) -> std::io::Result<std::net::SocketAddr> {
    listener.local_addr()
}

/// One connected TCP socket of this process (see [`tcp_sockets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocketInfo {
    pub local: std::net::SocketAddr,
    pub peer: std::net::SocketAddr,
    pub nodelay: bool,
}

/// Every connected TCP socket this process holds, with its `TCP_NODELAY` option as the kernel reports
/// it (`getsockopt`): how tests check that the sockets a server accepted or a client opened carry the
/// option, without access to the library's own handles. Linux only (`/proc/self/fd`); elsewhere empty.
pub fn tcp_sockets() -> Vec<TcpSocketInfo> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{BorrowedFd, RawFd};
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor is only duplicated (dup), never used or closed through the
            // borrow; if it was closed meanwhile the dup fails and it is skipped, and if its number
            // was reused, the duplicate describes that socket instead, which is still a valid one.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let Ok(owned) = borrowed.try_clone_to_owned() else {
                continue;
            };
            let stream = std::net::TcpStream::from(owned);
            if let (Ok(local), Ok(peer), Ok(nodelay)) =
                (stream.local_addr(), stream.peer_addr(), stream.nodelay())
            {
                out.push(TcpSocketInfo {
                    local,
                    peer,
                    nodelay,
                });
            }
        }
        out
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = raw.local_addr().unwrap();
        // A plain accept leaves Nagle on (what axum::serve would get without the wrapper).
        let _plain_client = TcpStream::connect(addr).await.unwrap();
        let (plain, _) = raw.accept().await.unwrap();
        assert!(!plain.nodelay().unwrap(), "the kernel default is Nagle on");

        let mut wrapped = nodelay(raw);
        assert_eq!(local_addr(&wrapped).unwrap(), addr);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = wrapped.accept().await;
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_client_builder_connects_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
            axum::serve(nodelay(listener), app).await.unwrap();
        });
        let client = client_builder().build().unwrap();
        let body = client
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok");
        // The client keeps its connection: both ends are in this process.
        let sockets = tcp_sockets();
        let outbound: Vec<_> = sockets.iter().filter(|s| s.peer == addr).collect();
        let inbound: Vec<_> = sockets.iter().filter(|s| s.local == addr).collect();
        assert!(!outbound.is_empty() && !inbound.is_empty(), "{sockets:?}");
        assert!(
            outbound.iter().chain(&inbound).all(|s| s.nodelay),
            "{sockets:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn the_socket_scan_sees_nagle_on_a_plain_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (_accepted, _) = listener.accept().await.unwrap();
        let plain: Vec<_> = tcp_sockets()
            .into_iter()
            .filter(|s| s.local == addr)
            .collect();
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(!plain[0].nodelay);
    }
}
