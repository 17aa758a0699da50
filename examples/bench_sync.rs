//! Benchmark: a no-op sync of a mirror against `git fetch` of the same mirror.
//!
//! Generates an upstream with 5,000 commits and 100 annotated tags (with
//! `git fast-import`), serves it with `git daemon` on 127.0.0.1, mirrors it
//! once with hab and once with `git clone --mirror`, then times ROUNDS no-op
//! rounds of each, interleaved so machine noise hits both alike. A hab sync
//! round is the whole sync: fetch, ref diff against the store, and the
//! recorded sync row in SQLite. Prints both medians and the ratio hab/git
//! (target: ≤ 1.0).
//!
//! Run: `cargo run --release --example bench_sync` (env ROUNDS, COMMITS, TAGS).

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hab::{config::load_pipelines, store::Store, sync::sync_blocking};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate(repo: &Path, commits: usize, tags: usize) {
    run(Command::new("git").args(["init", "-q", "--bare"]).arg(repo));
    let mut fi = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut s = String::new();
    let every = (commits / tags.max(1)).max(1);
    for i in 1..=commits {
        let data = format!("version {i}\n");
        let msg = format!("commit {i}\n");
        s.push_str(&format!(
            "commit refs/heads/master\nmark :{i}\ncommitter Bench <bench@example.org> {} +0000\ndata {}\n{msg}M 644 inline file.txt\ndata {}\n{data}\n",
            1_600_000_000 + i * 60,
            msg.len(),
            data.len()
        ));
        if i % every == 0 && i / every <= tags {
            let t = i / every;
            let tmsg = format!("release {t}\n");
            s.push_str(&format!(
                "tag v{t}.0.0\nfrom :{i}\ntagger Bench <bench@example.org> {} +0000\ndata {}\n{tmsg}\n",
                1_600_000_000 + i * 60,
                tmsg.len()
            ));
        }
    }
    fi.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    assert!(fi.wait().unwrap().success());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds = env_num("ROUNDS", 30);
    let commits = env_num("COMMITS", 5000);
    let tags = env_num("TAGS", 100);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("upstream");
    std::fs::create_dir_all(&base).unwrap();
    eprintln!("generating {commits} commits and {tags} tags...");
    generate(&base.join("bench.git"), commits, tags);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exec = String::from_utf8(
        Command::new("git")
            .arg("--exec-path")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut daemon = Command::new(Path::new(exec.trim()).join("git-daemon"))
        .stderr(Stdio::null())
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
        ])
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .spawn()
        .expect("git-daemon");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("git://127.0.0.1:{port}/bench.git");

    let pipelines = tmp.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(
        pipelines.join("bench.toml"),
        format!("implementation = \"bitcoind\"\n[upstream]\nurl = \"{url}\"\n[refs]\ntrack = [\"refs/tags/v*\", \"refs/heads/master\"]\n[signature]\npolicy = \"none\"\n"),
    )
    .unwrap();
    let pipeline = load_pipelines(&pipelines, &[]).unwrap().remove(0);
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let store = Store::open(&state.join("hab.sqlite3")).unwrap();
    let first = sync_blocking(&store, &state, &pipeline, "bench").unwrap();
    assert_eq!(first.sync.added as usize, tags + 1);
    let git_mirror = tmp.path().join("git-mirror.git");
    run(Command::new("git")
        .args(["clone", "-q", "--mirror", &url])
        .arg(&git_mirror));

    let (mut hab_times, mut git_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let r = sync_blocking(&store, &state, &pipeline, "bench").unwrap();
        hab_times.push(t.elapsed());
        assert_eq!(
            r.sync.objects_received, 0,
            "a no-op sync must transfer nothing"
        );
        let t = Instant::now();
        run(Command::new("git")
            .arg("-C")
            .arg(&git_mirror)
            .args(["fetch", "-q", "--prune", "origin"]));
        git_times.push(t.elapsed());
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (h, g) = (median(hab_times), median(git_times));
    println!("no-op sync, {commits} commits, {tags} tags, median of {rounds} rounds");
    println!(
        "  hab sync (fetch + diff + store): {:>8.2} ms",
        h.as_secs_f64() * 1e3
    );
    println!(
        "  git fetch --prune (mirror):      {:>8.2} ms",
        g.as_secs_f64() * 1e3
    );
    println!(
        "  ratio hab/git: {:.2} (target <= 1.0)",
        h.as_secs_f64() / g.as_secs_f64()
    );
}
