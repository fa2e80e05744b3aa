//! The gateway's handlers in-process, without a socket (`tower::ServiceExt::oneshot`):
//! errors in OpenAI's shape with the status, `type` and `code` their kind sets, tenants'
//! keys, and the `/v1/route` dry run with the router's version. Real encoder and the
//! committed heads and scorer; no upstream is ever called.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use switchyard_gateway::runtime::AppState;
use switchyard_gateway::{Config, ConfigSource, app, build_state};
use tower::ServiceExt;

fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
        .join("../..")
}

/// The sha256 of `sk-test`, tenant `t`'s key.
const KEY_SHA: &str = "f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0";

fn state(tenants: bool) -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let mut text = format!(
        "[router]\nencoder = {:?}\nheads = {:?}\nscorer = {:?}\ndevice = \"cpu\"\n\
         [cache]\nenabled = false\n[log]\ndir = {:?}\n\
         [providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [models.\"gpt-4-1106-preview\"]\nprovider = \"up\"\ninput_per_mtok = 10.0\noutput_per_mtok = 30.0\n\
         [models.\"mistralai/mixtral-8x7b-chat\"]\nprovider = \"up\"\ninput_per_mtok = 0.6\noutput_per_mtok = 0.6\n\
         [routes.auto]\nmodels = [\"gpt-4-1106-preview\", \"mistralai/mixtral-8x7b-chat\"]\n",
        root.join("models/all-MiniLM-L6-v2"),
        root.join("models/classifier"),
        root.join("models/scorer"),
        dir.path().join("logs"),
    );
    if tenants {
        text.push_str(&format!("[tenants.t]\nkey_sha256 = {KEY_SHA:?}\n"));
    }
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let path = dir.path().join("switchyard.toml");
    (build_state(&ConfigSource::File(path), config).unwrap(), dir)
}

async fn call(state: &Arc<AppState>, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn error_of(body: &Value) -> (&str, Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (e["type"].as_str().unwrap(), e["code"].as_str())
}

#[tokio::test]
async fn bad_requests_get_the_status_type_and_code_of_their_kind() {
    let (state, _dir) = state(false);
    let chat = "/v1/chat/completions";
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            "/v1/nope",
            "{}".to_owned(),
            404,
            "invalid_request_error",
            None,
        ),
        (chat, "{".to_owned(), 400, "invalid_request_error", None),
        (
            chat,
            json!({"model": "gpt-9", "messages": user}).to_string(),
            404,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        (
            chat,
            json!({"model": "auto", "messages": []}).to_string(),
            400,
            "invalid_request_error",
            None,
        ),
        (
            chat,
            json!({"model": "auto", "messages": user, "temperature": 7}).to_string(),
            400,
            "invalid_request_error",
            None,
        ),
    ];
    for (path, body, status, kind, code) in cases {
        let (got, answer) = call(&state, path, &body, None).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert_eq!(error_of(&answer), (kind, code), "{path} {body}");
    }
}

#[tokio::test]
async fn tenants_need_their_key() {
    let (state, _dir) = state(true);
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]});
    for key in [None, Some("sk-wrong")] {
        let (status, answer) = call(&state, "/v1/route", &body.to_string(), key).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(
            error_of(&answer),
            ("authentication_error", Some("invalid_api_key"))
        );
        assert!(!answer.to_string().contains("sk-wrong"));
    }
}

#[tokio::test]
async fn the_route_dry_run_decides_with_the_routers_version() {
    let (state, _dir) = state(false);
    let body = json!({"model": "auto", "max_tokens": 50,
                      "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Prove that there are infinitely many primes."}]});
    let (status, answer) = call(&state, "/v1/route", &body.to_string(), None).await;
    assert_eq!(status, 200, "{answer}");
    let decision = &answer["decision"];
    assert_eq!(answer["model"], decision["chosen"]);
    assert_eq!(decision["ranked"].as_array().unwrap().len(), 2);
    let version = decision["router_version"].as_str().unwrap();
    let runtime = state.runtime();
    assert_eq!(version, runtime.router.as_ref().unwrap().version());
    assert!(answer["latency_ms"]["embed_ms"].as_f64().unwrap() > 0.0);

    // A pinned model is not routed.
    let pinned = json!({"model": "gpt-4-1106-preview", "messages": body["messages"]});
    let (status, answer) = call(&state, "/v1/route", &pinned.to_string(), None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["decision"].is_null());
    assert_eq!(answer["order"], json!(["gpt-4-1106-preview"]));
}
