//! Open-loop load at a fixed rate, for the gateway benchmark (eval/bench/gateway.sh).
//!
//!     loadgen URL BODY_FILE RATE SECONDS [CONNECTIONS]
//!
//! Sends POST requests at RATE per second for SECONDS (each scheduled on a fixed clock, so a
//! slow response does not delay the next send: no coordinated omission), and prints one JSON
//! line: sent, ok, errors, achieved rate, and latency percentiles in ms measured from each
//! request's scheduled time. `LOADGEN_BEARER` adds `Authorization: Bearer <value>`. A
//! BODY_FILE ending in `.jsonl` holds one body per line, sent in turn (distinct prompts,
//! so no request is answered from a cache).
//!
//! Sends are paced by a plain thread (sleep, then spin for the last stretch), not by tokio's
//! timer: tokio's timer wheel has 1 ms resolution, which alone put 0–1 ms of wake-up lag into
//! every measured latency and made sub-millisecond differences between targets unmeasurable.
//! Besides latency from the scheduled time, the output reports `send_lag` percentiles (how late
//! each request was handed to the client) so a run can show its own pacing error.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sleeps until shortly before `due`, then spins. With the default 50 µs timer slack,
/// `thread::sleep` wakes 50–100 µs late; `main` asks for 1 ns slack, which keeps the spin —
/// CPU taken from the servers under test on a small machine — short.
fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(60);
    let now = Instant::now();
    if due > now + SPIN {
        std::thread::sleep(due - now - SPIN);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

#[allow(clippy::print_stdout, reason = "the benchmark's output")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, body_file, rate, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: loadgen URL BODY_FILE RATE SECONDS [CONNECTIONS]".into());
    };
    let raw = std::fs::read(body_file)?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(if body_file.ends_with(".jsonl") {
        raw.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    } else {
        vec![raw]
    });
    if bodies.is_empty() {
        return Err(format!("{body_file} holds no request body").into());
    }
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let connections: usize = rest.first().map_or(Ok(64), |c| c.parse())?;
    let bearer = std::env::var("LOADGEN_BEARER").ok();
    // The main (pacing) thread's timer slack; on failure sleeps are just later and the spin
    // longer, which the reported send lag still shows.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()?;
    let total = (rate * seconds) as usize;
    let limit = Arc::new(tokio::sync::Semaphore::new(connections));
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    let mut lags = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        wait_until(due);
        lags.push(due.elapsed().as_secs_f64() * 1e3);
        let (client, url, bodies, limit) =
            (client.clone(), url.clone(), bodies.clone(), limit.clone());
        let bearer = bearer.clone();
        tasks.push(runtime.spawn(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            let mut request = client
                .post(&url)
                .header("content-type", "application/json")
                .body(bodies[i % bodies.len()].clone());
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
        match runtime.block_on(t) {
            Ok(Some(l)) => latencies.push(l.as_secs_f64() * 1e3),
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&latencies, p);
    let summary = serde_json::json!({
        "sent": total, "ok": latencies.len(), "errors": errors,
        "rate": latencies.len() as f64 / elapsed,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "send_lag_p50_ms": percentile(&lags, 0.50), "send_lag_p99_ms": percentile(&lags, 0.99),
    });
    println!("{summary}");
    Ok(())
}
