//! Verification runs in the state store: each read-back of an image, with
//! whether it passed, why not, and the full report.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// One run of verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// Id.
    pub id: i64,
    /// The build verified, when it was one.
    pub build_id: Option<i64>,
    /// `repository@digest`.
    pub reference: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Passed.
    pub ok: bool,
    /// Why not.
    pub reason: Option<String>,
    /// The full report.
    pub report: serde_json::Value,
}

impl Store {
    /// Records a verification run.
    pub fn record_verification(
        &self,
        build_id: Option<i64>,
        reference: &str,
        ok: bool,
        reason: Option<&str>,
        report: &serde_json::Value,
    ) -> Result<VerificationRecord, StoreError> {
        let conn = self.lock();
        let at = now();
        conn.execute(
            "INSERT INTO verifications (build_id, reference, at, ok, reason, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![build_id, reference, at, ok, reason, report.to_string()],
        )?;
        Ok(VerificationRecord {
            id: conn.last_insert_rowid(),
            build_id,
            reference: reference.to_string(),
            at,
            ok,
            reason: reason.map(str::to_string),
            report: report.clone(),
        })
    }

    /// Verification runs of a build, oldest first.
    pub fn verifications(&self, build_id: i64) -> Result<Vec<VerificationRecord>, StoreError> {
        let conn = self.lock();
        let rows = conn
            .prepare(
                "SELECT id, build_id, reference, at, ok, reason, report FROM verifications
                 WHERE build_id = ?1 ORDER BY id",
            )?
            .query_map(params![build_id], |r| {
                let report: String = r.get(6)?;
                Ok(VerificationRecord {
                    id: r.get(0)?,
                    build_id: r.get(1)?,
                    reference: r.get(2)?,
                    at: r.get(3)?,
                    ok: r.get(4)?,
                    reason: r.get(5)?,
                    report: serde_json::from_str(&report).unwrap_or(serde_json::Value::Null),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
