//! The factory line (`run`): raw HSM ceiling first when asked, then the three phases.
//!
//! 1. **Prepare** (untimed): one request-id per simulated device, then every serial-request
//!    built and signed with a cached device key on all cores, and framed with the model.
//! 2. **Post** (timed): closed loop (`--devices N --concurrency C`) or open loop (`--rate R
//!    --duration S`, latency from the scheduled time).
//! 3. **Verify** (untimed): every serial checked with the codec against the trusted chain.
//!
//! The report divides end-to-end serials/s by the raw sign rate measured in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args as ClapArgs;
use serde::Serialize;
use serialmint::assertion::{Model, decode};

use crate::client::Client;
use crate::device::{self, RequestFields};
use crate::drive::{self, Driven};
use crate::keys::{self, DeviceKey};
use crate::raw::RawReport;
use crate::schedule::Schedule;
use crate::stats::{Outcome, Summary};
use crate::verify::{Expected, Verifier, VerifyReport};
use crate::{Cli, RawArgs, Target, progress};

/// Arguments of `run`.
#[derive(Debug, Clone, ClapArgs)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The model assertion the devices send (signed by the brand).
    #[arg(long)]
    model: PathBuf,
    /// Trusted roots (account and account-key assertions) for phase 3; without it the serial
    /// is verified against the account-key sent in the answer.
    #[arg(long)]
    trusted: Option<PathBuf>,
    /// Directory of the device key cache (PKCS#8 files).
    #[arg(long, default_value = "target/loadtest-keys")]
    key_cache: PathBuf,
    /// Distinct device keys (reused round-robin when there are more devices).
    #[arg(long, default_value_t = 64)]
    keys: usize,
    /// Closed loop: devices (requests) in total.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Closed loop: requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: arrivals per second (switches to open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: seconds of arrivals.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// A capacity (serials/s) measured before, to report goodput / capacity (open loop).
    #[arg(long)]
    capacity: Option<f64>,
    /// Propose a serial number in each serial-request (`serial` header) instead of letting
    /// the server generate one.
    #[arg(long)]
    propose_serials: bool,
    /// Measure the raw HSM rate first (same process, same token) and report the ratio.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    raw_args: RawArgs,
    /// Without `--raw`: still read the signing keys' public halves from the token (server's
    /// HSM settings) so phase 3 can verify serials whose answer carries no account-key.
    #[arg(long)]
    token_keys: bool,
    /// Skip phase 3.
    #[arg(long)]
    no_verify: bool,
    /// The server's pid on this machine: report its CPU per serial during phase 2 (with
    /// Postgres', the load generator's and the rest of the machine's).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Open loop: cut the `pg-proxy` (`--outage-proxy`) this many seconds into phase 2, and
    /// report how the server answered while Postgres was away and how soon after its return
    /// serials flowed again.
    #[arg(long, requires = "outage_proxy", requires = "rate")]
    outage_at: Option<f64>,
    /// Open loop: seconds the proxy stays cut.
    #[arg(long, default_value_t = 4.0)]
    outage_for: f64,
    /// The pid of the `serialmint-loadtest pg-proxy` the server reaches Postgres through.
    #[arg(long)]
    outage_proxy: Option<u32>,
    /// Open loop: write every request of phase 2 to this CSV file (`due_ms,start_lag_ms,
    /// latency_ms,status`: when it was due from the phase's start, how late its task began,
    /// its latency from the due time, the HTTP status or 0 for no answer), to see whether
    /// slow answers cluster in time and how much of them is the client's own lag.
    #[arg(long, requires = "rate")]
    timeline: Option<PathBuf>,
}

