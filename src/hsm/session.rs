//! PKCS#11 module instances, token lookup by label, login, and [`LoggedInSession`] (a session
//! logged in on one module instance, with its key-handle cache) and its operations.
//! Everything here is blocking FFI: call it on blocking threads only.
//!
//! Module instances: most modules (SoftHSMv2, vendor libraries) keep one process-wide state,
//! so a second `C_Initialize` answers `CKR_CRYPTOKI_ALREADY_INITIALIZED` and all sessions share
//! one context ([`Sharing::Shared`]). p11-kit-client.so builds a new client state, with its own
//! connection to `p11-kit server`, on every `C_GetFunctionList` call, and cryptoki's
//! `Pkcs11::new` calls it once per context even though `dlopen` hands back the same library
//! handle. So for such modules every pool slot gets its own initialized context and thereby
//! its own connection ([`Sharing::PerSlot`]). Which kind a module is, is probed at load time:
//! if a second context initializes successfully, contexts are independent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::AuthPin;

use super::error::{ErrorClass, HsmError, classify, error_name};
use super::{KEY_ID_LEN, KeyInfo};
use crate::assertion::openpgp::RsaPublicKey;
use secrecy::{ExposeSecret, SecretString};

/// A failure inside one blocking operation, before it is turned into an [`HsmError`].
#[derive(Debug)]
pub(crate) enum OpError {
    /// A PKCS#11 call failed; `what` says which step, for the message.
    Ck(CkError, &'static str),
    /// The token label is not (or no longer) present; the labels found are listed.
    TokenNotFound(Vec<String>),
    /// The key id is not on this token.
    KeyNotFound,
    /// The token is out of rotation (recovery under way).
    Down,
    /// Not recoverable by re-opening.
    Fatal(String),
    /// The call gave no answer within the call timeout and was abandoned with its session
    /// and instance (see `call.rs`); the token goes out of rotation.
    Stuck {
        /// The step that hung.
        what: &'static str,
        /// The call timeout.
        after: std::time::Duration,
    },
}

impl OpError {
    pub(crate) fn class(&self) -> Option<ErrorClass> {
        match self {
            OpError::Ck(e, _) => Some(classify(e)),
            OpError::TokenNotFound(_) => Some(ErrorClass::TokenGone),
            OpError::KeyNotFound => None,
            OpError::Down => Some(ErrorClass::TokenGone),
            OpError::Fatal(_) => Some(ErrorClass::Fatal),
            OpError::Stuck { .. } => Some(ErrorClass::TokenGone),
        }
    }

    /// A short description for health reports.
    pub(crate) fn short(&self) -> String {
        match self {
            OpError::Ck(e, what) => format!("{what}: {}", error_name(e)),
            OpError::TokenNotFound(_) => "token not present".into(),
            OpError::KeyNotFound => "key not found".into(),
            OpError::Down => "out of rotation, recovering".into(),
            OpError::Fatal(m) => m.clone(),
            OpError::Stuck { what, after } => format!(
                "{what}: no answer within {} s (call abandoned)",
                after.as_secs_f64()
            ),
        }
    }

