//! The HTTP API (axum): `GET /v1/vips`, `/v1/members`, `/v1/state`, `/v1/resolve?name=`,
//! `/healthz`, `/metrics`.
//!
//! Handlers never touch the node: each sends a [`Query`] to the node's task and waits for
//! its answer (bounded queue, bounded wait), so the node stays owned by one task.
//!
//! Invariants:
//! - A full query queue or a node that does not answer within [`ANSWER_TIMEOUT`] gives
//!   `503`, never a hung request.
//! - `/metrics` is the Prometheus text format (OpenMetrics), see [`crate::metrics`].

use super::views::{MemberView, StateView, VipView};
use crate::dns::server::SharedTable;
use crate::metrics::{self, CoreSnapshot, ShellMetrics};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a handler waits for the node's task.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A question for the node's task.
#[derive(Debug)]
pub enum Query {
    Vips(oneshot::Sender<Vec<VipView>>),
    Members(oneshot::Sender<Vec<MemberView>>),
    State(oneshot::Sender<StateView>),
    Core(oneshot::Sender<CoreSnapshot>),
    /// The core node's own invariants ([`minuteman_core::node::Node::check_invariants`]:
    /// views, the record store and the output queue within their bounds). Not served
    /// over HTTP; the madsim tests ask it.
    Invariants(oneshot::Sender<Result<(), String>>),
}

#[derive(Clone)]
struct ApiState {
    queries: mpsc::Sender<Query>,
    metrics: ShellMetrics,
    dns: SharedTable,
}

/// What `/v1/resolve?name=NAME` answers: the records the agent's DNS gives `name`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolveView {
    /// The full name, lower case, without the trailing dot.
    pub name: String,
    pub ipv4: Vec<std::net::Ipv4Addr>,
    pub ipv6: Vec<std::net::Ipv6Addr>,
    /// SRV records (task ports): `PORT TARGET` each.
    pub srv: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ResolveQuery {
    name: String,
}

/// The records of a name, from the table the DNS listeners answer from: a named VIP
/// (a name outside every zone gets the VIP zone appended: `web.marathon` →
/// `web.marathon.ZONE`) or a task record (`web.marathon.mesos`,
/// `_web._tcp.marathon.mesos`). 404 for a name the agent does not serve.
async fn resolve(
    State(state): State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<ResolveQuery>,
) -> Response {
    state.metrics.api_requests.inc();
    let table = state.dns.load();
    let mut name = q.name.trim_end_matches('.').to_ascii_lowercase();
    if !table.in_zone(&name) {
        name = format!("{name}.{}", table.zone());
    }
    match table.lookup(&name) {
        Some(entry) => Json(ResolveView {
            name,
            ipv4: entry.v4.clone(),
            ipv6: entry.v6.clone(),
            srv: entry
                .srv
                .iter()
                .map(|srv| format!("{} {}", srv.port, srv.target))
                .collect(),
        })
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("{name}: no such name (a named VIP in the local kernel, or a running task)\n"),
        )
            .into_response(),
    }
}

async fn ask<T>(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Result<T, Response> {
    state.metrics.api_requests.inc();
    let unavailable = || (StatusCode::SERVICE_UNAVAILABLE, "the node is busy\n").into_response();
    let (tx, rx) = oneshot::channel();
    state
        .queries
        .try_send(make(tx))
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(unavailable()),
    }
}

async fn vips(State(state): State<ApiState>) -> Response {
    match ask(&state, Query::Vips).await {
        Ok(mut v) => {
            let zone = state.dns.load().zone().to_owned();
            for vip in &mut v {
                vip.dns = vip.name.as_ref().map(|name| format!("{name}.{zone}"));
            }
            Json(v).into_response()
        }
        Err(r) => r,
    }
}

async fn members(State(state): State<ApiState>) -> Response {
    match ask(&state, Query::Members).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn own_state(State(state): State<ApiState>) -> Response {
    match ask(&state, Query::State).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match ask(&state, Query::State).await {
        Ok(v) => Json(serde_json::json!({
            "status": "ok",
            "epoch": v.epoch,
            "view_complete": v.view_complete,
            "members": v.members,
            "reachable": v.reachable,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format
/// otherwise.
async fn metrics_text(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    match ask(&state, Query::Core).await {
        Ok(core) => {
            let text = metrics::encode(&state.metrics, &core);
            if openmetrics {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            } else {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics::to_prometheus_text(&text),
                )
                    .into_response()
            }
        }
        Err(r) => r,
    }
}

/// The API's routes.
pub fn router(queries: mpsc::Sender<Query>, metrics: ShellMetrics, dns: SharedTable) -> Router {
    Router::new()
        .route("/v1/vips", get(vips))
        .route("/v1/resolve", get(resolve))
        .route("/v1/members", get(members))
        .route("/v1/state", get(own_state))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(ApiState {
            queries,
            metrics,
            dns,
        })
}

/// Serves the API on `listener` until `shutdown`. Not in the simulated build: axum and
/// hyper run on the real tokio's sockets, which madsim does not replace.
#[cfg(not(madsim))]
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the HTTP API stopped");
    }
}
