//! The schema: numbered migrations, applied in order by
//! [`Store::open`](super::Store::open) (`PRAGMA user_version` counts those
//! applied).

/// Numbered migrations; `user_version` is the count applied. Append only.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: syncs, refs and their history.
    "CREATE TABLE syncs (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted')),
        error TEXT,
        objects_received INTEGER NOT NULL DEFAULT 0,
        bytes_received INTEGER NOT NULL DEFAULT 0,
        added INTEGER NOT NULL DEFAULT 0,
        moved INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX syncs_pipeline ON syncs (pipeline, id);
     CREATE TABLE refs (
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        oid TEXT NOT NULL,
        commit_oid TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'moved', 'deleted')),
        verdict TEXT NOT NULL,
        verdict_json TEXT NOT NULL,
        signer TEXT,
        previous_oid TEXT,
        first_seen TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        acknowledged_at TEXT,
        acknowledged_by TEXT,
        PRIMARY KEY (pipeline, name)
     );
     CREATE TABLE ref_events (
        id INTEGER PRIMARY KEY,
        sync_id INTEGER REFERENCES syncs (id),
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        old_oid TEXT,
        new_oid TEXT,
        verdict TEXT,
        actor TEXT,
        at TEXT NOT NULL
     );
     CREATE INDEX ref_events_ref ON ref_events (pipeline, name, id);",
    // 2: builds, their platforms and logs, verified build keys, verifications.
    "CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        ref_name TEXT NOT NULL,
        commit_oid TEXT NOT NULL,
        version TEXT NOT NULL,
        signer TEXT,
        trigger TEXT NOT NULL,
        repository TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'building', 'publishing', 'verifying',
            'verified', 'failed', 'cancelled', 'interrupted')),
        reason TEXT,
        index_digest TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        verified_at TEXT
     );
     CREATE INDEX builds_pipeline ON builds (pipeline, id);
     CREATE TABLE build_platforms (
        build_id INTEGER NOT NULL REFERENCES builds (id),
        platform TEXT NOT NULL,
        builder TEXT NOT NULL,
        build_key TEXT NOT NULL,
        stage TEXT NOT NULL,
        reused INTEGER NOT NULL DEFAULT 0,
        image_id TEXT,
        manifest_digest TEXT,
        manifest_size INTEGER,
        manifest_media_type TEXT,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_pushed INTEGER NOT NULL DEFAULT 0,
        blobs_skipped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (build_id, platform)
     );
     CREATE TABLE build_logs (
        build_id INTEGER NOT NULL REFERENCES builds (id),
        seq INTEGER NOT NULL,
        platform TEXT,
        at TEXT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (build_id, seq)
     );
     CREATE TABLE build_keys (
        build_key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        repository TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        manifest_size INTEGER NOT NULL,
        manifest_media_type TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        verified_at TEXT NOT NULL
     );
     CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        build_id INTEGER REFERENCES builds (id),
        reference TEXT NOT NULL,
        at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        reason TEXT,
        report TEXT NOT NULL
     );",
    // 3: release channels and every move of them.
    "CREATE TABLE channels (
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        index_digest TEXT NOT NULL,
        moved_at TEXT NOT NULL,
        moved_by TEXT NOT NULL,
        reason TEXT,
        PRIMARY KEY (pipeline, name)
     );
     CREATE TABLE channel_moves (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        channel TEXT NOT NULL,
        from_build INTEGER REFERENCES builds (id),
        to_build INTEGER NOT NULL REFERENCES builds (id),
        index_digest TEXT NOT NULL,
        at TEXT NOT NULL,
        by TEXT NOT NULL,
        reason TEXT
     );
     CREATE INDEX channel_moves_channel ON channel_moves (pipeline, channel, id);",
    // 4: rollouts, their nodes and every step and gate result.
    "CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        fleet TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        channel TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        image TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'rolling_back', 'paused',
            'succeeded', 'failed', 'superseded')),
        paused_from TEXT,
        reason TEXT,
        trigger TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
     );
     CREATE INDEX rollouts_fleet ON rollouts (fleet, id);
     CREATE TABLE rollout_nodes (
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        ordinal INTEGER NOT NULL,
        before_image TEXT,
        settled INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (rollout_id, ordinal)
     );
     CREATE TABLE rollout_steps (
        id INTEGER PRIMARY KEY,
        rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
        ordinal INTEGER,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX rollout_steps_rollout ON rollout_steps (rollout_id, id);",
    // 5: the trigger queue, every trigger received, webhook deliveries seen,
    // and the last slot each schedule fired for.
    "CREATE TABLE queue (
        id INTEGER PRIMARY KEY,
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('sync', 'rebuild', 'build')),
        ref_name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
        due_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        triggers INTEGER NOT NULL DEFAULT 1,
        source TEXT NOT NULL,
        result TEXT,
        error TEXT
     );
     CREATE UNIQUE INDEX queue_one_pending ON queue (pipeline, kind, ref_name) WHERE state = 'pending';
     CREATE INDEX queue_state ON queue (state, due_at);
     CREATE TABLE triggers (
        id INTEGER PRIMARY KEY,
        queue_id INTEGER NOT NULL REFERENCES queue (id),
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL,
        ref_name TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        detail TEXT,
        at TEXT NOT NULL
     );
     CREATE INDEX triggers_queue ON triggers (queue_id);
     CREATE INDEX triggers_pipeline ON triggers (pipeline, id);
     CREATE TABLE deliveries (
        provider TEXT NOT NULL,
        delivery TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        event TEXT NOT NULL,
        queue_id INTEGER REFERENCES queue (id),
        at TEXT NOT NULL,
        PRIMARY KEY (provider, delivery)
     );
     CREATE TABLE schedule_runs (
        pipeline TEXT NOT NULL,
        kind TEXT NOT NULL,
        last_slot TEXT NOT NULL,
        fired_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, kind)
     );",
    // 6: an acknowledgement names the object it accepts; every verdict
    // names the rules it was judged by (0: before tag binding and the
    // OpenPGP policy), so a sync judges older ones again.
    "ALTER TABLE refs ADD COLUMN acknowledged_oid TEXT;
     ALTER TABLE refs ADD COLUMN judged_by INTEGER NOT NULL DEFAULT 0;",
    // 7: images whose rollout failed its gates, by index digest (a reuse
    // of the same image is the same bad image), with the fleet and why.
    "CREATE TABLE known_bad (
        index_digest TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        build_id INTEGER NOT NULL REFERENCES builds (id),
        fleet TEXT NOT NULL,
        rollout_id INTEGER REFERENCES rollouts (id),
        reason TEXT NOT NULL,
        at TEXT NOT NULL
     );",
    // 8: what the dashboard and /metrics show without asking a node: the
    // last look at each node (habd looks every few seconds), and every
    // operator action with who took it.
    "CREATE TABLE node_status (
        fleet TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        image TEXT,
        rpc TEXT,
        chain TEXT,
        height INTEGER,
        headers INTEGER,
        ibd INTEGER,
        healthy INTEGER NOT NULL,
        reason TEXT,
        observed_at TEXT NOT NULL,
        PRIMARY KEY (fleet, ordinal)
     );
     CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL
     );",
    // 9: the manifest of a build's signed provenance in the registry
    // (crate::provenance), attached when it verified.
    "ALTER TABLE builds ADD COLUMN attestation TEXT;",
];
