//! `pkcs11-latency`: a PKCS#11 module that plays a slower HSM in front of a real one.
//!
//! It forwards every call to the module named by `PKCS11_LATENCY_BACKEND` (SoftHSM in tests
//! and benches) and adds latency to the calls that cost time on real hardware:
//!
//! - `C_Sign`: `PKCS11_LATENCY_SIGN_MS` milliseconds (a USB HSM like a SmartCard-HSM or a
//!   Nitrokey HSM 2 takes about 1000 for RSA-4096; a network HSM a few tens), with at most
//!   `PKCS11_LATENCY_PARALLEL` signatures in progress at once (a USB token does one at a time;
//!   a network HSM dozens); the wait for a slot is not counted in the latency;
//! - every other call that reaches the token (`C_OpenSession`, `C_Login`, `C_SignInit`,
//!   `C_FindObjectsInit`, `C_FindObjects`, `C_GetAttributeValue`): `PKCS11_LATENCY_CALL_MS`
//!   (a network round trip).
//!
//! Defaults: 0 ms, no limit. The limit is per token (slot): each slot of the backend plays
//! one HSM, so several SoftHSM tokens play several HSMs.
//!
//! `pkcs11_latency_stats` (a plain C function beside `C_GetFunctionList`) reports the
//! signatures made and the most ever in progress at once, so a test can check the limit
//! without measuring time.
//!
//! This crate is the one place of the workspace with `unsafe`: a PKCS#11 module is a C ABI
//! of raw pointers. Each forwarding function passes its arguments unchanged to the backend's
//! function of the same name, which owns their contract; the module's own state is safe Rust.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use cryptoki_sys::*;

/// The knobs, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The real module's path.
    pub backend: String,
    /// Added to each `C_Sign`.
    pub sign: Duration,
    /// Added to the other token calls.
    pub call: Duration,
    /// Signatures in progress at once (0: no limit).
    pub parallel: usize,
}

impl Settings {
    /// Reads `PKCS11_LATENCY_*` through `get`; an error names the bad variable.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let ms = |name: &str| -> Result<Duration, String> {
            match get(name) {
                None => Ok(Duration::ZERO),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| {
                        format!("{name} must be a whole number of milliseconds, not {v:?}")
                    }),
            }
        };
        let parallel = match get("PKCS11_LATENCY_PARALLEL") {
            None => 0,
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                format!("PKCS11_LATENCY_PARALLEL must be a whole number, not {v:?}")
            })?,
        };
        Ok(Settings {
            backend: get("PKCS11_LATENCY_BACKEND")
                .filter(|b| !b.is_empty())
                .ok_or("PKCS11_LATENCY_BACKEND (the real module's path) is not set")?,
            sign: ms("PKCS11_LATENCY_SIGN_MS")?,
            call: ms("PKCS11_LATENCY_CALL_MS")?,
            parallel,
        })
    }
}

/// At most `limit` holders at once (0: no limit); counts the most ever seen.
#[derive(Debug, Default)]
pub struct Slots {
    limit: usize,
    busy: Mutex<usize>,
    freed: Condvar,
    peak: AtomicU64,
    done: AtomicU64,
}

impl Slots {
    /// A limit of `limit` (0: none).
    pub fn new(limit: usize) -> Self {
        Slots {
            limit,
            ..Slots::default()
        }
    }

    /// Runs `f` in a slot.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            while self.limit > 0 && *busy >= self.limit {
                busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
            }
            *busy += 1;
            self.peak.fetch_max(*busy as u64, Ordering::Relaxed);
        }
        let out = f();
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.done.fetch_add(1, Ordering::Relaxed);
        self.freed.notify_one();
        out
    }

    /// (runs finished, most in progress at once).
    pub fn stats(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.peak.load(Ordering::Relaxed),
        )
    }
}

