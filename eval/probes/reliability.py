#!/usr/bin/env python3
"""Re-runs the reliability probes of issue 20 against a `switchyard` binary (release):
a local fake upstream that can be told to fail, one gateway per probe on loopback, and a
line per probe with what a client saw. Standard library only.

    python3 eval/probes/reliability.py --switchyard target/release/switchyard [--json out.json]
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = "sk-probe-live-0123456789abcdefghijklmnop"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Upstream(BaseHTTPRequestHandler):
    """OpenAI-shaped fake upstream; `mode` (class attribute) says how to answer."""

    mode = "ok"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def current_mode(self):
        return Upstream.mode

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        stream = body.get("stream", False)
        mode = self.current_mode()
        if mode == "hang":
            time.sleep(30)
            return
        if mode == "echo_key":
            text = ("e" * 190 + self.headers.get("authorization", "")[7:] + " is not valid").encode()
            self.send_response(401)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if mode == "retry_after_30":
            text = b'{"error":{"message":"slow down"}}'
            self.send_response(429)
            self.send_header("retry-after", "30")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if mode == "status500":
            text = b'{"error":{"message":"boom"}}'
            self.send_response(500)
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if stream:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if mode == "stall_after_first":
                time.sleep(30)
                return
            if mode != "no_usage":
                usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        if mode == "slow":
            time.sleep(0.2)
        text = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "Hello"}}],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


def start_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Gateway:
    def __init__(self, binary, config_text, ulimit=None):
        self.dir = tempfile.mkdtemp(prefix="switchyard-probe-")
        self.config = os.path.join(self.dir, "switchyard.toml")
        with open(self.config, "w") as f:
            f.write(config_text.replace("{dir}", self.dir))
        cmd = [binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0"]
        preexec = None
        if ulimit:
            import resource
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (ulimit, ulimit))
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=open(self.stderr_path, "w"), preexec_fn=preexec,
                                     env={**os.environ, "PROBE_KEY": KEY, "RUST_LOG": "info"})
        for _ in range(600):
            text = open(self.stderr_path).read()
            if "listening on " in text:
                self.port = int(text.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                return
            time.sleep(0.1)
        raise RuntimeError("the gateway did not start:\n" + open(self.stderr_path).read())

    def request(self, body, path="/v1/chat/completions", method="POST", headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
        r = conn.getresponse()
        text = r.read().decode(errors="replace")
        conn.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), text

    def log(self):
        path = os.path.join(self.dir, "logs", "traffic.jsonl")
        if not os.path.exists(path):
            return []
        return [json.loads(l) for l in open(path) if l.strip()]

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)


def config(port, extra="", router=False, cache=False, models=None):
    models = models or ["m"]
    text = f"[log]\ndir = \"{{dir}}/logs\"\n"
    text += "[router]\nenabled = true\n" if router else "[router]\nenabled = false\n"
    text += "[cache]\npath = \"{dir}/cache\"\n" if cache else "[cache]\nenabled = false\n"
    text += (f"[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"
             f"api_key_env = \"PROBE_KEY\"\nfirst_byte_timeout_ms = 1000\nidle_timeout_ms = 1000\n")
    for m in models:
        text += f"[models.{m}]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\nquality = 0.5\n"
    return text + extra


def chat(model="m", stream=False, text="Write a Python function that reverses a string.", **kw):
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}], **kw}


def probe_images(binary, port):
    Upstream.mode = "ok"
    g = Gateway(binary, config(port, "[routes.auto]\nmodels = [\"m\"]\n", router=True, cache=True))
    ask = lambda url: {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What animal is in this picture?"},
        {"type": "image_url", "image_url": {"url": url}}]}]}
    g.request(ask("https://example.com/cat.png"))
    time.sleep(1.0)
    _, h, _ = g.request(ask("https://example.com/dog.png"))
    g.stop()
    return f"another image: cache {h.get('x-switchyard-cache')}"


def probe_dropped_probe(binary, port):
    extra = "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 3\nopen_ms = 500\n"
    Upstream.mode = "status500"
    g = Gateway(binary, config(port, extra))
    for _ in range(3):
        g.request(chat())
    Upstream.mode = "hang"
    time.sleep(0.6)
    try:
        g.request(chat(), timeout=0.5)
    except (socket.timeout, TimeoutError):
        pass
    Upstream.mode = "ok"
    time.sleep(0.2)
    statuses = [g.request(chat())[0] for _ in range(3)]
    g.stop()
    return f"after the probe's client left and the target recovered: {statuses}"


def probe_mid_stream(binary, port):
    extra = "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 5\nopen_ms = 60000\n"
    Upstream.mode = "stall_after_first"
    g = Gateway(binary, config(port, extra))
    for _ in range(20):
        try:
            g.request(chat(stream=True), timeout=5)
        except (socket.timeout, TimeoutError):
            pass
    _, _, metrics = g.request(None, "/metrics", "GET")
    open_line = [l for l in metrics.splitlines() if l.startswith("switchyard_breaker_open{")]
    failed = sum(1 for r in g.log() if r["attempts"] and r["attempts"][-1].get("error_class"))
    g.stop()
    return f"20 stalled streams: {open_line}, {failed} attempts logged as failed"


def raw_status(port, timeout=5.0):
    """Sends one request on a new connection; the status line, or what went wrong."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        body = json.dumps(chat()).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    except OSError as e:
        return f"{type(e).__name__}"
    try:
        line = s.recv(4096).split(b"\r\n", 1)[0].decode()
    except OSError as e:
        line = f"{type(e).__name__}"
    s.close()
    return line or "closed"


