//! Build slots of one builder, handed out fairly across pipelines.
//!
//! A builder runs one build at a time (a build takes every core it gets).
//! When it frees up, the next build is the one of the pipeline served least
//! recently, first come first served within a pipeline: a burst of ten
//! bitcoind builds does not make one btcd build wait behind all ten.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// Which waiter gets a freed slot: the one whose pipeline was served least
/// recently (never served counts as longest ago); among a pipeline's
/// waiters, the first to come.
pub fn pick(waiters: &[&str], last_served: &HashMap<String, u64>) -> Option<usize> {
    waiters
        .iter()
        .enumerate()
        .min_by_key(|(i, p)| (last_served.get(**p).copied().unwrap_or(0), *i))
        .map(|(i, _)| i)
}

struct Waiter {
    pipeline: String,
    wake: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    free: usize,
    waiters: VecDeque<Waiter>,
    last_served: HashMap<String, u64>,
    served: u64,
}

/// The slots of one builder.
pub struct FairSlots {
    state: Mutex<State>,
}

impl std::fmt::Debug for FairSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairSlots").finish_non_exhaustive()
    }
}

/// A held slot; dropping it hands the slot on.
pub struct Slot {
    slots: Arc<FairSlots>,
}

impl FairSlots {
    /// `n` slots.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(FairSlots {
            state: Mutex::new(State {
                free: n,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot for a build of `pipeline`. Cancel-safe: a waiter
    /// dropped before its turn is skipped.
    pub async fn acquire(self: &Arc<Self>, pipeline: &str) -> Slot {
        let rx = {
            let mut s = self.lock();
            if s.free > 0 && s.waiters.is_empty() {
                s.free -= 1;
                s.served += 1;
                let n = s.served;
                s.last_served.insert(pipeline.to_string(), n);
                return Slot {
                    slots: self.clone(),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.waiters.push_back(Waiter {
                pipeline: pipeline.to_string(),
                wake: tx,
            });
            rx
        };
        // The releaser counted the slot as ours before waking us. The
        // sender is only dropped with the slots, which `self` keeps alive.
        let _ = rx.await;
        Slot {
            slots: self.clone(),
        }
    }

    fn release(&self) {
        let mut s = self.lock();
        loop {
            let names: Vec<&str> = s.waiters.iter().map(|w| w.pipeline.as_str()).collect();
            let Some(i) = pick(&names, &s.last_served) else {
                s.free += 1;
                return;
            };
            let w = s.waiters.remove(i).expect("picked from the list");
            s.served += 1;
            let n = s.served;
            s.last_served.insert(w.pipeline.clone(), n);
            if w.wake.send(()).is_ok() {
                return;
            }
            // That waiter gave up: hand the slot to the next.
        }
    }

    /// Builds waiting for a slot, by pipeline, in arrival order.
    pub fn waiting(&self) -> Vec<String> {
        self.lock()
            .waiters
            .iter()
            .map(|w| w.pipeline.clone())
            .collect()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_pipeline_served_longest_ago_goes_next() {
        let served = HashMap::from([("core".to_string(), 5), ("btcd".to_string(), 3)]);
        assert_eq!(pick(&["core", "core", "btcd"], &served), Some(2));
        assert_eq!(
            pick(&["core", "bcoin", "btcd"], &served),
            Some(1),
            "never served"
        );
        assert_eq!(
            pick(&["core", "core"], &served),
            Some(0),
            "in arrival order"
        );
        assert_eq!(pick(&[], &served), None);
    }

    #[tokio::test]
    async fn a_burst_of_one_pipeline_does_not_starve_another() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("core").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in ["core", "core", "core", "btcd"] {
            let (s, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _s = s.acquire(p).await;
                order.lock().unwrap().push(p);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Arrive in this order.
            while slots.waiting().len() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["btcd", "core", "core", "core"]);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_is_skipped() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("a").await;
        let s = slots.clone();
        let gone = tokio::spawn(async move { s.acquire("b").await });
        while slots.waiting().is_empty() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(held);
        // The slot came back: the next comer gets it at once.
        let _again = tokio::time::timeout(Duration::from_secs(5), slots.acquire("c"))
            .await
            .expect("slot returned");
    }
}
