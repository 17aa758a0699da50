//! Test harness: real git repositories served by `git daemon` on 127.0.0.1,
//! real OpenPGP keys made by GnuPG (with faked clocks, so signatures can be
//! dated before or after a key's expiry), a real SQLite store.
//!
//! Missing tools fail loudly with how to install them: `bash scripts/setup.sh`
//! (which the README and `.ci/run` use) installs them.

#![allow(dead_code)]

use std::{
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

mod bcoin;
mod build;
mod chart;
mod core_fixture;
mod dockerd;
mod fleets;
mod front_door;
mod habd;
mod helm3;
mod kube_double;
mod kube_world;
mod metrics_list;
mod registry;
mod scan;
#[allow(unused_imports)]
pub use bcoin::*;
#[allow(unused_imports)]
pub use build::*;
#[allow(unused_imports)]
pub use chart::*;
#[allow(unused_imports)]
pub use core_fixture::*;
#[allow(unused_imports)]
pub use dockerd::*;
#[allow(unused_imports)]
pub use fleets::*;
#[allow(unused_imports)]
pub use front_door::*;
#[allow(unused_imports)]
pub use habd::*;
#[allow(unused_imports)]
pub use helm3::*;
#[allow(unused_imports)]
pub use kube_double::*;
#[allow(unused_imports)]
pub use kube_world::*;
#[allow(unused_imports)]
pub use metrics_list::*;
#[allow(unused_imports)]
pub use registry::*;
#[allow(unused_imports)]
pub use scan::*;

/// Runs a command, panicking with its output on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run `bash scripts/setup.sh` first)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Serves an axum app on `listener` in a task until the sender fires or drops.
pub fn serve_in_background(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    tx
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on 127.0.0.1:port.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `git daemon` serving every repository under a folder, read-only, on 127.0.0.1.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> Self {
        let port = free_port();
        // Run git-daemon itself: `git daemon` forks it as a child, which
        // killing `git` would leave behind.
        let exec_path = run(Command::new("git").arg("--exec-path"));
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (part of git) must be installed: bash scripts/setup.sh");
        wait_for_port(port);
        GitDaemon { child, port }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Times as GnuPG's --faked-system-time wants them.
pub const T2020_01_01: &str = "20200101T000000";
pub const T2020_01_02: &str = "20200102T000000";
pub const T2020_02_01: &str = "20200201T000000";
pub const T2020_03_01: &str = "20200301T000000";
pub const T2020_08_01: &str = "20200801T000000";

/// A GnuPG home with keys made at chosen times.
pub struct Gpg {
    pub home: PathBuf,
}

impl Gpg {
    pub fn new(dir: &Path) -> Self {
        let home = dir.join("gnupg");
        std::fs::create_dir_all(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Gpg { home }
    }

    /// gpg on this home: batch, loopback pinentry, empty passphrase, the
    /// clock faked to `at` when given.
    pub fn cmd(&self, at: Option<&str>) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &self.home).args([
            "--batch",
            "--yes",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = at {
            c.arg("--faked-system-time").arg(format!("{t}!"));
        }
        c
    }

    /// Makes an ed25519 signing key at time `at`; returns its fingerprint.
    pub fn gen_key(&self, name: &str, at: &str) -> String {
        run(self.cmd(Some(at)).args([
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            "ed25519",
            "sign",
            "never",
        ]));
        let out = run(self.cmd(None).args([
            "--list-keys",
            "--with-colons",
            &format!("{name}@example.org"),
        ]));
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string()
    }

    /// Makes the key expire at `expires` (YYYY-MM-DD), by a self-signature dated `at`.
    pub fn set_expiry(&self, fpr: &str, at: &str, expires: &str) {
        run(self
            .cmd(Some(at))
            .args(["--quick-set-expire", fpr, expires]));
    }

    /// Imports the revocation certificate GnuPG made with the key (no reason
    /// given: a hard revocation).
    pub fn revoke(&self, fpr: &str) {
        let cert = self
            .home
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = std::fs::read_to_string(&cert).unwrap();
        // GnuPG guards the stored certificate with a leading ':' on the armor line.
        let text = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let file = self.home.join("revoke.asc");
        std::fs::write(&file, text).unwrap();
        run(self.cmd(None).arg("--import").arg(&file));
    }

    /// The armored public key.
    pub fn export(&self, fpr: &str) -> String {
        run(self.cmd(None).args(["--armor", "--export", fpr]))
    }

    /// An armored detached signature over `data`, dated `at`.
    pub fn sign(&self, fpr: &str, data: &[u8], at: &str) -> String {
        self.sign_with(fpr, data, at, &[])
    }

    /// [`Gpg::sign`] with extra gpg options (`--digest-algo SHA1`, ...).
    pub fn sign_with(&self, fpr: &str, data: &[u8], at: &str, extra: &[&str]) -> String {
        let mut child = self
            .cmd(Some(at))
            .args(extra)
            .args(["--local-user", fpr, "--detach-sign", "--armor"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg (GnuPG) must be installed: bash scripts/setup.sh");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// An upstream repository, changed with the git command line.
pub struct Upstream {
    pub dir: PathBuf,
    counter: std::cell::Cell<u32>,
}

impl Upstream {
    /// A new repository at `dir` with one commit on master.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let u = Upstream {
            dir: dir.to_path_buf(),
            counter: std::cell::Cell::new(0),
        };
        u.git(&["init", "-q", "-b", "master"]);
        u.commit("initial");
        u
    }

    pub fn git(&self, args: &[&str]) -> String {
        run(Command::new("git")
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_NAME", "Upstream Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.org")
            .env("GIT_COMMITTER_NAME", "Upstream Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.org")
            .env("GIT_AUTHOR_DATE", "2020-01-15T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2020-01-15T00:00:00Z")
            .args(args))
        .trim()
        .to_string()
    }

    /// A new commit on the current branch; returns its id.
    pub fn commit(&self, msg: &str) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        std::fs::write(self.dir.join("file.txt"), format!("{msg} {n}\n")).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Writes a file into the work tree (committed by the next `commit`).
    pub fn write(&self, path: &str, content: &str) {
        std::fs::write(self.dir.join(path), content).unwrap();
    }

    /// The tag object text git would sign.
    pub fn tag_payload(&self, name: &str, commit: &str, message: &str) -> String {
        format!(
            "object {commit}\ntype commit\ntag {name}\ntagger Upstream Dev <dev@example.org> 1579046400 +0000\n\n{message}\n"
        )
    }

    /// Writes a raw tag object and points `refs/tags/<name>` at it (moving it if it exists).
    pub fn write_tag(&self, name: &str, raw: &str) -> String {
        let out = piped(
            Command::new("git").current_dir(&self.dir).args([
                "hash-object",
                "-t",
                "tag",
                "-w",
                "--stdin",
            ]),
            raw.as_bytes(),
        );
        assert!(out.status.success());
        let oid = String::from_utf8(out.stdout).unwrap().trim().to_string();
        self.git(&["update-ref", &format!("refs/tags/{name}"), &oid]);
        oid
    }

    /// An annotated tag signed by `fpr` at time `at`.
    pub fn signed_tag(&self, gpg: &Gpg, fpr: &str, name: &str, commit: &str, at: &str) -> String {
        let payload = self.tag_payload(name, commit, &format!("Release {name}"));
        let sig = gpg.sign(fpr, payload.as_bytes(), at);
        self.write_tag(name, &format!("{payload}{sig}"))
    }

    /// An annotated tag without a signature.
    pub fn unsigned_tag(&self, name: &str, commit: &str) -> String {
        self.write_tag(
            name,
            &self.tag_payload(name, commit, &format!("Release {name}")),
        )
    }

    /// An annotated tag whose text was changed after it was signed.
    pub fn tampered_tag(&self, gpg: &Gpg, fpr: &str, name: &str, commit: &str, at: &str) -> String {
        let payload = self.tag_payload(name, commit, &format!("Release {name}"));
        let sig = gpg.sign(fpr, payload.as_bytes(), at);
        let forged = payload.replace(
            &format!("Release {name}"),
            &format!("Release {name} (now with extras)"),
        );
        self.write_tag(name, &format!("{forged}{sig}"))
    }

    pub fn delete_tag(&self, name: &str) {
        self.git(&["tag", "-d", name]);
    }
}

/// Runs `cmd` with `input` on its stdin; its stdout and stderr captured.
pub fn piped(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

/// A temporary world: upstream repos under `base/upstream`, served by git daemon,
/// a GnuPG home, a keyring folder, a state folder and a pipelines folder.
pub struct World {
    pub tmp: TempDir,
    pub daemon: GitDaemon,
    pub gpg: Gpg,
    pub upstream: Upstream,
}

impl World {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("upstream");
        let upstream = Upstream::new(&base.join("node.git"));
        let daemon = GitDaemon::start(&base);
        let gpg = Gpg::new(tmp.path());
        World {
            tmp,
            daemon,
            gpg,
            upstream,
        }
    }

    /// A world with a pinned key and one signed tag, `v1.0.0`, on a first
    /// commit; returns it with the key's fingerprint and the commit.
    pub fn with_release() -> (Self, String, String) {
        let world = World::new();
        let fpr = world.gpg.gen_key("release", T2020_01_01);
        world.pin(&[&fpr]);
        let commit = world.upstream.commit("release 1");
        world
            .upstream
            .signed_tag(&world.gpg, &fpr, "v1.0.0", &commit, T2020_02_01);
        (world, fpr, commit)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Pins these keys: writes them into `keys/`.
    pub fn pin(&self, fprs: &[&str]) {
        let dir = self.path("keys");
        std::fs::create_dir_all(&dir).unwrap();
        for f in fprs {
            std::fs::write(dir.join(format!("{f}.asc")), self.gpg.export(f)).unwrap();
        }
    }

    /// Writes `pipelines/node.toml` for the upstream and returns the pipelines folder.
    pub fn write_pipeline(&self, url: &str) -> PathBuf {
        let dir = self.path("pipelines");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("node.toml"),
            format!(
                "implementation = \"bitcoind\"\n\
                 [upstream]\nurl = \"{url}\"\n\
                 [refs]\ntrack = [\"refs/tags/v*\", \"refs/heads/master\"]\n\
                 [signature]\npolicy = \"signed\"\nkeyring = \"../keys\"\n"
            ),
        )
        .unwrap();
        dir
    }

    /// Loads the pipeline `node` (after `pin` and `write_pipeline`).
    pub fn pipeline(&self) -> std::sync::Arc<hab::config::Pipeline> {
        let pipelines = hab::config::load_pipelines(&self.path("pipelines"), &[]).unwrap();
        pipelines.into_iter().find(|p| p.name == "node").unwrap()
    }
}
