//! A running HTTP server: serves a router on a bound listener until told to stop.
//!
//! Shutdown is graceful for a moment and then forced, because subscription streams stay open
//! for as long as their subscribers live and would otherwise hold a graceful shutdown forever.
//! `bind` opens the listening socket with a deep accept queue.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long `shutdown` waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`).
/// Tokio's default, 1024, is too shallow for a master whose 10,000 agents reconnect at once
/// after a failover: the kernel drops the SYNs that do not fit, and their senders retry only
/// after 1, 3, 7, 15 ... seconds, which made the last agents re-register half a minute late.
const ACCEPT_QUEUE: u32 = 16_384;

/// Binds `addr` for `Server::spawn`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_QUEUE)
}

/// A server task; dropping it does not stop it, `shutdown` does.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `listener` in a task of its own; `name` labels its log lines.
    pub fn spawn(listener: TcpListener, app: Router, name: &'static str) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "{name} HTTP server failed");
            }
        });
        Ok(Self { addr, stop: Some(stop), task })
    }

    /// Stops accepting, lets open requests finish for a moment, then stops serving regardless.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }

    /// Waits until the server stops by itself (it does not, short of an error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}
