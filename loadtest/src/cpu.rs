//! Where the CPU went during a timed phase, from `/proc` (Linux): this load generator, the
//! server (`--server-pid`), every `postgres` process, and the whole machine (`/proc/stat`).
//!
//! On a machine where the HSM is SoftHSM, every CPU-millisecond the server's own work, the
//! database and the load generator take is a millisecond the signing threads do not get, so
//! the end-to-end / raw ratio is bounded by (sign CPU) / (all CPU per serial). This module
//! makes that split a measurement instead of a guess. Reading `/proc` costs a few
//! milliseconds per snapshot, taken only before and after the phase.
//!
//! The server's share is split once more, per thread (`/proc/PID/task/*`): its `hsm-call`
//! threads make every PKCS#11 call, so their time is the module's client side (for
//! p11-kit-client: its round trips to `p11-kit server`), the rest is serialmint's own work.
//! Per-thread times come from `schedstat` (nanoseconds: 100 Hz ticks are too coarse per
//! thread), context switches from `status`. A thread that ended during the phase is missing
//! from the split (its time stays in the process total); call threads end only after 30 s
//! without work, so during a phase under load none does.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// Clock ticks per second of `/proc` CPU times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// Name of the server's threads that make its PKCS#11 calls (serialmint's `hsm/call.rs`).
const HSM_CALL_THREAD: &str = "hsm-call";

/// CPU times in ticks at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    own: u64,
    server: Option<u64>,
    /// The server's threads by tid (empty when there is no server pid or no `/proc`).
    server_threads: HashMap<u32, ThreadTimes>,
    postgres: u64,
    busy: u64,
    total: u64,
}

/// One thread's on-CPU time and context switches so far.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ThreadTimes {
    hsm_call: bool,
    run_ns: u64,
    switches: u64,
}

/// The server's CPU and context switches per serial, its HSM call threads apart from the
/// rest (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerThreads {
    /// On-CPU milliseconds of the `hsm-call` threads (the PKCS#11 module's client side).
    pub hsm_call_ms: f64,
    /// On-CPU milliseconds of every other thread (HTTP, checks, signing log, signer).
    pub rest_ms: f64,
    /// Context switches (voluntary and not) of the `hsm-call` threads.
    pub hsm_call_switches: f64,
    /// Context switches of every other thread.
    pub rest_switches: f64,
}

/// CPU per serial over a phase, in milliseconds (`None` when not measurable).
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    /// Serials (good answers) the split is divided by.
    pub serials: u64,
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// This load generator.
    pub load_generator_ms: f64,
    /// The server process (its HSM signing included when the token is in-process SoftHSM).
    pub server_ms: Option<f64>,
    /// The server's time and switches by thread group (`None` without a server pid).
    pub server_threads: Option<ServerThreads>,
    /// All `postgres` processes on the machine.
    pub postgres_ms: f64,
    /// Everything else that ran on the machine meanwhile (other users' work included).
    pub other_ms: f64,
    /// Share of the machine's CPU time that was idle during the phase.
    pub idle_share: f64,
}

impl Snapshot {
    /// Takes a snapshot; `server` is the server's pid when known.
    pub fn take(server: Option<u32>) -> Snapshot {
        let (busy, total) = machine();
        let own = process_ticks(Path::new("/proc/self/stat")).unwrap_or(0);
        Snapshot {
            at: Instant::now(),
            own,
            // This very process (the server in-process): the same reading, not a second one a
            // tick later.
            server: server.and_then(|p| {
                if p == std::process::id() {
                    Some(own)
                } else {
                    process_ticks(&Path::new("/proc").join(p.to_string()).join("stat"))
                }
            }),
            server_threads: server
                .map(|p| threads(&Path::new("/proc").join(p.to_string()).join("task")))
                .unwrap_or_default(),
            postgres: postgres_ticks(),
            busy,
            total,
        }
    }

