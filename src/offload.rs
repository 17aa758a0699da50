//! Blocking work (SQLite, git, files) off the async threads, for every
//! module: one `blocking`, whatever the closure's error type.

/// An error type that can say a blocking task died (panicked or was
/// cancelled) before it returned.
pub trait TaskDied {
    /// The error for a task that died, with why.
    fn task_died(reason: String) -> Self;
}

/// Runs `f` on tokio's blocking pool and returns what it returns.
///
/// # Errors
/// What `f` returns, or [`TaskDied::task_died`] if it never returned.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: TaskDied + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(E::task_died(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn a_task_that_panics_is_an_error_not_a_panic() {
        let ok: Result<u8, StoreError> = blocking(|| Ok(7)).await;
        assert_eq!(ok.unwrap(), 7);
        let died: Result<u8, StoreError> = blocking(|| panic!("boom")).await;
        assert!(matches!(died, Err(StoreError::Task(r)) if r.contains("panicked")));
    }
}
