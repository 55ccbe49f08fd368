//! The dashboard at `/`: one page, its script and its style, written
//! here and compiled into the binary (no build step, nothing fetched).
//! The page asks for an API token and reads everything else through the
//! API with it: `/whoami`, `/queue`, `/events`, and the lab routes of
//! [`crate::watch`]. The server enforces each role; the page only hides
//! what a role may not use.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::api::Shared;

/// The routes.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style))
}

/// Scripts and styles from this server only, no inline script, no
/// framing; images may be blobs (the topology drawings).
const POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The dashboard.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()), responses((status = 200, description = "the page", content_type = "text/html", body = String)))]
async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", include_str!("../ui/index.html"))
}

/// Its script.
#[utoipa::path(get, path = "/ui/app.js", tag = "dashboard", security(()), responses((status = 200, description = "the script", content_type = "text/javascript", body = String)))]
async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    )
}

/// Its style.
#[utoipa::path(get, path = "/ui/app.css", tag = "dashboard", security(()), responses((status = 200, description = "the style", content_type = "text/css", body = String)))]
async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", include_str!("../ui/app.css"))
}
