//! Open-loop load at a fixed rate, for the gateway benchmark (eval/bench/gateway.sh).
//!
//!     loadgen URL BODY_FILE RATE SECONDS [CONNECTIONS]
//!
//! Sends POST requests at RATE per second for SECONDS (each scheduled on a fixed clock, so a
//! slow response does not delay the next send: no coordinated omission), and prints one JSON
//! line: sent, ok, errors, achieved rate, and latency percentiles in ms measured from each
//! request's scheduled time. `LOADGEN_BEARER` adds `Authorization: Bearer <value>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(clippy::print_stdout, reason = "the benchmark's output")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, body_file, rate, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: loadgen URL BODY_FILE RATE SECONDS [CONNECTIONS]".into());
    };
    let body = Arc::new(std::fs::read(body_file)?);
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let connections: usize = rest.first().map_or(Ok(64), |c| c.parse())?;
    let bearer = std::env::var("LOADGEN_BEARER").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .build()?;
        let total = (rate * seconds) as usize;
        let start = Instant::now() + Duration::from_millis(50);
        let limit = Arc::new(tokio::sync::Semaphore::new(connections));
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let (client, url, body, limit) =
                (client.clone(), url.clone(), body.clone(), limit.clone());
            let bearer = bearer.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.ok()?;
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone());
                if let Some(b) = &bearer {
                    request = request.bearer_auth(b);
                }
                let response = request.send().await.ok()?;
                let ok = response.status().is_success();
                response.bytes().await.ok()?;
                ok.then(|| due.elapsed())
            }));
        }
        let mut latencies = Vec::with_capacity(total);
        let mut errors = 0usize;
        for t in tasks {
            match t.await {
                Ok(Some(l)) => latencies.push(l.as_secs_f64() * 1e3),
                _ => errors += 1,
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Ok::<_, reqwest::Error>(serde_json::json!({
            "sent": total, "ok": latencies.len(), "errors": errors,
            "rate": latencies.len() as f64 / elapsed,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        }))
    })?;
    println!("{summary}");
    Ok(())
}
