//! The HTTP server: event loops accepting from one socket, and the limits that keep slow,
//! idle or too many clients from taking the gateway down: a header timeout (which also
//! closes idle keep-alive connections), a body timeout (in [`crate::app`]'s body reader),
//! and a cap on open connections beyond which new ones are refused at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};
use tower::Service;

use crate::config::ServerConfig;
use crate::runtime::AppState;
use crate::runtime::cache::CacheState;
use crate::runtime::lifecycle::reload;
use crate::runtime::routers::follow_promotions;

/// The connection limits every event loop applies; the connection cap is shared by all.
#[derive(Debug, Clone)]
struct Limits {
    header_timeout: Duration,
    connections: Arc<Semaphore>,
}

impl Limits {
    fn new(config: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            connections: Arc::new(Semaphore::new(config.connection_cap())),
        }
    }
}

/// [`serve_on_threads`] from async code (a program or a test that already runs a runtime):
/// the same event loops, with `server.io_threads` from the config, started on a thread of
/// their own; resolves when they stop (SIGINT/SIGTERM). `on_bound` gets the bound address
/// (useful with port 0).
pub async fn serve(
    state: Arc<AppState>,
    listen: SocketAddr,
    on_bound: impl FnOnce(SocketAddr) + Send + 'static,
) -> std::io::Result<()> {
    let threads = state.config().server.io_threads;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("switchyard-serve".into())
        .spawn(move || {
            let _ = done.send(serve_on_threads(
                state,
                listen,
                threads,
                on_bound,
                shutdown_signal(),
            ));
        })?;
    finished
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked")))
}

/// Serves on `threads` event loops (0 = one per CPU core) until `stop` resolves (the
/// command passes [`shutdown_signal`]: SIGINT/SIGTERM), then lets the requests in flight
/// finish; SIGHUP reloads the config file. Blocks the calling thread,
/// which runs the first loop and the background work (cache connection and maintenance,
/// reloads).
///
/// Each loop is a single-threaded tokio runtime on its own thread accepting from the same
/// listening socket (one `bind`, so a second server on the port fails with "address in
/// use"): a request is read, forwarded over a connection of that thread's pool and answered
/// on one thread, with no hand-over between threads. On a small machine that keeps wake-ups
/// and cross-core traffic off the proxy's latency, which a work-stealing runtime adds to each
/// request. Slow work never runs on a loop: embeddings and the local model have their own
/// worker threads, the embedded cache runs on the blocking pool.
pub fn serve_on_threads(
    state: Arc<AppState>,
    listen: SocketAddr,
    threads: usize,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let socket = std::net::TcpListener::bind(listen)?;
    socket.set_nonblocking(true)?;
    let bound = socket.local_addr()?;
    let event_loop = || -> std::io::Result<(tokio::runtime::Runtime, tokio::net::TcpListener)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registers the socket with this runtime's reactor.
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(socket.try_clone()?)?
        };
        Ok((runtime, listener))
    };
    let limits = Limits::new(&state.config().server);
    let (main, first) = event_loop()?;
    let (stop_all, stopped) = tokio::sync::watch::channel(false);
    let mut others = Vec::with_capacity(threads - 1);
    for i in 1..threads {
        let (runtime, listener) = event_loop()?;
        let (state, mut stopped, limits) = (state.clone(), stopped.clone(), limits.clone());
        let thread = std::thread::Builder::new()
            .name(format!("switchyard-io-{i}"))
            .spawn(move || {
                runtime.block_on(serve_listener(state, listener, limits, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                }))
            });
        match thread {
            Ok(t) => others.push(t),
            Err(e) => {
                let _ = stop_all.send(true);
                return Err(e);
            }
        }
    }
    drop(stopped);
    on_bound(bound);
    tracing::info!(threads, "serving on {bound}");
    let finishing = state.clone();
    let result = main.block_on(async {
        start_background(&state);
        serve_listener(state, first, limits, async move {
            stop.await;
            let _ = stop_all.send(true);
        })
        .await
    });
    for t in others {
        match t.join() {
            Ok(Err(e)) => tracing::error!(error = %e, "an event loop stopped with an error"),
            Err(_) => tracing::error!("an event loop panicked"),
            Ok(Ok(())) => {}
        }
    }
    // The spans of the last requests leave before the process does.
    if let Some(telemetry) = &finishing.telemetry {
        telemetry.shutdown();
    }
    result
}

/// Starts the work beside the request handlers: the cache's connection and maintenance,
/// and the SIGHUP reloader. Call once, on a runtime that lives as long as the server.
fn start_background(state: &Arc<AppState>) {
    if let Some(plan) = &state.cache_plan {
        let connecting = matches!(
            &*state
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            CacheState::Connecting(_)
        );
        if connecting {
            crate::runtime::cache::connect_in_background(plan.clone(), state.cache.clone());
        }
        crate::runtime::cache::maintain_in_background(state.cache.clone());
    }
    if let Some(shared) = &state.limits.shared {
        tokio::spawn(shared.clone().run());
        tokio::spawn(follow_promotions(state.clone(), shared.clone()));
    }
    let reloader = state.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                match reload(&reloader) {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "reload failed; keeping the running configuration")
                    }
                }
            }
        }
    });
}

/// Serves connections from `listener` until `stop` resolves, then waits for the requests in
/// flight. Each connection is held to the server's limits ([`Limits`]).
async fn serve_listener(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = super::app::app(state.clone());
    // Dropping `shutdown` tells every connection to finish its request and close;
    // `open_rx` clones, one per connection, say when they all have.
    let (shutdown, _) = watch::channel(());
    let (open_tx, open_rx) = watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // No Nagle: response headers, SSE chunks and streamed bodies go out as separate
        // writes, and each must leave at once rather than wait for the client's ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            state.metrics.connection_refused();
            tokio::spawn(refuse(tcp));
            continue;
        };
        let connection = Connection {
            app: app.clone(),
            header_timeout: limits.header_timeout,
            shutdown: shutdown.subscribe(),
            open: open_rx.clone(),
            _permit: permit,
        };
        tokio::spawn(connection.serve(tcp));
    }
    drop(shutdown);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// One accepted connection and what it holds while it is open.
struct Connection {
    app: axum::Router,
    header_timeout: Duration,
    shutdown: watch::Receiver<()>,
    open: watch::Receiver<()>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(mut self, tcp: tokio::net::TcpStream) {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            async move { app.call(request.map(Body::new)).await }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The timer runs whenever the connection waits for a request's headers: a new
        // connection that sends nothing, a half-sent header, and an idle keep-alive
        // connection are all closed when it fires.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(tcp), service));
        // Until the server stops; then the request in flight finishes and the connection
        // closes (`changed` fails at once once the sender is gone, so it is awaited once).
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = self.shutdown.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(self.open);
    }
}

/// Answers a connection over `server.max_connections` with a 503 and closes it, spending
/// at most a second on it: refusing fast keeps descriptors for the connections being served.
async fn refuse(mut tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":{"message":"the gateway is at server.max_connections; retry shortly","type":"server_error","param":null,"code":null}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
