//! Raw mode: the HSM alone, as the server uses it. The project's [`Hsm`] pool is opened with
//! the server's own configuration (`SERIALMINT_PKCS11_MODULE`, `SERIALMINT_TOKEN_LABEL`,
//! `SERIALMINT_TOKEN_PIN`, `SERIALMINT_HSM_SESSIONS`, `SOFTHSM2_CONF`, or the config file),
//! and one task per pooled session signs pre-hashed SHA-512 DigestInfos back to back for a
//! bounded time. Every signature is verified in software inside `Hsm::sign`, as on the
//! server's path. The result is the physical ceiling every end-to-end figure is divided by.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use serialmint::hsm::{Hsm, HsmConfig};

use crate::stats::{Outcome, Recorder, Summary};

/// What raw mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    /// Pooled sessions used (one signing task each).
    pub sessions: usize,
    /// DigestInfos per `Hsm::sign` call.
    pub batch: usize,
    /// The key signed with.
    pub key_id: String,
    /// Signatures per second over the whole window.
    pub signs_per_s: f64,
    /// Per-signature latency of single signs (batch of one) measured before the flat-out run:
    /// the "single-sign p50" the open-loop p99 is compared with.
    pub single_sign: Summary,
    /// Per-call latency during the flat-out run.
    pub calls: Summary,
    /// Failed sign calls.
    pub errors: u64,
    /// Where the CPU went during the flat-out window, per signature: `load_generator_ms` is
    /// this process, i.e. SoftHSM's signing plus the pool and the software check.
    pub cpu: crate::cpu::CpuSplit,
}

impl RawReport {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        format!(
            "raw HSM: {} sessions, batch {}: {:.1} signatures/s ({} errors), {:.2} ms CPU per \
             signature (machine idle {:.1} %)\n  \
             single sign (idle): p50 {:.2} ms  p99 {:.2} ms\n",
            self.sessions,
            self.batch,
            self.signs_per_s,
            self.errors,
            self.cpu.load_generator_ms,
            self.cpu.idle_share * 100.0,
            self.single_sign.latency_good.p50_ms,
            self.single_sign.latency_good.p99_ms,
        )
    }
}

/// Opens the HSM with the server's configuration; `sessions` overrides the pool size.
pub async fn open(
    config_file: Option<&std::path::Path>,
    sessions: Option<usize>,
) -> Result<(Hsm, usize), String> {
    let config = serialmint::config::Config::load(config_file, &[]).map_err(|e| e.to_string())?;
    let mut hc = HsmConfig::from(&config);
    if let Some(n) = sessions {
        hc.sessions = n;
    }
    let n = hc.sessions;
    let hsm = Hsm::open(hc).await.map_err(|e| e.to_string())?;
    Ok((hsm, n))
}

/// Picks the signing key: `key_id` if given, else the first key on the token, else (with
/// `generate`) a new RSA-4096 key of that name.
pub async fn pick_key(
    hsm: &Hsm,
    key_id: Option<&str>,
    generate: Option<&str>,
) -> Result<String, String> {
    if let Some(k) = key_id {
        return match hsm.find_key(k).await.map_err(|e| e.to_string())? {
            Some(info) => Ok(info.key_id),
            None => Err(format!("key {k} is not on the token")),
        };
    }
    let keys = hsm.list_keys().await.map_err(|e| e.to_string())?;
    if let Some(k) = keys.into_iter().next() {
        return Ok(k.key_id);
    }
    match generate {
        Some(name) => Ok(hsm
            .generate_key(name)
            .await
            .map_err(|e| e.to_string())?
            .key_id),
        None => Err(
            "no signing key on the token (serialmint create key NAME, or --generate-key NAME)"
                .into(),
        ),
    }
}

/// Distinct DigestInfos to sign (so nothing can be cached anywhere).
fn digest_infos(n: usize) -> Vec<[u8; 83]> {
    (0..n)
        .map(|i| {
            serialmint::assertion::signing_input(format!("raw {i}").as_bytes(), 1)
                .digest_info()
                .to_owned()
        })
        .collect()
}

/// Measures: `singles` single signs one after another, then `sessions` tasks signing
/// batches of `batch` flat out for `seconds`.
pub async fn run(
    hsm: &Hsm,
    key_id: &str,
    sessions: usize,
    batch: usize,
    seconds: f64,
    singles: usize,
    progress: &ProgressBar,
) -> Result<RawReport, String> {
    let dis = Arc::new(digest_infos(1024));
    // Warm up: the key handle lookup and every pooled session.
    for di in dis.iter().take(sessions.max(1)) {
        hsm.sign(key_id, std::slice::from_ref(di))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut single = Recorder::new();
    let t = Instant::now();
    for di in dis.iter().take(singles) {
        let s = Instant::now();
        let outcome = match hsm.sign(key_id, std::slice::from_ref(di)).await {
            Ok(_) => Outcome::Status(200),
            Err(_) => Outcome::Transport,
        };
        single.record(outcome, s.elapsed());
    }
    let single = single.summary(t.elapsed());

    let window = Duration::from_secs_f64(seconds);
    progress.set_length((seconds * 10.0) as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu_before = crate::cpu::Snapshot::take(None);
    let mut tasks = Vec::new();
    for w in 0..sessions.max(1) {
        let (hsm, key, dis, stop, signed) = (
            hsm.clone(),
            key_id.to_string(),
            dis.clone(),
            stop.clone(),
            signed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::new();
            let mut errors = 0u64;
            let mut i = w * 97;
            while !stop.load(Ordering::Relaxed) {
                let chunk: Vec<[u8; 83]> = (0..batch).map(|k| dis[(i + k) % dis.len()]).collect();
                i += batch;
                let s = Instant::now();
                match hsm.sign(&key, &chunk).await {
                    Ok(sigs) => {
                        signed.fetch_add(sigs.len() as u64, Ordering::Relaxed);
                        rec.record(Outcome::Status(200), s.elapsed());
                    }
                    Err(_) => {
                        errors += 1;
                        rec.record(Outcome::Transport, s.elapsed());
                    }
                }
            }
            (rec, errors)
        }));
    }
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress.set_position((start.elapsed().as_secs_f64() * 10.0) as u64);
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = Recorder::new();
    let mut errors = 0;
    for t in tasks {
        let (rec, e) = t.await.map_err(|e| e.to_string())?;
        calls.merge(&rec);
        errors += e;
    }
    // Signatures finished after the window closed still count, over the real elapsed time.
    let elapsed = start.elapsed();
    let n = signed.load(Ordering::Relaxed);
    let cpu = cpu_before.split(&crate::cpu::Snapshot::take(None), n);
    Ok(RawReport {
        sessions,
        batch,
        key_id: key_id.to_string(),
        signs_per_s: n as f64 / elapsed.as_secs_f64(),
        single_sign: single,
        calls: calls.summary(elapsed),
        errors,
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_infos_are_distinct_and_well_formed() {
        let d = digest_infos(16);
        for (i, a) in d.iter().enumerate() {
            assert_eq!(
                &a[..19],
                &serialmint::assertion::openpgp::SHA512_DIGEST_INFO_PREFIX
            );
            for b in &d[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