/// The result of `run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Closed loop: requests in flight.
    pub concurrency: Option<usize>,
    /// Open loop: offered arrivals per second.
    pub offered_rate: Option<f64>,
    /// Raw HSM measurement from the same run, when asked.
    pub raw: Option<RawReport>,
    /// Phase 2.
    pub serial: Summary,
    /// Open loop: the sender's largest lag behind the schedule, ms.
    pub max_send_lag_ms: f64,
    /// Where the CPU went during phase 2, per good serial.
    pub cpu: crate::cpu::CpuSplit,
    /// Phase 3.
    pub verification: Option<VerifyReport>,
    /// serials/s / raw signatures/s.
    pub ratio_to_raw: Option<f64>,
    /// Open loop: serials/s / `--capacity`.
    pub goodput_to_capacity: Option<f64>,
    /// p99 of accepted requests / raw single-sign p50.
    pub p99_over_single_sign_p50: Option<f64>,
    /// With `--outage-at`: how the server answered while Postgres was away, and after.
    pub outage: Option<crate::outage::OutageReport>,
}

impl RunReport {
    /// Human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.raw {
            s.push_str(&r.render());
        }
        let title = match self.mode {
            "open" => format!(
                "serials, open loop at {:.1}/s (max sender lag {:.1} ms)",
                self.offered_rate.unwrap_or_default(),
                self.max_send_lag_ms
            ),
            _ => format!(
                "serials, closed loop, {} in flight",
                self.concurrency.unwrap_or_default()
            ),
        };
        s.push_str(&self.serial.render(&title));
        s.push_str(&self.cpu.render());
        if let Some(v) = &self.verification {
            s.push_str(&v.render());
        }
        if let Some(x) = self.ratio_to_raw {
            s.push_str(&format!(
                "end-to-end / raw: {:.1} / {:.1} = {x:.3} (target >= 0.90)\n",
                self.serial.good_per_s,
                self.raw.as_ref().map_or(0.0, |r| r.signs_per_s)
            ));
        }
        if let Some(x) = self.goodput_to_capacity {
            s.push_str(&format!(
                "goodput / capacity: {x:.3}  503 share {:.1} %\n",
                self.serial.unavailable_share * 100.0
            ));
        }
        if let Some(o) = &self.outage {
            s.push_str(&o.render());
        }
        if let Some(x) = self.p99_over_single_sign_p50 {
            s.push_str(&format!("p99 (accepted) / single-sign p50: {x:.1}x\n"));
        }
        s
    }

    /// Fails the command when a serial did not verify or none was issued.
    pub fn check(&self) -> Result<(), String> {
        if let Some(v) = &self.verification
            && v.failed > 0
        {
            return Err(format!("{} serials failed verification", v.failed));
        }
        if self.serial.good == 0 {
            return Err("no serial was issued".into());
        }
        Ok(())
    }
}

/// One prepared device: its key and the stream it posts.
struct Prepared {
    key: Arc<DeviceKey>,
    stream: Bytes,
}

