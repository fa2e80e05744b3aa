//! A fake LLM provider on 127.0.0.1 that speaks OpenAI's Chat Completions and Anthropic's
//! Messages API (stream and non-stream) and can be told to fail in every way the gateway
//! must survive. Raw TCP, so it can hang, stall, reset and send garbage.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// HTTP 500 with an OpenAI error body.
    Status500,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimited,
    /// Reads the request, never answers.
    Hang,
    /// Sends the headers and part of the body (one chunk of a stream), then goes silent.
    Stall,
    /// Closes the connection with a TCP reset right after reading the request.
    Reset,
    /// HTTP 200 with a body that is not what the protocol promises.
    Malformed,
    /// HTTP 401 whose message echoes the API key it got, as some providers do.
    EchoKey,
    /// Answers as `Ok` after 200 ms (requests overlap).
    Slow,
    /// Answers as `Ok` after 1.5 s: past the tests' first-byte timeout.
    SlowFirstByte,
    /// A stream's first event, then a TCP reset (non-stream: headers and part of the body).
    ResetAfterFirst,
    /// A stream's first event, then an event that is not JSON.
    MalformedAfterFirst,
    /// `Ok`, but a stream carries no usage chunk.
    NoUsage,
}

pub const FAILURES: [Mode; 6] = [
    Mode::Status500,
    Mode::RateLimited,
    Mode::Hang,
    Mode::Stall,
    Mode::Reset,
    Mode::Malformed,
];

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    mode: Arc<Mutex<Mode>>,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Self {
            addr: listener.local_addr().unwrap(),
            name: name.to_owned(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            hits: Arc::default(),
            seen: Arc::default(),
        };
        let server = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let server = server.clone();
                tokio::spawn(async move { server.handle(socket).await });
            }
        });
        up
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request seen")
    }

    /// The answer's text: what a client should see, stream or not.
    pub fn text(&self) -> String {
        format!("Hello from {}", self.name)
    }

    async fn handle(&self, mut socket: TcpStream) {
        let Some((path, headers, body)) = read_request(&mut socket).await else {
            return;
        };
        self.hits.fetch_add(1, Ordering::SeqCst);
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            headers: headers.clone(),
            body: request.clone(),
        });
        let stream = request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let anthropic = path.ends_with("/messages");
        let mut mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Slow => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                mode = Mode::Ok;
            }
            Mode::SlowFirstByte => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                mode = Mode::Ok;
            }
            _ => {}
        }
        let reply = match mode {
            Mode::Ok | Mode::NoUsage => {
                if stream {
                    let mut events = if anthropic {
                        self.anthropic_events()
                    } else {
                        self.openai_events()
                    };
                    if mode == Mode::NoUsage {
                        events.retain(|e| !e.contains("\"choices\":[]"));
                    }
                    for (i, e) in events.iter().enumerate() {
                        let head = if i == 0 { sse_head() } else { String::new() };
                        if socket
                            .write_all(format!("{head}{e}").as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let _ = socket.shutdown().await;
                    return;
                }
                let body = if anthropic {
                    self.anthropic_body()
                } else {
                    self.openai_body()
                };
                response(200, "", &body.to_string())
            }
            Mode::Status500 => response(
                500,
                "",
                r#"{"error":{"message":"upstream exploded","type":"server_error"}}"#,
            ),
            Mode::RateLimited => response(
                429,
                "Retry-After: 1\r\n",
                r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
            ),
            Mode::EchoKey => {
                let key = headers
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: Bearer ")
                            .or_else(|| l.strip_prefix("x-api-key: "))
                    })
                    .unwrap_or("")
                    .to_owned();
                response(
                    401,
                    "",
                    &json!({"error": {"message": format!("Incorrect API key provided: {key}")}})
                        .to_string(),
                )
            }
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Mode::Stall => {
                let partial = if stream {
                    let first = if anthropic {
                        self.anthropic_events()[0].clone()
                    } else {
                        self.openai_events()[0].clone()
                    };
                    format!("{}{first}", sse_head())
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\nconnection: close\r\n\r\n{\"id\":\"x\",".to_owned()
                };
                let _ = socket.write_all(partial.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Mode::Reset => {
                // SO_LINGER 0 makes the close a TCP reset (the blocking-drop concern
                // tokio warns about does not apply to a zero linger).
                #[allow(deprecated)]
                let _ = socket.set_linger(Some(Duration::ZERO));
                drop(socket);
                return;
            }
            Mode::ResetAfterFirst | Mode::MalformedAfterFirst => {
                let first = if anthropic {
                    self.anthropic_events()[0].clone()
                } else {
                    self.openai_events()[0].clone()
                };
                let head = if stream {
                    format!("{}{first}", sse_head())
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\nconnection: close\r\n\r\n{\"id\":\"x\",".to_owned()
                };
                let _ = socket.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if mode == Mode::MalformedAfterFirst {
                    let _ = socket.write_all(b"data: {this is not json\n\n").await;
                    let _ = socket.shutdown().await;
                } else {
                    #[allow(deprecated)]
                    let _ = socket.set_linger(Some(Duration::ZERO));
                    drop(socket);
                }
                return;
            }
            Mode::Slow | Mode::SlowFirstByte => unreachable!("answered as Ok above"),
            Mode::Malformed => {
                if stream {
                    format!("{}data: {{this is not json\n\n", sse_head())
                } else {
                    response(200, "", "this is not json {")
                }
            }
        };
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = socket.shutdown().await;
    }

    fn openai_body(&self) -> Value {
        json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": "upstream-id",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text()}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    }

    fn openai_events(&self) -> Vec<String> {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "upstream-id",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for piece in ["Hello", " from", &format!(" {}", self.name)] {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        events.push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": "upstream-id",
                           "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}));
        let mut out: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        out.push("data: [DONE]\n\n".into());
        out
    }

    fn anthropic_body(&self) -> Value {
        json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": "claude-upstream",
               "content": [{"type": "text", "text": self.text()}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 10, "output_tokens": 5}})
    }

    fn anthropic_events(&self) -> Vec<String> {
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut out = vec![ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "model": "claude-upstream", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        )];
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
        for piece in ["Hello", " from", &format!(" {}", self.name)] {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})));
        }
        out.push(ev("ping", json!({"type": "ping"})));
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}})));
        out.push(ev("message_stop", json!({"type": "message_stop"})));
        out
    }
}

fn sse_head() -> String {
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n".into()
}

fn response(status: u16, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Path, lower-cased headers, body.
async fn read_request(socket: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let headers: String = head
        .lines()
        .skip(1)
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}: {}\n", k.to_ascii_lowercase(), v.trim()),
            None => String::new(),
        })
        .collect();
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, buf[head_end..].to_vec()))
}
