//! The HTTP server: accept loop, HTTP/1.1 and h2c on one port, timeouts, graceful shutdown, and
//! the per-request pipeline (request id → route → auth → limits → body cap → handler → render).
//!
//! Hardening (docs/security.md): connections are capped and watched (`http::conn`), bodies are
//! read under a size cap and a minimum rate (`http::body`), the client address comes from
//! forwarding headers only behind a trusted proxy (`http::client_ip`), and failed
//! authentications are limited without ever refusing a valid key (`limits::auth_failed`).

use crate::app::AppState;
use crate::error::Error;
use crate::fixture::journal::{Entry, Written};
use crate::http::body::{self, BodyLimits};
use crate::http::client_ip::client_ip;
use crate::http::conn::{self, Connections, InflightGuard, Timeouts, Tracked};
use crate::http::response::{render, render_error, Body, Meta};
use crate::http::{Ctx, Query, Reply};
use crate::router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts connections until `stop` flips, then waits for in-flight requests up to the grace
/// period. Connections are capped and watched (`http::conn`): idle ones close after the idle
/// timeout, clients that stop reading are cut, and at the cap the longest-idle ones make room.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let cfg = &state.config;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let limit = if cfg.max_connections > 0 {
        cfg.max_connections
    } else {
        conn::default_limit(cfg.read_pool_size)
    };
    let conns = Connections::new(limit);
    tracing::debug!(limit, "connection limit");
    let timeouts = Timeouts {
        idle: cfg.idle_timeout,
        write_stall: cfg.write_stall_timeout,
    };
    let graceful = GracefulShutdown::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let slot = tokio::select! {
            slot = conns.reserve() => slot,
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a reset before accept: back off briefly.
                    accept_errors.note(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let track = slot.track.clone();
        let service = {
            let (state, track) = (state.clone(), track.clone());
            hyper::service::service_fn(move |req| {
                let (state, track) = (state.clone(), track.clone());
                let inflight = track.request();
                async move {
                    let resp = handle(state, req, peer, &track).await;
                    Ok::<_, std::convert::Infallible>(resp.map(|body| Watched {
                        body,
                        watch: inflight,
                    }))
                }
            })
        };
        let io = TokioIo::new(Tracked::new(stream, track.clone()));
        let conn = builder.serve_connection_with_upgrades(io, service);
        let conn = graceful.watch(conn.into_owned());
        let dog = conn::watchdog(track, timeouts, stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                why = dog => tracing::debug!(?why, %peer, "closing connection"),
            }
            drop(slot);
        });
    }
    drop(listener);
    let grace = state.config.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the shutdown grace period"
        );
    }
}

/// Logs failed accepts at most once every ten seconds, with how many there were.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn note(&mut self, e: &std::io::Error) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            error = %e,
            suppressed = self.suppressed,
            "accept failed (if this says 'Too many open files', lower --max-connections or raise \
             the open-file limit)"
        );
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// A response body with something attached for as long as it is being sent: an observer that
/// sees each chunk (the journal's byte count) or a guard dropped when the body is done (the
/// connection's in-flight count).
struct Watched<W: Watch> {
    body: Body,
    watch: W,
}

trait Watch: Unpin {
    fn sent(&self, _chunk: &[u8]) {}
}

/// Keeps the request counted as in flight on its connection until its body has been written or
/// dropped.
impl Watch for InflightGuard {}

/// Counts (and, when the journal keeps bodies, copies) what the body sends.
impl Watch for Arc<Written> {
    fn sent(&self, chunk: &[u8]) {
        self.add(chunk);
    }
}

