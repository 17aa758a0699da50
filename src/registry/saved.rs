//! Reading a `docker save` archive: the image a builder exported, with each
//! layer checked against the diff_id its config names.

use std::{collections::HashMap, io::Read, path::Path};

use serde::Deserialize;

use super::{digest_of, RegistryError};

/// An image as `docker save` wrote it.
pub(super) struct SavedImage {
    pub(super) config: Vec<u8>,
    pub(super) config_digest: String,
    /// Uncompressed layer tars, bottom first.
    pub(super) layers: Vec<Vec<u8>>,
}

/// Reads the archive at `path`.
pub(super) fn read_saved(path: &Path) -> Result<SavedImage, RegistryError> {
    let err = |reason: String| RegistryError::Export {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut ar = tar::Archive::new(std::io::BufReader::new(file));
    for entry in ar.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| err(e.to_string()))?;
        files.insert(name, data);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct SaveManifest {
        config: String,
        layers: Vec<String>,
    }
    let manifest: Vec<SaveManifest> = serde_json::from_slice(
        files
            .get("manifest.json")
            .ok_or_else(|| err("no manifest.json".into()))?,
    )
    .map_err(|e| err(format!("manifest.json: {e}")))?;
    let [m] = manifest.as_slice() else {
        return Err(err(format!(
            "holds {} images, expected one",
            manifest.len()
        )));
    };
    let config = files
        .remove(&m.config)
        .ok_or_else(|| err(format!("no {}", m.config)))?;
    let mut layers = Vec::new();
    for l in &m.layers {
        // The same layer may appear twice in an image; keep the bytes.
        let data = files
            .get(l)
            .cloned()
            .ok_or_else(|| err(format!("no {l}")))?;
        layers.push(data);
    }
    // Every layer must be the one the config names (its diff_id).
    #[derive(Deserialize)]
    struct Rootfs {
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Cfg {
        rootfs: Rootfs,
    }
    let cfg: Cfg = serde_json::from_slice(&config).map_err(|e| err(format!("config: {e}")))?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(err(format!(
            "config lists {} layers, the archive holds {}",
            cfg.rootfs.diff_ids.len(),
            layers.len()
        )));
    }
    for (i, (want, data)) in cfg.rootfs.diff_ids.iter().zip(&layers).enumerate() {
        if &digest_of(data) != want {
            return Err(err(format!("layer {} is not {want}", i + 1)));
        }
    }
    Ok(SavedImage {
        config_digest: digest_of(&config),
        config,
        layers,
    })
}
