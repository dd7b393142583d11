//! The listener's side: certificates and keys from PEM files, the one
//! offered chosen by the SNI the client sends (matched on each
//! certificate's DNS names, wildcards included; the first is the default),
//! swapped in place when the files are reloaded.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use mio::net::TcpStream;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;

use super::{ALPN_HTTP1, VERSIONS, provider, read_certs};
use crate::runtime::transport::Stream;

/// One certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain: the server's certificate first, then the
    /// intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One loaded certificate and the names it serves.
#[derive(Debug)]
struct Entry {
    /// Lower-case DNS names from the certificate (`*.example.com` too).
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// The certificates now offered: new handshakes read it, a reload swaps it.
#[derive(Debug)]
struct Store {
    entries: RwLock<Arc<Vec<Entry>>>,
}

impl Store {
    fn current(&self) -> Arc<Vec<Entry>> {
        match self.entries.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, entries: Vec<Entry>) {
        let entries = Arc::new(entries);
        match self.entries.write() {
            Ok(mut e) => *e = entries,
            Err(poisoned) => *poisoned.into_inner() = entries,
        }
    }
}

impl ResolvesServerCert for Store {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let entries = self.current();
        let chosen = hello
            .server_name()
            .and_then(|name| pick(&entries, name))
            .or_else(|| entries.first());
        chosen.map(|e| e.key.clone())
    }
}

/// The entry whose names cover `name`: an exact name first, then a
/// wildcard for its parent.
fn pick<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    let name = name.to_ascii_lowercase();
    let exact = entries.iter().find(|e| e.names.contains(&name));
    exact.or_else(|| {
        let (_, parent) = name.split_once('.')?;
        let wildcard = format!("*.{parent}");
        entries.iter().find(|e| e.names.contains(&wildcard))
    })
}

/// The listener's TLS: its rustls configuration (TLS 1.3 and 1.2, ALPN
/// `http/1.1`, session tickets) over a certificate store that
/// [`TlsReload`] swaps.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    reload: TlsReload,
}

impl ServerTls {
    /// Loads every certificate and key; the error names the file.
    pub fn load(files: &[CertFiles]) -> Result<ServerTls, String> {
        if files.is_empty() {
            return Err("TLS needs a certificate and its key (--tls-cert FILE --tls-key FILE)".into());
        }
        let entries = files.iter().map(load_entry).collect::<Result<Vec<_>, _>>()?;
        let store = Arc::new(Store {
            entries: RwLock::new(Arc::new(entries)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets unavailable: {e}"))?;
        Ok(ServerTls {
            config: Arc::new(config),
            reload: TlsReload {
                store,
                files: Arc::new(files.to_vec()),
            },
        })
    }

    /// A TLS stream for a connection just accepted (its handshake is
    /// driven by the reads and writes that follow).
    pub fn accept(&self, sock: TcpStream) -> Result<Stream, rustls::Error> {
        let conn = ServerConnection::new(self.config.clone())?;
        Ok(Stream::tls(sock, conn))
    }

    /// What reloads the certificate files (shareable with a signal
    /// handler).
    pub fn reloader(&self) -> TlsReload {
        self.reload.clone()
    }

    /// The DNS names each certificate serves, in order, for the start log.
    pub fn names(&self) -> Vec<Vec<String>> {
        self.reload.store.current().iter().map(|e| e.names.clone()).collect()
    }
}

/// Reloads the listener's certificate files in place: new handshakes get
/// the new certificates, connections open keep theirs.
#[derive(Debug, Clone)]
pub struct TlsReload {
    store: Arc<Store>,
    files: Arc<Vec<CertFiles>>,
}

impl TlsReload {
    /// Reads every file again. A pair that fails to load keeps its old
    /// certificate, and the error says which file and why; the others are
    /// replaced. Returns how many pairs were replaced, and the errors.
    pub fn reload(&self) -> (usize, Vec<String>) {
        let old = self.store.current();
        let mut errors = Vec::new();
        let mut fresh = Vec::with_capacity(self.files.len());
        let mut replaced = 0;
        for (i, files) in self.files.iter().enumerate() {
            match load_entry(files) {
                Ok(e) => {
                    replaced += 1;
                    fresh.push(e);
                }
                Err(why) => {
                    errors.push(format!("{why}; the certificate loaded before stays"));
                    if let Some(e) = old.get(i) {
                        fresh.push(Entry {
                            names: e.names.clone(),
                            key: e.key.clone(),
                        });
                    }
                }
            }
        }
        if replaced > 0 {
            self.store.swap(fresh);
        }
        (replaced, errors)
    }
}

fn load_entry(files: &CertFiles) -> Result<Entry, String> {
    let chain = read_certs(&files.cert)?;
    let key_file = files.key.display();
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!("{key_file}: no private key could be read ({e:?}): give a PEM file with a \"PRIVATE KEY\" block")
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "{key_file} does not fit {} ({e}): give the key of that certificate",
            files.cert.display()
        )
    })?;
    let names = key
        .cert
        .first()
        .and_then(|c| webpki::EndEntityCert::try_from(c).ok())
        .map(|c| c.valid_dns_names().map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    Ok(Entry {
        names,
        key: Arc::new(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str]) -> Entry {
        struct NoKey;
        impl std::fmt::Debug for NoKey {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("NoKey")
            }
        }
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(&self, _: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        Entry {
            names: names.iter().map(|s| s.to_string()).collect(),
            key: Arc::new(CertifiedKey::new(Vec::new(), Arc::new(NoKey))),
        }
    }

    #[test]
    fn sni_picks_exact_then_wildcard() {
        let entries = vec![entry(&["a.test"]), entry(&["*.b.test"]), entry(&["x.b.test"])];
        let names = |n: &str| pick(&entries, n).map(|e| e.names[0].clone());
        assert_eq!(names("A.Test").as_deref(), Some("a.test"));
        assert_eq!(names("x.b.test").as_deref(), Some("x.b.test"));
        assert_eq!(names("y.b.test").as_deref(), Some("*.b.test"));
        assert_eq!(names("b.test"), None, "a wildcard covers one label");
        assert_eq!(names("z.y.b.test"), None);
        assert_eq!(names("other.test"), None);
    }
}