    /// The split from `self` to `later`, per good serial.
    pub fn split(&self, later: &Snapshot, serials: u64) -> CpuSplit {
        let per = |ticks: u64| ticks as f64 * 1000.0 / TICKS_PER_S / serials.max(1) as f64;
        let own = later.own.saturating_sub(self.own);
        let server = match (self.server, later.server) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let postgres = later.postgres.saturating_sub(self.postgres);
        let busy = later.busy.saturating_sub(self.busy);
        let total = later.total.saturating_sub(self.total);
        let known = own + server.unwrap_or(0) + postgres;
        CpuSplit {
            serials,
            seconds: later.at.duration_since(self.at).as_secs_f64(),
            load_generator_ms: per(own),
            server_ms: server.map(per),
            server_threads: server
                .is_some()
                .then(|| thread_split(&self.server_threads, &later.server_threads, serials)),
            postgres_ms: per(postgres),
            other_ms: per(busy.saturating_sub(known)),
            idle_share: if total > 0 {
                1.0 - busy as f64 / total as f64
            } else {
                0.0
            },
        }
    }
}

impl CpuSplit {
    /// One line for the text report.
    pub fn render(&self) -> String {
        let server = self
            .server_ms
            .map_or_else(|| "? (no --server-pid)".to_string(), |s| format!("{s:.2}"));
        let threads = self.server_threads.map_or_else(String::new, |t| {
            format!(
                "  server by thread: HSM call threads {:.2} ms, {:.1} context switches; the rest {:.2} ms, {:.1} context switches\n",
                t.hsm_call_ms, t.hsm_call_switches, t.rest_ms, t.rest_switches
            )
        });
        format!(
            "cpu per serial (ms): server {server}, postgres {:.2}, load generator {:.2}, other {:.2}; machine idle {:.1} %\n{threads}",
            self.postgres_ms,
            self.load_generator_ms,
            self.other_ms,
            self.idle_share * 100.0
        )
    }
}

/// Per thread group, what ran from `before` to `after`, per serial: a thread new in `after`
/// counts whole (it started during the phase).
fn thread_split(
    before: &HashMap<u32, ThreadTimes>,
    after: &HashMap<u32, ThreadTimes>,
    serials: u64,
) -> ServerThreads {
    // (run ns, switches) of the hsm-call threads and of the rest
    let (mut calls, mut rest) = ((0u64, 0u64), (0u64, 0u64));
    for (tid, t) in after {
        let (run, switches) = match before.get(tid) {
            Some(b) => (
                t.run_ns.saturating_sub(b.run_ns),
                t.switches.saturating_sub(b.switches),
            ),
            None => (t.run_ns, t.switches),
        };
        let group = if t.hsm_call { &mut calls } else { &mut rest };
        group.0 += run;
        group.1 += switches;
    }
    let n = serials.max(1) as f64;
    ServerThreads {
        hsm_call_ms: calls.0 as f64 / 1e6 / n,
        hsm_call_switches: calls.1 as f64 / n,
        rest_ms: rest.0 as f64 / 1e6 / n,
        rest_switches: rest.1 as f64 / n,
    }
}

/// Every thread of a process (`task_dir` = `/proc/PID/task`); threads that end while being
/// read are skipped.
fn threads(task_dir: &Path) -> HashMap<u32, ThreadTimes> {
    let Ok(dir) = std::fs::read_dir(task_dir) else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            // schedstat: on-CPU ns, wait ns, timeslices.
            let run_ns = std::fs::read_to_string(e.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let times = ThreadTimes {
                hsm_call: comm.trim() == HSM_CALL_THREAD,
                run_ns,
                switches,
            };
            Some((tid, times))
        })
        .collect()
}

/// utime + stime of one process (all its threads), in ticks.
fn process_ticks(stat: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // pid (comm) state ppid ... : fields 14 and 15 counted from 1, after the comm.
    let after = &text[text.rfind(')')? + 2..];
    let mut f = after.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Sum over every process named `postgres`.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|e| process_ticks(&e.path().join("stat")))
        .sum()
}

