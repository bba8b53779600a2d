//! The pages' frame, shared pieces and assets. HTML is written with `maud`, which escapes every
//! interpolated value, so nothing an agent, an upstream tool or a client metadata document wrote can
//! become markup. The assets are compiled into the binary; pages load nothing from elsewhere, and
//! the Content-Security-Policy says so.

use super::session::Signed;
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// `GET /console/assets/console.css`.
pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], CSS)
        .into_response()
}

/// `GET /console/assets/console.js`.
pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], JS)
        .into_response()
}

/// A page as a response: no caching, no framing, no referrer, scripts and styles from here only.
pub(crate) fn page_response(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with no referrer at all a browser sends `Origin: null` on the
    // page's own forms, and the origin check could not tell them from a forged one.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// Every page's `<head>`: its title, the stylesheet and the script, all from this server.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Mandate" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// The frame of every signed-in page: navigation, who is signed in, sign-out.
pub(crate) fn layout(signed: &Signed, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console/approvals" { "Mandate" }
                    nav {
                        a href="/console/approvals" { "Approvals " span #approval-count .badge data-count-url="/console/approvals/count" { "…" } }
                        a href="/console/chains" { "Chains" }
                        a href="/console/incident" { "Incident" }
                        a href="/console/registry" { "Registry" }
                    }
                    div.who {
                        span #principal { (signed.caller.principal()) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page without navigation (sign-in, consent, errors).
pub(crate) fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { main { h1 { (title) } (body) } }
        }
    }
}

/// The sign-in page.
pub(crate) fn login(state: &AppState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let oidc = state.oidc.as_ref().map(|o| o.issuer().to_owned());
    page_response(
        status,
        bare(
            "Sign in",
            html! {
                @if let Some(e) = error { p.error role="alert" { (e) } }
                @if let Some(sign_in) = &state.web.settings.sign_in {
                    p { a.button #sign-in-idp href={ "/console/oidc/start?" (serde_urlencoded::to_string([("next", next)]).unwrap_or_default()) } { (sign_in.label) } }
                    p.hint { "Or with a credential:" }
                }
                form.signin method="post" action="/console/login" {
                    input type="hidden" name="next" value=(next);
                    label for="credential" {
                        "Your Mandate API key"
                        @if let Some(issuer) = &oidc { ", or an ID token from " code { (issuer) } }
                    }
                    input #credential type="password" name="credential" autocomplete="off" required;
                    button type="submit" { "Sign in" }
                }
                p.hint { "The console acts with exactly what your credential may do over the API." }
            },
        ),
    )
}

/// A refusal as a page: the status, the stable code and what to do.
pub(crate) fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    page_response(
        status,
        bare(
            "Not done",
            html! {
                p.error role="alert" { (message) }
                p { "Code: " code.reason { (code) } }
                p { a href="/console/approvals" { "Back to the console" } }
            },
        ),
    )
}

/// An API refusal shown inside the frame (the human is signed in).
pub(crate) fn api_refusal(signed: &Signed, title: &str, e: &crate::error::ApiError) -> Response {
    page_response(
        e.status(),
        layout(
            signed,
            title,
            html! {
                p.error role="alert" { (e.detail()) }
                p { "Code: " code.reason { (e.code()) } }
            },
        ),
    )
}

/// A hidden CSRF field.
pub(crate) fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

/// A time in Unix milliseconds, as UTC text.
pub(crate) fn at_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// A JSON value as text for a table cell.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON document, indented, in a `pre`.
pub(crate) fn json_block(v: &Value) -> Markup {
    html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}

/// Two definitions side by side, as pretty JSON, with the lines that differ marked: removed ones on
/// the old side, added ones on the new side.
pub(crate) fn json_diff(old: &Value, new: &Value) -> (Markup, Markup) {
    let (old, new) =
        (serde_json::to_string_pretty(old).unwrap_or_default(), serde_json::to_string_pretty(new).unwrap_or_default());
    let diff = similar::TextDiff::from_lines(&old, &new);
    let side = |keep: similar::ChangeTag, mark: &str| {
        html! {
            pre.json.diff-side {
                @for change in diff.iter_all_changes() {
                    @if change.tag() == similar::ChangeTag::Equal { (change.value()) }
                    @else if change.tag() == keep { span class=(mark) { (change.value()) } }
                }
            }
        }
    };
    (side(similar::ChangeTag::Delete, "del"), side(similar::ChangeTag::Insert, "ins"))
}

/// Reason codes and their messages (or reasons as plain sentences, as a held call's are).
pub(crate) fn reasons(v: &Value) -> Markup {
    html! {
        ul.reasons {
            @for r in v.as_array().into_iter().flatten() {
                @if let Some(plain) = r.as_str() { li { (plain) } } @else {
                li {
                    code.reason { (text(&r["code"])) }
                    @if let Some(hop) = r["hop"].as_u64() { " " span.hop { "hop " (hop) } }
                    " " (text(&r["message"]))
                } }
            }
        }
    }
}
