//! A lab server seen from outside any session: what it holds, and the
//! operator's actions. `alpy lab` is built on it; a script can be too.

use std::time::Duration;

use eventsource_stream::Eventsource;
use reqwest::blocking::{Client, RequestBuilder};
use serde::de::DeserializeOwned;

use super::client::{checked, net};
use super::wire::{
    Board, Boards, Destroying, Followed, HealthCheck, MoveTo, Moved, Queue, TakeOffline,
};
use crate::error::{Error, Result};

/// A lab server and a token, with no session: for looking at the queue
/// and labs, and (with an operator's token) for ending sessions, moving
/// them in the queue and destroying labs.
///
/// ```no_run
/// # fn main() -> alpy::Result<()> {
/// let lab = alpy::lab::LabServer::new("http://lab-host:8300", "alpylab_...")?;
/// let q = lab.queue()?;
/// for s in &q.sessions {
///     println!("{} {} {}", s.position, s.handle, s.status);
/// }
/// # Ok(()) }
/// ```
pub struct LabServer {
    url: String,
    token: String,
    http: Client,
}

impl LabServer {
    /// The server at `url` (`https://` is checked against the system's
    /// CAs and `REMOTE_LAB_CA`'s), called with `token`.
    pub fn new(url: &str, token: &str) -> Result<LabServer> {
        Ok(LabServer {
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: super::tls::http_client(token, Duration::from_secs(60))?,
        })
    }

    /// The server at `url`, else `REMOTE_LAB_URL`, with `token`, else
    /// `REMOTE_LAB_TOKEN`: an error naming what to give when one is
    /// missing.
    pub fn from_args_or_env(url: Option<String>, token: Option<String>) -> Result<LabServer> {
        let here = crate::settings::Settings::from_env();
        let url = url
            .or_else(|| here.lab_url().map(str::to_string))
            .ok_or_else(|| Error::Config(format!("give --url or set {}", super::URL_VAR)))?;
        let token = token
            .or_else(|| here.lab_token().map(str::to_string))
            .ok_or_else(|| Error::Config(format!("give --token or set {}", super::TOKEN_VAR)))?;
        LabServer::new(&url, &token)
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token it calls with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The live sessions (by handle) and the labs, as this token may see
    /// them.
    pub fn queue(&self) -> Result<Queue> {
        self.call(self.http.get(self.at("/queue")), "GET /queue")
    }

    /// The boards the lab lends, with their states (never their power or
    /// console settings).
    pub fn boards(&self) -> Result<Boards> {
        self.call(self.http.get(self.at("/boards")), "GET /boards")
    }

    /// Operator: takes board `name` offline for `reason` (it is not lent
    /// until it is put back online).
    pub fn board_offline(&self, name: &str, reason: &str) -> Result<Board> {
        self.call(
            self.http
                .post(self.at(&format!("/boards/{name}/offline")))
                .json(&TakeOffline {
                    reason: reason.to_string(),
                }),
            &format!("take board {name} offline"),
        )
    }

    /// Operator: runs board `name`'s health check now; a failed check
    /// takes it offline.
    pub fn board_check(&self, name: &str) -> Result<HealthCheck> {
        self.call(
            self.http.post(self.at(&format!("/boards/{name}/check"))),
            &format!("health-check board {name}"),
        )
    }

    /// Operator: puts board `name` back online.
    pub fn board_online(&self, name: &str) -> Result<Board> {
        self.call(
            self.http.post(self.at(&format!("/boards/{name}/online"))),
            &format!("put board {name} online"),
        )
    }

    /// Operator: destroys lab `id`; `force` even if sessions hold it.
    pub fn destroy_lab(&self, id: &str, force: bool) -> Result<Destroying> {
        let path = format!("/labs/{id}?force={force}");
        self.call(
            self.http.delete(self.at(&path)),
            &format!("destroy lab {id}"),
        )
    }

    /// Operator: ends the live session with this handle (its lab is
    /// released; the next in the queue is promoted).
    pub fn end_session(&self, handle: &str) -> Result<()> {
        let what = format!("end session {handle}");
        let r = self
            .http
            .delete(self.at(&format!("/sessions/{handle}")))
            .send()
            .map_err(net(&what))?;
        checked(r, &what).map(drop)
    }

    /// Operator: moves the waiting session with this handle to
    /// `position` in the queue (1 = next).
    pub fn move_session(&self, handle: &str, position: u32) -> Result<Moved> {
        self.call(
            self.http
                .post(self.at(&format!("/sessions/{handle}/position")))
                .json(&MoveTo { position }),
            &format!("move session {handle}"),
        )
    }

    /// Follows the server's events (`GET /events`): first those it still
    /// keeps after event `since` (`None`: all it keeps), then each as it
    /// happens, until `each` returns false (then `Ok(true)`) or the
    /// server ends the stream (`Ok(false)`: it stopped, or this follower
    /// fell behind; follow again from the last id seen). `each` is told
    /// when events were missed ([`Followed::Missed`]).
    ///
    /// ```no_run
    /// # fn main() -> alpy::Result<()> {
    /// use alpy::lab::wire::Followed;
    /// let lab = alpy::lab::LabServer::new("http://lab-host:8300", "alpylab_...")?;
    /// lab.events(None, |f| {
    ///     match f {
    ///         Followed::Event(e) => println!("{e}"),
    ///         Followed::Missed => println!("(missed some: read the queue again)"),
    ///     }
    ///     true
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn events(
        &self,
        since: Option<u64>,
        mut each: impl FnMut(Followed) -> bool,
    ) -> Result<bool> {
        let what = format!("follow the events ({})", self.url);
        let mut req = self
            .http
            .get(self.at("/events"))
            .header("Accept", "text/event-stream");
        if let Some(id) = since {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = checked(req.send().map_err(net(&what))?, &what)?;
        let stream = futures_util::stream::iter(Chunks(r)).eventsource();
        // The body is read blocking, so the stream is driven on this thread.
        for m in futures_executor::block_on_stream(stream) {
            let m = m.map_err(|e| Error::Lab {
                what: what.clone(),
                status: None,
                detail: e.to_string(),
            })?;
            let followed = match m.event.as_str() {
                "gap" => Followed::Missed,
                _ if m.data.is_empty() => continue,
                _ => Followed::Event(serde_json::from_str(&m.data).map_err(|e| Error::Lab {
                    what: what.clone(),
                    status: None,
                    detail: format!("an event that is not one: {e}: {}", m.data),
                })?),
            };
            if !each(followed) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn call<T: DeserializeOwned>(&self, req: RequestBuilder, what: &str) -> Result<T> {
        let what = format!("{what} ({})", self.url);
        let r = req.send().map_err(net(&what))?;
        checked(r, &what)?.json().map_err(net(&what))
    }
}

/// A blocking body read in chunks as it arrives (each read waits for the
/// next bytes; the server's keep-alive comments keep it under the
/// client's read timeout).
struct Chunks(reqwest::blocking::Response);

impl Iterator for Chunks {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        let mut buf = vec![0u8; 8192];
        match self.0.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(buf))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
