//! What the proxy makes of its TLS configuration: a connector per HTTPS
//! backend (with warnings for what is not verified), and the reload the
//! binary runs on SIGHUP.

use log::{info, warn};

use super::config::Config;
use crate::tls::{Connector, Roots, TlsReload};

/// Reloads the certificate files `r` names, logging what happened; how
/// many pairs were replaced.
pub fn reload(r: &TlsReload) -> usize {
    let (replaced, errors) = r.reload();
    for e in &errors {
        warn!("TLS reload: {e}");
    }
    info!("TLS reload: {replaced} certificate(s) loaded, {} refused", errors.len());
    replaced
}

/// A connector per HTTPS backend (`None` for plain ones), the system's
/// roots read once if any needs them; warns about what is not verified.
pub(crate) fn connectors(cfg: &Config) -> Result<Vec<Option<Connector>>, String> {
    let mut roots = None;
    let mut out = Vec::with_capacity(cfg.backends.len());
    for b in &cfg.backends {
        let Some(tls) = &b.tls else {
            out.push(None);
            continue;
        };
        if tls.insecure_skip_verify {
            warn!(
                "{} {}: insecure_skip_verify: its TLS certificate is not verified",
                b.role.as_str(),
                b.name
            );
        }
        if roots.is_none() {
            let (loaded, warnings) = Roots::load(&cfg.backend_ca)?;
            for w in warnings {
                warn!("{w}");
            }
            roots = Some(loaded);
        }
        let Some(roots) = roots.as_ref() else { continue };
        let c = Connector::new(&tls.server_name, roots, &tls.ca, tls.insecure_skip_verify)
            .map_err(|e| format!("{} {}: {e}", b.role.as_str(), b.name))?;
        out.push(Some(c));
    }
    Ok(out)
}
