//! Key import: an RSA private key read from a file ([`crate::keyfile`]) becomes a private key
//! object on the token (`C_CreateObject`: token, private, sensitive, never extractable, sign
//! only) plus its public key object, both labelled with the key's name and with CKA_ID = its
//! SHA3-384 id, as generated keys are. Before anything is written, the token is searched for
//! that id and name; after, the new key signs a test DigestInfo that is verified in software,
//! and a key that fails is destroyed again. [`Hsm::delete_key`] removes both objects (the
//! admin plane's undo when the database cannot record the import). Both run on a read-write
//! session of their own, on a thread of their own, as key generation does.

use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};

use super::session::{LoggedInSession, OpError};
use super::verify::{Verifier, digest_info};
use super::{Hsm, HsmError, KEY_ID_LEN, KeyInfo, decode_key_id};
use crate::keyfile::RsaPrivateKey;

/// Why the token refused an import before writing anything.
enum Held {
    /// An object with the key's id exists (its label).
    Id(String),
    /// A private key with the name exists.
    Name,
}

fn ck(what: &'static str) -> impl FnOnce(cryptoki::error::Error) -> OpError {
    move |e| OpError::Ck(e, what)
}

impl LoggedInSession {
    /// Creates the key pair's objects unless the id or name is taken; checks the new private
    /// key by signing once. Nothing stays behind on failure (as far as the token lets us
    /// destroy what was made).
    fn import_rsa(
        &mut self,
        name: &str,
        key: &RsaPrivateKey,
    ) -> Result<Result<KeyInfo, Held>, OpError> {
        let id = key.public.key_id_bytes();
        let s = self.raw();
        let same_id = s
            .find_objects(&[Attribute::Id(id.to_vec())])
            .map_err(ck("find objects by id"))?;
        if let Some(h) = same_id.first() {
            let label = s
                .get_attributes(*h, &[cryptoki::object::AttributeType::Label])
                .ok()
                .and_then(|a| match a.into_iter().next() {
                    Some(Attribute::Label(l)) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                })
                .unwrap_or_default();
            return Ok(Err(Held::Id(label)));
        }
        let same_name = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(name.as_bytes().to_vec()),
            ])
            .map_err(ck("find keys by name"))?;
        if !same_name.is_empty() {
            return Ok(Err(Held::Name));
        }
        let common = |class| {
            vec![
                Attribute::Class(class),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
                Attribute::Label(name.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Modulus(key.public.modulus().to_vec()),
                Attribute::PublicExponent(key.public.exponent().to_vec()),
            ]
        };
        let mut private = common(ObjectClass::PRIVATE_KEY);
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        // The secret components go into the template only here; cryptoki copies them into
        // the C structures for the call. The template is wiped right after.
        private.extend([
            Attribute::PrivateExponent(key.d.to_vec()),
            Attribute::Prime1(key.prime1.to_vec()),
            Attribute::Prime2(key.prime2.to_vec()),
            Attribute::Exponent1(key.exponent1.to_vec()),
            Attribute::Exponent2(key.exponent2.to_vec()),
            Attribute::Coefficient(key.coefficient.to_vec()),
        ]);
        let created = s.create_object(&private);
        wipe(&mut private);
        let priv_h = created.map_err(ck("create private key"))?;
        let mut public = common(ObjectClass::PUBLIC_KEY);
        public.extend([
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ]);
        let pub_h = match s.create_object(&public) {
            Ok(h) => h,
            Err(e) => {
                let _ = s.destroy_object(priv_h);
                return Err(OpError::Ck(e, "create public key"));
            }
        };
        if let Err(e) = self.check_signs(priv_h, key) {
            let s = self.raw();
            let _ = s.destroy_object(priv_h);
            let _ = s.destroy_object(pub_h);
            return Err(e);
        }
        Ok(Ok(KeyInfo {
            name: name.to_string(),
            key_id: key.public.key_id(),
            public: key.public.clone(),
        }))
    }

    /// Signs a fixed DigestInfo with the new key and verifies it in software.
    fn check_signs(&self, handle: ObjectHandle, key: &RsaPrivateKey) -> Result<(), OpError> {
        let di = digest_info(&[0x5A; 64]);
        let sig = self
            .raw()
            .sign(&Mechanism::RsaPkcs, handle, &di)
            .map_err(ck("sign with the imported key"))?;
        let verifier = Verifier::new(&key.public).map_err(|e| OpError::Fatal(e.to_string()))?;
        if !verifier.verify(&di, &sig) {
            return Err(OpError::Fatal(
                "the imported key's signature does not verify; key removed again".into(),
            ));
        }
        Ok(())
    }

    /// Destroys every object with CKA_ID `id`; how many there were.
    fn destroy_key(&mut self, id: &[u8; KEY_ID_LEN]) -> Result<usize, OpError> {
        let s = self.raw();
        let found = s
            .find_objects(&[Attribute::Id(id.to_vec())])
            .map_err(ck("find objects by id"))?;
        for h in &found {
            s.destroy_object(*h).map_err(ck("destroy object"))?;
        }
        self.forget_key(id);
        Ok(found.len())
    }
}

/// Overwrites the secret attribute values of a template before it is dropped.
fn wipe(template: &mut [Attribute]) {
    use zeroize::Zeroize;
    for a in template.iter_mut() {
        match a {
            Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
}

impl Hsm {
    /// Imports `key` onto the first token that is up as the signing key `name` (CKA_LABEL),
    /// with CKA_ID = its SHA3-384 id: refused with [`HsmError::KeyExists`] when the token
    /// holds that id or a key of that name, before anything is written.
    pub async fn import_key(
        &self,
        name: &str,
        key: Arc<RsaPrivateKey>,
    ) -> Result<KeyInfo, HsmError> {
        let owned = name.to_string();
        let id = key.public.key_id();
        let id_bytes = key.public.key_id_bytes();
        let result = self
            .on_own_session("key import", move |session, keep| {
                let result = session.import_rsa(&owned, &key)?;
                if result.is_ok() && !keep() {
                    session.destroy_key(&id_bytes)?;
                    tracing::warn!(
                        name = %owned,
                        "key import finished after its timeout; key removed"
                    );
                }
                Ok(result)
            })
            .await?;
        match result {
            Ok(info) => {
                tracing::info!(name, key_id = %info.key_id, "RSA key imported onto the token");
                Ok(info)
            }
            Err(Held::Id(label)) => Err(HsmError::KeyExists(format!(
                "the token already holds key {id} (labelled {label:?})"
            ))),
            Err(Held::Name) => Err(HsmError::KeyExists(format!(
                "the token already holds a key named {name:?}"
            ))),
        }
    }

    /// Destroys the key `key_id` (private and public objects) on the first token that is
    /// up; how many objects went.
    pub async fn delete_key(&self, key_id: &str) -> Result<usize, HsmError> {
        let id = decode_key_id(key_id)?;
        self.inner.keys.write().remove(&id);
        let n = self
            .on_own_session("key removal", move |session, _| session.destroy_key(&id))
            .await?;
        tracing::info!(key_id, objects = n, "key removed from the token");
        Ok(n)
    }
}
