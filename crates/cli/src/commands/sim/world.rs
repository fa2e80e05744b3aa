//! The simulator's world: routing records with every model's outcome, and an upstream that
//! answers as the records say. A request for model `m` on prompt `p` gets `m`'s recorded
//! answer text (or a stand-in naming the model and prompt) and its recorded token counts
//! (or the prompt's estimate and `--output-tokens`), so the gateway's logged cost is the
//! world's cost; the simulator then posts `m`'s recorded score as feedback.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchyard_core::pricing::{Price, PriceTable};
use switchyard_core::{RoutingRecord, read_records};
use switchyard_training::data::normalise;

/// What one model did on one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub score: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One prompt with every model's answer.
#[derive(Debug, Clone)]
pub struct WorldPrompt {
    pub id: String,
    pub text: String,
    /// In the order of [`World::models`].
    pub answers: Vec<Answer>,
}

#[derive(Debug)]
pub struct World {
    /// The models as the gateway knows them (renamed with `--unknown-models`).
    pub models: Vec<String>,
    pub prices: BTreeMap<String, Price>,
    pub prompts: Vec<WorldPrompt>,
    by_text: HashMap<String, usize>,
}

/// How to read the world.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// Give every model a name no benchmark uses (`user/<name>`).
    pub unknown_models: bool,
    /// Output tokens of an answer whose record has none.
    pub output_tokens: u64,
    /// At most this many prompts (the first ones with every model scored).
    pub max_prompts: usize,
}

/// The name a world model has in the gateway.
pub fn gateway_name(model: &str, unknown: bool) -> String {
    if unknown {
        format!("user/{model}")
    } else {
        model.to_owned()
    }
}

impl World {
    /// Reads `file`, keeping prompts that every model scored (models: those in the first
    /// record with scores), priced by `prices` where a record has no cost.
    pub fn load(file: &Path, prices: &PriceTable, options: &WorldOptions) -> anyhow::Result<Self> {
        let records = read_records(file)?;
        let source = source_models(&records, file)?;
        let mut prompts = Vec::new();
        let mut by_text = HashMap::new();
        for r in &records {
            if prompts.len() >= options.max_prompts {
                break;
            }
            let text = r.text().to_owned();
            let key = normalise(&text);
            if text.trim().is_empty() || by_text.contains_key(&key) {
                continue;
            }
            if let Some(answers) = answers(r, &source, prices, options) {
                by_text.insert(key, prompts.len());
                prompts.push(WorldPrompt {
                    id: r.id.clone(),
                    text,
                    answers,
                });
            }
        }
        if prompts.len() < 20 {
            anyhow::bail!(too_few(file, prompts.len(), &source, prices));
        }
        let models: Vec<String> = source
            .iter()
            .map(|m| gateway_name(m, options.unknown_models))
            .collect();
        let prices = gateway_prices(&source, &models, prices, &prompts);
        Ok(Self {
            models,
            prices,
            prompts,
            by_text,
        })
    }

    pub fn find(&self, text: &str) -> Option<&WorldPrompt> {
        self.by_text
            .get(&normalise(text))
            .map(|&i| &self.prompts[i])
    }

    pub fn model_index(&self, model: &str) -> Option<usize> {
        self.models.iter().position(|m| m == model)
    }
}

/// One price per token that reproduces model `m`'s total recorded cost.
fn implied(prompts: &[WorldPrompt], m: usize) -> Price {
    let (cost, tokens) = prompts.iter().fold((0.0, 0u64), |(c, t), p| {
        let a = &p.answers[m];
        (c + a.cost_usd, t + a.input_tokens + a.output_tokens)
    });
    let per_mtok = cost / (tokens.max(1) as f64) * 1e6;
    Price {
        input_per_mtok: per_mtok,
        output_per_mtok: per_mtok,
    }
}

/// Answers `POST /v1/chat/completions` as the world's records say.
async fn complete(
    State(world): State<Arc<World>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let model = body["model"].as_str().unwrap_or_default();
    let text = body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let (Some(prompt), Some(m)) = (world.find(text), world.model_index(model)) else {
        let error = json!({"error": {"message": format!("the world has no answer of {model:?} to this prompt"), "type": "invalid_request_error"}});
        return (StatusCode::NOT_FOUND, Json(error));
    };
    let a = &prompt.answers[m];
    (
        StatusCode::OK,
        Json(json!({
            "id": format!("world-{}", prompt.id),
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": format!("{model} on {}", prompt.id)}}],
            "usage": {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                "total_tokens": a.input_tokens + a.output_tokens},
        })),
    )
}

/// Serves the world on 127.0.0.1 (a free port) until the runtime ends; returns its address.
pub async fn serve(world: Arc<World>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/chat/completions", post(complete))
        .with_state(world);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the world upstream stopped");
        }
    });
    Ok(addr)
}

/// The world's models: those of the first record with a scored outcome (at least two).
fn source_models(records: &[RoutingRecord], file: &Path) -> anyhow::Result<Vec<String>> {
    let source: Vec<String> = records
        .iter()
        .find(|r| r.outcomes.values().any(|o| o.score.is_some()))
        .map(|r| r.outcomes.keys().cloned().collect())
        .with_context(|| format!("{}: no record has a scored outcome", file.display()))?;
    anyhow::ensure!(
        source.len() >= 2,
        "{}: the world needs at least two models per prompt",
        file.display()
    );
    Ok(source)
}

/// Every model's answer to record `r`, or `None` when one lacks a score or a cost (its
/// own, or one its price gives).
fn answers(
    r: &RoutingRecord,
    source: &[String],
    prices: &PriceTable,
    options: &WorldOptions,
) -> Option<Vec<Answer>> {
    let input = switchyard_core::tokens::estimate(r.text());
    source
        .iter()
        .map(|m| {
            let o = r.outcomes.get(m)?;
            let score = o.score?;
            let input_tokens = o.input_tokens.unwrap_or(input);
            let output_tokens = o.output_tokens.unwrap_or(options.output_tokens);
            let cost_usd = match (o.cost_usd, prices.0.get(m)) {
                (Some(c), _) => c,
                (None, Some(p)) => p.cost(input_tokens as f64, output_tokens as f64),
                (None, None) => return None,
            };
            Some(Answer {
                score,
                input_tokens,
                output_tokens,
                cost_usd,
            })
        })
        .collect()
}

/// Why a world is too small, naming the models without a price.
fn too_few(file: &Path, found: usize, source: &[String], prices: &PriceTable) -> String {
    let missing: Vec<&str> = source
        .iter()
        .filter(|m| !prices.0.contains_key(*m))
        .map(String::as_str)
        .collect();
    let hint = if missing.is_empty() {
        String::new()
    } else {
        format!(
            "; no price for {}: give them with --prices FILE",
            missing.join(", ")
        )
    };
    format!(
        "{}: only {found} prompts have a score and a cost for every model ({}){hint}",
        file.display(),
        source.join(", ")
    )
}

/// The gateway's price per model. A record's own cost has no price behind it: the gateway
/// is given the mean cost per token the world implies, so its logged cost is close to the
/// world's.
fn gateway_prices(
    source: &[String],
    models: &[String],
    prices: &PriceTable,
    prompts: &[WorldPrompt],
) -> BTreeMap<String, Price> {
    source
        .iter()
        .zip(models)
        .enumerate()
        .map(|(i, (m, name))| {
            let price = prices
                .0
                .get(m)
                .copied()
                .unwrap_or_else(|| implied(prompts, i));
            (name.clone(), price)
        })
        .collect()
}
