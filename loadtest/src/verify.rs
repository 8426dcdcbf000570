//! Phase 3: every serial that came back is checked with the project's codec the way a device
//! would: the answer decodes as a stream holding exactly one `serial`; brand, model and
//! device key are the device's own; and the signature verifies against the trusted chain.
//!
//! With `--trusted FILE` (accounts and account-keys trusted as roots, like snapd's built-in
//! set) the account/account-key assertions sent along in the answer are admitted through
//! [`TrustDb::with_admitted`] and the serial goes through `check_serial_with_model`, i.e.
//! snapd's `Database.Check`. Without it, the serial is verified against the account-key the
//! answer carries (owner = authority, valid at the serial's timestamp): the signature is
//! checked, the chain above that key is not, and the report says so.

use std::collections::HashMap;

use serde::Serialize;
use serialmint::assertion::{
    AccountKey, Assertion, AssertionType, Model, RsaPublicKey, Serial, decode_stream,
};
use serialmint::trust::TrustDb;
use time::OffsetDateTime;

/// What one device expects of its serial.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The model assertion the device sent.
    pub model: &'a Model,
    /// The device key id.
    pub device_key_id: &'a str,
}

/// Results of phase 3.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Serial answers checked.
    pub checked: u64,
    /// Serials that passed every check.
    pub verified: u64,
    /// Serials that failed a check.
    pub failed: u64,
    /// Whether the chain was checked up to `--trusted` roots (false: only the signature
    /// against the account-key sent in the answer).
    pub chain_checked: bool,
    /// Up to 5 distinct failure messages with their counts.
    pub failures: Vec<(String, u64)>,
}

impl VerifyReport {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        let mut s = format!(
            "verification ({}): {} checked, {} verified, {} failed\n",
            if self.chain_checked {
                "full chain to --trusted roots"
            } else {
                "signature against the account-key in the answer or the token's key; chain not checked"
            },
            self.checked,
            self.verified,
            self.failed
        );
        for (m, n) in &self.failures {
            s.push_str(&format!("  {n} x {m}\n"));
        }
        s
    }
}

/// Checks serial answers; caches admitted chains so each distinct chain is verified once.
pub struct Verifier {
    roots: Option<TrustDb>,
    known: HashMap<String, RsaPublicKey>,
    admitted: HashMap<Vec<String>, Result<TrustDb, String>>,
    report: VerifyReport,
    failures: HashMap<String, u64>,
}

impl Verifier {
    /// A verifier with optional trusted roots (the `--trusted` file's contents).
    pub fn new(trusted: Option<&[u8]>) -> Result<Verifier, String> {
        let roots = trusted
            .map(TrustDb::from_assertions)
            .transpose()
            .map_err(|e| format!("--trusted: {e}"))?;
        Ok(Verifier {
            report: VerifyReport {
                chain_checked: roots.is_some(),
                ..VerifyReport::default()
            },
            roots,
            known: HashMap::new(),
            admitted: HashMap::new(),
            failures: HashMap::new(),
        })
    }

    /// A public key known out of band (read from the token in the same run), used when the
    /// answer carries no account-key for the signing key and no roots were given.
    pub fn add_known_key(&mut self, key: RsaPublicKey) {
        self.known.insert(key.key_id(), key);
    }

    /// Checks one serial answer body.
    pub fn check(&mut self, body: &[u8], expected: &Expected<'_>) {
        self.report.checked += 1;
        match self.check_inner(body, expected) {
            Ok(()) => self.report.verified += 1,
            Err(e) => {
                self.report.failed += 1;
                *self.failures.entry(e).or_default() += 1;
            }
        }
    }

