"""A stand-in OpenAI-compatible provider for demos (standard library only).

    python3 scripts/demo_upstream.py PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE) and answers every
/v1/chat/completions request, stream or not, with "This is <model> answering." and usage
numbers, so `switchyard serve` can be tried without any API key.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        model = body.get("model", "?")
        text = f"This is {model} answering."
        usage = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
        if not body.get("stream"):
            out = json.dumps({"id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()),
                              "model": model, "usage": usage,
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for i, word in enumerate(text.split(" ")):
            chunk = {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [], "usage": usage}
        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
