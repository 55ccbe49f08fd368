//! How the lab client reaches a server: every request carries the API
//! token, and `https://` servers are checked against the system's
//! certificate authorities plus the one in `REMOTE_LAB_CA` (a PEM file:
//! a lab's own CA, or its self-signed certificate).

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::{Error, Result};

/// The environment variable naming a PEM file of CA certificates to
/// trust for the lab server, beside the system's.
pub const CA_VAR: &str = "REMOTE_LAB_CA";

/// The TLS settings: the system's roots and `REMOTE_LAB_CA`'s.
pub(crate) fn client_config() -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(ca) = crate::settings::Settings::from_env().lab_ca() {
        let bad = |e: String| {
            Error::Config(format!(
                "{CA_VAR}={}: {e}: give a PEM file of the lab's CA certificate",
                ca.to_string_lossy()
            ))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
            .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client for a lab server: `token` on every request, requests
/// that take longer than `timeout` fail, `https://` checked as above.
///
/// ```no_run
/// # fn main() -> alpy::Result<()> {
/// let http = alpy::lab::http_client("alpylab_...", std::time::Duration::from_secs(30))?;
/// let queue = http.get("https://lab-host:8300/queue").send();
/// # Ok(()) }
/// ```
pub fn http_client(token: &str, timeout: Duration) -> Result<Client> {
    let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Config("the lab token holds characters a header cannot".into()))?;
    auth.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, auth);
    Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .use_preconfigured_tls((*client_config()?).clone())
        .build()
        .map_err(|e| Error::Config(format!("lab server: build an HTTP client: {e}")))
}