/// (busy, total) ticks of the whole machine from `/proc/stat`'s `cpu` line.
fn machine() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_and_machine_are_readable_and_split_divides_by_serials() {
        let a = Snapshot::take(Some(std::process::id()));
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = Snapshot::take(Some(std::process::id()));
        let s = a.split(&b, 10);
        assert_eq!(s.serials, 10);
        assert!(s.load_generator_ms > 0.0, "{s:?}");
        // The server pid given is this process: one reading serves both.
        assert_eq!(s.server_ms, Some(s.load_generator_ms));
        assert!((0.0..=1.0).contains(&s.idle_share), "{s:?}");
        // Another process (the test runner that started us) is read from its own /proc entry.
        let parent = std::os::unix::process::parent_id();
        let a = Snapshot::take(Some(parent));
        let s = a.split(&Snapshot::take(Some(parent)), 1);
        assert!(s.server_ms.is_some_and(|ms| ms >= 0.0), "{s:?}");
    }

    #[test]
    fn the_server_split_puts_hsm_call_threads_apart() {
        // This thread's own time on a CPU so far (what the split reads for it), in ns.
        let own_run_ns = || -> u64 {
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            text.split_whitespace().next().unwrap().parse().unwrap()
        };
        let me = Some(std::process::id());
        let a = Snapshot::take(me);
        // A thread born during the phase counts whole; this one is named as the server's. It
        // burns 100 ms of CPU (not of wall time: a busy machine gives it less per second),
        // says so and stays alive until the second snapshot is taken.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(HSM_CALL_THREAD.into())
            .spawn(move || {
                // One context switch for certain (a sleep always gives up the CPU).
                std::thread::sleep(std::time::Duration::from_millis(1));
                let start = own_run_ns();
                let mut x = 0u64;
                while own_run_ns() - start < 100_000_000 {
                    for _ in 0..10_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                }
                std::hint::black_box(x);
                done_tx.send(()).unwrap();
                let _ = exit_rx.recv();
            })
            .unwrap();
        done_rx.recv().unwrap();
        let b = Snapshot::take(me);
        exit_tx.send(()).unwrap();
        thread.join().unwrap();
        let t = a
            .split(&b, 2)
            .server_threads
            .expect("a server pid was given");
        // 100 ms of CPU over 2 serials: 50 ms each.
        assert!(t.hsm_call_ms > 20.0 && t.hsm_call_ms < 150.0, "{t:?}");
        assert!(t.hsm_call_switches >= 0.5, "{t:?}");
        // The test thread waited meanwhile: the rest stays well under the call thread's time.
        assert!(t.rest_ms < t.hsm_call_ms, "{t:?}");
        let text = a.split(&b, 2).render();
        assert!(text.contains("HSM call threads"), "{text}");
    }

    #[test]
    fn thread_split_takes_differences_and_new_threads_whole() {
        let t = |hsm_call, run_ns, switches| ThreadTimes {
            hsm_call,
            run_ns,
            switches,
        };
        let before = HashMap::from([(1, t(false, 1_000_000, 10)), (2, t(true, 5_000_000, 4))]);
        let after = HashMap::from([
            (1, t(false, 3_000_000, 14)),
            (2, t(true, 9_000_000, 10)),
            (3, t(true, 2_000_000, 2)),
        ]);
        let s = thread_split(&before, &after, 2);
        assert_eq!(
            s,
            ServerThreads {
                hsm_call_ms: 3.0,
                rest_ms: 1.0,
                hsm_call_switches: 4.0,
                rest_switches: 2.0,
            }
        );
    }

    #[test]
    fn a_missing_server_is_none_not_zero() {
        let a = Snapshot::take(Some(u32::MAX));
        let s = a.split(&Snapshot::take(Some(u32::MAX)), 1);
        assert_eq!(s.server_ms, None);
        assert_eq!(s.server_threads, None);
        assert!(s.render().contains("no --server-pid"));
    }
}
