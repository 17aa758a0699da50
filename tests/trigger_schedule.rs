//! Cron schedules on an injected clock: no test waits for a minute to pass.
//! The scheduler records into a real SQLite store; its queue items are what
//! habd's queue worker would run.

mod common;

use std::{sync::Arc, time::Duration};

use chrono::{TimeZone, Utc};
use common::*;
use hab::{
    config::{Config, Overrides},
    queue::Intake,
    schedule::{ManualClock, Scheduler},
    store::{QueueKind, Store},
};

fn scheduled_world(schedule: &str) -> (World, Arc<Config>) {
    let (world, _, _) = World::with_release();
    world.write_pipeline(&world.daemon.url("node.git"));
    let file = world.path("pipelines/node.toml");
    let mut p = std::fs::read_to_string(&file).unwrap();
    p.push_str(&format!("[schedule]\n{schedule}\n"));
    std::fs::write(&file, p).unwrap();
    let config = Config::load(
        None,
        &Overrides {
            state_dir: Some(world.path("state")),
            pipelines_dir: Some(world.path("pipelines")),
            ..Overrides::default()
        },
    )
    .unwrap();
    std::fs::create_dir_all(world.path("state")).unwrap();
    (world, Arc::new(config))
}

fn scheduled(store: &Store) -> Vec<String> {
    let mut t: Vec<String> = store
        .triggers("node", 10_000)
        .unwrap()
        .into_iter()
        .filter(|t| t.source == "schedule")
        .map(|t| t.detail.unwrap_or_default())
        .collect();
    t.reverse();
    t
}

#[test]
fn an_every_minute_schedule_fires_once_a_minute_and_once_after_downtime() {
    let (world, config) = scheduled_world("sync = \"* * * * *\"");
    let store = Store::open(&world.path("state/hab.sqlite3")).unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 30).unwrap());
    let wake = Arc::new(tokio::sync::Notify::new());
    let scheduler = Scheduler::new(
        config.clone(),
        store.clone(),
        clock.clone(),
        Intake::new(store.clone(), wake.clone()),
    );

    // First sight of the schedule: nothing was missed.
    assert!(scheduler.tick().unwrap().is_empty());
    // Ten minutes in steps of 15 s: one run each minute, at the minute.
    let mut fired = Vec::new();
    for _ in 0..40 {
        clock.advance(Duration::from_secs(15));
        fired.extend(scheduler.tick().unwrap());
    }
    let slots: Vec<String> = fired
        .iter()
        .map(|f| f.slot.format("%H:%M:%S").to_string())
        .collect();
    assert_eq!(
        slots,
        (1..=10)
            .map(|m| format!("10:{m:02}:00"))
            .collect::<Vec<_>>()
    );
    assert!(fired.iter().all(|f| f.kind == QueueKind::Sync));
    assert_eq!(scheduled(&store).len(), 10);

    // habd down for three hours, then started again (a new scheduler over
    // the same store): one catch-up run, for the latest slot.
    drop(scheduler);
    clock.advance(Duration::from_secs(3 * 3600));
    let restarted = Scheduler::new(
        config,
        store.clone(),
        clock.clone(),
        Intake::new(store.clone(), wake),
    );
    let catch_up = restarted.tick().unwrap();
    assert_eq!(catch_up.len(), 1, "{catch_up:?}");
    assert_eq!(catch_up[0].slot.format("%H:%M:%S").to_string(), "13:10:00");
    assert!(restarted.tick().unwrap().is_empty(), "and only one");
    assert_eq!(scheduled(&store).len(), 11);
    // The eleven runs queued work; unrun, they coalesced into one item.
    let items = store.queue_items(Some("node"), 100).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].triggers, 11);
}

#[tokio::test]
async fn the_scheduler_loop_wakes_when_the_clock_reaches_a_slot() {
    let (world, config) = scheduled_world("sync = \"*/5 * * * *\"\nrebuild = \"0 4 * * 0\"");
    let store = Store::open(&world.path("state/hab.sqlite3")).unwrap();
    // A Sunday, 03:58:00.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 29, 3, 58, 0).unwrap());
    let wake = Arc::new(tokio::sync::Notify::new());
    let scheduler = Scheduler::new(
        config,
        store.clone(),
        clock.clone(),
        Intake::new(store.clone(), wake.clone()),
    );
    assert_eq!(
        scheduler.next_wake(),
        Some(Utc.with_ymd_and_hms(2026, 11, 29, 4, 0, 0).unwrap())
    );
    let task = tokio::spawn(scheduler.run());
    let kinds = |store: &Store| -> Vec<QueueKind> {
        let mut k: Vec<QueueKind> = store
            .triggers("node", 100)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect();
        k.sort_by_key(|k| k.as_str());
        k
    };
    // Let it take its baseline, then cross 04:00: the sync and the weekly
    // rebuild are both due.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store
        .schedule_last("node", QueueKind::Rebuild)
        .unwrap()
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "no baseline taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(kinds(&store).is_empty());
    clock.advance(Duration::from_secs(120));
    let notified = wake.notified();
    tokio::time::timeout(Duration::from_secs(20), notified)
        .await
        .expect("the queue was woken");
    assert_eq!(kinds(&store), vec![QueueKind::Rebuild, QueueKind::Sync]);
    task.abort();
}
