//! Every Kubernetes API call is tried again, with backoff, on what is
//! routine on a real cluster, within [`RETRY_BUDGET`].

use std::{
    future::Future,
    time::{Duration, Instant},
};

use super::RETRY_BUDGET;

/// Whether an API failure is routine (worth another try): throttling (429),
/// a server error, a reset or refused connection, a timeout; with
/// `conflicts`, a 409 too (a patch raced another writer).
fn transient(e: &kube::Error, conflicts: bool) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 429 | 500 | 502 | 503 | 504) || (conflicts && s.code == 409)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Calls `f` until it succeeds, fails for good, or [`RETRY_BUDGET`] is
/// spent on transient failures (each logged), waiting longer each time.
pub(super) async fn retrying<T, F, Fut>(what: &str, conflicts: bool, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    let mut tries = 0u32;
    loop {
        tries += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e, conflicts) && started.elapsed() + wait < RETRY_BUDGET => {
                tracing::info!(
                    what,
                    error = %e,
                    "Kubernetes API: a transient failure; trying again in {wait:.1?}"
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) if tries > 1 => {
                return Err(format!(
                    "{what}: {e} (tried {tries} times over {:.0?})",
                    started.elapsed()
                ))
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_api_failures_are_tried_again() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        for code in [429, 500, 502, 503, 504] {
            assert!(transient(&api(code), false), "{code}");
        }
        assert!(!transient(&api(409), false));
        assert!(transient(&api(409), true));
        for code in [400, 403, 404, 422] {
            assert!(!transient(&api(code), true), "{code}");
        }
    }
}
