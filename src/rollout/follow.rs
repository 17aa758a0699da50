//! Fleets follow channels: a channel that moved queues a rollout of every
//! fleet that follows it, and a fleet new to the configuration is rolled to
//! the build its channel names.

use super::{RolloutError, Rollouts};
use crate::store::blocking;
use crate::store::RolloutRecord;

impl Rollouts {
    /// A channel moved: queues a rollout of every fleet that follows it.
    ///
    /// # Errors
    /// The store failed.
    pub async fn channel_moved(
        &self,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        repository: &str,
        index_digest: &str,
        trigger: &str,
    ) -> Result<Vec<RolloutRecord>, RolloutError> {
        // The channel's name is also a tag of the index: what a node
        // installed before any rollout pinned it (the chart's first
        // install, by tag) starts on the channel's verified image.
        if let Err(e) = self
            .registry
            .tag_digest(repository, index_digest, channel)
            .await
        {
            tracing::warn!(repository, channel, error = %e, "cannot tag the index with the channel's name");
        }
        self.queue_followers(
            pipeline,
            channel,
            build_id,
            repository,
            index_digest,
            trigger,
            None,
        )
        .await
    }

    /// Queues a rollout to the build of every fleet that follows the
    /// channel, but `except`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn queue_followers(
        &self,
        pipeline: &str,
        channel: &str,
        build_id: i64,
        repository: &str,
        index_digest: &str,
        trigger: &str,
        except: Option<&str>,
    ) -> Result<Vec<RolloutRecord>, RolloutError> {
        let image = self.registry.pinned_for_nodes(repository, index_digest);
        let mut queued = Vec::new();
        for f in self.config.fleets_following(pipeline, channel) {
            if Some(f.name.as_str()) == except {
                continue;
            }
            let store = self.store.clone();
            let (fl, p, c, i, t) = (
                f.name.clone(),
                pipeline.to_string(),
                channel.to_string(),
                image.clone(),
                trigger.to_string(),
            );
            let r = blocking(move || store.queue_rollout(&fl, &p, &c, build_id, &i, &t)).await?;
            tracing::info!(fleet = %f.name, rollout = r.id, image = %image, "rollout queued");
            queued.push(r);
        }
        if !queued.is_empty() {
            self.wake();
        }
        Ok(queued)
    }

    /// At start: a fleet hab has never rolled out (one added to the
    /// configuration since) is rolled to the build its channel names now,
    /// unless that build is known-bad.
    pub(super) async fn join_new_fleets(&self) -> Result<(), RolloutError> {
        for f in &self.config.fleets {
            let store = self.store.clone();
            let (name, pipeline, channel) = (f.name.clone(), f.pipeline.clone(), f.channel.clone());
            let at = blocking(move || {
                if !store.rollouts(Some(&name), 1)?.is_empty() {
                    return Ok(None);
                }
                let Some(c) = store
                    .channels(&pipeline)?
                    .into_iter()
                    .find(|c| c.name == channel)
                else {
                    return Ok(None);
                };
                match store.build(c.build_id)? {
                    Some(b) if b.known_bad.is_none() => Ok(Some((c, b.repository))),
                    _ => Ok(None),
                }
            })
            .await?;
            let Some((c, repository)) = at else {
                continue;
            };
            let image = self.registry.pinned_for_nodes(&repository, &c.index_digest);
            let store = self.store.clone();
            let (fl, p, ch, i) = (f.name.clone(), f.pipeline.clone(), f.channel.clone(), image);
            let trigger = format!("fleet {} joined channel {}", f.name, f.channel);
            let r = blocking(move || store.queue_rollout(&fl, &p, &ch, c.build_id, &i, &trigger))
                .await?;
            tracing::info!(fleet = %f.name, rollout = r.id, "new fleet: rollout to its channel's build queued");
            self.wake();
        }
        Ok(())
    }
}
