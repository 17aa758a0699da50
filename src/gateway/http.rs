//! The front door's HTTP face: JSON-RPC calls checked (credentials, body,
//! batch, rate, method, allowlist) and answered in Bitcoin Core's shapes,
//! and `GET /hab/nodes`, its view of the nodes.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

use super::{access, code, error, Gateway, User};

/// One call's answer in the request's JSON-RPC version: Bitcoin Core's
/// 1.0 shape (`result`, `error`, `id`) or 2.0's (`jsonrpc`, one of
/// `result`/`error`, `id`).
fn reply(v2: bool, id: &Value, outcome: Result<Value, Value>) -> Value {
    match (v2, outcome) {
        (false, Ok(r)) => json!({"result": r, "error": null, "id": id}),
        (false, Err(e)) => json!({"result": null, "error": e, "id": id}),
        (true, Ok(r)) => json!({"jsonrpc": "2.0", "result": r, "id": id}),
        (true, Err(e)) => json!({"jsonrpc": "2.0", "error": e, "id": id}),
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A call, checked before anything is forwarded.
struct Call {
    v2: bool,
    id: Value,
    method: String,
    params: Value,
}

fn parse_call(v: &Value) -> Result<Call, (Value, Value)> {
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let v2 = v.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let Some(method) = v.get("method").and_then(Value::as_str) else {
        return Err((id, error(code::INVALID_REQUEST, "Method must be a string")));
    };
    let params = match v.get("params") {
        None | Some(Value::Null) => json!([]),
        Some(p @ (Value::Array(_) | Value::Object(_))) => p.clone(),
        Some(_) => {
            return Err((
                id,
                error(code::INVALID_REQUEST, "Params must be an array or object"),
            ))
        }
    };
    Ok(Call {
        v2,
        id,
        method: method.to_string(),
        params,
    })
}

pub(super) async fn serve(
    State(g): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(user) = access::authenticate(
        &g.users,
        headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
    ) else {
        // Bitcoin Core answers 401 with a challenge; here with a reason too.
        let mut r = answer(
            StatusCode::UNAUTHORIZED,
            json!({"result": null, "error": error(code::INVALID_REQUEST, "Authorization failed: wrong user or password"), "id": null}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
        return r;
    };
    // Over the limit: refused by the body limit before it is read.
    let Ok(body) = body else {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"result": null, "error": error(code::INVALID_REQUEST, &format!("Request body over {} bytes", g.settings.max_body)), "id": null}),
        );
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"result": null, "error": error(code::PARSE_ERROR, "Parse error"), "id": null}),
        );
    };
    let calls = match &request {
        Value::Array(calls) => calls.len(),
        _ => 1,
    };
    if let Some(refused) = g.over_rate(&user.name, calls) {
        return refused;
    }
    match request {
        Value::Array(calls) => {
            if calls.len() > g.settings.max_batch {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"result": null, "error": error(code::INVALID_REQUEST, &format!("Batch of {} calls over the limit of {}", calls.len(), g.settings.max_batch)), "id": null}),
                );
            }
            // Every call checked first: a batch with a forbidden call is
            // refused whole, as Bitcoin Core's rpcwhitelist does.
            let parsed: Vec<Result<Call, (Value, Value)>> = calls.iter().map(parse_call).collect();
            if let Some(c) = parsed
                .iter()
                .flatten()
                .find(|c| access::known(&c.method) && !user.may(&c.method))
            {
                return forbidden(user, c);
            }
            let outcomes = parsed.into_iter().map(|p| {
                let g = &g;
                async move {
                    match p {
                        Err((id, e)) => reply(false, &id, Err(e)),
                        Ok(c) if !access::known(&c.method) => reply(
                            c.v2,
                            &c.id,
                            Err(error(code::METHOD_NOT_FOUND, "Method not found")),
                        ),
                        Ok(c) => reply(
                            c.v2,
                            &c.id,
                            g.forward(&user.name, &c.method, c.params).await,
                        ),
                    }
                }
            });
            answer(
                StatusCode::OK,
                Value::Array(futures_util::future::join_all(outcomes).await),
            )
        }
        Value::Object(_) => {
            let c = match parse_call(&request) {
                Ok(c) => c,
                Err((id, e)) => return answer(StatusCode::BAD_REQUEST, reply(false, &id, Err(e))),
            };
            if !access::known(&c.method) {
                return answer(
                    StatusCode::NOT_FOUND,
                    reply(
                        c.v2,
                        &c.id,
                        Err(error(code::METHOD_NOT_FOUND, "Method not found")),
                    ),
                );
            }
            if !user.may(&c.method) {
                return forbidden(user, &c);
            }
            let outcome = g.forward(&user.name, &c.method, c.params).await;
            // Bitcoin Core's 1.0 convention: an error is HTTP 500 (404 for
            // an unknown method); 2.0 answers 200.
            let status = match (&outcome, c.v2) {
                (Err(e), false) if e["code"] == code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
                (Err(_), false) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            };
            answer(status, reply(c.v2, &c.id, outcome))
        }
        _ => answer(
            StatusCode::BAD_REQUEST,
            json!({"result": null, "error": error(code::INVALID_REQUEST, "Top-level object parse error"), "id": null}),
        ),
    }
}

impl Gateway {
    /// HTTP 429 when `calls` more calls of `user` now would go over its
    /// rate, with when to try again.
    fn over_rate(&self, user: &str, calls: usize) -> Option<Response> {
        let n = std::num::NonZeroU32::new(u32::try_from(calls).unwrap_or(u32::MAX))?;
        let rate = self.settings.max_calls_per_second;
        let wait = match self.limiter.check_key_n(&user.to_string(), n) {
            Ok(Ok(())) => return None,
            Ok(Err(not_until)) => not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            )),
            // More calls in one batch than a second's worth.
            Err(_) => Duration::from_secs(1),
        };
        let mut r = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"result": null, "error": error(code::RATE_LIMITED, &format!(
                "Rate limit: user {user} may make {rate} calls a second; try again in {} ms",
                wait.as_millis().max(1)
            )), "id": null}),
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Some(r)
    }
}

/// `GET /hab/nodes`: what the front door knows of each node, for any of
/// its users (`habctl rpc --door`).
pub(super) async fn view(State(g): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if access::authenticate(&g.users, auth).is_none() {
        let mut r = answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Authorization failed: wrong user or password"}),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
        return r;
    }
    answer(StatusCode::OK, json!(g.nodes()))
}

fn forbidden(user: &User, c: &Call) -> Response {
    answer(
        StatusCode::FORBIDDEN,
        reply(
            c.v2,
            &c.id,
            Err(error(
                code::METHOD_NOT_FOUND,
                &format!(
                    "User {} may not call {} (its allowlist)",
                    user.name, c.method
                ),
            )),
        ),
    )
}
