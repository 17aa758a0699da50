//! The build context: the recipe folder's files at the root (its
//! `Dockerfile` first among them) and the mirrored commit's tree under
//! `source/`, as one tar archive. Every entry carries the commit time as its
//! mtime and root as owner, so the same inputs make the same archive.

use std::path::{Path, PathBuf};

use super::plan::RecipeFile;
use crate::mirror::TreeFiles;

/// Where the commit's tree goes inside the context.
pub const SOURCE_DIR: &str = "source";

/// Context errors.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The recipe folder cannot be read.
    #[error("recipe folder {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The recipe folder has no Dockerfile.
    #[error("recipe folder {0} has no Dockerfile")]
    NoDockerfile(PathBuf),
    /// A recipe file would hide the source tree.
    #[error(
        "recipe folder {0} has an entry named `source`, where the context puts the upstream tree"
    )]
    SourceClash(PathBuf),
    /// Writing the archive failed.
    #[error("cannot write the build context: {0}")]
    Tar(std::io::Error),
}

/// Reads every file and symlink under the recipe folder.
///
/// # Errors
/// The folder is missing or unreadable, has no `Dockerfile`, or has a
/// top-level `source` entry.
pub fn load_recipe(dir: &Path) -> Result<Vec<RecipeFile>, ContextError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if !files.iter().any(|f| f.path == "Dockerfile") {
        return Err(ContextError::NoDockerfile(dir.to_path_buf()));
    }
    if files
        .iter()
        .any(|f| f.path == SOURCE_DIR || f.path.starts_with("source/"))
    {
        return Err(ContextError::SourceClash(dir.to_path_buf()));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<RecipeFile>) -> Result<(), ContextError> {
    use std::os::unix::fs::PermissionsExt;
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(read_err(&path))?;
            out.push(RecipeFile {
                path: rel,
                mode: 0o120000,
                content: target.to_string_lossy().as_bytes().to_vec(),
            });
        } else if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let content = std::fs::read(&path).map_err(read_err(&path))?;
            // Only the executable bit matters, as in git.
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(RecipeFile {
                path: rel,
                mode,
                content,
            });
        }
    }
    Ok(())
}

/// Writes the context archive.
///
/// # Errors
/// Only if an entry cannot be encoded (a path tar cannot hold).
pub fn context_tar(recipe: &[RecipeFile], tree: &TreeFiles) -> Result<Vec<u8>, ContextError> {
    let mtime = u64::try_from(tree.commit_time).unwrap_or(0);
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, content: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        if mode & 0o170000 == 0o120000 {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            let target = String::from_utf8_lossy(content).into_owned();
            tar.append_link(&mut h, path, target)
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
            h.set_size(content.len() as u64);
            tar.append_data(&mut h, path, content)
        }
    };
    for f in recipe {
        add(&f.path, f.mode, &f.content).map_err(ContextError::Tar)?;
    }
    for f in &tree.files {
        add(&format!("{SOURCE_DIR}/{}", f.path), f.mode, &f.content).map_err(ContextError::Tar)?;
    }
    tar.into_inner().map_err(ContextError::Tar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::TreeFile;

    #[test]
    fn context_holds_recipe_at_root_and_tree_under_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/run"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("bin/run"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("run", dir.path().join("bin/sh")).unwrap();
        let recipe = load_recipe(dir.path()).unwrap();
        assert_eq!(
            recipe
                .iter()
                .map(|f| (f.path.as_str(), f.mode))
                .collect::<Vec<_>>(),
            vec![
                ("Dockerfile", 0o644),
                ("bin/run", 0o755),
                ("bin/sh", 0o120000)
            ]
        );
        let tree = TreeFiles {
            commit_time: 1_700_000_000,
            files: vec![TreeFile {
                path: "src/main.c".into(),
                mode: 0o100644,
                content: b"int main;".to_vec(),
            }],
            skipped: vec![],
        };
        let bytes = context_tar(&recipe, &tree).unwrap();
        let again = context_tar(&recipe, &tree).unwrap();
        assert_eq!(bytes, again, "the same inputs make the same archive");
        let mut ar = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect();
        assert!(entries.contains(&("source/src/main.c".into(), 1_700_000_000)));
        assert!(entries.iter().any(|(p, _)| p == "bin/sh"));
    }

    #[test]
    fn recipe_needs_a_dockerfile_and_no_source_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "").unwrap();
        assert!(matches!(
            load_recipe(dir.path()),
            Err(ContextError::NoDockerfile(_))
        ));
        std::fs::write(dir.path().join("Dockerfile"), "").unwrap();
        std::fs::create_dir(dir.path().join("source")).unwrap();
        std::fs::write(dir.path().join("source/a"), "").unwrap();
        assert!(matches!(
            load_recipe(dir.path()),
            Err(ContextError::SourceClash(_))
        ));
        assert!(matches!(
            load_recipe(&dir.path().join("missing")),
            Err(ContextError::Read { .. })
        ));
    }
}
