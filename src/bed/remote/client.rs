//! The session side of the lab client: create, wait in the queue, keep
//! alive, end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};

use serde::de::DeserializeOwned;

use super::wire::{BoardRequest, NewSession, Session, SessionStatus};
use crate::error::{Error, Result};

/// A session on a lab server. Heartbeats go out from a background thread
/// until [`LabClient::close`] (or drop) ends the session.
pub struct LabClient {
    pub(crate) url: String,
    pub(crate) http: Client,
    pub(crate) session: String,
    pub(crate) token: String,
    stop: Arc<AtomicBool>,
    heart: Option<std::thread::JoinHandle<()>>,
    closed: bool,
}

/// The server's `{"detail": ...}` or the body, as an error.
pub(crate) fn checked(r: Response, what: &str) -> Result<Response> {
    if r.status().is_success() || r.status().as_u16() == 101 {
        return Ok(r);
    }
    let status = r.status().as_u16();
    let body = r.text().unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or(body);
    Err(Error::Lab {
        what: what.to_string(),
        status: Some(status),
        detail,
    })
}

pub(crate) fn net(what: &str) -> impl Fn(reqwest::Error) -> Error + '_ {
    move |e| Error::Lab {
        what: what.to_string(),
        status: e.status().map(|s| s.as_u16()),
        detail: e.to_string(),
    }
}

/// `REMOTE_LAB_URL` and `REMOTE_LAB_TOKEN` from `settings`: `None` when
/// no URL is set, an error when the token is missing.
pub(crate) fn url_and_token(settings: &crate::settings::Settings) -> Result<Option<(&str, &str)>> {
    let Some(url) = settings.lab_url() else {
        return Ok(None);
    };
    let token = settings.lab_token().ok_or_else(|| {
        Error::Config(format!(
            "{} is set but {} is not: ask the lab's operator for a token (alpy-lab token create)",
            super::URL_VAR,
            super::TOKEN_VAR
        ))
    })?;
    Ok(Some((url, token)))
}

impl LabClient {
    /// A session on the server at `REMOTE_LAB_URL` with the token in
    /// `REMOTE_LAB_TOKEN`; `None` when `REMOTE_LAB_URL` is unset or empty.
    pub fn from_env() -> Result<Option<LabClient>> {
        LabClient::from_settings(&crate::settings::Settings::from_env())
    }

    /// [`LabClient::from_env`] with `settings` instead of the environment.
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<Option<LabClient>> {
        match url_and_token(settings)? {
            Some((url, token)) => LabClient::connect(url, token).map(Some),
            None => Ok(None),
        }
    }

    /// Creates a session on the server at `url` (`https://` is checked
    /// against the system's CAs and `REMOTE_LAB_CA`'s).
    pub fn connect(url: &str, token: &str) -> Result<LabClient> {
        LabClient::open(url, token, None)
    }

    /// Creates a session that reserves a board the request fits: it
    /// waits in the queue until one is free (and its class's setup script
    /// passed), then holds it while this client's heartbeats go out.
    /// [`LabClient::wait_active`] waits for it; [`LabClient::info`] says
    /// which board it holds.
    ///
    /// ```no_run
    /// use alpy::lab::{wire::BoardRequest, LabClient};
    /// # fn main() -> alpy::Result<()> {
    /// let want = BoardRequest { class: Some("fw-9000".into()), tags: vec![] };
    /// let lab = LabClient::reserve_board("https://lab-host:8300", "alpylab_...", &want)?;
    /// lab.wait_active(std::time::Duration::from_secs(3600))?;
    /// println!("holding {:?}", lab.info()?.board);
    /// lab.close()?;
    /// # Ok(()) }
    /// ```
    pub fn reserve_board(url: &str, token: &str, want: &BoardRequest) -> Result<LabClient> {
        LabClient::open(url, token, Some(want))
    }

