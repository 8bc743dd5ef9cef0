//! Running one probe of a health check or a generalized check (reference §7.7): a command in the task's sandbox, a TCP
//! connection to 127.0.0.1, or an HTTP/1.0 GET to 127.0.0.1 written by hand on a `TcpStream`
//! (a whole HTTP client library would cost more compile time than the one request line and
//! one status line it would save). Each probe is bounded by the check's timeout.
//!
//! It decides nothing: when to probe and what a result means belong to the sans-IO checkers in
//! `health.rs` (healthy or not) and `check.rs` (the raw exit code, status code or connection
//! result, which this file reports as a `CheckStatus`). It does not follow redirects (a 3xx already counts as healthy) nor speak TLS.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::check::CheckStatus;
use crate::health::Probe;
use crate::process::{Termination, build_command, signal_group};

/// The most of an HTTP response read to find its status line.
const MAX_STATUS_LINE: usize = 4096;

/// What one probe saw, before a health check or a check makes something of it.
enum Seen {
    /// The command ended like this.
    Ended(Termination),
    /// The TCP connection was made.
    Connected,
    /// The TCP connection could not be made, for this reason.
    Refused(String),
    /// The HTTP server answered with this status code.
    Status(u16),
    /// The probe outlived its timeout (and was stopped), as this says.
    TimedOut(String),
}

/// Runs `probe` for at most `timeout` (no limit for `None`); the error says why there is
/// nothing to show for it (the command would not start, the HTTP server gave no status).
async fn observe(probe: &Probe, timeout: Option<Duration>, sandbox: &Path) -> Result<Seen, String> {
    match probe {
        Probe::Command(command) => {
            let mut process = build_command(command, sandbox, &[])?;
            // The check's output would only clutter the task's own stdout and stderr.
            process.stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = tokio::process::Command::from(process)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run the check command: {e}"))?;
            let pgid = child.id();
            match bounded(timeout, child.wait()).await {
                Ok(status) => {
                    let status = status.map_err(|e| format!("cannot wait for the check: {e}"))?;
                    Ok(Seen::Ended(Termination::from(status)))
                }
                Err(elapsed) => {
                    // The command runs in a group of its own: whatever it started goes too.
                    if let Some(pgid) = pgid {
                        let _ = signal_group(pgid, Signal::SIGKILL);
                    }
                    Ok(Seen::TimedOut(elapsed))
                }
            }
        }
        Probe::Tcp { port } => {
            match bounded(timeout, TcpStream::connect(("127.0.0.1", *port))).await {
                Ok(Ok(_)) => Ok(Seen::Connected),
                Ok(Err(e)) => Ok(Seen::Refused(format!("cannot connect to 127.0.0.1:{port}: {e}"))),
                Err(elapsed) => Ok(Seen::TimedOut(elapsed)),
            }
        }
        Probe::Http { port, path } => match bounded(timeout, http_get(*port, path)).await {
            Ok(status) => status.map(Seen::Status),
            Err(elapsed) => Ok(Seen::TimedOut(elapsed)),
        },
    }
}

/// Runs `probe` as a health check, for at most `timeout` (no limit for `None`); `Ok` means
/// healthy, the error says why not (for the executor's log).
pub(crate) async fn run(
    probe: &Probe,
    timeout: Option<Duration>,
    sandbox: &Path,
) -> Result<(), String> {
    match observe(probe, timeout, sandbox).await? {
        Seen::Ended(Termination::Exited(0)) | Seen::Connected => Ok(()),
        Seen::Ended(other) => Err(format!("the health check command failed: {other}")),
        Seen::Status(status) if (200..=399).contains(&status) => Ok(()),
        Seen::Status(status) => {
            let Probe::Http { port, path } = probe else {
                return Err(format!("the probe answered {status}"));
            };
            Err(format!("GET http://127.0.0.1:{port}{path} answered {status}"))
        }
        Seen::Refused(why) | Seen::TimedOut(why) => Err(why),
    }
}

/// Runs `probe` as a generalized check, for at most `timeout` (no limit for `None`): its
/// result as the framework sees it (empty on a timeout), or why there is none (for the
/// executor's log; the check's status stays as it was). A command killed by a signal has no
/// exit code to report, so it counts as no result rather than as a made-up code.
pub(crate) async fn check(
    probe: &Probe,
    timeout: Option<Duration>,
    sandbox: &Path,
) -> Result<CheckStatus, String> {
    Ok(match observe(probe, timeout, sandbox).await? {
        Seen::Ended(Termination::Exited(code)) => CheckStatus::Command { exit_code: Some(code) },
        Seen::Ended(other) => return Err(format!("the check command did not exit: {other}")),
        Seen::Connected => CheckStatus::Tcp { succeeded: Some(true) },
        Seen::Refused(_) => CheckStatus::Tcp { succeeded: Some(false) },
        Seen::Status(status) => CheckStatus::Http { status_code: Some(u32::from(status)) },
        Seen::TimedOut(_) => CheckStatus::empty(probe),
    })
}

