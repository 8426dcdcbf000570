//! serialmint-loadtest: plays a factory line of snapd devices against a running serialmint,
//! and measures the HSM's own limit in the same run so every figure is a ratio to it.
//!
//! Subcommands:
//! * `run`: the factory line. Optionally the raw HSM rate first (`--raw`), then phase 1
//!   (request-ids, serial-requests built and signed with cached device keys; untimed),
//!   phase 2 (timed: closed loop with `--devices N --concurrency C`, or open loop with
//!   `--rate R --duration S`), phase 3 (every serial verified with the codec). Prints
//!   serials/s, percentiles, statuses, verification failures and end-to-end / raw.
//! * `raw`: the HSM alone, the server's session pool signing flat out.
//! * `keys`: generate (in parallel) and cache RSA-4096 device keys; never timed.
//! * `request-id`: the request-id rate, closed loop.
//! * `conns`: server RSS with N open keep-alive connections.
//! * `pg-proxy`: a TCP proxy to Postgres that `run --outage-at` cuts and restores.
//!
//! Files: `stats` (histograms, counts, summary), `schedule` (open-loop arrivals), `drive`
//! (closed and open loop), `client` (the device's HTTP calls), `keys` (device key cache),
//! `device` (serial-request and stream), `verify` (phase 3), `raw` (HSM alone), `conns`
//! (connection memory), `factory` (the `run` phases), `cpu` (where the CPU went during
//! phase 2, from /proc), `proxy` (the Postgres proxy), `outage` (cutting it during a run and
//! reading the answers around the cut).

#![forbid(unsafe_code)]

mod client;
mod conns;
mod cpu;
mod device;
mod drive;
mod factory;
mod keys;
mod outage;
mod proxy;
mod raw;
mod schedule;
mod stats;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::stats::Outcome;

