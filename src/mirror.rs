//! The mirror: one bare git repository per pipeline, fetched from upstream
//! with git2 (libgit2).
//!
//! The mirror holds upstream's branches and tags under their own names, so a
//! plain `git clone` of it (served read-only by habd over HTTP) looks like
//! upstream. Objects that upstream moved a tag away from, or deleted, stay
//! reachable under `refs/hab/kept/…`, so they are never garbage-collected and
//! what was verified can always be shown again.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use git2::{AutotagOption, FetchOptions, FetchPrune, ObjectType, Oid, RemoteCallbacks, Repository};

use crate::{
    refplan::{RefKind, RefTarget},
    signature::{Keyring, Verdict},
};

/// The namespaces mirrored from upstream. `+refs/*:refs/*` would also pull
/// GitHub's `refs/pull/*`, thousands of refs no release comes from.
const REFSPECS: &[&str] = &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];
/// Where objects that upstream dropped are kept.
pub const KEPT_PREFIX: &str = "refs/hab/kept/";
/// The longest a fetch may take once connected, even while it progresses. A
/// first fetch of Bitcoin Core (about 300 MB) takes a few minutes on a slow
/// link; an hour is generous.
const FETCH_DEADLINE: Duration = Duration::from_secs(3600);

/// Sets libgit2's socket timeouts for the whole process: connecting, and
/// each read or write, may take at most `timeout`. habd calls it once at
/// start with its longest `[upstream] timeout`, so a transfer that
/// [`Mirror::fetch`] abandoned still ends and frees its thread and socket.
///
/// # Errors
/// libgit2 refuses the option.
#[allow(unsafe_code)]
pub fn set_socket_timeouts(timeout: Duration) -> Result<(), git2::Error> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: libgit2 reads these two process-wide integers when it opens a
    // socket; git2 marks the setters unsafe because writing them while
    // another thread opens a socket is a data race. habd calls this once,
    // from main, before any thread (sync, server, scheduler) uses libgit2.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)?;
    }
    Ok(())
}

/// `e` with the mirror's folder taken out of its message: libgit2 names the
/// files it failed on, and these messages reach API clients.
fn without_path(mirror: &Path, e: git2::Error) -> git2::Error {
    let folder = mirror.display().to_string();
    if folder.is_empty() || !e.message().contains(&folder) {
        return e;
    }
    let message = e.message().replace(&folder, "<mirror>");
    git2::Error::new(e.code(), e.class(), message)
}

/// Mirror errors.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The bare repository could not be created or opened. Like every
    /// mirror error, its message names the cause but not the folder (it
    /// reaches API clients; paths on the server are not theirs to see): the
    /// folder is in the value and in habd's log.
    #[error("cannot open the mirror: {source}")]
    Open {
        /// Its folder.
        path: PathBuf,
        /// libgit2's error.
        source: git2::Error,
    },
    /// The fetch failed; the mirror is as it was before.
    #[error("fetch from {url} failed: {reason}")]
    Fetch {
        /// Upstream.
        url: String,
        /// Why, in libgit2's words.
        reason: String,
    },
    /// Upstream sent nothing for the pipeline's `[upstream] timeout`: the
    /// fetch was abandoned and the mirror is as it was before.
    #[error("fetch from {url} made no progress for {}s ([upstream] timeout): upstream connected but stopped answering", timeout.as_secs_f64())]
    Stalled {
        /// Upstream.
        url: String,
        /// The pipeline's timeout.
        timeout: Duration,
    },
    /// Reading the mirror failed.
    #[error("mirror: {source}")]
    Git {
        /// Its folder.
        path: PathBuf,
        /// libgit2's error.
        source: git2::Error,
    },
}

/// What a fetch transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Objects received from upstream (0 when nothing changed).
    pub objects_received: usize,
    /// Bytes received.
    pub bytes_received: usize,
}

/// The files of a commit's tree.
#[derive(Debug, Clone)]
pub struct TreeFiles {
    /// The commit's time, seconds since the epoch.
    pub commit_time: i64,
    /// Files, in tree order.
    pub files: Vec<TreeFile>,
    /// Submodule paths, not exported.
    pub skipped: Vec<String>,
}

/// One file of a tree.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Path, `/`-separated.
    pub path: String,
    /// git's mode: 0o100644, 0o100755 or 0o120000 (symlink; content = target).
    pub mode: u32,
    /// Contents.
    pub content: Vec<u8>,
}

/// A bare mirror on disk. Opens the repository per operation: git2's
/// `Repository` is not `Sync`, and opening is cheap.
#[derive(Debug, Clone)]
pub struct Mirror {
    path: PathBuf,
}