struct Module {
    settings: Settings,
    /// Kept loaded for the process' life: `backend` points into it.
    _lib: libloading::Library,
    backend: CK_FUNCTION_LIST,
    /// What callers get: the backend's list with our functions in place.
    ours: CK_FUNCTION_LIST,
    /// Each token's signing slots, by slot id.
    signing: Mutex<std::collections::HashMap<CK_SLOT_ID, std::sync::Arc<Slots>>>,
}

impl Module {
    /// The signing slots of the token `session` is on.
    fn slots_of(&self, session: CK_SESSION_HANDLE) -> Option<std::sync::Arc<Slots>> {
        let get_info = self.backend.C_GetSessionInfo?;
        let mut info = CK_SESSION_INFO::default();
        // SAFETY: a session handle the caller holds, and a valid out-pointer.
        if unsafe { get_info(session, &mut info) } != CKR_OK {
            return None;
        }
        let mut all = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            all.entry(info.slotID)
                .or_insert_with(|| std::sync::Arc::new(Slots::new(self.settings.parallel)))
                .clone(),
        )
    }

    /// (signatures made, most in progress at once on one token).
    fn stats(&self) -> (u64, u64) {
        let all = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        all.values().fold((0, 0), |(d, p), s| {
            let (sd, sp) = s.stats();
            (d + sd, p.max(sp))
        })
    }
}

// SAFETY: the function lists are tables of function pointers into a loaded module, never
// written after `load`; PKCS#11 modules are called from any thread (CKF_OS_LOCKING_OK).
unsafe impl Send for Module {}
unsafe impl Sync for Module {}

static MODULE: OnceLock<Result<Module, String>> = OnceLock::new();

fn load() -> Result<Module, String> {
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    // SAFETY: loading a PKCS#11 module runs its initializers; that is what the caller asked
    // for by naming it.
    let lib = unsafe { libloading::Library::new(&settings.backend) }
        .map_err(|e| format!("cannot load {}: {e}", settings.backend))?;
    // SAFETY: `C_GetFunctionList` has this signature in every PKCS#11 module.
    let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
        unsafe { lib.get(b"C_GetFunctionList\0") }
            .map_err(|e| format!("{} has no C_GetFunctionList: {e}", settings.backend))?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; the module fills it with its static list.
    let rv = unsafe { get(&mut list) };
    if rv != CKR_OK || list.is_null() {
        return Err(format!(
            "{}: C_GetFunctionList failed ({rv:#x})",
            settings.backend
        ));
    }
    // SAFETY: non-null, and the module keeps its list alive while loaded.
    let backend = unsafe { *list };
    let mut ours = backend;
    ours.C_GetFunctionList = Some(C_GetFunctionList);
    ours.C_Sign = Some(sign);
    ours.C_SignInit = Some(sign_init);
    ours.C_OpenSession = Some(open_session);
    ours.C_Login = Some(login);
    ours.C_FindObjectsInit = Some(find_objects_init);
    ours.C_FindObjects = Some(find_objects);
    ours.C_GetAttributeValue = Some(get_attribute_value);
    Ok(Module {
        settings,
        _lib: lib,
        backend,
        ours,
        signing: Mutex::default(),
    })
}

fn module() -> Option<&'static Module> {
    MODULE.get_or_init(load).as_ref().ok()
}

fn pause(d: Duration) {
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

/// The PKCS#11 entry point: the backend's function list with the latency added.
///
/// # Safety
/// `list` must be a valid pointer to write a function-list pointer to (PKCS#11).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    match MODULE.get_or_init(load) {
        Ok(m) => {
            // SAFETY: checked non-null above; the list lives in a static for the process.
            unsafe { *list = &m.ours as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST };
            CKR_OK
        }
        Err(e) => {
            eprintln!("pkcs11-latency: {e}");
            CKR_GENERAL_ERROR
        }
    }
}