/// Command-line arguments of the load generator.
#[derive(Debug, Parser)]
#[command(name = "serialmint-loadtest", version, about)]
struct Cli {
    /// Print a machine-readable JSON summary on stdout instead of the text report.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bar (it is drawn on stderr only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the device service is and how to authenticate.
#[derive(Debug, Clone, ClapArgs)]
struct Target {
    /// Base URL of the device service (snapd's `device-service.url`).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/")]
    url: String,
    /// The `api-key` header value (snapd's `device-service.headers`).
    #[arg(long, env = "SERIALMINT_LOADTEST_API_KEY", default_value = "")]
    api_key: String,
    /// Per-request timeout in seconds (snapd uses 30).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// How the raw HSM phase runs (same configuration as the server: SERIALMINT_* and
/// SOFTHSM2_CONF, or `--config`).
#[derive(Debug, Clone, ClapArgs)]
struct RawArgs {
    /// The server's configuration file, for the HSM settings (env overrides it).
    #[arg(long = "hsm-config", env = "SERIALMINT_CONFIG")]
    config: Option<PathBuf>,
    /// Pooled sessions (default: the server's hsm.sessions).
    #[arg(long)]
    sessions: Option<usize>,
    /// Seconds of flat-out signing.
    #[arg(long, default_value_t = 5.0)]
    raw_seconds: f64,
    /// DigestInfos per sign call (the server's batch size).
    #[arg(long, default_value_t = 8)]
    raw_batch: usize,
    /// Single signs, one at a time, for the idle single-sign latency.
    #[arg(long, default_value_t = 50)]
    singles: usize,
    /// Key to sign with (default: the first key on the token); key ids may start with `-`.
    #[arg(long, allow_hyphen_values = true)]
    sign_key: Option<String>,
    /// When the token holds no key, generate one with this name (untimed).
    #[arg(long)]
    generate_key: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The factory line: [raw], request-ids + signed serial-requests, timed posts, verification.
    Run(Box<factory::RunArgs>),
    /// The HSM alone: pooled sessions signing pre-hashed digests flat out.
    Raw {
        #[command(flatten)]
        raw: RawArgs,
    },
    /// Generate and cache RSA-4096 device keys (PKCS#8 files).
    Keys {
        /// Directory of the key cache.
        #[arg(long, default_value = "target/loadtest-keys")]
        key_cache: PathBuf,
        /// How many keys.
        #[arg(long, default_value_t = 64)]
        count: usize,
    },
    /// Request-id rate: N `POST request-id` with C in flight.
    RequestId {
        #[command(flatten)]
        target: Target,
        /// Requests.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// A serial rate measured in the same run, to print the request-id/serial ratio.
        #[arg(long)]
        serial_rate: Option<f64>,
    },
    /// A TCP proxy in front of Postgres that `run --outage-at` cuts (SIGUSR1) and restores
    /// (SIGUSR2): the server reaches Postgres through it.
    PgProxy {
        /// Where the server connects.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Postgres.
        #[arg(long, default_value = "127.0.0.1:5432")]
        upstream: std::net::SocketAddr,
    },
    /// Server memory with N open keep-alive connections (reads /proc/PID/status).
    Conns {
        #[command(flatten)]
        target: Target,
        /// Connections to hold open.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// The server's process id.
        #[arg(long)]
        pid: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("serialmint-loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serialmint-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr (hidden with `--json`/`--no-progress` or without a terminal).
pub(crate) fn progress(cli: &Cli, len: u64, what: &str) -> ProgressBar {
    if cli.json || cli.no_progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:24} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("static template"),
    );
    pb.set_message(what.to_string());
    pb
}

fn emit<T: Serialize>(cli: &Cli, value: &T, text: impl FnOnce() -> String) {
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("summaries serialise")
        );
    } else {
        print!("{}", text());
    }
}

fn client(t: &Target) -> Result<client::Client, String> {
    client::Client::new(&t.url, &t.api_key, Duration::from_secs_f64(t.timeout))
}

async fn execute(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        Command::Run(args) => {
            let report = factory::run(cli, args).await?;
            emit(cli, &report, || report.render());
            report.check()?;
        }
        Command::Raw { raw } => {
            let (_, r) = measure_raw(cli, raw).await?;
            emit(cli, &r, || r.render());
            if r.errors > 0 {
                return Err(format!("{} sign calls failed", r.errors));
            }
        }
        Command::Keys { key_cache, count } => {
            let pb = progress(cli, *count as u64, "device keys");
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let dir = key_cache.clone();
            let count = *count;
            let pb2 = pb.clone();
            let keys = tokio::task::spawn_blocking(move || {
                keys::load_or_generate(&dir, count, threads, &pb2)
            })
            .await
            .map_err(|e| e.to_string())??;
            pb.finish_and_clear();
            #[derive(Serialize)]
            struct KeysReport {
                keys: usize,
                cache: PathBuf,
            }
            let r = KeysReport {
                keys: keys.len(),
                cache: key_cache.clone(),
            };
            emit(cli, &r, || {
                format!("{} device keys in {}\n", r.keys, r.cache.display())
            });
        }
        Command::RequestId {
            target,
            count,
            concurrency,
            serial_rate,
        } => {
            let c = client(target)?;
            let pb = progress(cli, *count as u64, "request-id");
            let d = drive::closed_loop(*count, *concurrency, &pb, move |_| {
                let c = c.clone();
                async move {
                    match c.request_id_raw().await {
                        Ok(a) => (a.outcome(), None),
                        Err(_) => (Outcome::Transport, None),
                    }
                }
            })
            .await;
            pb.finish_and_clear();
            let summary = d.recorder.summary(d.elapsed);
            #[derive(Serialize)]
            struct RequestIdReport {
                request_id: stats::Summary,
                serial_rate: Option<f64>,
                ratio_to_serial_rate: Option<f64>,
            }
            let ratio = serial_rate
                .filter(|r| *r > 0.0)
                .map(|r| summary.good_per_s / r);
            let r = RequestIdReport {
                request_id: summary,
                serial_rate: *serial_rate,
                ratio_to_serial_rate: ratio,
            };
            emit(cli, &r, || {
                let mut s = r
                    .request_id
                    .render(&format!("request-id, closed loop, {concurrency} in flight"));
                if let Some(x) = ratio {
                    s.push_str(&format!(
                        "  request-id rate / serial rate: {x:.1}x (target >= 30x)\n"
                    ));
                }
                s
            });
            if r.request_id.good == 0 {
                return Err("no request-id was issued".into());
            }
        }
        Command::PgProxy { listen, upstream } => proxy::run(*listen, *upstream).await?,
        Command::Conns { target, count, pid } => {
            let uri: hyper::Uri = client::Client::new(&target.url, &target.api_key, Duration::ZERO)
                .map(|_| target.url.parse().expect("checked by Client::new"))?;
            let addr = uri
                .authority()
                .ok_or("the URL has no host:port")?
                .to_string();
            let path = format!("{}request-id", ensure_slash(uri.path()));
            let pb = progress(cli, *count as u64, "connections");
            let r = conns::run(&addr, &path, &target.api_key, *count, *pid, &pb).await?;
            pb.finish_and_clear();
            emit(cli, &r, || r.render());
        }
    }
    Ok(())
}

fn ensure_slash(p: &str) -> String {
    if p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

/// Opens the HSM like the server does and measures the raw sign rate.
async fn measure_raw(
    cli: &Cli,
    a: &RawArgs,
) -> Result<(serialmint::hsm::Hsm, raw::RawReport), String> {
    let (hsm, sessions) = raw::open(a.config.as_deref(), a.sessions).await?;
    let key = raw::pick_key(&hsm, a.sign_key.as_deref(), a.generate_key.as_deref()).await?;
    let pb = progress(cli, 0, "raw HSM signing");
    let r = raw::run(
        &hsm,
        &key,
        sessions,
        a.raw_batch.max(1),
        a.raw_seconds,
        a.singles,
        &pb,
    )
    .await;
    pb.finish_and_clear();
    Ok((hsm, r?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_key_id_may_start_with_a_hyphen() {
        // A SHA3-384 key id is URL-safe base64: one in 64 starts with `-` (a bench run
        // stopped on "unexpected argument '-V' found" before this was allowed). `run`
        // flattens the same RawArgs.
        let id = "-VmmS3r8rXeGDQpSb8XzkDTtDzHfs7p9TNzNgRjc4Xy6v2b8ReEDZqWLuC8hy0sx";
        let cli = Cli::try_parse_from(["serialmint-loadtest", "raw", "--sign-key", id]).unwrap();
        match cli.command {
            Command::Raw { raw } => assert_eq!(raw.sign_key.as_deref(), Some(id)),
            other => panic!("parsed as {other:?}"),
        }
    }
}
