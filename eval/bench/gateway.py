"""Runs the gateway benchmark; see gateway.sh."""

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

COMPLETION = json.dumps({
    "id": "chatcmpl-fixed", "object": "chat.completion", "created": 1, "model": "fixed",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Paris is the capital of France."}}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22}})
PROMPT = "What is the capital of France?"
# LiteLLM refuses to start without a master key; every target gets the same header.
BEARER = "sk-bench-local-only"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=120, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"{url}: the server exited early")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{url} never answered")


def body(model):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}]})


def wrk(url, body_file, seconds, connections):
    lua = body_file.with_suffix(".lua")
    lua.write_text('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
                   f'wrk.headers["authorization"] = "Bearer {BEARER}"\n'
                   f'wrk.body = [[{body_file.read_text()}]]\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label):
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", out)
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"), "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def loadgen(binary, url, body_file, rate, seconds):
    out = subprocess.run([binary, url, str(body_file), str(rate), str(seconds)], capture_output=True,
                         text=True, check=True, env={**os.environ, "LOADGEN_BEARER": BEARER}).stdout
    return json.loads(out)


def switchyard_config(work, upstream):
    """Two models on the nginx upstream, `auto` over both, the cache off: these benchmarks
    measure routing and forwarding (with the cache on, a repeated prompt is answered from
    the cache after its first request and nginx is never called again)."""
    return f"""
[log]
dir = "{work}/logs"
[providers.nginx]
kind = "openai"
base_url = "{upstream}"
[models.fixed]
provider = "nginx"
input_per_mtok = 0.15
output_per_mtok = 0.6
quality_like = "mistralai/mixtral-8x7b-chat"
[models.fixed-large]
provider = "nginx"
upstream_model = "fixed"
input_per_mtok = 2.5
output_per_mtok = 10.0
quality_like = "gpt-4-1106-preview"
[routes.auto]
models = ["fixed", "fixed-large"]
policy = "threshold:0.7"
[cache]
enabled = false
"""


def stop_all(procs):
    """SIGTERM every process, then wait (SIGKILL after 10 s)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def rss_mb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", status).group(1)) / 1024
    return {"rss_mb": get("VmRSS"), "peak_rss_mb": get("VmHWM")}


def start_nginx(work, name, servers):
    """An nginx process in `work` (one worker, no access log) serving `servers` (http-block text)."""
    conf = work / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {work}/{name}.pid; error_log {work}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {work}/nginx; proxy_temp_path {work}/nginx;
  fastcgi_temp_path {work}/nginx; uwsgi_temp_path {work}/nginx; scgi_temp_path {work}/nginx;
  keepalive_requests 10000000;{servers}
}}""")
    return subprocess.Popen(["nginx", "-p", str(work), "-c", str(conf)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--litellm", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json", default="eval/results/gateway-bench.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    procs = []
    try:
        nginx_port, sy_port, lite_port, proxy_port = free_port(), free_port(), free_port(), free_port()
        (work / "nginx").mkdir()
        procs.append(start_nginx(work, "nginx", f"""
  server {{ listen 127.0.0.1:{nginx_port};
    location / {{ default_type application/json; return 200 '{COMPLETION}'; }} }}"""))
        # The reference proxy: a second nginx process (like Switchyard, its own process) with
        # proxy_pass to the upstream over kept-alive connections.
        procs.append(start_nginx(work, "proxy", f"""
  upstream fixed {{ server 127.0.0.1:{nginx_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{proxy_port};
    location / {{ proxy_pass http://fixed; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""))
        upstream = f"http://127.0.0.1:{nginx_port}/v1"
        proxy_url = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        wait_http(f"{upstream}/chat/completions")

        (work / "switchyard.toml").write_text(switchyard_config(work, upstream))
        sy = subprocess.Popen([args.switchyard, "serve", "--config", str(work / "switchyard.toml"),
                               "--listen", f"127.0.0.1:{sy_port}"], stderr=open(work / "switchyard.log", "w"),
                              env={**os.environ, "RUST_LOG": "warn"})
        procs.append(sy)
        wait_http(f"http://127.0.0.1:{sy_port}/health", proc=sy)
        idle = rss_mb(sy.pid)

        (work / "litellm.yaml").write_text(f"""model_list:
  - model_name: fixed
    litellm_params:
      model: openai/fixed
      api_base: {upstream}
      api_key: unused
""")
        lite = subprocess.Popen([args.litellm, "--config", str(work / "litellm.yaml"), "--port", str(lite_port),
                                 "--host", "127.0.0.1", "--num_workers", "1"],
                                stdout=open(work / "litellm.log", "w"), stderr=subprocess.STDOUT,
                                env={**os.environ, "LITELLM_MASTER_KEY": BEARER})
        procs.append(lite)
        wait_http(f"http://127.0.0.1:{lite_port}/health/liveliness", timeout=300, proc=lite)

        targets = {
            "a_nginx_direct": (f"{upstream}/chat/completions", "fixed"),
            "b_switchyard_pinned": (f"http://127.0.0.1:{sy_port}/v1/chat/completions", "fixed"),
            "c_switchyard_auto": (f"http://127.0.0.1:{sy_port}/v1/chat/completions", "auto"),
            "d_litellm_pinned": (f"http://127.0.0.1:{lite_port}/v1/chat/completions", "fixed"),
        }
        results = {}
        for name, (url, model) in targets.items():
            f = work / f"{name}.json"
            f.write_text(body(model))
            auto = model == "auto"
            wrk(url, f, 2, 8)  # warm-up
            peak = wrk(url, f, args.seconds, 8 if auto else args.connections)
            rate = 20 if auto else (100 if name.startswith("d_") else args.rate)
            log = work / "logs" / "traffic.jsonl"
            time.sleep(0.5)  # let the traffic log catch up
            before = len(log.read_text().splitlines()) if log.exists() else 0
            fixed = loadgen(args.loadgen, url, f, rate, args.seconds)
            if auto:
                time.sleep(0.5)
                auto_records = [json.loads(l) for l in log.read_text().splitlines()[before:]]
            results[name] = {"peak": peak, "fixed_rate": fixed}
            print(f"{name:22} peak {peak['rps']:9.0f} RPS (p50 {peak['p50_ms']:.2f} ms, p99 {peak['p99_ms']:.2f} ms)"
                  f" | at {rate}/s: p50 {fixed['p50_ms']:.3f} ms, p99 {fixed['p99_ms']:.3f} ms, errors {fixed['errors']}",
                  flush=True)
        # The 1k RPS comparison of (a) and (b), interleaved a, b, e, a, b, e, ... so drift on a
        # shared machine hits all; the added latency is the median of per-round differences.
        # (e), nginx proxying to itself, is the reference for what one loopback hop costs.
        rounds = []
        for i in range(args.rounds):
            pair = {}
            for name in ("a_nginx_direct", "b_switchyard_pinned", "e_nginx_proxy"):
                url, model = targets.get(name, (proxy_url, "fixed"))
                body_name = "a_nginx_direct" if name == "e_nginx_proxy" else name
                pair[name] = loadgen(args.loadgen, url, work / f"{body_name}.json", args.rate, args.seconds)
            rounds.append(pair)
            print(f"round {i + 1}: nginx p50 {pair['a_nginx_direct']['p50_ms']:.3f} / p99 {pair['a_nginx_direct']['p99_ms']:.3f} ms;"
                  f" switchyard pinned p50 {pair['b_switchyard_pinned']['p50_ms']:.3f} / p99 {pair['b_switchyard_pinned']['p99_ms']:.3f} ms"
                  f"; nginx proxy_pass p50 {pair['e_nginx_proxy']['p50_ms']:.3f} / p99 {pair['e_nginx_proxy']['p99_ms']:.3f} ms"
                  f" (send lag p99 {max(p['send_lag_p99_ms'] for p in pair.values()):.3f} ms)",
                  flush=True)
        results["interleaved_rounds"] = rounds
        diff = lambda key, via="b_switchyard_pinned": statistics.median(r[via][key] - r["a_nginx_direct"][key] for r in rounds)

        def diff_ci(key, via="b_switchyard_pinned", resamples=2000):
            """95% bootstrap interval (over rounds) of the median per-round difference."""
            d = [r[via][key] - r["a_nginx_direct"][key] for r in rounds]
            rng = random.Random(0)
            meds = sorted(statistics.median(rng.choices(d, k=len(d))) for _ in range(resamples))
            return [meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]]
        results["switchyard_memory"] = {"idle": idle, "after": rss_mb(sy.pid)}

        # Server-side: time in the gateway beyond the encoder, for auto requests.
        # (only the fixed-rate phase's requests: at peak load the encoder queues)
        auto = [r["latency"] for r in auto_records if r.get("route") == "auto" and r["status"] == 200]
        embed = statistics.median(l["embed_ms"] for l in auto)
        beyond = statistics.median(l["total_ms"] - l["embed_ms"] - l["upstream_ms"] for l in auto)
        routing = statistics.median(l["classify_ms"] + l["score_ms"] for l in auto)
        results["auto_server_side_ms"] = {"embed_p50": embed, "classify_score_p50": routing,
                                          "beyond_embed_and_upstream_p50": beyond}

        r = results
        a, b, c, d = (r[k] for k in ("a_nginx_direct", "b_switchyard_pinned", "c_switchyard_auto", "d_litellm_pinned"))
        ratios = {
            "pinned_added_p99_ms_at_rate": diff("p99_ms"),
            "pinned_added_p99_ms_at_rate_ci95": diff_ci("p99_ms"),
            "pinned_added_p50_ms_at_rate": diff("p50_ms"),
            "pinned_added_p50_ms_at_rate_ci95": diff_ci("p50_ms"),
            "nginx_proxy_added_p99_ms_at_rate": diff("p99_ms", "e_nginx_proxy"),
            "nginx_proxy_added_p99_ms_at_rate_ci95": diff_ci("p99_ms", "e_nginx_proxy"),
            "nginx_proxy_added_p50_ms_at_rate": diff("p50_ms", "e_nginx_proxy"),
            "pinned_peak_rps_vs_nginx": b["peak"]["rps"] / a["peak"]["rps"],
            "pinned_peak_rps_vs_litellm": b["peak"]["rps"] / d["peak"]["rps"],
            "auto_p50_minus_pinned_p50_ms": c["fixed_rate"]["p50_ms"] - b["fixed_rate"]["p50_ms"],
            "auto_p50_minus_embed_and_pinned_ms": c["fixed_rate"]["p50_ms"] - b["fixed_rate"]["p50_ms"] - embed,
        }
        results["ratios"] = ratios
        print(json.dumps({"ratios": ratios, "auto_server_side_ms": results["auto_server_side_ms"],
                          "switchyard_memory": results["switchyard_memory"]}, indent=2))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