/// Signatures made through the module (all tokens) and the most ever in progress at once on
/// one token; both 0 before the module is loaded.
///
/// # Safety
/// `done` and `peak` must each be null or valid for writing a `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pkcs11_latency_stats(done: *mut u64, peak: *mut u64) {
    let (d, p) = module().map(Module::stats).unwrap_or((0, 0));
    // SAFETY: the caller passes valid pointers or null.
    unsafe {
        if !done.is_null() {
            *done = d;
        }
        if !peak.is_null() {
            *peak = p;
        }
    }
}

/// Forwards to the backend's `$f` after `PKCS11_LATENCY_CALL_MS`.
macro_rules! delayed {
    ($name:ident, $f:ident, ($($a:ident: $t:ty),*)) => {
        unsafe extern "C" fn $name($($a: $t),*) -> CK_RV {
            let Some(m) = module() else { return CKR_GENERAL_ERROR };
            let Some(f) = m.backend.$f else { return CKR_FUNCTION_NOT_SUPPORTED };
            pause(m.settings.call);
            // SAFETY: the caller's arguments, passed on unchanged to the same function.
            unsafe { f($($a),*) }
        }
    };
}

delayed!(sign_init, C_SignInit, (s: CK_SESSION_HANDLE, m: *mut CK_MECHANISM, k: CK_OBJECT_HANDLE));
delayed!(open_session, C_OpenSession, (slot: CK_SLOT_ID, flags: CK_FLAGS, app: *mut ::std::os::raw::c_void, notify: CK_NOTIFY, s: *mut CK_SESSION_HANDLE));
delayed!(login, C_Login, (s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, len: CK_ULONG));
delayed!(find_objects_init, C_FindObjectsInit, (s: CK_SESSION_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG));
delayed!(find_objects, C_FindObjects, (s: CK_SESSION_HANDLE, o: *mut CK_OBJECT_HANDLE, max: CK_ULONG, n: *mut CK_ULONG));
delayed!(get_attribute_value, C_GetAttributeValue, (s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG));

/// `C_Sign` in one of its token's signing slots, after `PKCS11_LATENCY_SIGN_MS`. A call that only asks for the
/// signature's length (`sig` null) reaches no token and is not delayed.
unsafe extern "C" fn sign(
    s: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    let Some(m) = module() else {
        return CKR_GENERAL_ERROR;
    };
    let Some(f) = m.backend.C_Sign else {
        return CKR_FUNCTION_NOT_SUPPORTED;
    };
    if sig.is_null() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { f(s, data, len, sig, sig_len) };
    }
    let Some(slots) = m.slots_of(s) else {
        return CKR_SESSION_HANDLE_INVALID;
    };
    slots.run(|| {
        pause(m.settings.sign);
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { f(s, data, len, sig, sig_len) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = Settings::from_env(env(&[
            ("PKCS11_LATENCY_BACKEND", "/usr/lib/softhsm/libsofthsm2.so"),
            ("PKCS11_LATENCY_SIGN_MS", "1000"),
            ("PKCS11_LATENCY_PARALLEL", "1"),
        ]))
        .unwrap();
        assert_eq!(s.sign, Duration::from_secs(1));
        assert_eq!(s.call, Duration::ZERO);
        assert_eq!(s.parallel, 1);
        let e = Settings::from_env(env(&[("PKCS11_LATENCY_SIGN_MS", "1")])).unwrap_err();
        assert!(e.contains("PKCS11_LATENCY_BACKEND"), "{e}");
        let e = Settings::from_env(env(&[
            ("PKCS11_LATENCY_BACKEND", "x"),
            ("PKCS11_LATENCY_CALL_MS", "fast"),
        ]))
        .unwrap_err();
        assert!(e.contains("PKCS11_LATENCY_CALL_MS"), "{e}");
    }

    #[test]
    fn slots_hold_the_limit() {
        let slots = std::sync::Arc::new(Slots::new(2));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = slots.clone();
                std::thread::spawn(move || s.run(|| std::thread::sleep(Duration::from_millis(5))))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (done, peak) = slots.stats();
        assert_eq!(done, 8);
        assert!((1..=2).contains(&peak), "{peak}");
    }
}
