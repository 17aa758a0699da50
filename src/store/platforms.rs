//! The platforms of a build in the state store: one row per platform, what
//! it was built as and pushed to, and the build keys that verified (each
//! key's image, reused as is by a later build of the same key).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One platform of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRecord {
    /// `linux/amd64`, `linux/arm64`.
    pub platform: String,
    /// The builder it was given to.
    pub builder: String,
    /// sha256 over (commit, recipe files, build args, platform, base digest).
    pub build_key: String,
    /// queued, building, exporting, pushing, pushed, reused, verified, failed.
    pub stage: String,
    /// The key had verified before: nothing was built or uploaded.
    pub reused: bool,
    /// Image id on the builder.
    pub image_id: Option<String>,
    /// The platform's image manifest in the registry.
    pub manifest_digest: Option<String>,
    /// Its size in bytes.
    pub manifest_size: Option<i64>,
    /// Its media type.
    pub manifest_media_type: Option<String>,
    /// Bytes of blobs the image has.
    pub bytes_total: i64,
    /// Bytes uploaded (blobs the registry already had are not).
    pub bytes_pushed: i64,
    /// Blobs the registry already had.
    pub blobs_skipped: i64,
}

/// A platform of a new build.
#[derive(Debug, Clone)]
pub struct NewPlatform {
    /// Platform.
    pub platform: String,
    /// Builder.
    pub builder: String,
    /// Build key.
    pub build_key: String,
    /// A verified image of the same key, reused as is.
    pub reuse: Option<KeyRecord>,
}

/// A build key that verified, and the image it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key.
    pub build_key: String,
    /// Platform.
    pub platform: String,
    /// Repository it lives in.
    pub repository: String,
    /// Image manifest digest.
    pub manifest_digest: String,
    /// Manifest size.
    pub manifest_size: i64,
    /// Manifest media type.
    pub manifest_media_type: String,
    /// The build that made it.
    pub build_id: i64,
}

/// Fields of a platform row to change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct PlatformUpdate {
    /// Stage.
    pub stage: Option<String>,
    /// Image id.
    pub image_id: Option<String>,
    /// Manifest digest, size, media type.
    pub manifest: Option<(String, i64, String)>,
    /// Bytes total.
    pub bytes_total: Option<i64>,
    /// Bytes pushed so far.
    pub bytes_pushed: Option<i64>,
    /// Blobs skipped.
    pub blobs_skipped: Option<i64>,
}

const PLATFORM_COLUMNS: &str = "platform, builder, build_key, stage, reused, image_id,
    manifest_digest, manifest_size, manifest_media_type, bytes_total, bytes_pushed, blobs_skipped";

impl Store {
    /// The verified image of a build key, if one exists in `repository`.
    pub fn verified_key(
        &self,
        build_key: &str,
        repository: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT build_key, platform, repository, manifest_digest, manifest_size,
                    manifest_media_type, build_id
                 FROM build_keys WHERE build_key = ?1 AND repository = ?2",
                params![build_key, repository],
                |r| {
                    Ok(KeyRecord {
                        build_key: r.get(0)?,
                        platform: r.get(1)?,
                        repository: r.get(2)?,
                        manifest_digest: r.get(3)?,
                        manifest_size: r.get(4)?,
                        manifest_media_type: r.get(5)?,
                        build_id: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Changes a platform row.
    pub fn update_platform(
        &self,
        id: i64,
        platform: &str,
        u: &PlatformUpdate,
    ) -> Result<(), StoreError> {
        let (digest, size, media) = match &u.manifest {
            Some((d, s, m)) => (Some(d.as_str()), Some(*s), Some(m.as_str())),
            None => (None, None, None),
        };
        self.lock().execute(
            "UPDATE build_platforms SET
                stage = COALESCE(?3, stage),
                image_id = COALESCE(?4, image_id),
                manifest_digest = COALESCE(?5, manifest_digest),
                manifest_size = COALESCE(?6, manifest_size),
                manifest_media_type = COALESCE(?7, manifest_media_type),
                bytes_total = COALESCE(?8, bytes_total),
                bytes_pushed = COALESCE(?9, bytes_pushed),
                blobs_skipped = COALESCE(?10, blobs_skipped)
             WHERE build_id = ?1 AND platform = ?2",
            params![
                id,
                platform,
                u.stage,
                u.image_id,
                digest,
                size,
                media,
                u.bytes_total,
                u.bytes_pushed,
                u.blobs_skipped
            ],
        )?;
        Ok(())
    }
}

/// The platforms of build `id`, by name.
pub(super) fn platforms_of(conn: &Connection, id: i64) -> Result<Vec<PlatformRecord>, StoreError> {
    let platforms = conn
        .prepare(&format!(
            "SELECT {PLATFORM_COLUMNS} FROM build_platforms WHERE build_id = ?1 ORDER BY platform"
        ))?
        .query_map(params![id], |r| {
            Ok(PlatformRecord {
                platform: r.get(0)?,
                builder: r.get(1)?,
                build_key: r.get(2)?,
                stage: r.get(3)?,
                reused: r.get(4)?,
                image_id: r.get(5)?,
                manifest_digest: r.get(6)?,
                manifest_size: r.get(7)?,
                manifest_media_type: r.get(8)?,
                bytes_total: r.get(9)?,
                bytes_pushed: r.get(10)?,
                blobs_skipped: r.get(11)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(platforms)
}