def probe_idle_sockets(binary, port):
    Upstream.mode = "ok"
    try:
        g = Gateway(binary, config(port, "[server]\nheader_timeout_ms = 2000\n"), ulimit=1024)
    except RuntimeError:
        g = Gateway(binary, config(port), ulimit=1024)  # a binary without these settings
    socks = []
    for _ in range(1500):
        try:
            socks.append(socket.create_connection(("127.0.0.1", g.port), timeout=2))
        except OSError:
            break
    time.sleep(0.5)
    t = time.time()
    first = raw_status(g.port)
    took = time.time() - t
    time.sleep(2.5)
    later = raw_status(g.port)
    for s in socks:
        s.close()
    g.stop()
    return (f"{len(socks)} idle sockets under ulimit -n 1024: a new request got {first!r} in "
            f"{took * 1000:.0f} ms; 3 s later {later!r}")


def probe_key_scrub(binary, port):
    Upstream.mode = "echo_key"
    g = Gateway(binary, config(port))
    _, _, body = g.request(chat())
    g.stop()
    everything = body + open(g.stderr_path).read() + "".join(
        open(os.path.join(g.dir, "logs", f)).read() for f in os.listdir(os.path.join(g.dir, "logs")))
    leaked = max((n for n in range(4, len(KEY) + 1) if KEY[:n] in everything), default=0)
    return f"key echoed at char 190: longest key prefix anywhere = {leaked} chars"


def load(g, seconds, workers=8, body=None):
    answered = []
    stop = time.time() + seconds

    def worker():
        while time.time() < stop:
            try:
                s, h, _ = g.request(body or chat(), timeout=10)
                if s == 200:
                    answered.append(h.get("x-switchyard-request-id"))
            except Exception:  # noqa: BLE001 - the server may be going away
                return

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    return threads, answered


def stopped_under_load(binary, port, sig, name):
    Upstream.mode = "ok"
    g = Gateway(binary, config(port))
    threads, answered = load(g, 30)
    time.sleep(2)
    g.stop(sig)
    for t in threads:
        t.join()
    logged = {r["request_id"] for r in g.log()}
    missing = len([a for a in answered if a not in logged])
    return f"{name} under load: {len(answered)} answered, {missing} without a record"