    fn open(url: &str, token: &str, board: Option<&BoardRequest>) -> Result<LabClient> {
        let url = url.trim_end_matches('/').to_string();
        let http = super::tls::http_client(token, Duration::from_secs(900))?;
        let mut ask = http.post(format!("{url}/session"));
        if let Some(b) = board {
            ask = ask.json(&NewSession {
                board: Some(b.clone()),
            });
        }
        let r = ask.send().map_err(net(&format!("reach {url}")))?;
        let info: Session = checked(r, "create a session")?
            .json()
            .map_err(net("read the new session"))?;
        let Some(session_id) = info.session_id else {
            return Err(Error::Lab {
                what: format!("create a session at {url}"),
                status: None,
                detail: "the answer has no session_id (is this an alpy-lab server?)".into(),
            });
        };
        log::info!(target: "alpy::lab", "session {} at {url}: {} (position {})", info.handle, info.status, info.position);
        let stop = Arc::new(AtomicBool::new(false));
        let heart = {
            let (http, url, id, stop) =
                (http.clone(), url.clone(), session_id.clone(), stop.clone());
            std::thread::Builder::new()
                .name("lab-heartbeat".into())
                .spawn(move || heartbeat(&http, &url, &id, &stop))
                .map_err(|e| Error::io("spawn the heartbeat thread", e))?
        };
        Ok(LabClient {
            url,
            http,
            session: session_id,
            token: token.to_string(),
            stop,
            heart: Some(heart),
            closed: false,
        })
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// The session as the server sees it.
    pub fn info(&self) -> Result<Session> {
        let r = self
            .http
            .get(format!("{}/session/{}", self.url, self.session))
            .send()
            .map_err(net("ask for the session"))?;
        checked(r, "ask for the session")?
            .json()
            .map_err(net("read the session"))
    }

    /// Waits until the session is active, logging its place in the queue
    /// as it moves; an error if it expires or `timeout` passes.
    pub fn wait_active(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = -1;
        loop {
            let info = self.info()?;
            match info.status {
                SessionStatus::Active => return Ok(()),
                SessionStatus::Waiting => {
                    if info.position != last {
                        log::info!(target: "alpy::lab", "waiting for the lab: position {} in the queue", info.position);
                        last = info.position;
                    }
                }
                over => {
                    return Err(Error::Closed(format!(
                        "lab session {} is {over}{}",
                        info.handle,
                        info.note.map(|n| format!(": {n}")).unwrap_or_default()
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "lab session {} to become active (position {last})",
                        self.session
                    ),
                    timeout,
                    tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The nodes of the lab this session holds.
    pub(crate) fn nodes(&self) -> crate::bed::remote::remote_nodes::LabNodes {
        crate::bed::remote::remote_nodes::LabNodes {
            http: self.http.clone(),
            url: self.url.clone(),
            session: self.session.clone(),
        }
    }

    /// `GET path` with this session's header, read as `T`; `what` names
    /// the call in errors.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let r = self
            .with_session(self.http.get(format!("{}{path}", self.url)))
            .send()
            .map_err(net(what))?;
        checked(r, what)?.json().map_err(net(what))
    }

    /// A request with this session's header.
    pub(crate) fn with_session(&self, b: RequestBuilder) -> RequestBuilder {
        b.header("X-Session-ID", &self.session)
    }

    /// Ends the session (releasing its lab); errors are the server's.
    pub fn close(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heart.take() {
            let _ = h.join();
        }
        let r = self
            .http
            .delete(format!("{}/session/{}", self.url, self.session))
            .send()
            .map_err(net("end the session"))?;
        checked(r, "end the session").map(drop)
    }
}

impl Drop for LabClient {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            log::warn!(target: "alpy::lab", "{e}");
        }
    }
}

/// Every few seconds until `stop`: the server drops sessions without them.
fn heartbeat(http: &Client, url: &str, id: &str, stop: &AtomicBool) {
    let mut last = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) {
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            match http
                .post(format!("{url}/session/heartbeat"))
                .header("X-Session-ID", id)
                .timeout(Duration::from_secs(10))
                .send()
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => log::warn!(target: "alpy::lab", "heartbeat: {}", r.status()),
                Err(e) => log::warn!(target: "alpy::lab", "heartbeat: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