impl<W: Watch> hyper::body::Body for Watched<W> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.watch.sent(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a request out of `AppState::inflight` however its handling ends.
struct StateInflight(Arc<AppState>);

impl Drop for StateInflight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| crate::ids::new("req"))
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    track: &conn::Track,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let http1 = parts.version < hyper::Version::HTTP_2;
    let client = client_ip(peer.ip(), &parts.headers, &state.config.trusted_proxies);
    let matched = router::find(&method, &path);
    let (route_name, family) = match &matched {
        Ok(m) => (m.route.pattern, m.route.family),
        Err(_) => ("unmatched", router::family_of_path(&path)),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = route_name,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    state.inflight.fetch_add(1, Ordering::SeqCst);
    let _inflight = StateInflight(state.clone());
    let journaled = state.fixture.journal.enabled() && !route_name.starts_with("/v1/admin");
    let query_text = parts.uri.query().map(str::to_string);
    async move {
        let mut tenant: Option<String> = None;
        let mut key_id: Option<String> = None;
        let mut fault_id: Option<String> = None;
        let mut request_bytes = 0u64;
        let mut request_body: Option<Vec<u8>> = None;
        let mut rate = None;
        // The body until it is read: a request refused before that has it drained in the
        // background (`body::discard`), so a client still sending it reads the answer.
        let mut unread = Some(body);
        let result = async {
            let m = matched?;
            let query = Query::parse(parts.uri.query())?;
            let principal = if m.route.auth {
                let header = parts
                    .headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let p = match state.auth.authenticate(header).await {
                    Ok(p) => p,
                    Err(e) => {
                        // A valid key is never refused for others' failures: only failed
                        // authentications are counted, per address and per key prefix.
                        state.limits.auth_failed(
                            client,
                            crate::auth::presented_prefix(header).as_deref(),
                        )?;
                        return Err(e);
                    }
                };
                tenant = Some(p.tenant_id.clone());
                if journaled {
                    key_id = Some(p.key_id.clone());
                }
                let admission = state.limits.admit(&p);
                rate = admission.info;
                admission.result?;
                state.limits.prepare(&p).await?;
                Some(p)
            } else {
                if m.route.pattern.starts_with("/v1/admin/") {
                    crate::api::admin::check_operator(
                        &state,
                        &parts.headers,
                        &parts.method,
                        &path,
                        client,
                    )?;
                }
                None
            };
            // An injected fault (`crate::fixture::faults`): its delay, then its answer instead of
            // the route's (the body is drained unread).
            if let Some(f) = state
                .fixture
                .faults
                .fire(method.as_str(), m.route.pattern, &path)
            {
                fault_id = Some(f.id.clone());
                if !f.delay.is_zero() {
                    tokio::time::sleep(f.delay).await;
                }
                match f.answer {
                    Some((status, Some(body))) => return Ok(Reply::raw(status, &body)),
                    Some((status, None)) => {
                        return Err(Error::injected(
                            status,
                            format!("fault {} injected by the operator", f.id),
                        ))
                    }
                    None => {}
                }
            }
            let declared = parts
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let expects_continue = parts
                .headers
                .get(hyper::header::EXPECT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            let limits = BodyLimits {
                cap: m.route.body_cap,
                timeout: state.config.body_read_timeout,
                min_rate: state.config.body_min_rate,
                expects_continue,
            };
            let incoming = unread.take().expect("the body is read once");
            let body = body::read(incoming, declared, limits, track).await?;
            request_bytes = body.len() as u64;
            if journaled && state.fixture.journal.keeps_bodies() {
                let cap = body.len().min(crate::fixture::journal::BODY_CAP);
                request_body = Some(body[..cap].to_vec());
            }
            let ctx = Ctx {
                state: state.clone(),
                request_id: request_id.clone(),
                method: parts.method,
                path: path.clone(),
                route: m.route.pattern,
                family: m.route.family,
                headers: parts.headers,
                query,
                params: m.params,
                body,
                principal,
                peer: client,
                started,
            };
            (m.route.handler)(ctx).await
        }
        .await;
        if let Some(b) = unread {
            body::discard(b);
        }

        let meta = Meta {
            request_id: &request_id,
            tenant_id: tenant.as_deref(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let mut resp = match result {
            Ok(reply) => render(reply, family, &meta),
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(request_id = %request_id, error = %e, "internal error");
                }
                render_error(&e, family, &meta)
            }
        };
        let refused_body = matches!(resp.status().as_u16(), 408 | 413);
        let headers = resp.headers_mut();
        if family == crate::error::Family::Memory {
            headers.insert(
                "x-hippocortex-latest-sdk-python",
                HeaderValue::from_static(crate::api::TESTED_SDK_PYTHON),
            );
        }
        if http1 && refused_body {
            // The rest of the body is not wanted: the connection ends after this answer.
            headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert(X_REQUEST_ID.clone(), v);
        }
        if let Some(r) = rate {
            headers.insert("x-ratelimit-limit", HeaderValue::from(r.limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(r.remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(r.reset));
        }
        let status = resp.status().as_u16();
        let span = tracing::Span::current();
        span.record("status", status);
        span.record("latency_ms", started.elapsed().as_millis() as u64);
        if let Some(t) = &tenant {
            span.record("tenant", t.as_str());
        }
        if status >= 500 {
            tracing::warn!(status, "request failed");
        } else {
            tracing::debug!(status, "request done");
        }
        if !journaled {
            return resp;
        }
        let journal = &state.fixture.journal;
        let written = Arc::new(Written::new(journal.keeps_bodies()));
        journal.record(Entry {
            id: request_id.clone(),
            at: crate::time::now_rfc3339(),
            method: method.to_string(),
            path: path.clone(),
            query: query_text,
            route: route_name,
            status,
            tenant_id: tenant,
            key_id,
            duration_ms: started.elapsed().as_millis() as u64,
            request_bytes,
            fault_id,
            request_body,
            response: written.clone(),
        });
        resp.map(|body| {
            Watched {
                body,
                watch: written,
            }
            .boxed_unsync()
        })
    }
    .instrument(span)
    .await
}
