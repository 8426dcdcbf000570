//! `pg-proxy`: a TCP proxy in front of Postgres that the outage step of a run can cut and
//! restore, so a bench can take Postgres away from the server under load without stopping
//! the machine's Postgres (which other work shares).
//!
//! SIGUSR1 cuts: the listener closes (new connections are refused, as by a stopped
//! Postgres) and every forwarded connection is closed. SIGUSR2 restores: it listens again on
//! the same address. SIGTERM/SIGINT end it.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Forwards `listen` to `upstream` until killed, cut on SIGUSR1 and restored on SIGUSR2.
pub async fn run(listen: SocketAddr, upstream: SocketAddr) -> Result<(), String> {
    let sig = |kind: SignalKind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut cut_sig, mut restore_sig) = (
        sig(SignalKind::user_defined1())?,
        sig(SignalKind::user_defined2())?,
    );
    let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    loop {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        eprintln!("pg-proxy: forwarding {listen} to {upstream}");
        // Every forwarded connection watches this and closes when it turns true.
        let (cut, _) = watch::channel(false);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((conn, _)) = accepted {
                        tokio::spawn(forward(conn, upstream, cut.subscribe()));
                    }
                }
                _ = cut_sig.recv() => break,
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
            }
        }
        drop(listener);
        let _ = cut.send(true);
        eprintln!("pg-proxy: cut");
        tokio::select! {
            _ = restore_sig.recv() => eprintln!("pg-proxy: restoring"),
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

async fn forward(mut conn: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut conn, &mut up) => {}
        _ = cut.wait_for(|c| *c) => {}
    }
}
