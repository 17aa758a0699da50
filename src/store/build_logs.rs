//! A build's output in the state store: its lines, numbered from 1 in the
//! order they were stored, each with the platform it came from.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{now, Store, StoreError};

/// A line of build output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position in the build's output, from 1.
    pub seq: i64,
    /// The platform it came from; None for hab's own lines.
    pub platform: Option<String>,
    /// When it was stored.
    pub at: DateTime<Utc>,
    /// The line.
    pub line: String,
}

impl Store {
    /// Appends lines to a build's output.
    pub fn append_log(
        &self,
        id: i64,
        platform: Option<&str>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let at = now();
        {
            let mut insert = tx.prepare(
                "INSERT INTO build_logs (build_id, seq, platform, at, line) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for line in lines {
                seq += 1;
                insert.execute(params![id, seq, platform, at, line])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A build's output after line `after`, at most `limit` lines.
    pub fn logs(&self, id: i64, after: i64, limit: u32) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.lock();
        let lines = conn
            .prepare(
                "SELECT seq, platform, at, line FROM build_logs
                 WHERE build_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map(params![id, after, limit], |r| {
                Ok(LogLine {
                    seq: r.get(0)?,
                    platform: r.get(1)?,
                    at: r.get(2)?,
                    line: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(lines)
    }
}
