//! The OpenAPI document served at `/openapi.json`, generated (utoipa) from
//! the handlers' `#[utoipa::path]` attributes as the router registers
//! them, and from the shared wire types' schemas: a route cannot be
//! served without being in the document.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The document's frame: its title, the bearer scheme, the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "alpy-lab",
        description = "Sessions in a FIFO queue, heartbeats, and reference-counted alpy test beds on a shared host. Every route but /healthz needs `Authorization: Bearer <token>`; a token's role (viewer, user, operator) decides what it may call."
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    components(schemas(alpy::lab::wire::ErrorBody)),
    tags(
        (name = "sessions", description = "A place in the queue, kept by heartbeats"),
        (name = "lab", description = "The lab the active session holds (X-Session-ID)"),
        (name = "operator", description = "Operator tokens only"),
        (name = "boards", description = "The boards the lab lends: any token lists them (never their power or console settings); operators take them offline and online"),
        (name = "watch", description = "A lab by its id, for the dashboard: any token watches, its holder types, its holder and operators download"),
        (name = "dashboard", description = "The page at /, its script and style (no token: the page asks for one)"),
        (name = "service", description = "The server itself")
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds 401 and 403 to every operation that needs a token (all but those
/// marked `security(())`); run on the finished document, once the
/// routers have added their paths.
pub fn add_auth_answers(api: &mut utoipa::openapi::OpenApi) {
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        for op in operations(item) {
            let open = op.security.as_ref().is_some_and(|s| {
                serde_json::to_value(s).is_ok_and(|v| v == serde_json::json!([{}]))
            });
            if open {
                continue;
            }
            let held_lab = op
                .tags
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "lab"));
            let json_body = op.request_body.as_ref().is_some_and(|b| match b {
                utoipa::openapi::RefOr::T(b) => b.content.keys().any(|c| c == "application/json"),
                utoipa::openapi::RefOr::Ref(_) => false,
            });
            let r = &mut op.responses.responses;
            r.entry("401".into())
                .or_insert_with(|| error("no valid token").into());
            r.entry("403".into())
                .or_insert_with(|| error("the token's role may not").into());
            if held_lab {
                r.entry("409".into()).or_insert_with(|| {
                    error("the lab is starting, being destroyed, or its bed refused").into()
                });
            }
            if json_body {
                r.entry("413".into())
                    .or_insert_with(|| error("the body is over limits.max_body_bytes").into());
                r.entry("415".into())
                    .or_insert_with(|| error("the body is not application/json").into());
                r.entry("422".into())
                    .or_insert_with(|| error("the JSON does not have the body's shape").into());
            }
        }
    }
}

/// The operations of a path item, whichever methods it has.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The header that names the caller's session on `/lab…` calls.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // a description for the document only
pub struct SessionHeader {
    /// The session's id (from `POST /session`).
    #[param(rename = "X-Session-ID")]
    x_session_id: String,
}