def probe_sigterm(binary, port):
    return stopped_under_load(binary, port, signal.SIGTERM, "SIGTERM")


def probe_kill9(binary, port):
    return stopped_under_load(binary, port, signal.SIGKILL, "kill -9")


def probe_budget(binary, port):
    Upstream.mode = "slow"
    import hashlib
    h = hashlib.sha256(b"sk-tenant").hexdigest()
    g = Gateway(binary, config(port, f"[tenants.t]\nkey_sha256 = \"{h}\"\ndaily_tokens = 100\n"))
    results = []

    def one():
        s, _, body = g.request(chat(), headers={"authorization": "Bearer sk-tenant"})
        results.append(json.loads(body)["usage"]["total_tokens"] if s == 200 else 0)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Upstream.mode = "no_usage"
    streams = 0
    for _ in range(20):
        s, _, _ = g.request(chat(stream=True), headers={"authorization": "Bearer sk-tenant"})
        if s != 200:
            break
        streams += 1
    g.stop()
    return (f"40 concurrent against 100 tokens: {sum(results)} tokens served ({sum(1 for r in results if r)} requests); "
            f"then usage-less streams served before 429: {streams}")


def probe_huge_prompts(binary, port):
    Upstream.mode = "ok"
    g = Gateway(binary, config(port, "[routes.auto]\nmodels = [\"m\"]\npolicy = \"threshold:0.5\"\n",
                                router=True, models=["m"]).replace("quality = 0.5", "quality_like = \"gpt-4-1106-preview\""))
    big = ("the gateway routes each prompt to the cheapest model that is good enough " * 52000)[:3_800_000]
    hogs = [threading.Thread(target=lambda: g.request(chat("auto", text=big), timeout=120)) for _ in range(4)]
    for t in hogs:
        t.start()
    time.sleep(0.2)
    worst = 0.0
    for i in range(10):
        t = time.time()
        g.request(chat("auto", text=f"What is {i} times 8?"))
        worst = max(worst, time.time() - t)
    for t in hogs:
        t.join()
    g.stop()
    return f"four 3.8 MB prompts at once: slowest of 10 small auto requests {worst * 1000:.0f} ms"


def probe_smaller(binary, port):
    Upstream.mode = "retry_after_30"
    healthy = start_upstream_ok()
    extra = (f"[providers.q]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{healthy}/v1\"\n"
             "[models.n]\nprovider = \"q\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n"
             "[routes.pair]\nmodels = [\"m\", \"n\"]\npolicy = \"order\"\n")
    g = Gateway(binary, config(port, extra))
    t = time.time()
    s, h, _ = g.request(chat("pair"))
    out = [f"429 Retry-After 30 then a healthy fallback: {s} from {h.get('x-switchyard-model')} "
           f"in {(time.time() - t) * 1000:.0f} ms"]
    s, _, body = g.request(None, "/v1/chat/completions", "GET")
    out.append(f"GET on a POST endpoint: {s} {body[:70]}")
    g.stop()
    return "; ".join(out)


class AlwaysOk(Upstream):
    def current_mode(self):
        return "ok"


def start_upstream_ok():
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysOk)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


PROBES = [probe_images, probe_dropped_probe, probe_mid_stream, probe_idle_sockets, probe_key_scrub,
          probe_sigterm, probe_kill9, probe_budget, probe_huge_prompts, probe_smaller]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--switchyard", required=True, help="the switchyard binary to probe")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", help="run only probes whose name contains this")
    args = ap.parse_args()
    port = start_upstream()
    results = {}
    for probe in PROBES:
        if args.only and args.only not in probe.__name__:
            continue
        try:
            results[probe.__name__] = probe(args.switchyard, port)
        except Exception as e:  # noqa: BLE001 - report and go on to the next probe
            results[probe.__name__] = f"ERROR {e!r}"
        print(f"{probe.__name__}: {results[probe.__name__]}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