impl Mirror {
    /// Opens the mirror at `path`, creating an empty bare repository if needed.
    ///
    /// # Errors
    /// The folder cannot be created or is not a git repository.
    pub fn open_or_init(path: &Path) -> Result<Self, MirrorError> {
        let err = |source| {
            tracing::warn!(mirror = %path.display(), error = %source, "cannot open the mirror");
            MirrorError::Open {
                path: path.to_path_buf(),
                source: without_path(path, source),
            }
        };
        if path.join("HEAD").exists() {
            Repository::open_bare(path).map_err(err)?;
        } else {
            Repository::init_bare(path).map_err(err)?;
        }
        Ok(Mirror {
            path: path.to_path_buf(),
        })
    }

    /// The mirror's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn repo(&self) -> Result<Repository, MirrorError> {
        Repository::open_bare(&self.path).map_err(|source| self.git_err(source))
    }

    fn git_err(&self, source: git2::Error) -> MirrorError {
        tracing::debug!(mirror = %self.path.display(), error = %source, "mirror error");
        MirrorError::Git {
            path: self.path.clone(),
            source: without_path(&self.path, source),
        }
    }

    /// Fetches upstream's branches and tags, pruning those it deleted (their
    /// objects stay in the object database; the sync keeps them reachable).
    /// Only missing objects are transferred.
    ///
    /// # Guarantees
    /// Returns within about `timeout` of upstream going silent, whatever the
    /// socket does: the transfer runs on a thread of its own, watched for
    /// progress (libgit2 reports each chunk received and each progress line
    /// the server sends; a stalled socket reports nothing, and libgit2 has
    /// no per-operation timeout). An abandoned transfer aborts at its next
    /// callback and never updates refs; its socket ends at habd's
    /// process-wide socket timeout ([`set_socket_timeouts`]).
    ///
    /// # Errors
    /// [`MirrorError::Stalled`] when nothing arrived for `timeout`;
    /// [`MirrorError::Fetch`] with libgit2's reason (unreachable host, no
    /// such repository, ...). A failed fetch leaves the refs as they were.
    pub fn fetch(&self, url: &str, timeout: Duration) -> Result<FetchStats, MirrorError> {
        let started = Instant::now();
        let progress_ms = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (this, url_owned) = (self.clone(), url.to_string());
        let (progress, gone) = (progress_ms.clone(), abandoned.clone());
        std::thread::Builder::new()
            .name("hab-fetch".into())
            .spawn(move || {
                let alive = move || {
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    progress.store(ms, Ordering::Relaxed);
                    !gone.load(Ordering::Relaxed) && started.elapsed() < FETCH_DEADLINE
                };
                // The receiver is gone only when the fetch was abandoned.
                let _ = tx.send(this.fetch_on_this_thread(&url_owned, timeout, alive));
            })
            .map_err(|e| MirrorError::Fetch {
                url: url.to_string(),
                reason: format!("cannot start the fetch thread: {e}"),
            })?;
        // Check for silence a few times per timeout, so a stall is noticed
        // within a quarter of it past the deadline.
        let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            match rx.recv_timeout(tick) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(MirrorError::Fetch {
                        url: url.to_string(),
                        reason: "the fetch thread died".into(),
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let last = Duration::from_millis(progress_ms.load(Ordering::Relaxed));
                    if started.elapsed().saturating_sub(last) >= timeout {
                        abandoned.store(true, Ordering::Relaxed);
                        tracing::warn!(%url, timeout_s = timeout.as_secs_f64(),
                            "upstream stopped answering; fetch abandoned");
                        return Err(MirrorError::Stalled {
                            url: url.to_string(),
                            timeout,
                        });
                    }
                }
            }
        }
    }

    /// The fetch itself, blocking this thread. `alive` is called at every
    /// sign of progress; returning false aborts the transfer.
    fn fetch_on_this_thread(
        &self,
        url: &str,
        timeout: Duration,
        alive: impl Fn() -> bool + Clone,
    ) -> Result<FetchStats, MirrorError> {
        let repo = self.repo()?;
        let fetch_err = |e: git2::Error| {
            // libgit2 names files it could not write ("failed to lock file
            // '<mirror>/refs/tags/v1.lock'").
            tracing::debug!(mirror = %self.path.display(), error = %e, "fetch error");
            let e = without_path(&self.path, e);
            if e.class() == git2::ErrorClass::Net && e.message().contains("timed out") {
                // habd's process-wide socket timeout (the longest pipeline
                // timeout, so at least this one's) ended it before the
                // watch below did: the same silence, said the same way.
                MirrorError::Stalled {
                    url: url.to_string(),
                    timeout,
                }
            } else {
                MirrorError::Fetch {
                    url: url.to_string(),
                    reason: e.message().to_string(),
                }
            }
        };
        let mut remote = repo.remote_anonymous(url).map_err(fetch_err)?;
        let mut callbacks = RemoteCallbacks::new();
        let (a, b, c) = (alive.clone(), alive.clone(), alive);
        callbacks
            .transfer_progress(move |_| a())
            .sideband_progress(move |_| b())
            .update_tips(move |_, _, _| c());
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks)
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::All)
            .update_fetchhead(false);
        remote
            .fetch(REFSPECS, Some(&mut opts), Some("hab: sync"))
            .map_err(fetch_err)?;
        let stats = remote.stats();
        Ok(FetchStats {
            objects_received: stats.received_objects(),
            bytes_received: stats.received_bytes(),
        })
    }

    /// The mirrored refs (`refs/heads/*` and `refs/tags/*`) and their direct targets.
    ///
    /// # Errors
    /// The repository cannot be read.
    pub fn refs(&self) -> Result<BTreeMap<String, String>, MirrorError> {
        let repo = self.repo()?;
        let mut out = BTreeMap::new();
        for glob in ["refs/heads/*", "refs/tags/*"] {
            for r in repo.references_glob(glob).map_err(|e| self.git_err(e))? {
                let r = r.map_err(|e| self.git_err(e))?;
                if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
                    out.insert(name.to_string(), oid.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Reads what `oid` is, and checks its signature against `keyring`
    /// (`None`: no keyring pinned, every signed object reads as unknown key).
    ///
    /// A ref that does not lead to a commit (a tag on a tree or blob, a tag
    /// object of another type) is not an error: it reads as
    /// [`Verdict::NotACommit`] with an empty commit, so one odd ref upstream
    /// never stops the sync of the others.
    ///
    /// # Errors
    /// The object is missing or unreadable.
    pub fn inspect(
        &self,
        refname: &str,
        oid: &str,
        keyring: Option<&Keyring>,
    ) -> Result<(RefTarget, Verdict), MirrorError> {
        let repo = self.repo()?;
        let id = Oid::from_str(oid).map_err(|e| self.git_err(e))?;
        let object = repo.find_object(id, None).map_err(|e| self.git_err(e))?;
        // Peel tags (however nested) down to what they finally name.
        // (libgit2's peel to "any" refuses a tree or blob: peel by hand.)
        let mut peeled = object.clone();
        while let Some(tag) = peeled.as_tag() {
            peeled = tag.target().map_err(|e| self.git_err(e))?;
        }
        let commit = match peeled.kind() {
            Some(ObjectType::Commit) => Some(peeled.id()),
            _ => None,
        };
        let not_a_commit = || Verdict::NotACommit {
            object_type: peeled
                .kind()
                .map_or_else(|| "unknown object".to_string(), |k| k.str().to_string()),
        };
        let empty = Keyring::empty();
        let keyring = keyring.unwrap_or(&empty);
        let (kind, verdict) = match object.kind() {
            Some(ObjectType::Tag) => {
                let odb = repo.odb().map_err(|e| self.git_err(e))?;
                let raw = odb.read(id).map_err(|e| self.git_err(e))?;
                let verdict = match keyring.verify_tag(refname, raw.data()) {
                    // The header said commit; what it points at must be one too.
                    v if commit.is_none() && !v.is_misbound() => not_a_commit(),
                    v => v,
                };
                (RefKind::AnnotatedTag, verdict)
            }
            _ => {
                let kind = if refname.starts_with("refs/tags/") {
                    RefKind::LightweightTag
                } else {
                    RefKind::Branch
                };
                let verdict = match commit {
                    None => not_a_commit(),
                    // A lightweight tag carries no signature of its own; the
                    // commit's signature does not vouch for the tag name.
                    Some(_) if kind == RefKind::LightweightTag => Verdict::Unsigned,
                    Some(commit) => match repo.extract_signature(&commit, None) {
                        Ok((sig, data)) => keyring.verify_detached(&data, &sig),
                        Err(e) if e.code() == git2::ErrorCode::NotFound => Verdict::Unsigned,
                        Err(e) => return Err(self.git_err(e)),
                    },
                };
                (kind, verdict)
            }
        };
        Ok((
            RefTarget {
                kind,
                oid: oid.to_string(),
                commit: commit.map(|c| c.to_string()).unwrap_or_default(),
            },
            verdict,
        ))
    }

    /// Keeps `oid` reachable under `refs/hab/kept/<name>/<oid>` (idempotent).
    ///
    /// # Errors
    /// The ref cannot be written.
    pub fn keep(&self, refname: &str, oid: &str) -> Result<String, MirrorError> {
        let repo = self.repo()?;
        let short = refname.strip_prefix("refs/").unwrap_or(refname);
        let kept = format!("{KEPT_PREFIX}{short}/{oid}");
        let id = Oid::from_str(oid).map_err(|e| self.git_err(e))?;
        repo.reference(&kept, id, true, "hab: keep object upstream dropped")
            .map_err(|e| self.git_err(e))?;
        Ok(kept)
    }

    /// The raw bytes of an object (to show a tag as it was signed).
    ///
    /// # Errors
    /// The object is missing.
    pub fn read_raw(&self, oid: &str) -> Result<Vec<u8>, MirrorError> {
        let repo = self.repo()?;
        let id = Oid::from_str(oid).map_err(|e| self.git_err(e))?;
        let odb = repo.odb().map_err(|e| self.git_err(e))?;
        let obj = odb.read(id).map_err(|e| self.git_err(e))?;
        Ok(obj.data().to_vec())
    }

    /// A commit's time (seconds since the epoch) and the files of its tree,
    /// read from the object database: what a build's context is made of, with
    /// no working checkout. Submodules are listed in `skipped` (their commits
    /// are not in this repository).
    ///
    /// # Errors
    /// The commit or one of its objects is missing.
    pub fn tree_files(&self, commit: &str) -> Result<TreeFiles, MirrorError> {
        let repo = self.repo()?;
        let id = Oid::from_str(commit).map_err(|e| self.git_err(e))?;
        let commit = repo.find_commit(id).map_err(|e| self.git_err(e))?;
        let tree = commit.tree().map_err(|e| self.git_err(e))?;
        let mut out = TreeFiles {
            commit_time: commit.time().seconds(),
            files: Vec::new(),
            skipped: Vec::new(),
        };
        let mut failed = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let path = format!("{dir}{}", entry.name().unwrap_or("?"));
            let mode = entry.filemode() as u32;
            match entry.kind() {
                Some(git2::ObjectType::Blob) => match repo.find_blob(entry.id()) {
                    Ok(blob) => out.files.push(TreeFile {
                        path,
                        mode,
                        content: blob.content().to_vec(),
                    }),
                    Err(e) => {
                        failed = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                },
                Some(git2::ObjectType::Commit) => out.skipped.push(path),
                _ => {}
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|e| self.git_err(e))?;
        match failed {
            Some(e) => Err(self.git_err(e)),
            None => Ok(out),
        }
    }

    // -- git's "dumb" HTTP protocol, read-only -------------------------------

    /// `info/refs` as the dumb HTTP protocol wants it: `<oid>\t<name>`, with a
    /// `<name>^{}` line giving the commit of each annotated tag.
    ///
    /// # Errors
    /// The repository cannot be read.
    pub fn info_refs(&self) -> Result<String, MirrorError> {
        let repo = self.repo()?;
        let mut out = String::new();
        for (name, oid) in self.refs()? {
            out.push_str(&format!("{oid}\t{name}\n"));
            let id = Oid::from_str(&oid).map_err(|e| self.git_err(e))?;
            if let Ok(tag) = repo.find_tag(id) {
                if let Ok(peeled) = tag.as_object().peel(ObjectType::Commit) {
                    out.push_str(&format!("{}\t{name}^{{}}\n", peeled.id()));
                }
            }
        }
        Ok(out)
    }

    /// `objects/info/packs`: the pack files present.
    ///
    /// # Errors
    /// The pack folder cannot be listed.
    pub fn info_packs(&self) -> std::io::Result<String> {
        let mut packs: Vec<String> = match std::fs::read_dir(self.path.join("objects/pack")) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".pack"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        packs.sort();
        let mut out: String = packs.iter().map(|p| format!("P {p}\n")).collect();
        out.push('\n');
        Ok(out)
    }

    /// `HEAD`: upstream's usual default branch if mirrored, else the first branch.
    ///
    /// # Errors
    /// The repository cannot be read.
    pub fn head(&self) -> Result<String, MirrorError> {
        let refs = self.refs()?;
        let branch = ["refs/heads/master", "refs/heads/main"]
            .into_iter()
            .find(|b| refs.contains_key(*b))
            .map(String::from)
            .or_else(|| refs.keys().find(|k| k.starts_with("refs/heads/")).cloned())
            .unwrap_or_else(|| "refs/heads/master".into());
        Ok(format!("ref: {branch}\n"))
    }

    /// Resolves a path under `objects/` that the dumb protocol may fetch: a
    /// loose object (`ab/cdef…`) or a pack or index (`pack/pack-<hex>.pack`).
    /// Anything else (and any `..`) is refused.
    pub fn object_file(&self, rel: &str) -> Option<PathBuf> {
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        let ok = match rel.split('/').collect::<Vec<_>>().as_slice() {
            [dir, file] if dir.len() == 2 && hex(dir) && hex(file) => true,
            ["pack", file] => ["pack", "idx"].iter().any(|ext| {
                file.strip_prefix("pack-")
                    .and_then(|f| f.strip_suffix(&format!(".{ext}")))
                    .is_some_and(hex)
            }),
            _ => false,
        };
        ok.then(|| self.path.join("objects").join(rel))
    }
}
