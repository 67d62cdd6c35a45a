//! The vendor and distributor portals: a page application served by the API server from
//! assets compiled into the binary (no build step, nothing fetched from elsewhere). The pages
//! call the same `/public/v1` API with the key the user logs in with, so a page can do exactly
//! what the key may do through the API and nothing more.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

/// The portal's files: name, content type, content.
const ASSETS: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", include_str!("../portal/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../portal/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../portal/app.css")),
];

/// Pages may load only their own scripts, styles and API; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn asset(name: &str, request: &HeaderMap) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""))),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    if request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, *body).into_response()
}

pub(crate) async fn index(request: HeaderMap) -> Response {
    asset("index.html", &request)
}

pub(crate) async fn file(Path(name): Path<String>, request: HeaderMap) -> Response {
    asset(&name, &request)
}

pub(crate) async fn to_portal() -> Redirect {
    Redirect::to("/portal/")
}
