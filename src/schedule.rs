//! Cron schedules: when each pipeline's sync and rebuild are due, and the
//! loop that queues them.
//!
//! The decision is two plain functions over times ([`next_slot`],
//! [`due_slot`]); the loop reads the time from a [`Clock`], so tests drive it
//! with a [`ManualClock`] instead of waiting for minutes to pass. What a
//! schedule last fired for is kept in the store: after downtime, every slot
//! missed collapses into one run at start, and the first time habd sees a
//! schedule nothing counts as missed.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::Notify;

use crate::{
    config::{Config, Schedule},
    queue::Intake,
    store::{Enqueue, QueueKind, Store, StoreError},
};

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Returns once [`Clock::now`] has reached `t`.
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
    moved: Notify,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(ManualClock {
            now: std::sync::Mutex::new(start),
            moved: Notify::new(),
        })
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        }
        self.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let moved = self.moved.notified();
                tokio::pin!(moved);
                // Registered before the check, so an advance in between wakes us.
                moved.as_mut().enable();
                if self.now() >= t {
                    return;
                }
                moved.await;
            }
        })
    }
}

/// The first slot of `cron` (read in `tz`) strictly after `after`.
pub fn next_slot(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The slot to run now, if any: the latest slot in `(last, now]`. However
/// many slots were missed since `last`, this is one run, for the newest.
pub fn due_slot(
    cron: &Cron,
    tz: Tz,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slot = cron
        .find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()?
        .with_timezone(&Utc);
    (slot > last).then_some(slot)
}

/// A schedule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Pipeline.
    pub pipeline: String,
    /// `sync` or `rebuild`.
    pub kind: QueueKind,
    /// The slot it fired for.
    pub slot: DateTime<Utc>,
    /// The queue item it landed on.
    pub queue_id: i64,
}

/// Queues each pipeline's scheduled syncs and rebuilds when they are due.
pub struct Scheduler {
    config: Arc<Config>,
    store: Store,
    clock: Arc<dyn Clock>,
    intake: Intake,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

/// The longest the loop sleeps without looking again: a system clock
/// stepped by NTP, or a pipeline's schedule far ahead, is re-read at least
/// this often.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

impl Scheduler {
    /// A scheduler over `config`'s pipelines, keeping its slots in `store`
    /// and queueing through `intake`.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        clock: Arc<dyn Clock>,
        intake: Intake,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            config,
            store,
            clock,
            intake,
        })
    }

    fn schedules(&self) -> impl Iterator<Item = (&str, QueueKind, &Schedule, Tz)> {
        self.config.pipelines.iter().flat_map(|p| {
            [
                (QueueKind::Sync, p.sync_schedule.as_ref()),
                (QueueKind::Rebuild, p.rebuild_schedule.as_ref()),
            ]
            .into_iter()
            .filter_map(move |(k, s)| s.map(|s| (p.name.as_str(), k, s, p.timezone)))
        })
    }

    /// Queues every schedule due at the clock's now. Blocking (SQLite).
    ///
    /// # Errors
    /// The store fails; what was queued before the failure stays queued.
    pub fn tick(&self) -> Result<Vec<Fired>, StoreError> {
        let now = self.clock.now();
        let mut fired = Vec::new();
        for (pipeline, kind, schedule, tz) in self.schedules() {
            let Some(last) = self.store.schedule_last(pipeline, kind)? else {
                self.store.schedule_baseline(pipeline, kind, now)?;
                continue;
            };
            let Some(slot) = due_slot(&schedule.cron, tz, last, now) else {
                continue;
            };
            let mut e = Enqueue::new(pipeline, kind, "schedule");
            e.detail = Some(format!("{} at {}", schedule.expression, slot.to_rfc3339()));
            let queued = self.intake.fire(slot, &e)?;
            let missed = next_slot(&schedule.cron, tz, last).is_some_and(|first| first < slot);
            tracing::info!(pipeline, kind = kind.as_str(), slot = %slot, queue = queued.item.id,
                catch_up = missed, "schedule fired");
            fired.push(Fired {
                pipeline: pipeline.to_string(),
                kind,
                slot,
                queue_id: queued.item.id,
            });
        }
        if !fired.is_empty() {
            self.intake.wake();
        }
        Ok(fired)
    }

    /// When the next schedule is due, if any is configured.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        self.schedules()
            .filter_map(|(_, _, s, tz)| next_slot(&s.cron, tz, now))
            .min()
    }

    /// Runs until the task is dropped: fires what is due (at once, for runs
    /// missed while habd was down), then sleeps until the next slot.
    pub async fn run(self: Arc<Self>) {
        loop {
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.tick()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot record a scheduled run"),
                Err(e) => tracing::error!(error = %e, "scheduler tick died"),
            }
            let now = self.clock.now();
            let cap = now + chrono::Duration::from_std(LOOK_AT_LEAST_EVERY).unwrap_or_default();
            let until = self.next_wake().map_or(cap, |t| t.min(cap));
            self.clock.sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cron(s: &str) -> Cron {
        s.parse::<Schedule>().unwrap().cron
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, h, m, s).unwrap()
    }

    #[test]
    fn one_run_for_however_many_slots_were_missed() {
        let every_minute = cron("* * * * *");
        assert_eq!(
            due_slot(&every_minute, chrono_tz::UTC, at(10, 0, 0), at(13, 0, 30)),
            Some(at(13, 0, 0)),
            "three hours down is one run, for the latest slot"
        );
        assert_eq!(
            due_slot(&every_minute, chrono_tz::UTC, at(10, 0, 0), at(10, 0, 59)),
            None
        );
        assert_eq!(
            due_slot(&every_minute, chrono_tz::UTC, at(10, 0, 0), at(10, 1, 0)),
            Some(at(10, 1, 0)),
            "a slot is due at its own second"
        );
    }

    #[test]
    fn slots_are_read_in_the_pipelines_time_zone() {
        let four_am = cron("0 4 * * *");
        let zurich: Tz = "Europe/Zurich".parse().unwrap();
        // 04:00 in Zurich in winter is 03:00 UTC.
        assert_eq!(next_slot(&four_am, zurich, at(0, 0, 0)), Some(at(3, 0, 0)));
        assert_eq!(
            next_slot(&four_am, chrono_tz::UTC, at(0, 0, 0)),
            Some(at(4, 0, 0))
        );
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_time() {
        let clock = ManualClock::new(at(10, 0, 0));
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(at(10, 1, 0)).await });
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woken")
            .unwrap();
    }
}
