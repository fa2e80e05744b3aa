"""Runs the shared-state benchmark; see replicas.sh."""

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gateway import (  # noqa: E402
    BEARER, COMPLETION, body, free_port, loadgen, start_nginx, stop_all, wait_http, wrk)


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def replica_config(work, i, upstream, redis_port):
    state = f'[state]\nurl = "redis://127.0.0.1:{redis_port}"\n' if redis_port else ""
    key = hashlib.sha256(BEARER.encode()).hexdigest()
    return f"""
[router]
enabled = false
[cache]
enabled = false
[log]
dir = "{work}/logs-{i}"
{state}
[providers.nginx]
kind = "openai"
base_url = "{upstream}"
[models.fixed]
provider = "nginx"
input_per_mtok = 0.15
output_per_mtok = 0.6
# Limits on every request: admission (rate and budgets), the reservation, its settlement
# and the request id are each a round trip to Redis with [state].
[tenants.bench]
key_sha256 = "{key}"
rpm = 100000000
daily_tokens = 1000000000000
daily_usd = 1000000000.0
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="eval/results/replicas-bench.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchyard-replicas-"))
    procs = []
    try:
        (work / "nginx").mkdir()
        nginx_port, redis_port = free_port(), free_port()
        procs.append(start_nginx(work, "upstream", f"""
  server {{ listen 127.0.0.1:{nginx_port};
    location / {{ default_type application/json; return 200 '{COMPLETION}'; }} }}"""))
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(work)],
                                      stdout=subprocess.DEVNULL))
        upstream = f"http://127.0.0.1:{nginx_port}/v1"
        wait_http(f"{upstream}/chat/completions")
        # Replica 0 keeps its state in memory; 1 uses Redis; 2-4 are three replicas on Redis.
        ports = [free_port() for _ in range(5)]
        for i, port in enumerate(ports):
            cfg = work / f"replica-{i}.toml"
            cfg.write_text(replica_config(work, i, upstream, None if i == 0 else redis_port))
            p = subprocess.Popen([args.switchyard, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"],
                                 stderr=open(work / f"replica-{i}.log", "w"), env={**os.environ, "RUST_LOG": "warn"})
            procs.append(p)
            wait_http(f"http://127.0.0.1:{port}/health", proc=p)
        # The same balancer (nginx, kept-alive upstream connections) in front of each setup.
        lbs = {"one_local": ports[:1], "one_redis": ports[1:2], "three_redis": ports[2:]}
        lb_ports = {name: free_port() for name in lbs}
        servers = ""
        for name, members in lbs.items():
            upstreams = "".join(f"server 127.0.0.1:{p}; " for p in members)
            servers += f"""
  upstream {name} {{ {upstreams} keepalive 64; }}
  server {{ listen 127.0.0.1:{lb_ports[name]};
    location / {{ proxy_pass http://{name}; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""
        procs.append(start_nginx(work, "balancer", servers))
        urls = {name: f"http://127.0.0.1:{port}/v1/chat/completions" for name, port in lb_ports.items()}
        f = work / "body.json"
        f.write_text(body("fixed"))
        for url in urls.values():
            wait_http(url.replace("/v1/chat/completions", "/health"))
            wrk(url, f, 2, 8)  # warm-up
        results = {"cpu": cpu_model(), "cores": os.cpu_count(), "peak": {}, "rounds": []}
        for name, url in urls.items():
            results["peak"][name] = wrk(url, f, args.seconds, 64)
            p = results["peak"][name]
            print(f"{name:12} peak {p['rps']:8.0f} RPS (p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, "
                  f"non-2xx {p['non_2xx']})", flush=True)
        for i in range(args.rounds):
            r = {name: loadgen(args.loadgen, url, f, args.rate, args.seconds) for name, url in urls.items()}
            results["rounds"].append(r)
            print(f"round {i + 1} at {args.rate}/s: " + "; ".join(
                f"{n} p50 {v['p50_ms']:.3f} / p99 {v['p99_ms']:.3f} ms (errors {v['errors']})" for n, v in r.items()),
                flush=True)
        diff = lambda key, a, b: statistics.median(r[a][key] - r[b][key] for r in results["rounds"])
        results["shared_state_added_p50_ms"] = diff("p50_ms", "one_redis", "one_local")
        results["shared_state_added_p99_ms"] = diff("p99_ms", "one_redis", "one_local")
        peak = results["peak"]
        results["throughput_one_redis_vs_local"] = peak["one_redis"]["rps"] / peak["one_local"]["rps"]
        results["throughput_three_vs_one_redis"] = peak["three_redis"]["rps"] / peak["one_redis"]["rps"]
        print(f"\nCPU: {results['cpu']} ({results['cores']} cores)")
        print(f"shared state adds p50 {results['shared_state_added_p50_ms']:+.3f} ms, "
              f"p99 {results['shared_state_added_p99_ms']:+.3f} ms per request at {args.rate}/s (median of rounds)")
        print(f"peak throughput: one replica on Redis / in memory = {results['throughput_one_redis_vs_local']:.2f}x; "
              f"three replicas / one (both on Redis) = {results['throughput_three_vs_one_redis']:.2f}x")
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
