//! Raw speed of the local model, for eval/bench/local_llm.sh (which runs llama.cpp beside it).
//!
//!     RAYON_NUM_THREADS=2 bench_local MODEL.gguf PROMPT_FILE GEN_TOKENS REPEATS
//!
//! Prompt processing: one forward pass over the whole prompt; generation: greedy decoding of
//! GEN_TOKENS tokens one at a time (what the provider's workers do). Prints one JSON line
//! with the medians in tokens/s.

use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(clippy::print_stdout, reason = "the benchmark's output")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, prompt_file, gen_tokens, repeats] = args.as_slice() else {
        return Err("usage: bench_local MODEL.gguf PROMPT_FILE GEN_TOKENS REPEATS".into());
    };
    let (gen_tokens, repeats): (usize, usize) = (gen_tokens.parse()?, repeats.parse()?);
    let mut file = std::fs::File::open(model)?;
    let content = gguf_file::Content::read(&mut file)?;
    let tokenizer = Tokenizer::from_gguf(&content)?;
    drop(file);
    // The provider's own loading path (Q4_1 matrices on its own SIMD kernel).
    let mut weights = switchyard_local::load_weights(std::path::Path::new(model))?;
    let prompt = std::fs::read_to_string(prompt_file)?;
    let ids = tokenizer
        .encode(prompt, false)
        .map_err(|e| e.to_string())?
        .get_ids()
        .to_vec();
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..repeats + 1 {
        weights.clear_kv_cache();
        let t = Instant::now();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        let logits = weights.forward(&input, 0)?.squeeze(0)?;
        let mut next: u32 = logits.argmax(0)?.to_scalar()?;
        let pp_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..gen_tokens {
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            let logits = weights.forward(&input, ids.len() + i)?.squeeze(0)?;
            next = logits.argmax(0)?.to_scalar()?;
        }
        let tg_s = t.elapsed().as_secs_f64();
        pp.push(ids.len() as f64 / pp_s);
        tg.push(gen_tokens as f64 / tg_s);
    }
    // The first round warms caches and is dropped.
    pp.remove(0);
    tg.remove(0);
    println!(
        "{}",
        serde_json::json!({"prompt_tokens": ids.len(), "gen_tokens": gen_tokens,
                           "pp_tok_s": median(pp), "tg_tok_s": median(tg),
                           "threads": std::env::var("RAYON_NUM_THREADS").ok()})
    );
    Ok(())
}
