//! Who is asking: every route but `/healthz` needs an API token
//! ([`Caller`]); a token's role ([`Role`]) says what it may do; a session
//! belongs to the token that created it, and another token's session is
//! answered as if it did not exist ([`OwnSession`], [`ActiveSession`]).
//! Handlers take these as extractors, so no route can forget the check.

use alpy::lab::wire::SessionStatus;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use crate::api::Shared;
use crate::config::Role;
use crate::db::{handle, session_key, SessionRow};
use crate::error::{ApiError, ApiResult};

/// The token that made the request: its name and role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role is `role` or above.
    pub fn at_least(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "this needs a {role} token; token {:?} is a {}",
            self.name, self.role
        )))
    }

    /// Whether the caller sees host paths, PIDs and every session.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// A caller with an `operator` token (403 otherwise), checked before a
/// handler reads any body.
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> ApiResult<Operator> {
        let caller = Caller::from_request_parts(parts, app).await?;
        caller.at_least(Role::Operator)?;
        Ok(Operator(caller))
    }
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, msg.into())
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> ApiResult<Caller> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match value {
            Some(value) => value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .ok_or_else(|| unauthorized("the Authorization scheme must be Bearer"))?,
            None => websocket_token(parts).ok_or_else(|| {
                unauthorized(
                    "send Authorization: Bearer <token> (alpy-lab token create NAME makes one)",
                )
            })?,
        };
        let t = app
            .cfg
            .token(token)
            .ok_or_else(|| unauthorized("unknown API token"))?;
        Ok(Caller {
            name: t.name.clone(),
            role: t.role,
        })
    }
}

/// A browser's WebSocket cannot send headers: it offers the token as the
/// subprotocol `bearer.<token>`, beside [`WS_PROTOCOL`] (what the server
/// answers with). Only on a WebSocket upgrade of a watched console
/// (`GET /labs/{id}/console`): nowhere else may a token travel there.
fn websocket_token(parts: &Parts) -> Option<&str> {
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    let console = matches!(segments.as_slice(), ["", "labs", id, "console"] if !id.is_empty());
    if parts.method != axum::http::Method::GET || !console {
        return None;
    }
    let upgrade = parts.headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer."))
}

/// The subprotocol a browser's console WebSocket asks for (with
/// `bearer.<token>`).
pub const WS_PROTOCOL: &str = "alpy-lab";

/// The caller's own live or ended session, named by `X-Session-ID`.
#[derive(Debug, Clone)]
pub struct OwnSession {
    /// Who asks.
    pub caller: Caller,
    /// The session as stored.
    pub session: SessionRow,
}

impl OwnSession {
    /// The session's handle (safe to log).
    pub fn handle(&self) -> &str {
        handle(&self.session.key)
    }
}

/// The session with id `id` if it belongs to `caller`: 404 otherwise, the
/// same answer as for an id that does not exist.
pub async fn own_session(app: &Shared, caller: &Caller, id: &str) -> ApiResult<SessionRow> {
    let key = session_key(id);
    let row = app.db(move |db| db.session(&key)).await?;
    match row {
        Some(s) if s.owner == caller.name => Ok(s),
        _ => Err(ApiError::not_found("no such session for this token")),
    }
}

impl FromRequestParts<Shared> for OwnSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> ApiResult<OwnSession> {
        let caller = Caller::from_request_parts(parts, app).await?;
        // A viewer has no sessions; a token moved to viewer loses its own.
        caller.at_least(Role::User)?;
        let id = parts
            .headers
            .get("x-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad("send the session's id in X-Session-ID"))?;
        let session = own_session(app, &caller, &id).await?;
        Ok(OwnSession { caller, session })
    }
}

/// [`OwnSession`] that is the active one (423 otherwise).
#[derive(Debug, Clone)]
pub struct ActiveSession(pub OwnSession);

impl FromRequestParts<Shared> for ActiveSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> ApiResult<ActiveSession> {
        let own = OwnSession::from_request_parts(parts, app).await?;
        if own.session.status != SessionStatus::Active {
            return Err(ApiError(
                StatusCode::LOCKED,
                format!(
                    "session {} is {} (position {}): /lab calls need the active session",
                    own.handle(),
                    own.session.status,
                    own.session.position
                ),
            ));
        }
        Ok(ActiveSession(own))
    }
}

impl std::ops::Deref for ActiveSession {
    type Target = OwnSession;
    fn deref(&self) -> &OwnSession {
        &self.0
    }
}
