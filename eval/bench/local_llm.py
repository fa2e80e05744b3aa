"""Runs the local-model benchmark; see local_llm.sh."""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import llama_cpp

MODEL = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = ("The history of the river begins in the mountains, where snow melts each spring and "
          "feeds a hundred small streams. ") * 6 + "Summarise the passage in one sentence:"


def llama_cpp_run(threads, gen_tokens, repeats):
    llm = llama_cpp.Llama(model_path=MODEL, n_threads=threads, n_threads_batch=threads, n_ctx=1024,
                          n_batch=512, verbose=False)
    ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
    pp, tg = [], []
    for _ in range(repeats + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        next_id = int(llm.scores[llm.n_tokens - 1].argmax())
        pp.append(len(ids) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(gen_tokens):
            llm.eval([next_id])
            next_id = int(llm.scores[llm.n_tokens - 1].argmax())
        tg.append(gen_tokens / (time.perf_counter() - t))
    pp.pop(0), tg.pop(0)
    return {"prompt_tokens": len(ids), "pp_tok_s": statistics.median(pp), "tg_tok_s": statistics.median(tg)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-binary", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--json", default="eval/results/local-llm-bench.json")
    args = ap.parse_args()
    prompt_file = Path(tempfile.mkdtemp()) / "prompt.txt"
    prompt_file.write_text(PROMPT)
    rows = []
    for threads in (1, 2):
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
        ours = json.loads(subprocess.run([args.bench_binary, MODEL, str(prompt_file), str(args.gen_tokens),
                                          str(args.repeats)], env=env, capture_output=True, text=True,
                                         check=True).stdout)
        theirs = llama_cpp_run(threads, args.gen_tokens, args.repeats)
        row = {"threads": threads, "switchyard": ours, "llama_cpp": theirs,
               "pp_ratio": ours["pp_tok_s"] / theirs["pp_tok_s"], "tg_ratio": ours["tg_tok_s"] / theirs["tg_tok_s"]}
        rows.append(row)
        print(f"threads {threads}: prompt ({ours['prompt_tokens']} tok) {ours['pp_tok_s']:.0f} vs {theirs['pp_tok_s']:.0f} tok/s "
              f"(ratio {row['pp_ratio']:.2f}); generation {ours['tg_tok_s']:.1f} vs {theirs['tg_tok_s']:.1f} tok/s "
              f"(ratio {row['tg_ratio']:.2f})  [Switchyard vs llama.cpp]", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"model": MODEL, "llama_cpp_python": llama_cpp.__version__, "rows": rows},
                                          indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