    /// The caller-facing error, naming the token.
    pub(crate) fn into_hsm(self, token: &str, module: &Path, key_id: Option<&str>) -> HsmError {
        match self {
            OpError::TokenNotFound(found) => HsmError::TokenNotFound {
                label: token.to_string(),
                module: module.display().to_string(),
                found,
            },
            OpError::KeyNotFound => HsmError::KeyNotFound(key_id.unwrap_or("?").to_string()),
            OpError::Down => HsmError::Unavailable(format!("token {token:?} is recovering")),
            OpError::Fatal(m) => HsmError::Fatal(format!("token {token:?}: {m}")),
            stuck @ OpError::Stuck { .. } => {
                HsmError::Unavailable(format!("token {token:?}: {}", stuck.short()))
            }
            OpError::Ck(e, what) => {
                let msg = format!("token {token:?}: {what}: {}", error_name(&e));
                match classify(&e) {
                    ErrorClass::Caller => HsmError::InvalidInput(msg),
                    ErrorClass::Fatal => HsmError::Fatal(msg),
                    ErrorClass::Reopen | ErrorClass::TokenGone => HsmError::Unavailable(msg),
                }
            }
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

fn ck(what: &'static str) -> impl FnOnce(CkError) -> OpError {
    move |e| OpError::Ck(e, what)
}

/// Whether a module's contexts share one process-wide state or are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// One context for the whole process (SoftHSM, most vendor modules).
    Shared,
    /// Every context is its own instance with its own connection (p11-kit-client).
    PerSlot,
}

/// A loaded PKCS#11 module.
#[derive(Debug)]
pub(crate) struct Module {
    pub(crate) path: PathBuf,
    pub(crate) sharing: Sharing,
    shared: Option<Pkcs11>,
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Module {
    /// Loads the module and probes whether its contexts are independent (see module docs).
    pub(crate) fn load(path: &Path) -> Result<Module, HsmError> {
        let load = |p: &Path| {
            Pkcs11::new(p).map_err(|e| {
                HsmError::Fatal(format!("cannot load PKCS#11 module {}: {e}", p.display()))
            })
        };
        let first = load(path)?;
        let already = match first.initialize(init_args()) {
            Ok(()) => false,
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => true,
            Err(e) => {
                return Err(HsmError::Unavailable(format!(
                    "cannot initialize PKCS#11 module {}: {}",
                    path.display(),
                    error_name(&e)
                )));
            }
        };
        if already {
            // Someone in this process initialized it before us: it is process-wide.
            return Ok(Module {
                path: path.to_path_buf(),
                sharing: Sharing::Shared,
                shared: Some(first),
            });
        }
        let second = load(path)?;
        match second.initialize(init_args()) {
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(Module {
                path: path.to_path_buf(),
                sharing: Sharing::Shared,
                shared: Some(first),
            }),
            Ok(()) => {
                // Independent instances: close both probes, each slot opens its own.
                let _ = second.finalize();
                let _ = first.finalize();
                Ok(Module {
                    path: path.to_path_buf(),
                    sharing: Sharing::PerSlot,
                    shared: None,
                })
            }
            Err(e) => Err(HsmError::Unavailable(format!(
                "cannot initialize PKCS#11 module {}: {}",
                path.display(),
                error_name(&e)
            ))),
        }
    }

    /// A context to open a session on: the shared one, or a fresh initialized instance.
    pub(crate) fn instance(&self) -> Result<Instance, OpError> {
        match &self.shared {
            Some(ctx) => Ok(Instance {
                ctx: ctx.clone(),
                owned: false,
            }),
            None => {
                let ctx = Pkcs11::new(&self.path).map_err(ck("load module"))?;
                match ctx.initialize(init_args()) {
                    Ok(()) => Ok(Instance { ctx, owned: true }),
                    Err(e) => Err(OpError::Ck(e, "initialize module")),
                }
            }
        }
    }

    /// Re-initializes the shared context after `CKR_CRYPTOKI_NOT_INITIALIZED` (someone
    /// finalized it). Harmless when it is initialized.
    pub(crate) fn reinitialize_shared(&self) {
        if let Some(ctx) = &self.shared {
            let _ = ctx.initialize(init_args());
        }
    }
}

/// One context: shared (never finalized by us) or owned (finalized when dropped).
pub(crate) struct Instance {
    ctx: Pkcs11,
    owned: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.ctx.clone().finalize();
        }
    }
}

/// Finds the slot holding the token with this label.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, OpError> {
    let slots = ctx.get_slots_with_token().map_err(ck("list slots"))?;
    let mut found = Vec::new();
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(ck("read token info"))?;
        let l = info.label().trim_end();
        if l == label {
            return Ok(slot);
        }
        found.push(l.to_string());
    }
    Err(OpError::TokenNotFound(found))
}

/// The most sessions the token allows, when it says.
pub(crate) fn session_limit(session: &LoggedInSession) -> Option<usize> {
    let info = session.instance.ctx.get_token_info(session.slot).ok()?;
    let lim = |l: Limit| match l {
        Limit::Max(n) => Some(n as usize),
        _ => None,
    };
    match (
        lim(info.max_session_count()),
        lim(info.max_rw_session_count()),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Logs the user in; an existing login of this application on the token counts as success.
fn login(session: &Session, pin: &SecretString) -> Result<(), OpError> {
    let auth = AuthPin::new(pin.expose_secret().into());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired
            | RvError::UserPinNotInitialized),
            _,
        )) => {
            return Err(OpError::Fatal(format!("login refused: {rv:?}")));
        }
        Err(e) => return Err(OpError::Ck(e, "log in")),
    }
    Ok(())
}