/// `work`, or an error once `timeout` has passed.
async fn bounded<T>(timeout: Option<Duration>, work: impl Future<Output = T>) -> Result<T, String> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| format!("the probe timed out after {limit:?}")),
        None => Ok(work.await),
    }
}

/// The status code of `GET path` on 127.0.0.1:port.
async fn http_get(port: u16, path: &str) -> Result<u16, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: agora-health-check\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send to {url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await.map_err(|e| format!("cannot read {url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_code(&head).ok_or_else(|| format!("{url} did not answer with an HTTP status line"))
}

/// The status code of a response that starts with `head`: `HTTP/1.x NNN ...`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok().filter(|code| (100..=999).contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_proto::v1;

    fn sandbox() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    fn command(value: &str) -> Probe {
        Probe::Command(Box::new(v1::CommandInfo {
            value: Some(value.into()),
            ..Default::default()
        }))
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[tokio::test]
    async fn commands_are_healthy_on_exit_0_and_time_out() {
        let dir = sandbox();
        std::fs::write(dir.path().join("ok"), "").expect("write");
        assert_eq!(run(&command("test -f ok"), None, dir.path()).await, Ok(()));
        let failed = run(&command("test -f missing"), None, dir.path()).await;
        assert!(failed.is_err_and(|e| e.contains("status 1")));
        let slow = run(&command("sleep 30"), Some(Duration::from_millis(100)), dir.path()).await;
        assert!(slow.is_err_and(|e| e.contains("timed out")));
    }

    #[tokio::test]
    async fn tcp_and_http_probes_reach_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer: &[u8] = if request.starts_with("GET /ok ") {
                    b"HTTP/1.0 200 OK\r\n\r\nfine"
                } else if request.starts_with("GET /moved ") {
                    b"HTTP/1.0 302 Found\r\nLocation: /ok\r\n\r\n"
                } else {
                    b"HTTP/1.0 503 Service Unavailable\r\n\r\n"
                };
                let _ = stream.write_all(answer).await;
            }
        });
        let dir = sandbox();
        let limit = Some(Duration::from_secs(10));
        assert_eq!(run(&Probe::Tcp { port }, limit, dir.path()).await, Ok(()));
        let http = |path: &str| Probe::Http { port, path: path.into() };
        assert_eq!(run(&http("/ok"), limit, dir.path()).await, Ok(()));
        assert_eq!(run(&http("/moved"), limit, dir.path()).await, Ok(()));
        let down = run(&http("/down"), limit, dir.path()).await;
        assert!(down.is_err_and(|e| e.contains("503")));

        let closed = crate::health::Probe::Tcp { port: free_port() };
        assert!(run(&closed, limit, dir.path()).await.is_err());

        // As a check, the same probes report the raw result.
        assert_eq!(
            check(&http("/down"), limit, dir.path()).await,
            Ok(CheckStatus::Http { status_code: Some(503) })
        );
        assert_eq!(
            check(&http("/moved"), limit, dir.path()).await,
            Ok(CheckStatus::Http { status_code: Some(302) })
        );
        assert_eq!(
            check(&Probe::Tcp { port }, limit, dir.path()).await,
            Ok(CheckStatus::Tcp { succeeded: Some(true) })
        );
        assert_eq!(
            check(&closed, limit, dir.path()).await,
            Ok(CheckStatus::Tcp { succeeded: Some(false) })
        );
        let nobody = Probe::Http { port: free_port(), path: "/".into() };
        assert!(check(&nobody, limit, dir.path()).await.is_err(), "no status, no result");
    }

    #[tokio::test]
    async fn command_checks_report_exit_codes_and_time_out_empty() {
        let dir = sandbox();
        let limit = Some(Duration::from_secs(10));
        assert_eq!(
            check(&command("exit 3"), limit, dir.path()).await,
            Ok(CheckStatus::Command { exit_code: Some(3) })
        );
        let slow = check(&command("sleep 30"), Some(Duration::from_millis(100)), dir.path()).await;
        assert_eq!(slow, Ok(CheckStatus::Command { exit_code: None }));
        let killed = check(&command("kill -9 $$"), limit, dir.path()).await;
        assert!(killed.is_err_and(|e| e.contains("did not exit")));
    }

    /// A port nothing listens on (bound, then released).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }
}
