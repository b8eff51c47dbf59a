//! Toxiproxy 2.x's HTTP API over the proxy registry, so that any Toxiproxy
//! client (toxiproxy_rust, toxiproxy-cli, the Go and Ruby clients) can drive
//! the embedded server.

use super::server::{ApiError, ProxyServer};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// The version string `GET /version` answers with.
pub const VERSION: &str = concat!("2.12.0-gameday-", env!("CARGO_PKG_VERSION"));

type Shared = State<Arc<ProxyServer>>;
type Reply = Result<Response, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": self.message, "status": self.status})),
        )
            .into_response()
    }
}

/// A request body read as JSON whatever its Content-Type, as Toxiproxy
/// does (its clients and `curl -d` do not all send one).
fn body<T: serde::de::DeserializeOwned>(bytes: Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(&bytes).map_err(|e| ApiError {
        status: 400,
        message: format!("bad request body: {e}"),
    })
}

/// The API's routes over one registry.
pub fn router(server: Arc<ProxyServer>) -> Router {
    Router::new()
        // JSON since Toxiproxy 2.6, which the version claims.
        .route(
            "/version",
            get(|| async { Json(json!({ "version": VERSION })) }),
        )
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list).post(create))
        .route(
            "/proxies/{proxy}",
            get(show).post(update).patch(update).delete(remove),
        )
        .route("/proxies/{proxy}/toxics", get(toxics).post(add_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(remove_toxic),
        )
        .with_state(server)
}

async fn reset(State(s): Shared) -> Reply {
    s.reset().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn populate(State(s): Shared, req: Bytes) -> Reply {
    let proxies = s.populate(body(req)?).await?;
    Ok((StatusCode::CREATED, Json(json!({ "proxies": proxies }))).into_response())
}

async fn list(State(s): Shared) -> Reply {
    Ok(Json(s.list()).into_response())
}

async fn create(State(s): Shared, req: Bytes) -> Reply {
    Ok((StatusCode::CREATED, Json(s.create(body(req)?).await?)).into_response())
}

async fn show(State(s): Shared, Path(proxy): Path<String>) -> Reply {
    Ok(Json(s.get(&proxy)?).into_response())
}

async fn update(State(s): Shared, Path(proxy): Path<String>, req: Bytes) -> Reply {
    Ok(Json(s.update(&proxy, body(req)?).await?).into_response())
}

async fn remove(State(s): Shared, Path(proxy): Path<String>) -> Reply {
    s.delete(&proxy).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn toxics(State(s): Shared, Path(proxy): Path<String>) -> Reply {
    Ok(Json(s.toxics(&proxy)?).into_response())
}

async fn add_toxic(State(s): Shared, Path(proxy): Path<String>, req: Bytes) -> Reply {
    Ok(Json(s.add_toxic(&proxy, body(req)?)?).into_response())
}

async fn show_toxic(State(s): Shared, Path((proxy, toxic)): Path<(String, String)>) -> Reply {
    Ok(Json(s.toxic(&proxy, &toxic)?).into_response())
}

async fn update_toxic(
    State(s): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
    req: Bytes,
) -> Reply {
    Ok(Json(s.update_toxic(&proxy, &toxic, body(req)?)?).into_response())
}

async fn remove_toxic(State(s): Shared, Path((proxy, toxic)): Path<(String, String)>) -> Reply {
    s.delete_toxic(&proxy, &toxic)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
