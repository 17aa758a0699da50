//! The composition root: what habd's services are and how they are wired.
//! One registry client; the rollout engine; the channel door (promotion),
//! told by the build service when a build verifies; the queue, running
//! syncs and builds; the scheduler, queueing through the queue's intake.

use std::{sync::Arc, time::Instant};

use axum::http::StatusCode;
use prometheus_client::registry::Registry;

use super::{metrics::Metrics, ApiError, AppState};
use crate::{
    builder::{BuildError, Builds},
    config::{Config, Pipeline},
    store::Store,
    sync::Syncer,
};

/// How often habd looks at every node for the dashboard and `/metrics`
/// (the rollout engine looks on its own, as its gates need).
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl AppState {
    /// State over a loaded config, an open store and the API tokens. Starts
    /// the rollout engine's worker, the trigger queue and the scheduler, so
    /// it must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The registry's password file cannot be read, or the store fails.
    pub fn new(config: Arc<Config>, store: Store, tokens: Vec<String>) -> Result<Self, BuildError> {
        Self::with_clock(
            config,
            store,
            tokens,
            Arc::new(crate::schedule::SystemClock),
        )
    }

    /// [`AppState::new`] with the schedules read from `clock`.
    ///
    /// # Errors
    /// As [`AppState::new`].
    pub fn with_clock(
        config: Arc<Config>,
        store: Store,
        tokens: Vec<String>,
        clock: Arc<dyn crate::schedule::Clock>,
    ) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("hab");
        metrics.register(&mut registry);
        let reg = crate::registry::Registry::new(&config.registry)?;
        let key_file = config.signing_key_path();
        let (key, made) = crate::provenance::SigningKey::load_or_create(&key_file)?;
        if made {
            tracing::warn!(file = %key_file.display(), keyid = %key.public().keyid(), "made habd's signing key: keep it, and give auditors its public half (habctl key)");
        } else {
            tracing::info!(file = %key_file.display(), keyid = %key.public().keyid(), "habd's signing key");
        }
        let provenance = crate::provenance::Provenance::new(Arc::new(key), reg.clone());
        let rollouts = crate::rollout::Rollouts::new(
            config.clone(),
            store.clone(),
            reg.clone(),
            provenance.clone(),
        );
        rollouts.spawn();
        let looker = rollouts.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = looker.look().await {
                    tracing::warn!(error = %e, "could not record the look at the fleets' nodes");
                }
                tokio::time::sleep(LOOK_EVERY).await;
            }
        });
        let promotions = crate::promotion::Promotions::new(
            store.clone(),
            reg.clone(),
            provenance.clone(),
            rollouts.clone(),
        );
        let builds = Builds::new(
            config.clone(),
            store.clone(),
            reg,
            provenance.clone(),
            promotions.clone(),
        );
        let syncer = Syncer::new(store.clone(), config.state_dir.clone());
        let queue = crate::queue::Queue::new(
            config.clone(),
            store.clone(),
            syncer.clone(),
            builds.clone(),
        );
        queue.spawn()?;
        let scheduler =
            crate::schedule::Scheduler::new(config.clone(), store, clock, queue.intake().clone());
        tokio::spawn(scheduler.run());
        Ok(AppState {
            config,
            syncer,
            tokens: Arc::new(tokens),
            metrics,
            registry: Arc::new(registry),
            builds,
            rollouts,
            promotions,
            provenance,
            queue,
            started: Instant::now(),
            requests: Arc::default(),
            sessions: Arc::default(),
        })
    }

    /// The build service.
    pub fn builds(&self) -> &Arc<Builds> {
        &self.builds
    }

    /// The syncer.
    pub fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// The channel door: promotes, and automatic channels when a build
    /// verifies.
    pub fn promotions(&self) -> &Arc<crate::promotion::Promotions> {
        &self.promotions
    }

    /// The trigger queue (for syncs at start).
    pub fn queue(&self) -> &Arc<crate::queue::Queue> {
        &self.queue
    }

    pub(super) fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, ApiError> {
        self.config.pipeline(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .pipelines
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no pipeline named {name:?}; known: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    pub(super) fn store(&self) -> Store {
        self.syncer.store().clone()
    }
}
