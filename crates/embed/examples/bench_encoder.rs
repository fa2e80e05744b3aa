//! The Rust half of `eval/bench/encoder.py`: times the encoder on inputs the driver wrote,
//! and prints one JSON object. Threads follow RAYON_NUM_THREADS and the kernels
//! SWITCHYARD_ENCODER_KERNELS, both set by the driver.
//!
//!     cargo run --release -p switchyard-embed --example bench_encoder -- MODEL_DIR INPUTS.json [DEVICE]
//!
//! DEVICE is `cpu` (default) or `cuda[:N]` (a `--features cuda` build).

#![expect(clippy::print_stdout, reason = "a benchmark's output is its result")]

use std::time::Instant;

use anyhow::Context;
use serde::Deserialize;
use switchyard_core::DeviceSpec;
use switchyard_embed::{ModelSource, SentenceEncoder};

#[derive(Deserialize)]
struct Inputs {
    batches: Vec<Batch>,
    batch_rounds: usize,
    single: Vec<Single>,
    single_rounds: usize,
}

#[derive(Deserialize)]
struct Batch {
    name: String,
    texts: Vec<String>,
}

#[derive(Deserialize)]
struct Single {
    name: String,
    text: String,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(inputs)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: bench_encoder MODEL_DIR INPUTS.json [DEVICE]");
    };
    let device: DeviceSpec = args.get(3).map_or("cpu", String::as_str).parse()?;
    let inputs: Inputs = serde_json::from_str(
        &std::fs::read_to_string(inputs).with_context(|| format!("reading {inputs}"))?,
    )?;
    let encoder = SentenceEncoder::load(&ModelSource::Dir(model.into()), device)?;

    let mut throughput = serde_json::Map::new();
    for b in &inputs.batches {
        let batch: Vec<&str> = b.texts.iter().map(String::as_str).collect();
        for _ in 0..2 {
            encoder.embed(&batch)?;
        }
        let started = Instant::now();
        for _ in 0..inputs.batch_rounds {
            encoder.embed(&batch)?;
        }
        let rate = (inputs.batch_rounds * batch.len()) as f64 / started.elapsed().as_secs_f64();
        throughput.insert(b.name.clone(), rate.into());
    }

    let mut single = serde_json::Map::new();
    for s in &inputs.single {
        for _ in 0..5 {
            encoder.embed(&[&s.text])?;
        }
        let mut times: Vec<f64> = (0..inputs.single_rounds)
            .map(|_| {
                let t = Instant::now();
                encoder
                    .embed(&[&s.text])
                    .map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        single.insert(
            s.name.clone(),
            serde_json::json!({"p50_ms": pct(0.5), "p99_ms": pct(0.99)}),
        );
    }
    println!(
        "{}",
        serde_json::json!({"kernels": encoder.kernels(), "throughput": throughput, "single": single})
    );
    Ok(())
}
