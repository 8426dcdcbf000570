//! Memory with many open connections: opens N keep-alive HTTP/1.1 connections to the device
//! listener, sends one `POST request-id` on each (so the server has really accepted and set
//! up every connection), holds them all open, and reads the server's resident memory
//! (`VmRSS` in `/proc/PID/status`) before and while they are open.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The result of a connection test.
#[derive(Debug, Clone, Serialize)]
pub struct ConnReport {
    /// Connections asked for.
    pub wanted: usize,
    /// Connections open and answered at the time of the measurement.
    pub open: usize,
    /// Server RSS before any test connection, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with `open` connections, KiB.
    pub rss_open_kib: u64,
    /// The server's peak RSS (`VmHWM`) so far, KiB.
    pub rss_peak_kib: u64,
}

impl ConnReport {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        format!(
            "connections: {} of {} open and answered\n  server RSS before {:.1} MiB, with them {:.1} MiB \
             (+{:.1} KiB per connection), peak {:.1} MiB\n",
            self.open,
            self.wanted,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_open_kib as f64 / 1024.0,
            (self.rss_open_kib.saturating_sub(self.rss_before_kib)) as f64
                / self.open.max(1) as f64,
            self.rss_peak_kib as f64 / 1024.0,
        )
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:   12345 kB`).
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_status(pid: u32) -> Result<String, String> {
    let p = Path::new("/proc").join(pid.to_string()).join("status");
    std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// Opens `count` connections to `addr`, one request each on `path` with `api_key`, and
/// measures the RSS of process `pid` with all of them open.
pub async fn run(
    addr: &str,
    path: &str,
    api_key: &str,
    count: usize,
    pid: u32,
    progress: &indicatif::ProgressBar,
) -> Result<ConnReport, String> {
    let before = read_status(pid)?;
    let rss_before_kib = status_kib(&before, "VmRSS").ok_or("no VmRSS in status")?;
    let mut set = JoinSet::new();
    // Open in waves of 100 so the listen backlog is never the limit being measured.
    let mut held = Vec::with_capacity(count);
    for wave in (0..count).collect::<Vec<_>>().chunks(100) {
        for _ in wave {
            let (addr, path, key) = (addr.to_string(), path.to_string(), api_key.to_string());
            set.spawn(async move { open_one(&addr, &path, &key).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(conn)) = r {
                held.push(conn);
            }
            progress.inc(1);
        }
    }
    // Give the server a moment to settle any per-connection buffers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = held.iter().filter(|c| !c.0.is_closed()).count();
    let during = read_status(pid)?;
    let report = ConnReport {
        wanted: count,
        open,
        rss_before_kib,
        rss_open_kib: status_kib(&during, "VmRSS").ok_or("no VmRSS in status")?,
        rss_peak_kib: status_kib(&during, "VmHWM").unwrap_or(0),
    };
    drop(held);
    Ok(report)
}

type Held = (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
);

async fn open_one(addr: &str, path: &str, api_key: &str) -> Result<Held, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(path)
        .header("host", addr)
        .header("api-key", api_key)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = resp.into_body().collect().await;
    Ok((send, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_fields() {
        let s = "Name:\tserialmint\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        assert_eq!(status_kib(s, "VmRSS"), Some(20480));
        assert_eq!(status_kib(s, "VmHWM"), Some(40960));
        assert_eq!(status_kib(s, "VmSwap"), None);
        assert_eq!(status_kib(s, "Vm"), None);
    }

    #[test]
    fn reads_our_own_rss() {
        let s = read_status(std::process::id()).unwrap();
        assert!(status_kib(&s, "VmRSS").unwrap() > 0);
    }
}
