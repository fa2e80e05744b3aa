//! The real gateway, driven over HTTP on loopback: this binary's `serve` in a child
//! process with a config written for the world, requests with `model: "auto"`, feedback
//! with the world's scores, and promotion through `POST /admin/router`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;

use super::world::World;

/// The env var the simulator's gateway reads its admin key from.
const ADMIN_KEY_VAR: &str = "SWITCHYARD_SIM_ADMIN_KEY";

/// What the gateway is started with.
#[derive(Debug, Clone)]
pub struct GatewaySetup {
    pub dir: PathBuf,
    pub heads: PathBuf,
    pub scorer: PathBuf,
    pub encoder: String,
    pub policy: String,
    pub explore: f64,
    /// Seeds the gateway's exploration draws (`[router] explore_seed`).
    pub explore_seed: u64,
    /// Give the models a neutral quality prior (models no benchmark has).
    pub neutral_priors: bool,
}

impl GatewaySetup {
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The gateway's TOML config for `world`, served by the upstream at `upstream`.
    pub fn config(&self, world: &World, upstream: std::net::SocketAddr) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[router]\nencoder = {:?}\nheads = {:?}\nscorer = {:?}\nadmin_key_env = {ADMIN_KEY_VAR:?}\nexplore_seed = {}\n",
            self.encoder, self.heads, self.scorer, self.explore_seed
        );
        let _ = writeln!(s, "[log]\ndir = {:?}\n", self.log_dir());
        let _ = writeln!(s, "[cache]\nenabled = false\n");
        let _ = writeln!(
            s,
            "[providers.world]\nkind = \"openai\"\nbase_url = \"http://{upstream}/v1\"\n"
        );
        for m in &world.models {
            let price = world.prices[m];
            let _ = writeln!(
                s,
                "[models.{m:?}]\nprovider = \"world\"\ninput_per_mtok = {}\noutput_per_mtok = {}",
                price.input_per_mtok, price.output_per_mtok
            );
            if self.neutral_priors {
                let _ = writeln!(s, "quality = {}", switchyard_router::DEFAULT_QUALITY_PRIOR);
            }
            s.push('\n');
        }
        let models: Vec<String> = world.models.iter().map(|m| format!("{m:?}")).collect();
        let _ = writeln!(
            s,
            "[routes.auto]\nmodels = [{}]\npolicy = {:?}\nexplore = {}",
            models.join(", "),
            self.policy,
            self.explore
        );
        s
    }
}

/// A running gateway; stopped when dropped.
pub struct Gateway {
    child: Child,
    pub url: String,
    admin_key: String,
    client: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one request got.
#[derive(Debug, Clone)]
pub struct Served {
    pub prompt: usize,
    pub explored: bool,
    pub cost: f64,
    pub score: f64,
}

impl Gateway {
    /// Starts `serve --config CONFIG` and waits until it listens.
    pub fn start(config: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this binary to run `serve`")?;
        let admin_key = format!("sim-{}", uuid::Uuid::new_v4().simple());
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env(ADMIN_KEY_VAR, &admin_key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the gateway")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(Ok(url.trim().to_owned()));
                }
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            let _ = tx.send(Err(tail.join("\n")));
        });
        let url = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(Ok(url)) => url,
            Ok(Err(tail)) => anyhow::bail!("the gateway stopped before listening:\n{tail}"),
            Err(_) => anyhow::bail!("the gateway did not listen within 180 s"),
        };
        switchyard_providers::install_crypto_provider();
        Ok(Self {
            child,
            url,
            admin_key,
            client: reqwest::Client::new(),
        })
    }

    /// Sends `prompts` (indices into the world) with `concurrency` in flight; posts the
    /// world's score as feedback for those `feedback(i)` selects.
    pub async fn serve_requests(
        &self,
        world: &World,
        prompts: &[usize],
        concurrency: usize,
        feedback: &(dyn Fn(usize) -> bool + Sync),
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Vec<Served>> {
        let results: Vec<anyhow::Result<Served>> =
            futures_util::stream::iter(prompts.iter().enumerate())
                .map(|(n, &p)| async move {
                    let served = self.one(world, p).await?;
                    if feedback(n) {
                        self.feedback(&served.1, served.0.score).await?;
                    }
                    progress.inc(1);
                    Ok(served.0)
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        results.into_iter().collect()
    }

    async fn one(&self, world: &World, p: usize) -> anyhow::Result<(Served, String)> {
        let prompt = &world.prompts[p];
        let response = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": prompt.text}]}))
            .send()
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (model, id) = (
            header("x-switchyard-model"),
            header("x-switchyard-request-id"),
        );
        let explored = header("x-switchyard-explored").is_some();
        let status = response.status();
        let (Some(model), Some(id), true) = (model, id, status.is_success()) else {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!(
                "the gateway answered {status} to prompt {}: {body}",
                prompt.id
            );
        };
        let m = world
            .model_index(&model)
            .with_context(|| format!("the gateway served {model}, which the world lacks"))?;
        let answer = &prompt.answers[m];
        Ok((
            Served {
                prompt: p,
                explored,
                cost: answer.cost_usd,
                score: answer.score,
            },
            id,
        ))
    }

    async fn feedback(&self, request_id: &str, score: f64) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/v1/feedback", self.url))
            .json(&json!({"request_id": request_id, "score": score}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "feedback was refused: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Promotes the scorer in `dir`; returns the new router version.
    pub async fn promote(&self, dir: &Path) -> anyhow::Result<String> {
        let dir = std::path::absolute(dir)?;
        let response = self
            .client
            .post(format!("{}/admin/router", self.url))
            .bearer_auth(&self.admin_key)
            .json(&json!({"scorer": dir}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "promotion refused ({status}): {body}");
        Ok(body["router_version"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}