/// A session logged in on one module instance (shared or its own, see [`Sharing`]), with that
/// instance and its cache of private-key handles by CKA_ID. Pooled by `pool.rs`; the anchor
/// that keeps a token's login alive is one too.
pub(crate) struct LoggedInSession {
    // Declared before `instance`: the session closes before the instance is finalized.
    session: Session,
    instance: Instance,
    slot: Slot,
    pin: SecretString,
    keys: HashMap<[u8; KEY_ID_LEN], ObjectHandle>,
}

impl std::fmt::Debug for LoggedInSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedInSession")
            .field("slot", &self.slot.id())
            .field("owned_instance", &self.instance.owned)
            .finish()
    }
}

impl LoggedInSession {
    /// Opens a session on the token with this label and logs in (an existing login of this
    /// application on the token counts as success).
    pub(crate) fn open(
        module: &Module,
        label: &str,
        pin: &SecretString,
        rw: bool,
    ) -> Result<LoggedInSession, OpError> {
        let instance = module.instance()?;
        let slot = find_slot(&instance.ctx, label)?;
        let session = if rw {
            instance.ctx.open_rw_session(slot)
        } else {
            instance.ctx.open_ro_session(slot)
        }
        .map_err(ck("open session"))?;
        login(&session, pin)?;
        Ok(LoggedInSession {
            session,
            instance,
            slot,
            pin: pin.clone(),
            keys: HashMap::new(),
        })
    }

    /// The logged-in session itself, for the operations of sibling files (`import.rs`).
    pub(super) fn raw(&self) -> &Session {
        &self.session
    }

    /// Forgets the cached private-key handle of `id` (after its object was destroyed).
    pub(super) fn forget_key(&mut self, id: &[u8; KEY_ID_LEN]) {
        self.keys.remove(id);
    }

    /// Repairs a session after an error that may come from a lost login or stale handles
    /// (someone logged the token out: private keys vanish from searches, handles turn
    /// invalid): forgets cached key handles and logs in again when the session is no longer
    /// a user session. Returns whether retrying on this session makes sense.
    pub(crate) fn repair(&mut self) -> bool {
        self.keys.clear();
        match self.session.get_session_info() {
            Ok(info) => match info.session_state() {
                SessionState::RoUser | SessionState::RwUser => true,
                _ => login(&self.session, &self.pin).is_ok(),
            },
            Err(_) => false,
        }
    }

    /// The private key's handle, from the cache or found by CKA_ID.
    pub(crate) fn key_handle(&mut self, id: &[u8; KEY_ID_LEN]) -> Result<ObjectHandle, OpError> {
        if let Some(h) = self.keys.get(id) {
            return Ok(*h);
        }
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(ck("find key"))?;
        let h = *found.first().ok_or(OpError::KeyNotFound)?;
        self.keys.insert(*id, h);
        Ok(h)
    }

    /// Signs with CKM_RSA_PKCS, back to back, every DigestInfo that `skip` does not name
    /// (those a failed earlier try already answered), handing each signature to `signed` as
    /// soon as it is made: the caller verifies and answers it while the next one is signed.
    pub(crate) fn sign_each(
        &mut self,
        id: &[u8; KEY_ID_LEN],
        digest_infos: &[[u8; 83]],
        skip: &dyn Fn(usize) -> bool,
        signed: &mut dyn FnMut(usize, Vec<u8>) -> Result<(), OpError>,
    ) -> Result<(), OpError> {
        let key = self.key_handle(id)?;
        for (i, di) in digest_infos.iter().enumerate() {
            if skip(i) {
                continue;
            }
            let sig = self
                .session
                .sign(&Mechanism::RsaPkcs, key, di)
                .map_err(ck("sign"))?;
            signed(i, sig)?;
        }
        Ok(())
    }

    /// An RSA key object's modulus and public exponent (empty when the token hides them).
    fn modulus_and_exponent(
        &self,
        handle: ObjectHandle,
        what: &'static str,
    ) -> Result<(Vec<u8>, Vec<u8>), OpError> {
        let (mut n, mut e) = (Vec::new(), Vec::new());
        for a in self
            .session
            .get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(ck(what))?
        {
            match a {
                Attribute::Modulus(v) => n = v,
                Attribute::PublicExponent(v) => e = v,
                _ => {}
            }
        }
        Ok((n, e))
    }

