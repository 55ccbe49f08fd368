//! Serving: the listener (plain HTTP on loopback, TLS wherever else
//! unless the configuration says otherwise), a header timeout that also
//! closes idle and slow connections, TLS handshakes within the same limit,
//! WebSocket upgrades, and a graceful stop on SIGTERM or Ctrl-C.

use crate::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, Tls};

/// Whether `cfg` may listen where it says: plain HTTP only on loopback,
/// unless `insecure_plain_http`.
pub fn check_listen(cfg: &Config, addr: &SocketAddr) -> Result<(), Error> {
    if addr.ip().is_loopback() || cfg.tls.is_some() || cfg.insecure_plain_http {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "listening on {addr} (not loopback) without TLS would send tokens and session ids in clear: \
         give [tls] cert and key in the configuration, or set insecure_plain_http = true if a \
         reverse proxy in front terminates TLS"
    )))
}

/// The TLS acceptor for `tls` (PEM files).
pub fn acceptor(tls: &Tls) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("cert {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "cert {}: no certificate in it",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| Error::Tls(format!("key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` resolves; open
/// connections then get up to 10 s to finish. HTTP/1.1 only (what the
/// WebSocket routes need): a connection that has not sent a request's
/// headers within `header_timeout` (from its start, or from the previous
/// answer) is closed, idle or slow.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Past this many open connections the server stops accepting until
    // one closes (clients wait in the kernel's backlog).
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Consoles and tunnels send small packets that wait for answers
        // (an SSH window's adjust): Nagle's delay would cost each one.
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let (http, tls, mut stop) = (http.clone(), tls.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let conn = http.serve_connection(TokioIo::new(io), svc).with_upgrades();
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                tracing::debug!(%peer, "connection: {e}");
            }
        });
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after 10 s: closing them");
    }
}

/// A connection's stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
