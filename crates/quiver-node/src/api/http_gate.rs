//! Who may see the HTTP pages. `/health` is open, for probes; `/metrics` needs a token
//! unless `[auth] open_metrics`; the dashboard needs one too, from an `authorization:
//! Bearer` header or from the cookie the login form sets. Each page then shows what the
//! caller's token may read (`ui`), from the `Call` it finds in the request's extensions; a
//! request without a valid token goes on the audit record.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use quiver_core::access::{Need, Principal};
use serde::Deserialize;

use crate::auth::{Call, bearer};
use crate::node::Node;
use crate::ui::html::{escape, page};

/// The cookie that carries a dashboard user's token.
const COOKIE: &str = "quiver_token";
const LOGIN: &str = "/ui/login";

pub fn routes() -> axum::Router<Arc<Node>> {
    axum::Router::new().route(LOGIN, axum::routing::get(login_form).post(login))
}

/// The token a request carries: its bearer header, else, for a dashboard page, the
/// dashboard's cookie (never for the JSON API: another site's page could make a browser send
/// it there).
fn secret(headers: &HeaderMap, path: &str) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(bearer(value).to_string());
    }
    if !path.starts_with("/ui") {
        return None;
    }
    let cookies = headers.get_all(header::COOKIE).into_iter().filter_map(|v| v.to_str().ok());
    cookies.flat_map(|v| v.split(';')).find_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
}

/// Pages that show the cluster itself rather than a project (`/metrics` may be opened to
/// scrapers with `[auth] open_metrics`).
const CLUSTER_VIEWS: &[&str] = &["/metrics", "/ui/cluster"];

/// Lets a request through with its caller in the extensions, or answers why not.
pub async fn gate(State(node): State<Arc<Node>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let from = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let page = if path.starts_with("/ui") { "dashboard" } else { "http" };
    let open = path == "/health" || path == LOGIN || (path == "/metrics" && node.config.auth.open_metrics);
    if open {
        request.extensions_mut().insert(Arc::new(Call::new(page, Principal::open(), from)));
        return next.run(request).await;
    }
    let what = format!("{} {path}", request.method());
    match node.gate.authenticate(secret(request.headers(), path).as_deref(), from, &what) {
        Ok(caller) => {
            // As gRPC admission does: the caller's rate, and the body's size when it says.
            let length = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            if let Err(e) = node.gate.limit(&caller.name, length) {
                let e = e.into_core();
                node.metrics.admission_refused(quiver_proto::status_from_error(&e).code());
                return super::json_answer::error(e);
            }
            let call = Call::new(page, caller, from);
            // Node addresses, groups, backup locations: for the cluster's admins.
            if CLUSTER_VIEWS.contains(&path)
                && let Err(e) = call.allow(Need::Cluster { action: "viewing the cluster" })
            {
                node.audit.record_later(call.entry(
                    node.id,
                    Some(format!("GET {path}")),
                    format!("[{}] {e}", e.code()),
                ));
                return (StatusCode::FORBIDDEN, format!("{e}\n")).into_response();
            }
            request.extensions_mut().insert(Arc::new(call));
            next.run(request).await
        }
        Err(e) => unauthenticated(path, request.uri(), e),
    }
}

/// The sign-in form for a page, or 401 (in JSON for the JSON API; the refusal is counted for
/// the audit log).
fn unauthenticated(path: &str, uri: &axum::http::Uri, e: quiver_store::error::Error) -> Response {
    if path.starts_with("/v1/") {
        return super::json_answer::error(e.into_core());
    }
    match path.starts_with("/ui") {
        true => {
            let back = uri.path_and_query().map_or("/ui", |p| p.as_str());
            Redirect::to(&format!("{LOGIN}?next={}", url_encode(back))).into_response()
        }
        false => {
            let mut response = (StatusCode::UNAUTHORIZED, format!("{}\n", e.into_core())).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// The sign-in form. A link `/ui/login#token=qvt_…` signs in at once: the page's script
/// submits the token from the fragment, which browsers never send to a server (or a log).
fn login_page(message: &str, next: &str) -> Html<String> {
    let form = format!(
        "<p>{}</p><form method=\"post\" action=\"{LOGIN}\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
         <input type=\"password\" name=\"token\" \
         placeholder=\"qvt_…\" size=\"72\" autofocus> <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">A token from <code>quiverctl token create</code>; the dashboard shows what it may read.</p>\
         <script>const m = location.hash.match(/token=([^&]+)/); if (m) {{ const f = document.forms[0]; \
         f.token.value = decodeURIComponent(m[1]); history.replaceState(null, '', location.pathname); f.submit(); }}\
         </script>",
        escape(message),
        escape(next)
    );
    Html(page("Sign in", &form))
}

#[derive(Deserialize)]
struct AfterLogin {
    next: Option<String>,
}

/// Where to go after signing in: a dashboard page, never another site.
fn next_page(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with(LOGIN)).unwrap_or("/ui")
}

/// Percent-encodes what goes in a query parameter.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn login_form(State(node): State<Arc<Node>>, Query(q): Query<AfterLogin>) -> Response {
    let next = next_page(q.next.as_deref());
    if !node.gate.enabled() {
        return Redirect::to(next).into_response();
    }
    login_page("This cluster needs a token.", next).into_response()
}

#[derive(Deserialize)]
struct Login {
    token: String,
    next: Option<String>,
}

async fn login(
    State(node): State<Arc<Node>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Form(form): Form<Login>,
) -> Response {
    let next = next_page(form.next.as_deref());
    let token = form.token.trim();
    match node.gate.authenticate(Some(token), Some(from), "sign in") {
        Ok(_) => {
            // Never readable by scripts, never sent to another site; only over TLS when on.
            let secure = if node.tls.is_some() { "; Secure" } else { "" };
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
            let mut response = Redirect::to(next).into_response();
            match HeaderValue::from_str(&cookie) {
                Ok(value) => {
                    response.headers_mut().insert(header::SET_COOKIE, value);
                    response
                }
                Err(_) => {
                    let page = login_page("That token has characters no token has.", next);
                    (StatusCode::BAD_REQUEST, page).into_response()
                }
            }
        }
        Err(e) => (StatusCode::UNAUTHORIZED, login_page(&e.into_core().to_string(), next)).into_response(),
    }
}