    /// Reads a private key's name, id and public key; `None` when it is not one of ours (its
    /// CKA_ID is not the SHA3-384 id of its public key).
    fn read_key(&self, handle: ObjectHandle) -> Result<Option<KeyInfo>, OpError> {
        let attrs = self
            .session
            .get_attributes(
                handle,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(ck("read key attributes"))?;
        let (mut label, mut id, mut n, mut e) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for a in attrs {
            match a {
                Attribute::Label(v) => label = v,
                Attribute::Id(v) => id = v,
                Attribute::Modulus(v) => n = v,
                Attribute::PublicExponent(v) => e = v,
                _ => {}
            }
        }
        if id.len() != KEY_ID_LEN {
            return Ok(None);
        }
        if n.is_empty() || e.is_empty() {
            // Some tokens hide the public parts of private keys: read the public key object.
            let pubs = self
                .session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::Id(id.clone()),
                ])
                .map_err(ck("find public key"))?;
            let Some(p) = pubs.first() else {
                return Ok(None);
            };
            (n, e) = self.modulus_and_exponent(*p, "read public key")?;
        }
        let public = RsaPublicKey::new(&n, &e);
        if public.key_id_bytes()[..] != id[..] {
            tracing::warn!(
                key = %String::from_utf8_lossy(&label),
                "skipping a key whose CKA_ID is not the SHA3-384 id of its public key"
            );
            return Ok(None);
        }
        Ok(Some(KeyInfo {
            name: String::from_utf8_lossy(&label).into_owned(),
            key_id: public.key_id(),
            public,
        }))
    }

    /// The key with this id (`KeyNotFound` when this token does not have it).
    pub(crate) fn find_key(&mut self, id: &[u8; KEY_ID_LEN]) -> Result<Option<KeyInfo>, OpError> {
        let h = match self.key_handle(id) {
            Err(OpError::KeyNotFound) if self.repair() => self.key_handle(id),
            r => r,
        };
        // Absent (or not one of ours) here: `KeyNotFound`, so other tokens are asked too.
        match self.read_key(h?)? {
            Some(k) => Ok(Some(k)),
            None => Err(OpError::KeyNotFound),
        }
    }

    /// Every RSA private key on the token whose CKA_ID is its SHA3-384 id, sorted by name.
    pub(crate) fn list_keys(&mut self) -> Result<Vec<KeyInfo>, OpError> {
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
        ];
        let mut handles = self
            .session
            .find_objects(&template)
            .map_err(ck("list keys"))?;
        if handles.is_empty() && self.repair() {
            // Private keys are invisible when the login was lost: log in again and look again.
            handles = self
                .session
                .find_objects(&template)
                .map_err(ck("list keys"))?;
        }
        let mut keys = Vec::new();
        for h in handles {
            if let Some(k) = self.read_key(h)? {
                keys.push(k);
            }
        }
        keys.sort_by(|a, b| a.name.cmp(&b.name).then(a.key_id.cmp(&b.key_id)));
        Ok(keys)
    }

    /// Generates an RSA-4096 key pair on the token (sensitive, never extractable), then sets
    /// CKA_ID on both halves to the SHA3-384 id of the public key. `keep` is asked last: when
    /// it says no (the caller gave up waiting), the new pair is destroyed again.
    pub(crate) fn generate_rsa4096(
        &mut self,
        name: &str,
        keep: impl FnOnce() -> bool,
    ) -> Result<KeyInfo, OpError> {
        let label = name.as_bytes().to_vec();
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::ModulusBits(4096u64.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Label(label.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label),
        ];
        let (pub_h, priv_h) = self
            .session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(ck("generate key pair"))?;
        let result = (|| {
            let (n, e) = self.modulus_and_exponent(pub_h, "read new public key")?;
            let public = RsaPublicKey::new(&n, &e);
            if public.bits() != 4096 {
                return Err(OpError::Fatal(format!(
                    "token generated a {}-bit key instead of 4096",
                    public.bits()
                )));
            }
            let id = Attribute::Id(public.key_id_bytes().to_vec());
            self.session
                .update_attributes(pub_h, std::slice::from_ref(&id))
                .map_err(ck("set public key id"))?;
            self.session
                .update_attributes(priv_h, &[id])
                .map_err(ck("set private key id"))?;
            Ok(KeyInfo {
                name: name.to_string(),
                key_id: public.key_id(),
                public,
            })
        })();
        let keep = result.is_ok() && keep();
        if !keep {
            let _ = self.session.destroy_object(priv_h);
            let _ = self.session.destroy_object(pub_h);
            if result.is_ok() {
                tracing::warn!(
                    name,
                    "key generation finished after its timeout; key destroyed"
                );
            }
        }
        result
    }
}
