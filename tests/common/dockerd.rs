//! A private dockerd for one test, so a test can stop, kill or restart "the
//! builder" without touching the machine's shared dockerd (which other tests
//! use at the same time).
//!
//! Everything lives under the folder it is given: the socket, the data root
//! (images, BuildKit's cache), the exec root (its own containerd), the pid
//! file and its log (`dockerd.log`). Its containers (BuildKit's `RUN` steps
//! among them) sit on a bridge of its own, made for it and removed with it,
//! with no iptables rules (no NAT: no network beyond the bridge; images come
//! from the test's registry on 127.0.0.1, which dockerd treats as insecure
//! by default).
//!
//! Never run a second dockerd with `--bridge=none`: dockerd then *deletes*
//! the interface `docker0`, the shared dockerd's bridge, and every container
//! the shared dockerd starts afterwards fails ("could not find bridge
//! docker0"). Nor with the default bridge, which would share `docker0` and
//! its addresses. Give it a short folder (a
//! `tempfile::tempdir()` is fine): unix socket paths are limited to 107
//! bytes, and overlay mounts carry the data root's path in their options.
//!
//! ```ignore
//! let dockerd = PrivateDockerd::start(&world.path("dockerd"));
//! // [[builder]] endpoint = dockerd.endpoint()
//! dockerd.kill9();      // the builder dies mid-build
//! dockerd.restart();    // and comes back over the same folders
//! ```
//!
//! Dropping it stops dockerd (SIGTERM, then SIGKILL), its containerd, and
//! unmounts whatever it left mounted under its folder, even when the test
//! panicked.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Numbers the containerd namespaces of this process's dockerds.
static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A dockerd of the test's own.
pub struct PrivateDockerd {
    dir: PathBuf,
    namespace: String,
    /// Its bridge interface.
    bridge: String,
    /// Arguments of its own (a TLS listener).
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts dockerd with everything under `dir` (created if missing) and
    /// waits until its API answers.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, Vec::new())
    }

    /// [`PrivateDockerd::start`] with more arguments for dockerd (say, a
    /// `--host tcp://…` with `--tlsverify`).
    pub fn start_with(dir: &Path, extra: Vec<String>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let socket = dir.join("d.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "{} is too long for a unix socket: give PrivateDockerd a shorter folder",
            socket.display()
        );
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let namespace = format!("hab-test-{}-{seq}", std::process::id());
        let bridge = make_bridge(seq);
        let mut d = PrivateDockerd {
            dir,
            namespace,
            bridge,
            extra,
            child: None,
        };
        d.spawn();
        d
    }

    /// `unix:///…/d.sock`: what hab's `[[builder]] endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("d.sock")
    }

    /// Its log (stdout and stderr of every start, appended).
    pub fn log(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The docker CLI pointed at it.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("--host").arg(self.endpoint());
        c
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while its API answers `/_ping`.
    pub fn answers(&self) -> bool {
        ping(&self.socket())
    }

    /// Stops it as an operator would (SIGTERM: running containers are
    /// stopped, its containerd exits), SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // A frozen dockerd cannot act on SIGTERM.
        let _ = Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        self.reap_containerd();
    }

    /// Kills it with SIGKILL: requests in flight are cut, builds die with
    /// it. Its containerd follows it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.reap_containerd();
    }

    /// Freezes it with SIGSTOP: its socket still accepts connections but
    /// nothing answers (a request to it is in flight until
    /// [`PrivateDockerd::thaw`] or a kill), while what it runs goes on.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen dockerd run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("dockerd is not running");
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid} failed");
    }

    /// Starts it again over the same folders (stopping it first if it
    /// runs), and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// [`PrivateDockerd::kill9`], then starts it again over the same folders.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "dockerd is already running");
        let dir = &self.dir;
        // A pid file left by a killed dockerd stops the next one from starting.
        let _ = std::fs::remove_file(dir.join("pid"));
        let _ = std::fs::remove_file(self.socket());
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}\n").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(self.endpoint())
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg("--config-file")
            .arg(&config)
            .args(["--containerd-namespace", &self.namespace])
            .args([
                "--containerd-plugins-namespace",
                &format!("{}-plugins", self.namespace),
            ])
            .arg(format!("--bridge={}", self.bridge))
            .args(["--iptables=false", "--ip6tables=false"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dockerd: {e} (bash scripts/setup.sh installs docker.io)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "the private dockerd exited ({status}):\n{}",
                    tail(&self.log())
                );
            }
            assert!(
                Instant::now() < deadline,
                "the private dockerd does not answer on {}:\n{}",
                self.socket().display(),
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the containerd it started if it outlived it, waits until it
    /// is gone, and removes its pid file: a dockerd started again would
    /// otherwise wait for a containerd that is dead (or a zombie nobody
    /// reaped yet, which still "exists").
    fn reap_containerd(&self) {
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let pid = pid.trim().to_string();
        let ours = || {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(&*self.dir.to_string_lossy()))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while ours() && Instant::now() < deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &pid])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(&pidfile);
    }

    /// Unmounts what dockerd left mounted under its folder (it bind-mounts
    /// its data root, and overlay layers of containers cut short).
    fn unmount_all(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m == &dir || m.starts_with(&format!("{dir}/")))
            .collect();
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount")
                .args(["-l", &m])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.stop();
        self.unmount_all();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// Makes a bridge interface of its own for a dockerd (`hbd…`, up, with a
/// /24 of 10.231.0.0/16 no interface here uses) and returns its name.
fn make_bridge(seq: u32) -> String {
    let name = format!("hbd{:x}x{seq:x}", std::process::id());
    let used = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .expect("ip (iproute2) must be installed: bash scripts/setup.sh")
            .stdout,
    )
    .into_owned();
    let start = (std::process::id() as usize + seq as usize * 7) % 250;
    let net = (0..250)
        .map(|i| (start + i) % 250 + 1)
        .find(|n| !used.contains(&format!("10.231.{n}.")))
        .expect("a free /24 in 10.231.0.0/16");
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["link", "add", "name", &name, "type", "bridge"]);
    ip(&["addr", "add", &format!("10.231.{net}.1/24"), "dev", &name]);
    ip(&["link", "set", &name, "up"]);
    name
}

/// `GET /_ping` over the socket.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
