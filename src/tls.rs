//! TLS for both listeners and the admin CLI, with rustls over the aws-lc-rs provider (the
//! crypto library the tree already builds for its own RSA and hashing, so no second one, such
//! as ring, is compiled).
//!
//! Server side: [`ServerTls`] loads a listener's PEM certificate chain, private key and
//! optional client CA into a rustls configuration and keeps its acceptor.
//! [`ServerTls::reload`] (on SIGHUP) reads all the files again and swaps the acceptor whole:
//! connections already up keep the session they negotiated, new ones get the new certificate
//! and the new client CA, nothing is dropped; a reload that fails keeps the old configuration
//! and says why. With a client CA, the listener asks for and requires a client certificate
//! issued by it (mutual TLS). The handshake itself runs in `http.rs`'s accept loop, which asks
//! for the current acceptor once per connection, bounded by the header timeout.
//!
//! Client side: [`client_config`] for the CLI: roots from a private CA file (when given) or
//! the system's, and a client certificate for mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why TLS material could not be loaded. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no CERTIFICATE in it", .0.display())]
    NoCertificate(PathBuf),
    /// The key is not usable, or does not match the certificate.
    #[error("{} with {}: {source}", key.display(), cert.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate is not usable as a trust anchor.
    #[error("{}: {source}", path.display())]
    Anchor {
        /// The CA file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier cannot be built from the client CA.
    #[error("{}: {source}", path.display())]
    ClientVerifier {
        /// The client CA file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The system's root certificates cannot be loaded.
    #[error("no system root certificates ({0}); set SERIALMINT_ADMIN_CA")]
    SystemRoots(#[source] std::io::Error),
    /// rustls refused the configuration (protocol versions, client certificate).
    #[error("{0}")]
    Config(#[source] rustls::Error),
}

/// The crypto provider of every TLS configuration here: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates of a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// A certificate chain and its key, checked to belong together.
pub fn read_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
        path: key.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|source| TlsError::Key {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// A trust store of the certificates in a PEM file.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::Anchor {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// A listener's certificate as loaded: every handshake of one configuration gets it.
#[derive(Debug)]
struct LoadedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for LoadedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A listener's TLS: its files and the acceptor made of them, swapped whole on reload.
#[derive(Clone)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl ServerTls {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or SEC1); with
    /// `client_ca`, requires clients to present a certificate issued by it.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        Ok(ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: client_ca.map(Path::to_owned),
            current: Arc::new(RwLock::new(acceptor(cert, key, client_ca)?)),
        })
    }

    /// Reads the certificate, key and client CA files again and serves them to new
    /// connections (open ones keep what they negotiated); on failure the old ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.cert, &self.key, self.client_ca.as_deref())?;
        *self.current.write() = fresh;
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The acceptor for the next handshake (the accept loop asks once per connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().clone()
    }
}

/// A server configuration of the files, as an acceptor.
fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let resolver = Arc::new(LoadedCert(Arc::new(read_certified_key(cert, key)?)));
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider())
                    .build()
                    .map_err(|source| TlsError::ClientVerifier {
                        path: ca.to_owned(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The CLI's TLS: trust `ca` (a PEM file) when given, else the system's roots; present
/// `client` (certificate and key files) for mutual TLS when given.
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => read_roots(path)?,
        None => {
            let found = system_roots().map_err(TlsError::SystemRoots)?;
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found);
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
                path: key.to_owned(),
                source,
            })?;
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|source| TlsError::Key {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // No ALPN: the server treats a client without it as http/1.1, and hyper-rustls sets
    // its own.
    Ok(config)
}

/// The system's root certificates (`/etc/ssl/certs` on Debian).
fn system_roots() -> Result<Vec<CertificateDer<'static>>, std::io::Error> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} errors reading them", found.errors.len()),
        ));
    }
    Ok(found.certs)
}
