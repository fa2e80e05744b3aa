"""Encoder benchmark, side by side: Switchyard's candle encoder vs sentence-transformers
(PyTorch, CPU) on the same inputs, the same model files and the same thread counts.

    bash eval/bench/encoder.sh            # installs what it needs, builds, runs this

Reports throughput (inputs/s) for batches of 32 inputs of ~20 and of ~120 tokens, and
single-input latency p50/p99 for ~20- and ~120-token prompts, at 1 and 2 threads, with the ratio
Switchyard / sentence-transformers for each (above 1.0 = Switchyard better: for latency
the ratio is sentence-transformers' time over Switchyard's). `--kernels auto,avx2,candle`
also times Switchyard's AVX2 kernels and candle's BERT (the implementation before the own
kernels) against the same sentence-transformers run. Each side runs in its own
process, one after the other, so they never compete for the cores.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"

WORDS = (
    "the router sends each request to a model that answers it well at a low cost while "
    "users ask about invoices travel plans python errors chemistry homework recipes and "
    "contracts so every prompt differs in topic length tone and difficulty across the day"
).split()


def make_text(tokenizer, target, seed):
    """A deterministic sentence whose tokenisation (specials included) is ~target tokens."""
    words, i = [], seed
    while len(tokenizer(" ".join(words))["input_ids"]) < target:
        words.append(WORDS[(i * 7 + len(words) * 3) % len(WORDS)])
        i += 1
    return " ".join(words)


def st_side(args):
    """Runs inside a child process: time sentence-transformers."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    inputs = json.loads(pathlib.Path(args.inputs).read_text())
    model = SentenceTransformer(str(MODEL), device=args.device)
    with torch.inference_mode():
        throughput = {}
        for b in inputs["batches"]:
            batch = b["texts"]
            for _ in range(2):
                model.encode(batch, batch_size=len(batch))
            start = time.perf_counter()
            for _ in range(inputs["batch_rounds"]):
                model.encode(batch, batch_size=len(batch))
            throughput[b["name"]] = inputs["batch_rounds"] * len(batch) / (time.perf_counter() - start)
        single = {}
        for s in inputs["single"]:
            for _ in range(5):
                model.encode([s["text"]])
            times = []
            for _ in range(inputs["single_rounds"]):
                t = time.perf_counter()
                model.encode([s["text"]])
                times.append((time.perf_counter() - t) * 1e3)
            single[s["name"]] = {
                "p50_ms": float(np.percentile(times, 50)),
                "p99_ms": float(np.percentile(times, 99)),
            }
    print(json.dumps({"throughput": throughput, "single": single,
                      "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}))


# What makes PyTorch (ATen's kernels, oneDNN and MKL) use AVX2 alone on an AVX-512 CPU, so
# `--as-avx2-machine` compares both sides as they would run on a CPU without AVX-512.
TORCH_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
              "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def run_child(cmd, threads, kernels="auto", extra=None):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               SWITCHYARD_ENCODER_KERNELS=kernels, **(extra or {}))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model():
    """The CPU's model name and its SIMD flags that matter here, to state with every figure."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "unknown")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile") if f in flags]
    return f"{name} ({', '.join(simd)}; {os.cpu_count()} cores)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-binary", help="the built bench_encoder example")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare (default 1,2)")
    parser.add_argument("--batch-rounds", type=int, default=20)
    parser.add_argument("--single-rounds", type=int, default=200)
    parser.add_argument("--kernels", default="auto",
                        help="Switchyard CPU kernels to run, comma-separated: auto, avx512, avx2, portable, "
                             "candle (candle's own BERT, the implementation before Switchyard's kernels); "
                             "each is compared with the same sentence-transformers run (default auto)")
    parser.add_argument("--as-avx2-machine", action="store_true",
                        help="limit both sides to AVX2 (PyTorch through ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA "
                             "and MKL_ENABLE_INSTRUCTIONS; Switchyard's kernels to avx2), as on a CPU without AVX-512")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda: both sides on the GPU (a --features cuda build, "
                             "PyTorch with CUDA); see encoder_cuda.sh")
    parser.add_argument("--json", help="also write all figures to this file")
    parser.add_argument("--st-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.st_child:
        args.threads = int(args.threads)
        return st_side(args)
    if not args.bench_binary:
        sys.exit("--bench-binary is required (eval/bench/encoder.sh passes it)")

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODEL))
    inputs = {
        "batches": [
            {"name": f"~{n} tokens", "texts": [make_text(tok, n - 3 + seed % 7, seed) for seed in range(32)]}
            for n in (20, 120)
        ],
        "batch_rounds": args.batch_rounds,
        "single": [
            {"name": "~20 tokens", "text": make_text(tok, 20, 1)},
            {"name": "~120 tokens", "text": make_text(tok, 120, 2)},
        ],
        "single_rounds": args.single_rounds,
    }
    mean_tokens = {
        b["name"]: sum(len(tok(t)["input_ids"]) for t in b["texts"]) / len(b["texts"]) for b in inputs["batches"]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(inputs, f)
        path = f.name

    results = {"cpu": cpu_model(), "batch_tokens_mean": mean_tokens, "runs": []}
    rows = []
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    torch_env = TORCH_AVX2 if args.as_avx2_machine else {}
    if args.as_avx2_machine:
        kernels = ["avx2" if k == "auto" else k for k in kernels]
    results["as_avx2_machine"] = args.as_avx2_machine
    for threads in [int(t) for t in args.threads.split(",")]:
        theirs = run_child([sys.executable, __file__, "--st-child", "--threads", str(threads), "--inputs", path,
                            "--device", args.device], threads, extra=torch_env)
        run = {"threads": threads, "sentence_transformers": theirs, "switchyard": {}}
        for kernel in kernels:
            ours = run_child([args.bench_binary, str(MODEL), path, args.device], threads, kernel)
            run["switchyard"][kernel] = ours
            label = f" [{ours.get('kernels', kernel)}]"
            for name, tokens in mean_tokens.items():
                a, b = ours["throughput"][name], theirs["throughput"][name]
                rows.append((f"batch of 32 ({tokens:.0f} tok), inputs/s{label}", threads, a, b, a / b))
            for name in ours["single"]:
                for q in ("p50_ms", "p99_ms"):
                    a, b = ours["single"][name][q], theirs["single"][name][q]
                    rows.append((f"single {name}, {q[:3]} ms{label}", threads, a, b, b / a))
        results["runs"].append(run)
    os.unlink(path)

    st = results["runs"][0]["sentence_transformers"] if results["runs"] else {}
    print(f"CPU: {results['cpu']}")
    print(f"PyTorch {st.get('torch')} CPU capability: {st.get('cpu_capability')}"
          + (" (limited to AVX2 by --as-avx2-machine)" if args.as_avx2_machine else ""))
    print(f"{'measure [switchyard kernels]':<48} {'threads':>7} {'switchyard':>11} {'sent-trans':>11} {'ratio':>7}")
    for name, threads, a, b, ratio in rows:
        print(f"{name:<48} {threads:>7} {a:>11.2f} {b:>11.2f} {ratio:>6.2f}x")
    print("ratio > 1.00x: Switchyard is faster (throughput ours/theirs, latency theirs/ours)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