/// Runs `run`.
pub async fn run(cli: &Cli, a: &RunArgs) -> Result<RunReport, String> {
    let model_text = std::fs::read(&a.model).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let model =
        Model::try_from(decode(&model_text).map_err(|e| format!("{}: {e}", a.model.display()))?)
            .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let schedule = a
        .rate
        .map(|r| {
            let d = Duration::try_from_secs_f64(a.duration)
                .map_err(|_| crate::schedule::ScheduleError::BadDuration)?;
            Schedule::new(r, d)
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    let trusted = a
        .trusted
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let mut verifier = Verifier::new(trusted.as_deref())?;
    let client = Client::new(
        &a.target.url,
        &a.target.api_key,
        Duration::from_secs_f64(a.target.timeout),
    )?;

    // Raw ceiling first, while the server is idle.
    let raw = if a.raw {
        let (hsm, report) = crate::measure_raw(cli, &a.raw_args).await?;
        for k in hsm.list_keys().await.map_err(|e| e.to_string())? {
            verifier.add_known_key(k.public);
        }
        Some(report)
    } else {
        if a.token_keys {
            let (hsm, _) = crate::raw::open(a.raw_args.config.as_deref(), Some(1)).await?;
            for k in hsm.list_keys().await.map_err(|e| e.to_string())? {
                verifier.add_known_key(k.public);
            }
        }
        None
    };

    // Device keys (cached; generation is never timed).
    let nkeys = a.keys.max(1);
    let pb = progress(cli, nkeys as u64, "device keys");
    let (dir, pb2) = (a.key_cache.clone(), pb.clone());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let device_keys =
        tokio::task::spawn_blocking(move || keys::load_or_generate(&dir, nkeys, threads, &pb2))
            .await
            .map_err(|e| e.to_string())??;
    pb.finish_and_clear();

    let n = schedule.map_or(a.devices, |s| s.count() as usize);

    // Phase 1: request-ids, then serial-requests signed on every core.
    let prepared = prepare(cli, a, &client, &model, &model_text, &device_keys, n).await?;
    let streams: Arc<Vec<Bytes>> = Arc::new(prepared.iter().map(|p| p.stream.clone()).collect());

    // Phase 2 (timed).
    let pb = progress(cli, n as u64, "POST serial");
    let post = move |i: usize| {
        let (c, streams) = (client.clone(), streams.clone());
        async move {
            match c.serial(streams[i].clone()).await {
                Ok(ans) => {
                    let keep = ans.status == 200 || ans.status == 201;
                    (ans.outcome(), keep.then_some(ans.body))
                }
                Err(_) => (Outcome::Transport, None),
            }
        }
    };
    let before = crate::cpu::Snapshot::take(a.server_pid);
    // The outage, timed from about when phase 2 starts (open loop: 20 ms after this);
    // re-based on the phase's own start below.
    let outage = match (a.outage_at, a.outage_proxy) {
        (Some(at), Some(pid)) => {
            let secs = |v: f64| Duration::try_from_secs_f64(v).map_err(|e| e.to_string());
            let (at, length) = (secs(at)?, secs(a.outage_for)?);
            let origin = tokio::time::Instant::now();
            Some((
                origin,
                tokio::spawn(crate::outage::play(pid, origin, at, length)),
            ))
        }
        _ => None,
    };
    let driven: Driven = match schedule {
        Some(s) => drive::open_loop(s, &pb, post).await,
        None => drive::closed_loop(n, a.concurrency, &pb, post).await,
    };
    let after = crate::cpu::Snapshot::take(a.server_pid);
    if let Some(path) = &a.timeline {
        crate::drive::write_timeline(path, &driven.timeline)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let outage = match outage {
        Some((origin, task)) => {
            let w = task.await.map_err(|e| e.to_string())??;
            // From the origin to the phase's start.
            let shift = driven.started.saturating_duration_since(origin);
            let w = crate::outage::Window {
                cut: w.cut.saturating_sub(shift),
                restored: w.restored.saturating_sub(shift),
            };
            Some(crate::outage::report(&driven.timeline, w))
        }
        None => None,
    };
    pb.finish_and_clear();
    let serial = driven.recorder.summary(driven.elapsed);
    let cpu = before.split(&after, serial.good);

    // Phase 3.
    let verification = if a.no_verify {
        None
    } else {
        let pb = progress(cli, serial.good, "verifying serials");
        for (i, body) in driven.bodies.iter().enumerate() {
            if let Some(body) = body {
                verifier.check(
                    body,
                    &Expected {
                        model: &model,
                        device_key_id: prepared[i].key.id(),
                    },
                );
                pb.inc(1);
            }
        }
        pb.finish_and_clear();
        Some(verifier.report())
    };

    let ratio_to_raw = raw
        .as_ref()
        .filter(|r| r.signs_per_s > 0.0)
        .map(|r| serial.good_per_s / r.signs_per_s);
    let p99_over = raw
        .as_ref()
        .filter(|r| r.single_sign.latency_good.p50_ms > 0.0 && serial.latency_good.count > 0)
        .map(|r| serial.latency_good.p99_ms / r.single_sign.latency_good.p50_ms);
    Ok(RunReport {
        mode: if schedule.is_some() { "open" } else { "closed" },
        concurrency: schedule.is_none().then_some(a.concurrency),
        offered_rate: schedule.map(|s| s.rate()),
        raw,
        goodput_to_capacity: a
            .capacity
            .filter(|c| *c > 0.0 && schedule.is_some())
            .map(|c| serial.good_per_s / c),
        serial,
        max_send_lag_ms: driven.max_send_lag.as_secs_f64() * 1000.0,
        cpu,
        verification,
        ratio_to_raw,
        p99_over_single_sign_p50: p99_over,
        outage,
    })
}

/// Phase 1: `n` request-ids (64 in flight), then `n` signed streams on all cores.
async fn prepare(
    cli: &Cli,
    a: &RunArgs,
    client: &Client,
    model: &Model,
    model_text: &[u8],
    device_keys: &[Arc<DeviceKey>],
    n: usize,
) -> Result<Vec<Prepared>, String> {
    let pb = progress(cli, n as u64, "request-ids");
    let c = client.clone();
    let ids = drive::closed_loop(n, 64, &pb, move |_| {
        let c = c.clone();
        async move {
            match c.request_id_raw().await {
                Ok(ans) => {
                    let keep = ans.status == 200;
                    (ans.outcome(), keep.then_some(ans.body))
                }
                Err(_) => (Outcome::Transport, None),
            }
        }
    })
    .await;
    pb.finish_and_clear();
    let ids: Vec<String> = ids
        .bodies
        .into_iter()
        .map(|b| {
            b.ok_or_else(|| "a request-id call failed".to_string())
                .and_then(|b| crate::client::parse_request_id(&b))
        })
        .collect::<Result<_, _>>()?;

    let created = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs(),
    )
    .map_err(|e| e.to_string())?;
    let pb = progress(cli, n as u64, "signing serial-requests");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let ids = Arc::new(ids);
    let keys: Arc<Vec<Arc<DeviceKey>>> = Arc::new(device_keys.to_vec());
    let brand = model.brand_id().to_string();
    let model_name = model.model().to_string();
    let model_text: Arc<[u8]> = model_text.into();
    let propose = a.propose_serials;
    let run_tag = format!("{created:x}");
    let mut handles = Vec::new();
    for t in 0..threads {
        let (ids, keys, brand, model_name, model_text, pb, run_tag) = (
            ids.clone(),
            keys.clone(),
            brand.clone(),
            model_name.clone(),
            model_text.clone(),
            pb.clone(),
            run_tag.clone(),
        );
        handles.push(tokio::task::spawn_blocking(
            move || -> Result<Vec<(usize, Prepared)>, String> {
                let mut out = Vec::new();
                for i in (t..ids.len()).step_by(threads) {
                    let key = keys[i % keys.len()].clone();
                    let serial = format!("LT-{run_tag}-{i:06}");
                    let req = device::serial_request(
                        &key,
                        RequestFields {
                            brand_id: &brand,
                            model: &model_name,
                            request_id: &ids[i],
                            serial: propose.then_some(serial.as_str()),
                            body: "",
                        },
                        created,
                    )?;
                    let stream = Bytes::from(device::stream(&req, &model_text));
                    out.push((i, Prepared { key, stream }));
                    pb.inc(1);
                }
                Ok(out)
            },
        ));
    }
    let mut all: Vec<Option<Prepared>> = (0..n).map(|_| None).collect();
    for h in handles {
        for (i, p) in h.await.map_err(|e| e.to_string())?? {
            all[i] = Some(p);
        }
    }
    pb.finish_and_clear();
    Ok(all
        .into_iter()
        .map(|p| p.expect("every index prepared"))
        .collect())
}
