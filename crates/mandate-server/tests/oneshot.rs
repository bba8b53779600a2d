//! The router without a socket (`app().oneshot`): cases a real client cannot observe reliably, such as
//! a body the server refuses before reading it whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use mandate_engine::clock::ManualClock;
use mandate_server::state::AppState;
use mandate_store::SqliteStore;
use std::sync::Arc;
use time::macros::datetime;
use tower::ServiceExt;

async fn state() -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-01 09:00 UTC)));
    let keys = mandate_engine::keys::KeyRing::open(&dir.path().join("keys"), 3600, 0).unwrap();
    (dir, AppState::new(Arc::new(store), clock, mandate_test::settings(), Arc::new(keys)))
}

#[tokio::test]
async fn an_unauthenticated_oversized_body_is_a_401() {
    let (_dir, state) = state().await;
    let body = format!("{{\"id\": \"{}\"}}", "a".repeat(100_000));
    let request = Request::post("/v1/agents")
        .header("content-type", "application/json")
        .header("authorization", "Bearer whatever")
        .body(Body::from(body))
        .unwrap();
    let response = mandate_server::app(state).oneshot(request).await.unwrap();
    // Authentication runs first: an unauthenticated caller learns nothing about body limits.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_oversized_body_from_an_authenticated_caller_is_refused_unread() {
    let (_dir, state) = state().await;
    let store = state.store.clone();
    let key = "an-admin-key-for-this-test-0123456789";
    let event = mandate_core::event::NewEvent::new("admin.credential_set", "system", 0, &serde_json::json!({}));
    store.set_admin_credential(&mandate_store::hash_api_key(key), event).await.unwrap();
    let body = format!("{{\"id\": \"{}\"}}", "a".repeat(100_000));
    let request = Request::post("/v1/agents")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .unwrap();
    let response = mandate_server::app(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let bytes = axum::body::to_bytes(response.into_body(), 10_000).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(problem["code"], "request.too_large");
    assert_eq!(problem["status"], 413);
    // Nothing was written.
    assert!(store.agents(&Default::default()).await.unwrap().is_empty());
}