    fn check_inner(&mut self, body: &[u8], expected: &Expected<'_>) -> Result<(), String> {
        let all = decode_stream(body).map_err(|e| format!("answer does not decode: {e}"))?;
        let (serials, others): (Vec<Assertion>, Vec<Assertion>) = all
            .into_iter()
            .partition(|a| a.kind() == AssertionType::Serial);
        if serials.len() != 1 {
            return Err(format!("answer holds {} serial assertions", serials.len()));
        }
        let serial = Serial::try_from(serials.into_iter().next().expect("one"))
            .map_err(|e| e.to_string())?;
        if serial.brand_id() != expected.model.brand_id() {
            return Err(format!("serial brand-id {:?}", serial.brand_id()));
        }
        if serial.model() != expected.model.model() {
            return Err(format!("serial model {:?}", serial.model()));
        }
        if serial.device_key().key_id() != expected.device_key_id {
            return Err("serial carries another device key".into());
        }
        let now = OffsetDateTime::now_utc();
        match &self.roots {
            Some(roots) => {
                let mut ids: Vec<String> = others
                    .iter()
                    .map(|a| {
                        format!(
                            "{}:{}",
                            a.kind().name(),
                            String::from_utf8_lossy(a.content())
                        )
                    })
                    .collect();
                ids.sort();
                let db = self
                    .admitted
                    .entry(ids)
                    .or_insert_with(|| {
                        roots
                            .with_admitted(others, now)
                            .map_err(|e| format!("chain in the answer not admitted: {e}"))
                    })
                    .clone()?;
                db.check_serial_with_model(&serial, expected.model, now)
                    .map_err(|e| e.to_string())
            }
            None => {
                let key = others
                    .into_iter()
                    .filter(|a| a.kind() == AssertionType::AccountKey)
                    .filter_map(|a| AccountKey::try_from(a).ok())
                    .find(|k| k.public_key_id() == serial.sign_key_id());
                let Some(key) = key else {
                    // No account-key sent along: the key read from the token, if any.
                    let public = self.known.get(serial.sign_key_id()).ok_or(
                        "no --trusted roots and no account-key for the serial's signing key \
                         in the answer",
                    )?;
                    return serial.verify_with(public).map_err(|e| e.to_string());
                };
                if Some(key.account_id()) != serial.authority_id() {
                    return Err(format!(
                        "signing key belongs to {:?}, serial authority is {:?}",
                        key.account_id(),
                        serial.authority_id()
                    ));
                }
                if !key.is_valid_at(serial.timestamp()) {
                    return Err("serial timestamp outside the signing key's validity".into());
                }
                serial
                    .verify_with(key.public_key())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The report so far.
    pub fn report(&self) -> VerifyReport {
        let mut r = self.report.clone();
        let mut f: Vec<(String, u64)> =
            self.failures.iter().map(|(m, n)| (m.clone(), *n)).collect();
        f.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        f.truncate(5);
        r.failures = f;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialmint::assertion::decode;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../tests/fixtures/snapd/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn garbage_and_missing_serials_are_failures() {
        let model = Model::try_from(decode(&fixture("developer1-pc.model")).unwrap()).unwrap();
        let exp = Expected {
            model: &model,
            device_key_id: "x",
        };
        let mut v = Verifier::new(None).unwrap();
        v.check(b"not an assertion", &exp);
        v.check(&fixture("developer1.account"), &exp);
        let r = v.report();
        assert_eq!((r.checked, r.verified, r.failed), (2, 0, 2));
        assert!(
            r.failures
                .iter()
                .any(|(m, _)| m.contains("0 serial assertions")),
            "{r:?}"
        );
    }

    #[test]
    fn a_serial_for_another_model_or_key_fails() {
        // snapd's real serial (brand/model from its own test suite) against developer1's model.
        let model = Model::try_from(decode(&fixture("developer1-pc.model")).unwrap()).unwrap();
        let exp = Expected {
            model: &model,
            device_key_id: "x",
        };
        let mut v = Verifier::new(None).unwrap();
        v.check(&fixture("happy-serial-uc20.serial"), &exp);
        let r = v.report();
        assert_eq!(r.failed, 1);
    }

    /// A model and a serial for `device`, both signed by snapd's test root key (testrootorg),
    /// and the answer stream a server would send (serial, account-key, account).
    fn testroot_answer(device: &crate::keys::DeviceKey) -> (Model, Vec<u8>) {
        use serialmint::assertion::{HeaderValue, Headers, SerialBuilder, build_content};
        let root = crate::keys::DeviceKey::from_pkcs8(
            &std::fs::read(format!(
                "{}/../tests/fixtures/testroot.pk8",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let mut h = Headers::new();
        for (k, v) in [
            ("authority-id", "testrootorg"),
            ("series", "16"),
            ("brand-id", "testrootorg"),
            ("model", "line-1"),
            ("architecture", "amd64"),
            ("gadget", "pc"),
            ("kernel", "pc-kernel"),
            ("timestamp", "2024-01-01T00:00:00Z"),
        ] {
            h.insert(k.into(), HeaderValue::from(v));
        }
        let content = build_content(AssertionType::Model, &h, "", root.id()).unwrap();
        let model_text = crate::device::sign_content(&root, &content, 1_704_067_200);
        let model = Model::try_from(decode(&model_text).unwrap()).unwrap();
        let req = crate::device::serial_request(
            device,
            crate::device::RequestFields {
                brand_id: "testrootorg",
                model: "line-1",
                request_id: "R",
                serial: Some("S1"),
                body: "",
            },
            1_704_067_200,
        )
        .unwrap();
        let req = serialmint::assertion::SerialRequest::try_from(decode(&req).unwrap()).unwrap();
        let serial_content = SerialBuilder::from_request(&req, "S1", OffsetDateTime::now_utc())
            .content(root.id())
            .unwrap();
        let serial = crate::device::sign_content(&root, &serial_content, 1_704_067_200);
        let answer = serialmint::assertion::encode_stream([
            serial,
            fixture("testrootorg.account-key"),
            fixture("testrootorg.account"),
        ]);
        (model, answer)
    }

    fn roots() -> Vec<u8> {
        let mut roots = fixture("testrootorg.account");
        roots.push(b'\n');
        roots.extend(fixture("testrootorg.account-key"));
        roots
    }

    #[test]
    fn a_good_serial_verifies_with_and_without_trusted_roots_and_a_bad_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            crate::keys::load_or_generate(dir.path(), 1, 1, &indicatif::ProgressBar::hidden())
                .unwrap();
        let (model, answer) = testroot_answer(&keys[0]);
        let exp = Expected {
            model: &model,
            device_key_id: keys[0].id(),
        };
        let roots = roots();
        for trusted in [None, Some(&roots[..])] {
            let mut v = Verifier::new(trusted).unwrap();
            v.check(&answer, &exp);
            v.check(&answer, &exp);
            let r = v.report();
            assert_eq!((r.checked, r.verified, r.failed), (2, 2, 0), "{r:?}");
            // One flipped character in the serial's signed content breaks it.
            let bad = String::from_utf8(answer.clone())
                .unwrap()
                .replacen("serial: S1", "serial: S2", 1)
                .into_bytes();
            v.check(&bad, &exp);
            assert_eq!(v.report().failed, 1, "{:?}", v.report());
        }
        // Someone else's device key.
        let mut v = Verifier::new(None).unwrap();
        v.check(
            &answer,
            &Expected {
                model: &model,
                device_key_id: "another",
            },
        );
        assert_eq!(v.report().failed, 1);
    }

    #[test]
    fn trusted_roots_must_load() {
        assert!(Verifier::new(Some(b"nope")).is_err());
        let roots = roots();
        assert!(Verifier::new(Some(&roots)).unwrap().report().chain_checked);
    }
}
