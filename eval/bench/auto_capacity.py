"""The gateway's `auto` capacity: distinct `auto` prompts (no cache hits) at rising fixed
rates to a fast local upstream (nginx returning a fixed completion), through Switchyard with
candle's BERT ("before": the encoder implementation before Switchyard's own kernels) and with
its own kernels ("after"), and the same load pinned to one model (no encoder) as the
reference. Each rate runs for --seconds with an open-loop generator (loadgen: latency from
each request's scheduled time, so queueing shows); a rate passes when every request
succeeded, the achieved rate is within 3% of the target and p99 is under --p99-ms. The
capacity is the highest passing rate before the first failure. See auto_capacity.sh.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import cpu_model  # noqa: E402
from gateway import (  # noqa: E402
    COMPLETION, free_port, loadgen, rss_mb, start_nginx, stop_all, switchyard_config, wait_http)

# Rising by about a fifth per step at the low end, where the encoder saturates.
RATES = [10, 15, 20, 25, 30, 40, 50, 60, 75, 90, 110, 130, 150, 175, 200, 240, 280, 330, 400, 500, 650, 800,
         1000, 1500, 2000, 3000, 4000]
WORDS = (
    "please explain summarise translate compare debug write review plan estimate the invoice "
    "contract python error chemistry homework recipe itinerary budget poem email report query "
    "function proof theorem dataset model latency outage customer refund schedule shipment"
).split()


def prompts(count, seed=7):
    """`count` distinct prompts of 12–30 words (~15–40 tokens), deterministic."""
    state, out = seed, []
    for i in range(count):
        words = []
        for _ in range(12 + (i * 7) % 19):
            state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
            words.append(WORDS[(state >> 33) % len(WORDS)])
        out.append(f"{' '.join(words)} (request {i})")
    return out


def bodies_file(work, model, texts):
    path = work / f"bodies-{model}.jsonl"
    path.write_text("".join(json.dumps({"model": model, "messages": [{"role": "user", "content": t}]}) + "\n"
                            for t in texts))
    return path


def ramp(args, url, body_file, label):
    steps = []
    for rate in RATES:
        if rate > args.max_rate:
            break
        r = loadgen(args.loadgen, url, body_file, rate, args.seconds)
        ok = r["errors"] == 0 and r["rate"] >= 0.97 * rate and r["p99_ms"] <= args.p99_ms
        steps.append({**r, "target_rps": rate, "pass": ok})
        print(f"  {label:<28} {rate:>6}/s  achieved {r['rate']:>8.1f}/s  p50 {r['p50_ms']:>8.2f} ms  "
              f"p99 {r['p99_ms']:>8.2f} ms  errors {r['errors']:>4}  {'pass' if ok else 'FAIL'}", flush=True)
        if not ok:
            break
    passed = [s["target_rps"] for s in steps if s["pass"]]
    return {"capacity_rps": max(passed) if passed else 0, "steps": steps}


def serve(args, work, port, kernels):
    proc = subprocess.Popen([args.switchyard, "serve", "--config", str(work / "switchyard.toml"),
                             "--listen", f"127.0.0.1:{port}"], stderr=open(work / f"switchyard-{kernels}.log", "w"),
                            env={**os.environ, "RUST_LOG": "warn", "SWITCHYARD_ENCODER_KERNELS": kernels})
    wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    return proc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--seconds", type=int, default=4, help="seconds per rate step (default 4)")
    ap.add_argument("--p99-ms", type=float, default=100.0, help="p99 bound for a passing rate (default 100 ms)")
    ap.add_argument("--max-rate", type=int, default=4000, help="highest rate tried (default 4000/s)")
    ap.add_argument("--json", default="eval/results/auto-capacity.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchyard-capacity-"))
    procs = []
    try:
        nginx_port = free_port()
        (work / "nginx").mkdir()
        procs.append(start_nginx(work, "nginx", f"""
  server {{ listen 127.0.0.1:{nginx_port};
    location / {{ default_type application/json; return 200 '{COMPLETION}'; }} }}"""))
        upstream = f"http://127.0.0.1:{nginx_port}/v1"
        wait_http(f"{upstream}/chat/completions")
        (work / "switchyard.toml").write_text(switchyard_config(work, upstream))
        texts = prompts(max(RATES) * args.seconds)
        auto_bodies, pinned_bodies = bodies_file(work, "auto", texts), bodies_file(work, "fixed", texts)
        results = {"cpu": cpu_model(), "machine": platform.machine(), "seconds_per_step": args.seconds,
                   "p99_bound_ms": args.p99_ms, "targets": {}}
        print(f"CPU: {results['cpu']}; p99 bound {args.p99_ms} ms; {args.seconds} s per rate")
        for label, kernels, body in [("auto, candle kernels (before)", "candle", auto_bodies),
                                     ("auto, own kernels (after)", "auto", auto_bodies),
                                     ("pinned (no encoder)", "auto", pinned_bodies)]:
            port = free_port()
            proc = serve(args, work, port, kernels)
            procs.append(proc)
            results["targets"][label] = ramp(args, f"http://127.0.0.1:{port}/v1/chat/completions", body, label)
            results["targets"][label]["memory"] = rss_mb(proc.pid)
            proc.terminate()
            proc.wait(timeout=30)
        before, after, pinned = (results["targets"][k]["capacity_rps"] for k in results["targets"])
        results["after_over_before"] = after / before if before else None
        print(f"\n{'target':<32} {'capacity (req/s, p99 <= %g ms)' % args.p99_ms:>34} {'RSS / peak MB':>16}")
        for label, r in results["targets"].items():
            print(f"{label:<32} {r['capacity_rps']:>34} {r['memory']['rss_mb']:>8.0f} / {r['memory']['peak_rss_mb']:.0f}")
        if before:
            print(f"after / before: {after / before:.2f}x; pinned: {pinned}/s")
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    finally:
        stop_all(procs)

if __name__ == "__main__":
    main()
