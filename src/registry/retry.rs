//! Riding out a registry that fails for a moment: which failures are worth
//! another try, how often and how long to wait, and the error a call that
//! failed for good becomes.

use super::{Registry, RegistryError};

/// True when `e`, or an error it wraps, is a timeout (reqwest's, or an I/O
/// one): the registry stopped answering rather than answered badly.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // oci-client wraps reqwest's error transparently: its `source()`
        // skips the reqwest error, so ask the wrapped one itself.
        if let Some(oci_client::errors::OciDistributionError::RequestError(r)) = err.downcast_ref()
        {
            if r.is_timeout() {
                return true;
            }
        }
        if err
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_timeout())
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Attempts per registry call when it fails transiently (an HTTP 5xx or
/// 429, a refused or dropped connection): a registry restarting, or briefly
/// overloaded, is ridden out instead of failing the build.
const ATTEMPTS: u32 = 5;

/// The wait before the first retry; it doubles for each next one (0.5, 1,
/// 2, 4 s: 7.5 s in all before the call fails).
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a failed call may succeed if made again, in words: the registry
/// answered 5xx or 429, or the connection was refused or dropped. None for
/// anything else: a timeout (the registry already had `[registry] timeout`
/// to answer), a refusal, a client error, corrupt data.
pub(super) fn transient(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if timed_out(e) {
        return None;
    }
    let of_status = |code: u16| (code >= 500 || code == 429).then(|| format!("HTTP {code}"));
    let of_reqwest = |r: &reqwest::Error| match r.status() {
        Some(s) => of_status(s.as_u16()),
        None if r.is_connect() => Some("cannot connect".to_string()),
        None if r.is_request() || r.is_body() => Some("connection dropped".to_string()),
        None => None,
    };
    let mut cur = Some(e);
    while let Some(err) = cur {
        // oci-client wraps reqwest's error transparently: its `source()`
        // skips the reqwest error, so ask the wrapped one itself.
        match err.downcast_ref::<oci_client::errors::OciDistributionError>() {
            Some(oci_client::errors::OciDistributionError::ServerError { code, .. }) => {
                return of_status(*code)
            }
            Some(oci_client::errors::OciDistributionError::RequestError(r)) => {
                return of_reqwest(r)
            }
            _ => {}
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return of_reqwest(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // A stream's error wraps the client's (`source()` would skip it).
            if let (K::Other, Some(inner)) = (io.kind(), io.get_ref()) {
                return transient(inner);
            }
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::BrokenPipe
                    | K::UnexpectedEof
                    | K::NotConnected
            )
            .then(|| io.kind().to_string());
        }
        cur = err.source();
    }
    None
}

/// A call that failed for good: its last error, and whether it failed
/// transiently every time it was made.
pub(super) struct Failed<E> {
    pub(super) error: E,
    pub(super) attempts: u32,
    pub(super) waited: std::time::Duration,
    pub(super) exhausted: bool,
}

impl<E> Failed<E> {
    /// The error `map` makes of it, saying how often it was tried when the
    /// retries ran out.
    pub(super) fn into_error(self, map: impl FnOnce(E) -> RegistryError) -> RegistryError {
        let last = map(self.error);
        if self.exhausted && self.attempts > 1 {
            RegistryError::GaveUp {
                attempts: self.attempts,
                waited: self.waited,
                last: Box::new(last),
            }
        } else {
            last
        }
    }
}

impl Registry {
    /// The error for a failed call: [`RegistryError::Timeout`] when the
    /// registry went silent, else what `otherwise` makes of it.
    pub(super) fn failed<E: std::error::Error + 'static>(
        &self,
        what: impl FnOnce() -> String,
        e: E,
        otherwise: impl FnOnce(E) -> RegistryError,
    ) -> RegistryError {
        if timed_out(&e) {
            RegistryError::Timeout {
                url: self.url.clone(),
                what: what(),
                timeout: self.timeout,
            }
        } else {
            otherwise(e)
        }
    }

    /// Makes `call` until it succeeds, fails in a way retrying cannot help,
    /// or has failed transiently [`ATTEMPTS`] times, waiting twice as long
    /// before each next attempt. Every retry is logged (habd's log), with
    /// what failed and why.
    pub(super) async fn retrying<T, E, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        mut call: impl FnMut() -> Fut,
    ) -> Result<T, Failed<E>>
    where
        E: std::error::Error + 'static,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut wait = FIRST_RETRY;
        let mut waited = std::time::Duration::ZERO;
        let mut attempt = 1;
        loop {
            let error = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(why) = transient(&error) else {
                return Err(Failed {
                    error,
                    attempts: attempt,
                    waited,
                    exhausted: false,
                });
            };
            if attempt >= ATTEMPTS {
                return Err(Failed {
                    error,
                    attempts: attempt,
                    waited,
                    exhausted: true,
                });
            }
            tracing::warn!(
                registry = %self.url,
                attempt,
                attempts = ATTEMPTS,
                error = %error,
                "registry: {} failed ({why}); trying again in {:.1}s",
                what(),
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
            waited += wait;
            wait *= 2;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_lost_connections_are_worth_retrying_and_nothing_else() {
        use oci_client::errors::OciDistributionError as E;
        let server = |code| E::ServerError {
            code,
            url: "http://r/v2/x/blobs/uploads/".into(),
            message: String::new(),
        };
        assert_eq!(transient(&server(500)).as_deref(), Some("HTTP 500"));
        assert_eq!(transient(&server(503)).as_deref(), Some("HTTP 503"));
        assert_eq!(transient(&server(429)).as_deref(), Some("HTTP 429"));
        assert_eq!(transient(&server(404)), None);
        assert_eq!(transient(&server(400)), None);
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(transient(&io(std::io::ErrorKind::ConnectionRefused)).is_some());
        assert!(transient(&io(std::io::ErrorKind::ConnectionReset)).is_some());
        // A stream's error wrapping the client's.
        assert!(transient(&std::io::Error::other(server(502))).is_some());
        // A timeout is the registry's `[registry] timeout` running out.
        assert_eq!(transient(&io(std::io::ErrorKind::TimedOut)), None);
        assert_eq!(transient(&E::UnauthorizedError { url: "u".into() }), None);
    }
}
