//! One router: the same request gets the identical decision from `switchyard route --json`
//! and from the gateway's `POST /v1/route`, and a routing record's training features are
//! the serving features of the equivalent chat request. Real encoder, committed heads and
//! scorer, real HTTP on 127.0.0.1.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use switchyard_core::{DeviceSpec, ROUTING_TRUNCATION, RoutingRecord};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::{ModelSource, SentenceEncoder};
use switchyard_gateway::pipeline::request::ChatView;
use switchyard_gateway::{Config, ConfigSource, build_state, serve};
use switchyard_training::scorer::{LoadedPrompt, featurise};

fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
        .join("../..")
}

const MODELS: [&str; 3] = [
    "gpt-4-1106-preview",
    "mistralai/mixtral-8x7b-chat",
    "gpt-3.5-turbo-1106",
];
const PRICES: [(f64, f64); 3] = [(10.0, 30.0), (0.6, 0.6), (1.0, 2.0)];

const PROMPTS: [&str; 4] = [
    "Write a Python function that merges two sorted lists.",
    "What is the capital of Australia?",
    "Prove that the square root of 2 is irrational, step by step.",
    "Summarise the following text in one sentence: The committee met on Tuesday and after a long discussion about the budget decided to postpone the vote until next month, when more figures are available.",
];

/// The gateway's config: one route over the three models, priced as in `prices.json`.
fn gateway_config(dir: &std::path::Path, policy: &str) -> String {
    let root = root();
    let mut toml = format!(
        "[router]\nencoder = {:?}\nheads = {:?}\nscorer = {:?}\ndevice = \"cpu\"\n\n\
         [cache]\nenabled = false\n\n[log]\ndir = {:?}\n\n\
         [providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
         [routes.auto]\npolicy = {policy:?}\nmodels = {:?}\n",
        root.join("models/all-MiniLM-L6-v2"),
        root.join("models/classifier"),
        root.join("models/scorer"),
        dir.join("logs"),
        MODELS,
    );
    for (m, (i, o)) in MODELS.iter().zip(PRICES) {
        toml.push_str(&format!(
            "\n[models.{m:?}]\nprovider = \"up\"\ninput_per_mtok = {i:?}\noutput_per_mtok = {o:?}\n"
        ));
    }
    toml
}

fn prices_file(dir: &std::path::Path) -> PathBuf {
    let prices: serde_json::Map<String, Value> = MODELS
        .iter()
        .zip(PRICES)
        .map(|(m, (i, o))| {
            (
                (*m).to_owned(),
                json!({"input_per_mtok": i, "output_per_mtok": o}),
            )
        })
        .collect();
    let path = dir.join("prices.json");
    std::fs::write(&path, Value::Object(prices).to_string()).unwrap();
    path
}

fn cli_decision(prompt: &str, policy: &str, prices: &std::path::Path, max_tokens: u64) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["route", prompt, "--json", "--policy", policy])
        .args(["--candidates", &MODELS.join(",")])
        .args(["--prices", prices.to_str().unwrap()])
        .args(["--max-tokens", &max_tokens.to_string()])
        .current_dir(root())
        .env_remove("SWITCHYARD_MODEL")
        .env_remove("SWITCHYARD_HEADS")
        .env_remove("SWITCHYARD_SCORER")
        .env("SWITCHYARD_DEVICE", "cpu")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn encoder_present() -> bool {
    let present = root()
        .join("models/all-MiniLM-L6-v2/model.safetensors")
        .is_file();
    assert!(
        present,
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_route_and_the_gateway_decide_identically() {
    encoder_present();
    let dir = tempfile::tempdir().unwrap();
    let prices = prices_file(dir.path());
    for policy in ["threshold:0.7", "tradeoff:300"] {
        let text = gateway_config(dir.path(), policy);
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let state = build_state(&ConfigSource::File(dir.path().join("x.toml")), config).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let serving = state.clone();
        let server = tokio::spawn(async move {
            serve(serving, "127.0.0.1:0".parse().unwrap(), |a| {
                let _ = tx.send(a);
            })
            .await
        });
        let url = format!("http://{}/v1/route", rx.await.unwrap());
        switchyard_providers::install_crypto_provider();
        let client = reqwest::Client::new();
        for (i, prompt) in PROMPTS.iter().enumerate() {
            let max_tokens = 100 + 200 * i as u64;
            let body = json!({"model": "auto", "max_tokens": max_tokens,
                              "messages": [{"role": "user", "content": prompt}]});
            let served: Value = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let cli = cli_decision(prompt, policy, &prices, max_tokens);
            assert_eq!(
                served["decision"], cli,
                "{policy}, prompt {i}: gateway and CLI disagree"
            );
            assert!(
                cli["router_version"]
                    .as_str()
                    .is_some_and(|v| v.len() == 16)
            );
        }
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_features_are_the_serving_features() {
    encoder_present();
    let root = root();
    // A record whose benchmark reports a real token count far from the text's estimate:
    // the count may drive cost, never the length feature.
    let record: RoutingRecord = serde_json::from_value(json!({
        "v": 1, "id": "parity/1", "source": "test:parity", "task": "code",
        "messages": [{"role": "system", "content": "You are a careful engineer."},
                     {"role": "user", "content": "Write a Rust function that parses an ISO 8601 date."}],
        "outcomes": {"gpt-4-1106-preview": {"score": 1.0, "cost_usd": null, "input_tokens": 5000,
                                            "output_tokens": 120, "latency_ms": null}}
    }))
    .unwrap();
    let encoder = SentenceEncoder::load(
        &ModelSource::parse(root.join("models/all-MiniLM-L6-v2").to_str().unwrap()),
        DeviceSpec::Cpu,
    )
    .unwrap()
    .with_truncation(ROUTING_TRUNCATION);
    let heads = ClassifierHeads::load(&root.join("models/classifier"), encoder.info()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let prompt = LoadedPrompt {
        id: record.id.clone(),
        family: "test".into(),
        text: record.text().to_owned(),
        outcomes: record.outcomes.clone(),
    };
    let bar = indicatif::ProgressBar::hidden();
    let trained = featurise(vec![prompt], &encoder, &heads, cache.path(), &bar)
        .unwrap()
        .remove(0);
    assert_eq!(
        trained.input_tokens, 5000,
        "the real count still sizes the cost"
    );

    // The equivalent chat request, through the gateway's own parsing, encoder thread and
    // router.
    let dir = tempfile::tempdir().unwrap();
    let text = gateway_config(dir.path(), "threshold:0.7");
    let state = build_state(
        &ConfigSource::File(dir.path().join("x.toml")),
        Config::parse(&text).unwrap(),
    )
    .unwrap();
    let chat = json!({"model": "auto", "messages": record.messages});
    let view = ChatView::parse(&chat).unwrap();
    let stack = state.router.as_ref().unwrap();
    let embedding = switchyard_gateway::pipeline::plan::embed_prompt(stack, view.prompt())
        .await
        .unwrap();
    let router = state.runtime().router.clone().unwrap();
    let served = router.features(&embedding, &view.prompt()).unwrap();
    assert_eq!(trained.embedding, embedding);
    assert_eq!(trained.features, served.prompt);
}
