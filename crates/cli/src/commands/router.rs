//! `switchyard router promote DIR`: swap the router of a running gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Manage the router of a running gateway.
#[derive(Debug, Subcommand)]
pub enum RouterCommand {
    Promote(PromoteArgs),
}

/// Serve with the scorer in DIR from now on, without a restart or a dropped request.
///
/// Calls the gateway's POST /admin/router with the admin key (the value of the env var
/// that `[router] admin_key_env` names). The gateway loads DIR (a scorer trained on its
/// classifier heads, e.g. by `train scorer` on imported traffic), checks that it knows, or
/// has priors for, every model its learned routes use, and swaps it in; a scorer that fails
/// is refused and the running router stays. The traffic log's router_version shows which
/// router served each request. A restart (or SIGHUP) serves the scorer the config names
/// again: point `[router] scorer` at DIR to keep it.
///
/// Example: SWITCHYARD_ADMIN_KEY=... switchyard router promote runs/round-3 --url http://127.0.0.1:8080
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The scorer directory (manifest.json, weights.json). A path the gateway can read.
    pub dir: PathBuf,

    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The env var holding the admin key (never the key itself).
    #[arg(long, default_value = "SWITCHYARD_ADMIN_KEY")]
    pub admin_key_env: String,
}

pub fn run(command: &RouterCommand) -> anyhow::Result<ExitCode> {
    let RouterCommand::Promote(args) = command;
    let key = std::env::var(&args.admin_key_env)
        .ok()
        .filter(|k| !k.is_empty())
        .with_context(|| {
            format!(
                "the environment variable {} is not set: export the gateway's admin key in it, or name another with --admin-key-env",
                args.admin_key_env
            )
        })?;
    let dir = std::path::absolute(&args.dir)?;
    anyhow::ensure!(
        dir.join(switchyard_scorer::MANIFEST_FILE).is_file(),
        "{}: no scorer here (manifest.json missing)",
        dir.display()
    );
    switchyard_providers::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/admin/router", args.url.trim_end_matches('/'));
    let (status, body) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(key)
            .json(&serde_json::json!({"scorer": dir}))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, body))
    })?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url}: {status}: {message}");
    tracing::info!(
        router_version = body["router_version"].as_str().unwrap_or_default(),
        previous = body["previous"].as_str().unwrap_or_default(),
        "promoted"
    );
    let mut out = std::io::stdout().lock();
    std::io::Write::write_fmt(
        &mut out,
        format_args!("{}\n", body["router_version"].as_str().unwrap_or_default()),
    )?;
    Ok(ExitCode::SUCCESS)
}
