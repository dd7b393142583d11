//! The backends' side: one rustls client configuration per HTTPS backend
//! (its trusted roots, its verified name), all resuming sessions from one
//! shared cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{ALPN_HTTP1, VERSIONS, provider, read_certs};
use crate::runtime::transport::Stream;

/// TLS sessions to backends kept for resumption, all backends together
/// (rustls keys them by server name).
pub const SESSION_CACHE: usize = 256;

/// The certificate authorities every backend is verified against: the
/// system's (through rustls-native-certs: the platform's own store, so a
/// CA an administrator added is trusted as curl would trust it) and the
/// files given for all backends (`--backend-ca`).
#[derive(Debug, Clone)]
pub struct Roots {
    store: RootCertStore,
    sessions: Arc<dyn ClientSessionStore>,
}

impl Roots {
    /// The system's roots plus every certificate of `extra` (PEM). The
    /// warnings say what of the system store could not be read.
    pub fn load(extra: &[PathBuf]) -> Result<(Roots, Vec<String>), String> {
        let mut store = RootCertStore::empty();
        let mut warnings = Vec::new();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warnings.push(format!("system certificate store: {e}"));
        }
        let (_, ignored) = store.add_parsable_certificates(found.certs);
        if ignored > 0 {
            warnings.push(format!(
                "{ignored} system root certificate(s) could not be parsed; ignored"
            ));
        }
        if store.is_empty() {
            warnings.push(
                "no system root certificate found: HTTPS backends are verified only against --backend-ca \
                 and each backend's ca (install ca-certificates, or set SSL_CERT_FILE)"
                    .into(),
            );
        }
        for path in extra {
            add_cas(&mut store, path)?;
        }
        Ok((
            Roots {
                store,
                sessions: Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE)),
            },
            warnings,
        ))
    }
}

fn add_cas(store: &mut RootCertStore, path: &Path) -> Result<(), String> {
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(())
}

/// How the proxy opens TLS to one backend.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Connector {
    /// A connector for a backend known as `server_name` (sent as SNI
    /// unless an IP address, and verified in its certificate), trusting
    /// `roots` and the CA files `ca`; `insecure` skips verifying the
    /// certificate (its handshake signature is still checked).
    pub fn new(server_name: &str, roots: &Roots, ca: &[PathBuf], insecure: bool) -> Result<Connector, String> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| format!("{server_name:?} is not a valid TLS server name: give a DNS name (sni)"))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
                .with_no_client_auth()
        } else {
            let mut store = roots.store.clone();
            for path in ca {
                add_cas(&mut store, path)?;
            }
            if store.is_empty() {
                return Err(format!(
                    "no certificate authority to verify {server_name} against: give --backend-ca FILE or ca = FILE"
                ));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        config.resumption = Resumption::store(roots.sessions.clone());
        Ok(Connector {
            config: Arc::new(config),
            name,
        })
    }

    /// A TLS stream on a connection under way to the backend.
    pub fn connect(&self, sock: TcpStream) -> Result<Stream, rustls::Error> {
        let conn = ClientConnection::new(self.config.clone(), self.name.clone())?;
        Ok(Stream::tls(sock, conn))
    }
}

/// `insecure_skip_verify`: any certificate is taken (the handshake's
/// signatures are still checked, so the peer holds the key it shows).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
