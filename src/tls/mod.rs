//! TLS for both sides of the proxy, on rustls with the *ring* provider:
//! the listener's certificates ([`ServerTls`]: several, chosen by SNI,
//! reloaded in place) and the backends' connectors ([`Connector`]: one per
//! HTTPS backend, verifying against the system's roots and the CA files
//! given, resuming sessions from one shared store).
//!
//! No I/O happens here but reading files: the connections these make are
//! driven by the event loop through [`crate::runtime::transport::Stream`].

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

mod client;
mod server;

pub use client::{Connector, Roots, SESSION_CACHE};
pub use server::{CertFiles, ServerTls, TlsReload};

/// The one protocol both sides offer by ALPN.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider: *ring* (builds with a C compiler alone, fast
/// ECDSA P-256 and AES-GCM).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, in that order of preference.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Every certificate in a PEM file; the error names the file and says
/// what to do.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = path.display();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read {file}: {}", pem_error(&e)))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{file}: not a valid PEM certificate file: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{file} holds no certificate: give a PEM file with \"BEGIN CERTIFICATE\" blocks"
        ));
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}
