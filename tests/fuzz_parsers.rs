//! Fuzzing every parser of outside input with generated inputs: config
//! files, webhook headers and payloads (as functions, and through a real
//! habd over HTTP), tag objects and OpenPGP keys and signatures, registry
//! manifests and indexes, node RPC answers.
//!
//! Inputs are generated with proptest strategies: structured ones (a valid
//! shape with fields swapped for values of random types, then sometimes
//! mutated byte by byte) and raw random bytes. Each call runs under
//! `catch_unwind` and panics are counted, not shrunk, so a run reports how
//! many inputs it tried and how many panicked; each test prints
//!
//! ```text
//! fuzz <parser>: <inputs> inputs, <panics> panics, peak RSS <N> MiB
//! ```
//!
//! (peak RSS is the process's `VmHWM`), then a `reached:` line counting how
//! far inputs got (loaded or refused, which verdict...), and fails when
//! panics is not 0, showing the first panicking inputs and the seed. An
//! input that alone raises the peak by 64 MiB or more is printed too.
//! Regression inputs (ones that once panicked) run first.
//!
//! `HAB_FUZZ_CASES` (default 1000, for CI) is the number of inputs per
//! parser family (the HTTP test runs a twentieth of it, at least 50);
//! `HAB_FUZZ_SEED` replays a run. `bash scripts/fuzz.sh` runs 100,000 per
//! parser in a release build, each family in its own process, and prints
//! the table; by hand:
//! `HAB_FUZZ_CASES=100000 RUST_LIB_BACKTRACE=0 cargo test --release --test fuzz_parsers -- --nocapture --test-threads=1`.

mod common;

use std::{
    cell::{Cell, RefCell},
    fmt::Debug,
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    sync::Once,
    time::Instant,
};

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use common::*;
use hab::{
    config::{self, Config, Overrides, Schedule},
    health::{self, ChainInfo, Observation},
    hooks::{self, Provider},
    registry, schedule,
    signature::{self, Keyring},
};
use proptest::{
    collection::{btree_map, vec},
    prelude::*,
    sample::select,
    strategy::{BoxedStrategy, ValueTree},
    test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// The harness: counted panics, the case count, the seed, peak memory.

thread_local! {
    /// Set while a fuzzed call runs: its panic is recorded, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Panics outside fuzzed calls: in this process, those of habd's handlers
/// (and of failing asserts).
static OTHER_PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A panic hook that keeps quiet about (and records) the panics of fuzzed
/// calls, and counts every other panic and leaves it to the default hook.
fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                LAST_PANIC.with(|l| *l.borrow_mut() = Some(info.to_string()));
            } else {
                OTHER_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                default(info);
            }
        }));
    });
}

/// Inputs per parser family: `HAB_FUZZ_CASES`, 1000 by default.
fn cases() -> u64 {
    std::env::var("HAB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1000)
}

/// `HAB_FUZZ_SEED`, or a new one each run.
fn base_seed() -> u64 {
    std::env::var("HAB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        })
}

/// Peak resident memory of this process so far (`VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// `s`, cut to at most about `max` bytes.
fn shorten(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// One parser family's run.
struct Fuzz {
    parser: &'static str,
    seed: u64,
    runner: TestRunner,
    inputs: u64,
    panics: u64,
    examples: Vec<String>,
    /// How far inputs got (accepted, refused, which verdict...), to show
    /// the generators reach past the first check.
    outcomes: std::collections::BTreeMap<&'static str, u64>,
}

impl Fuzz {
    fn new(parser: &'static str) -> Self {
        install_hook();
        let seed = base_seed();
        // One stream per family, so families do not share inputs.
        let family = parser.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&family.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        Fuzz {
            parser,
            seed,
            runner: TestRunner::new_with_rng(RunnerConfig::default(), rng),
            inputs: 0,
            panics: 0,
            examples: Vec::new(),
            outcomes: Default::default(),
        }
    }

    /// Runs `f` on one input, counting a panic, or how far it got.
    fn one<T: Debug>(&mut self, input: &T, f: impl FnOnce(&T) -> &'static str) {
        self.inputs += 1;
        let before = peak_rss_mib();
        CATCHING.with(|c| c.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| f(input)));
        CATCHING.with(|c| c.set(false));
        let after = peak_rss_mib();
        if after >= before + 64 {
            let shown = shorten(format!("{input:?}"), 3000);
            println!(
                "fuzz {}: one input raised peak RSS from {before} to {after} MiB: {shown}",
                self.parser
            );
        }
        if let Ok(reached) = outcome {
            *self.outcomes.entry(reached).or_default() += 1;
        } else {
            self.panics += 1;
            let message = LAST_PANIC
                .with(|l| l.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into());
            if self.examples.len() < 5 {
                let shown = shorten(format!("{input:?}"), 2000);
                self.examples.push(format!("{message}\n  input: {shown}"));
            }
        }
    }

    /// Runs `f` on `n` inputs drawn from `strategy`.
    fn run<S: Strategy>(
        &mut self,
        n: u64,
        strategy: S,
        mut f: impl FnMut(&S::Value) -> &'static str,
    ) where
        S::Value: Debug,
    {
        for _ in 0..n {
            let Ok(tree) = strategy.new_tree(&mut self.runner) else {
                continue;
            };
            let input = tree.current();
            self.one(&input, &mut f);
        }
    }

    /// Prints the line and fails on any panic.
    fn finish(self) {
        println!(
            "fuzz {}: {} inputs, {} panics, peak RSS {} MiB",
            self.parser,
            self.inputs,
            self.panics,
            peak_rss_mib()
        );
        let reached: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("  reached: {}", reached.join(", "));
        assert!(
            self.panics == 0,
            "fuzz {}: {} of {} inputs panicked (replay with HAB_FUZZ_SEED={} HAB_FUZZ_CASES={}); first ones:\n{}",
            self.parser,
            self.panics,
            self.inputs,
            self.seed,
            cases(),
            self.examples.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Generators shared by the families.

/// Input bytes, shown as an escaped byte string when a case panics.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn bytes(max: usize) -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes).boxed()
}

/// Bytes or text mangled the way broken senders and attackers do.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Repeat(usize, usize),
    Token(usize, &'static str),
}

/// Tokens that mean something to one of the parsers.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ":",
    "\n",
    "\r\n",
    "\\",
    "\\u",
    "\0",
    "\u{feff}",
    "\u{10ffff}",
    "é",
    "0x",
    "-",
    "1e999",
    "null",
    "true",
    "[]",
    "{}",
    "#",
    "=\n",
    "-----BEGIN PGP SIGNATURE-----\n",
    "-----END PGP SIGNATURE-----\n",
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
    "\n\n",
    "sha256:",
    "@",
    "//",
    "../",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Repeat(p, n)),
        (any::<usize>(), select(TOKENS)).prop_map(|(p, t)| Mutation::Token(p, t)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |p: usize, len: usize| p % (len + 1);
        let len = bytes.len();
        match m {
            Mutation::Set(p, b) if len > 0 => bytes[p % len] = *b,
            Mutation::Set(..) => {}
            Mutation::Insert(p, b) => {
                let i = at(*p, len);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let i = at(*p, len);
                let end = (i + n).min(len);
                bytes.drain(i..end);
            }
            Mutation::Truncate(p) => bytes.truncate(at(*p, len)),
            Mutation::Repeat(p, n) => {
                let i = at(*p, len);
                let end = (i + n).min(len);
                let chunk = bytes[i..end].to_vec();
                bytes.splice(i..i, chunk);
            }
            Mutation::Token(p, t) => {
                let i = at(*p, len);
                bytes.splice(i..i, t.bytes());
            }
        }
    }
    bytes
}

/// `base` as is, or mutated a few times, or plain random bytes.
fn mangled(base: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => base.clone(),
        3 => (base, vec(mutation(), 1..4)).prop_map(|(b, m)| apply(b, &m)),
        1 => vec(any::<u8>(), 0..512),
    ]
    .boxed()
}

/// Any JSON value, nested a little.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Mostly one of `valid` (as JSON), sometimes a random value.
fn json_of(valid: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![20 => valid, 1 => json_value()].boxed()
}

fn json_str(options: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![8 => select(options).prop_map(Value::from), 1 => ".{0,16}".prop_map(Value::from)]
        .boxed()
}

/// An object with some of these fields (each may be left out) and maybe a
/// stray one.
fn json_object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, v)| {
            prop_oneof![1 => Just(None), 12 => v.prop_map(move |v| Some((k.to_string(), v)))]
                .boxed()
        })
        .collect();
    let extra = prop_oneof![3 => Just(None), 1 => (".{0,8}", json_value()).prop_map(Some)];
    (parts, extra)
        .prop_map(|(parts, extra)| {
            let mut m = serde_json::Map::new();
            for (k, v) in parts.into_iter().flatten().chain(extra) {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

/// JSON bytes of `shape`, mangled; or deeply nested brackets.
fn json_bytes(shape: BoxedStrategy<Value>) -> BoxedStrategy<Bytes> {
    prop_oneof![
        12 => mangled(shape.prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()).boxed()),
        1 => (1usize..5000, select(&["[", "{\"a\":", "{\"result\":", "{\"manifests\":["][..]))
            .prop_map(|(n, open)| open.repeat(n).into_bytes()),
    ]
    .prop_map(Bytes)
    .boxed()
}

// ---------------------------------------------------------------------------
// Config: hab.toml, pipeline files, durations, schedules.

/// Any TOML value, nested a little.
fn toml_value() -> BoxedStrategy<toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(65536)
        ]
        .prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        ".{0,20}".prop_map(toml::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Mostly one of `options`, sometimes any string, sometimes any value.
fn t_str(options: &'static [&'static str]) -> BoxedStrategy<toml::Value> {
    prop_oneof![
        6 => select(options).prop_map(|s| toml::Value::String(s.into())),
        1 => ".{0,16}".prop_map(toml::Value::String),
        1 => toml_value(),
    ]
    .boxed()
}

fn t_int(options: &'static [i64]) -> BoxedStrategy<toml::Value> {
    prop_oneof![
        6 => select(options).prop_map(toml::Value::Integer),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => toml_value(),
    ]
    .boxed()
}

fn t_bool() -> BoxedStrategy<toml::Value> {
    prop_oneof![6 => any::<bool>().prop_map(toml::Value::Boolean), 1 => toml_value()].boxed()
}

fn t_array(item: BoxedStrategy<toml::Value>) -> BoxedStrategy<toml::Value> {
    prop_oneof![6 => vec(item, 0..4).prop_map(toml::Value::Array), 1 => toml_value()].boxed()
}

fn t_table(fields: Vec<(&'static str, BoxedStrategy<toml::Value>)>) -> BoxedStrategy<toml::Value> {
    let parts: Vec<BoxedStrategy<Option<(String, toml::Value)>>> = fields
        .into_iter()
        .map(|(k, v)| {
            prop_oneof![1 => Just(None), 3 => v.prop_map(move |v| Some((k.to_string(), v)))].boxed()
        })
        .collect();
    let extra = prop_oneof![8 => Just(None), 1 => ("[a-z_]{1,10}", toml_value()).prop_map(Some)];
    (parts, extra)
        .prop_map(|(parts, extra)| {
            let mut m = toml::Table::new();
            for (k, v) in parts.into_iter().flatten().chain(extra) {
                m.insert(k, v);
            }
            toml::Value::Table(m)
        })
        .boxed()
}

fn t_tables(item: BoxedStrategy<toml::Value>) -> BoxedStrategy<toml::Value> {
    prop_oneof![8 => vec(item, 0..3).prop_map(toml::Value::Array), 1 => toml_value()].boxed()
}

/// Durations as written, and not.
fn duration_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(&["30s", "5m", "1h", "1500ms", "0s", "10m", "3600s", "2s", "200ms"][..])
            .prop_map(String::from),
        4 => "[0-9]{1,22}(ms|s|m|h|d|us|)".prop_map(String::from),
        1 => "[ \t]?-?[0-9]{0,3}[.,]?[0-9]{0,3} ?[a-zµ٣]{0,3}[ \t]?".prop_map(String::from),
        1 => ".{0,12}".prop_map(String::from),
    ]
    .boxed()
}

fn t_duration() -> BoxedStrategy<toml::Value> {
    prop_oneof![8 => duration_text().prop_map(toml::Value::String), 1 => toml_value()].boxed()
}

/// Cron expressions, valid and not.
fn cron_text() -> BoxedStrategy<String> {
    let field = prop_oneof![
        Just("*".to_string()),
        "\\*/[0-9]{1,3}".prop_map(String::from),
        "[0-9]{1,3}".prop_map(String::from),
        "[0-9]{1,2}-[0-9]{1,2}(/[0-9]{1,2})?".prop_map(String::from),
        "[0-9]{1,2}(,[0-9]{1,2}){1,3}".prop_map(String::from),
        "(MON|TUE|SUN|SAT|JAN|FEB|DEC|L|W|\\?|[0-7]L|[0-7]#[0-9]|LW|[0-9]{1,2}W|MON-FRI)"
            .prop_map(String::from),
        "[0-9]{1,22}".prop_map(String::from),
        ".{0,4}".prop_map(String::from),
    ];
    prop_oneof![
        8 => vec(field, 5..=5).prop_map(|f| f.join(" ")),
        1 => vec("[0-9*/,-]{1,4}", 3..8).prop_map(|f| f.join(" ")),
        1 => "@(yearly|annually|monthly|weekly|daily|midnight|hourly|reboot|every|[a-z]{0,6})"
            .prop_map(String::from),
        1 => ".{0,40}".prop_map(String::from),
    ]
    .boxed()
}

const URLS: &[&str] = &[
    "git://127.0.0.1:9418/fixture.git",
    "https://github.com/bitcoin/bitcoin.git",
    "http://example.org/a/b",
    "ssh://git@github.com/btcsuite/btcd.git",
    "file:///srv/git/node.git",
    "git@github.com:bitcoin/bitcoin.git",
    "ftp://x/y",
    "",
    "https://",
    "git://[::1]:70000/x",
];

const PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/riscv64",
    "linux",
    "",
    "linux/arm64/v8",
];

fn daemon_table() -> BoxedStrategy<toml::Value> {
    let builder = t_table(vec![
        ("name", t_str(&["local", "pi", ""])),
        (
            "endpoint",
            t_str(&[
                "unix:///var/run/docker.sock",
                "tcp://10.0.0.2:2376",
                "ftp://x",
                "",
                "/var/run/docker.sock",
            ]),
        ),
        ("platforms", t_array(t_str(PLATFORMS))),
        ("emulated", t_array(t_str(PLATFORMS))),
        ("tls_ca", t_str(&["ca.pem", "/nonexistent/ca.pem"])),
        ("tls_cert", t_str(&["cert.pem"])),
        ("tls_key", t_str(&["key.pem"])),
    ]);
    let target = t_table(vec![
        ("name", t_str(&["local", "k8s", ""])),
        ("kind", t_str(&["docker", "kubernetes", "k8s", "Docker"])),
        (
            "endpoint",
            t_str(&["unix:///var/run/docker.sock", "tcp://h:2376", "nope"]),
        ),
        ("namespace", t_str(&["bitcoin", "", "UPPER"])),
    ]);
    let gates = t_table(vec![
        ("max_lag", t_int(&[0, 2, -1, i64::MAX])),
        ("soak", t_duration()),
        ("ready_timeout", t_duration()),
    ]);
    let fleet = t_table(vec![
        ("name", t_str(&["edge", "fixture-edge", "Edge", "", "a b"])),
        ("pipeline", t_str(&["node", "other", ""])),
        ("target", t_str(&["local", "k8s", "missing"])),
        ("channel", t_str(&["edge", "stable", "none"])),
        (
            "nodes",
            t_int(&[1, 2, 0, -1, 1000, 1001, i64::MAX, i64::MIN]),
        ),
        ("network", t_str(&["regtest", "mainnet", "signet", ""])),
        ("rpc_user", t_str(&["hab", ""])),
        (
            "rpc_password_file",
            t_str(&["rpc-password", "/nonexistent"]),
        ),
        ("rpc_port", t_int(&[18443, 0, 65535, 65536, -1])),
        ("host_port_base", t_int(&[19000, 0, 65535, 65536, -1])),
        ("gates", gates),
    ]);
    t_table(vec![
        (
            "listen",
            t_str(&[
                "127.0.0.1:8470",
                "[::1]:0",
                "0.0.0.0:99999",
                "localhost:80",
                ":80",
                "",
            ]),
        ),
        ("state_dir", t_str(&["state", "/nonexistent/state", ""])),
        (
            "pipelines_dir",
            t_str(&["pipelines", "pipelines", "pipelines", "missing", ""]),
        ),
        ("recipes_dir", t_str(&["dockerfiles", ""])),
        (
            "api",
            t_table(vec![
                ("tokens", t_array(t_str(&["a-token", ""]))),
                ("token_file", t_str(&["tokens", "missing-tokens", ""])),
            ]),
        ),
        (
            "registry",
            t_table(vec![
                (
                    "url",
                    t_str(&[
                        "http://127.0.0.1:5000",
                        "https://r.internal:443/",
                        "http://x/v2/foo",
                        "127.0.0.1:5000",
                        "ftp://x",
                        "http://",
                        "",
                    ]),
                ),
                ("username", t_str(&["hab", ""])),
                (
                    "password_file",
                    t_str(&["registry-password", "/nonexistent"]),
                ),
                (
                    "pull_host",
                    t_str(&["registry.internal:5000", "", "http://x", "a/b"]),
                ),
                ("timeout", t_duration()),
            ]),
        ),
        ("builder", t_tables(builder)),
        ("target", t_tables(target)),
        ("fleet", t_tables(fleet)),
        (
            "webhooks",
            t_table(vec![
                (
                    "max_body_bytes",
                    t_int(&[4096, 1023, 0, -1, 1 << 20, i64::MAX]),
                ),
                ("settle", t_duration()),
            ]),
        ),
    ])
}

fn pipeline_table() -> BoxedStrategy<toml::Value> {
    let globs = &[
        "refs/tags/v*",
        "refs/heads/master",
        "refs/tags/*rc*",
        "refs/tags/**",
        "refs/tags/[",
        "refs/tags/{a,b}",
        "refs/tags/[!a-z]*",
        "v*",
        "refs/tags/\\",
        "refs/",
    ][..];
    let channel = t_table(vec![
        ("name", t_str(&["edge", "stable", "Edge", "", "edge"])),
        ("auto", t_bool()),
    ]);
    t_table(vec![
        ("name", t_str(&["node", "fixture", "Node", "", "-x", "a_b"])),
        ("implementation", t_str(&["bitcoind", "btcd", "bcoin", "geth"])),
        (
            "upstream",
            t_table(vec![("url", t_str(URLS)), ("timeout", t_duration())]),
        ),
        (
            "refs",
            t_table(vec![
                (
                    "track",
                    t_array(
                        prop_oneof![
                            4 => select(globs).prop_map(|s| toml::Value::String(s.into())),
                            1 => "refs/[a-z*?\\[\\]{},!\\\\/^-]{0,16}".prop_map(toml::Value::String),
                        ]
                        .boxed(),
                    ),
                ),
                ("ignore", t_array(t_str(globs))),
            ]),
        ),
        (
            "signature",
            t_table(vec![
                ("policy", t_str(&["signed", "none", "none", "maybe"])),
                ("keyring", t_str(&["../keys/bcoin.gpg", "../keys", "missing.asc", "../keys-junk/junk.asc", ""])),
            ]),
        ),
        (
            "build",
            t_table(vec![
                ("recipe", t_str(&["fixture", "../recipes/mine", ""])),
                ("platforms", t_array(t_str(PLATFORMS))),
                (
                    "args",
                    prop_oneof![
                        4 => btree_map("[A-Z_]{1,8}", ".{0,8}", 0..3).prop_map(|m| toml::Value::Table(
                            m.into_iter().map(|(k, v)| (k, toml::Value::String(v))).collect()
                        )),
                        1 => toml_value(),
                    ]
                    .boxed(),
                ),
                ("smoke", t_array(t_str(&["bitcoind", "-version"]))),
                ("base_image", t_str(&["127.0.0.1:5000/hab/base:bookworm", "::", ""])),
                ("auto", t_bool()),
            ]),
        ),
        (
            "image",
            t_table(vec![(
                "repository",
                t_str(&["hab/bitcoind", "Hab/x", "", "a//b", "hab/", "x.y_z-0/w"]),
            )]),
        ),
        (
            "schedule",
            t_table(vec![
                ("sync", prop_oneof![6 => cron_text().prop_map(toml::Value::String), 1 => toml_value()].boxed()),
                ("rebuild", prop_oneof![6 => cron_text().prop_map(toml::Value::String), 1 => toml_value()].boxed()),
                (
                    "timezone",
                    t_str(&["UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe", "Mars/Olympus", "utc", ""]),
                ),
            ]),
        ),
        ("channel", t_tables(channel)),
        (
            "webhook",
            t_table(vec![("secret_file", t_str(&["../secret", "../short-secret", "missing", "", "../keys"]))]),
        ),
    ])
}

/// TOML text of a table (or, when it does not serialize, its Debug form).
fn toml_bytes(table: BoxedStrategy<toml::Value>) -> BoxedStrategy<Bytes> {
    mangled(
        table
            .prop_map(|v| {
                toml::to_string(&v)
                    .unwrap_or_else(|_| format!("{v:?}"))
                    .into_bytes()
            })
            .boxed(),
    )
    .prop_map(Bytes)
    .boxed()
}

/// A hab.toml that should load: every value from the valid ones, each
/// section there or not.
fn clean_daemon() -> BoxedStrategy<Vec<u8>> {
    let duration = |max: u64| {
        prop_oneof![
            (1u64..=max).prop_map(|n| format!("{n}s")),
            (1u64..=max / 60).prop_map(|n| format!("{n}m")),
            (1000u64..=max * 1000).prop_map(|n| format!("{n}ms")),
        ]
    };
    let builder = (
        select(&["local", "pi", "amd"][..]),
        select(&["unix:///var/run/docker.sock", "tcp://10.0.0.2:2376", "https://b:2376"][..]),
        prop::sample::subsequence(vec!["linux/amd64", "linux/arm64"], 0..=2),
        prop::sample::subsequence(vec!["linux/arm64"], 0..=1),
    )
        .prop_map(|(name, endpoint, platforms, emulated)| {
            format!(
                "[[builder]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\nplatforms = {platforms:?}\nemulated = {emulated:?}\n"
            )
        });
    let target = (prop_oneof![3 => Just("local"), 1 => Just("k8s")], any::<bool>()).prop_map(|(name, docker)| {
        if docker {
            format!("[[target]]\nname = \"{name}\"\nkind = \"docker\"\nendpoint = \"unix:///var/run/docker.sock\"\n")
        } else {
            format!("[[target]]\nname = \"{name}\"\nkind = \"kubernetes\"\nnamespace = \"bitcoin\"\n")
        }
    });
    let fleet = (
        select(&["edge", "stable-fleet", "a-1"][..]),
        prop_oneof![4 => Just("node"), 1 => Just("fixture")],
        prop_oneof![4 => Just("edge"), 1 => Just("stable")],
        1u32..6,
        0u64..100,
        duration(365 * 24 * 3600),
        duration(365 * 24 * 3600),
        prop::option::of(1u16..65535),
    )
        .prop_map(|(name, pipeline, channel, nodes, lag, soak, ready, port)| {
            let port = port.map_or(String::new(), |p| format!("host_port_base = {p}\n"));
            format!(
                "[[fleet]]\nname = \"{name}\"\npipeline = \"{pipeline}\"\nchannel = \"{channel}\"\nnodes = {nodes}\n{port}\
                 [fleet.gates]\nmax_lag = {lag}\nsoak = \"{soak}\"\nready_timeout = \"{ready}\"\n"
            )
        });
    (
        select(&["127.0.0.1:8470", "[::1]:0", "0.0.0.0:18470"][..]),
        any::<bool>(),
        prop::option::of((
            select(&["http://127.0.0.1:5000", "https://registry.internal", "http://[::1]:5000/"][..]),
            duration(3600),
            any::<bool>(),
        )),
        vec(builder, 0..3),
        prop_oneof![2 => Just(Vec::new()), 1 => vec(target, 1..3)],
        prop_oneof![1 => Just(Vec::new()), 1 => vec(fleet, 1..3)],
        prop::option::of((1024u64..(1 << 24), duration(600))),
    )
        .prop_map(|(listen, tokens, registry, builders, targets, fleets, webhooks)| {
            let mut t = format!("listen = \"{listen}\"\nstate_dir = \"state\"\npipelines_dir = \"pipelines\"\n");
            if tokens {
                t.push_str("[api]\ntokens = [\"t0\"]\ntoken_file = \"tokens\"\n");
            }
            if let Some((url, timeout, user)) = registry {
                t.push_str(&format!("[registry]\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"));
                if user {
                    t.push_str("username = \"hab\"\npassword_file = \"secret\"\npull_host = \"registry.internal:5000\"\n");
                }
            }
            if let Some((max, settle)) = webhooks {
                t.push_str(&format!("[webhooks]\nmax_body_bytes = {max}\nsettle = \"{settle}\"\n"));
            }
            for section in builders.iter().chain(&targets).chain(&fleets) {
                t.push_str(section);
            }
            t.into_bytes()
        })
        .boxed()
}

/// Cron expressions that parse.
fn clean_cron() -> BoxedStrategy<String> {
    prop_oneof![
        select(
            &[
                "*/5 * * * *",
                "0 3 * * 0",
                "30 2 1 * *",
                "0 0 29 2 *",
                "0 0 31 4 *",
                "59 23 31 12 *",
                "@daily",
                "@hourly",
                "0 9-17 * * MON-FRI",
                "0 0 L * *",
                "0 0 * * 5L",
                "0 0 * * 1#3"
            ][..]
        )
        .prop_map(String::from),
        (
            0u32..60,
            0u32..24,
            prop::option::of(1u32..32),
            prop::option::of(1u32..13),
            prop::option::of(0u32..7)
        )
            .prop_map(|(m, h, dom, mon, dow)| {
                let f = |x: Option<u32>| x.map_or("*".to_string(), |x| x.to_string());
                format!("{m} {h} {} {} {}", f(dom), f(mon), f(dow))
            }),
        (1u32..60).prop_map(|n| format!("*/{n} * * * *")),
    ]
    .boxed()
}

/// A pipeline file that should parse.
fn clean_pipeline() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![3 => Just("node"), 1 => Just("fixture"), 1 => Just("btcd-main")],
        select(&["bitcoind", "btcd", "bcoin"][..]),
        select(&URLS[..5]),
        prop::option::of(prop_oneof![(1u64..=3600).prop_map(|n| format!("{n}s")), (1u64..=60).prop_map(|n| format!("{n}m"))]),
        prop::sample::subsequence(vec!["refs/tags/v*", "refs/heads/master", "refs/tags/v[0-9]*.[0-9]*", "refs/tags/{v,release-}*"], 1..=3),
        select(&["policy = \"none\"", "policy = \"signed\"\nkeyring = \"../keys/bcoin.gpg\"", "policy = \"signed\"\nkeyring = \"../keys\""][..]),
        prop::option::of((prop::sample::subsequence(vec!["linux/amd64", "linux/arm64"], 1..=2), any::<bool>())),
        (prop::option::of(clean_cron()), prop::option::of(clean_cron()), select(&["UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham"][..])),
        (prop::bool::weighted(0.8), any::<bool>(), any::<bool>()),
    )
        .prop_map(|(name, implementation, url, timeout, track, signature, build, (sync, rebuild, tz), (edge, stable, hook))| {
            let mut t = format!("name = \"{name}\"\nimplementation = \"{implementation}\"\n[upstream]\nurl = \"{url}\"\n");
            if let Some(timeout) = timeout {
                t.push_str(&format!("timeout = \"{timeout}\"\n"));
            }
            t.push_str(&format!("[refs]\ntrack = {track:?}\nignore = [\"refs/tags/*rc*\"]\n[signature]\n{signature}\n"));
            if let Some((platforms, auto)) = build {
                t.push_str(&format!(
                    "[build]\nrecipe = \"fixture\"\nplatforms = {platforms:?}\nauto = {auto}\nsmoke = [\"bitcoind\", \"-version\"]\n\
                     base_image = \"127.0.0.1:5000/hab/base:bookworm\"\n[build.args]\nJOBS = \"2\"\n[image]\nrepository = \"hab/{name}\"\n"
                ));
            }
            t.push_str(&format!("[schedule]\ntimezone = \"{tz}\"\n"));
            if let Some(c) = sync {
                t.push_str(&format!("sync = \"{c}\"\n"));
            }
            if let Some(c) = rebuild {
                t.push_str(&format!("rebuild = \"{c}\"\n"));
            }
            if edge {
                t.push_str("[[channel]]\nname = \"edge\"\nauto = true\n");
            }
            if stable {
                t.push_str("[[channel]]\nname = \"stable\"\n");
            }
            if hook {
                t.push_str("[webhook]\nsecret_file = \"../secret\"\n");
            }
            t.into_bytes()
        })
        .boxed()
}

/// Valid files, sometimes mangled; or files of random structure.
fn daemon_bytes() -> BoxedStrategy<Bytes> {
    prop_oneof![
        2 => mangled(clean_daemon()).prop_map(Bytes),
        1 => toml_bytes(daemon_table()),
    ]
    .boxed()
}

fn pipeline_bytes() -> BoxedStrategy<Bytes> {
    prop_oneof![
        2 => mangled(clean_pipeline()).prop_map(Bytes),
        1 => toml_bytes(pipeline_table()),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum ConfigInput {
    /// hab.toml and the pipeline files next to it, loaded by Config::load.
    Files {
        daemon: Bytes,
        pipelines: Vec<Bytes>,
    },
    /// One pipeline file's text, by parse_pipeline.
    Pipeline(Bytes),
    /// A duration, by parse_duration.
    Duration(String),
    /// A schedule, parsed, then asked for its next and due slots.
    Schedule {
        text: String,
        tz: &'static str,
        now: i64,
        last: i64,
    },
}

fn config_input() -> impl Strategy<Value = ConfigInput> {
    prop_oneof![
        4 => (daemon_bytes(), vec(pipeline_bytes(), 0..3))
            .prop_map(|(daemon, pipelines)| ConfigInput::Files { daemon, pipelines }),
        3 => pipeline_bytes().prop_map(ConfigInput::Pipeline),
        1 => duration_text().prop_map(ConfigInput::Duration),
        2 => (
            prop_oneof![cron_text(), clean_cron()],
            select(&["UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata"][..]),
            -2_000_000_000i64..8_000_000_000,
            -2_000_000_000i64..8_000_000_000,
        )
            .prop_map(|(text, tz, now, last)| ConfigInput::Schedule { text, tz, now, last }),
    ]
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// What the daemon does with a loaded configuration's durations, schedules
/// and platforms: a value the parser accepts must be usable.
fn use_config(c: &Config) {
    let now = Instant::now();
    for f in &c.fleets {
        let soak = health::Soak::new(f.gates, now);
        let _ = soak.deadline();
        let _ = now + f.gates.ready_timeout; // as a rollout's deadline
    }
    let _ = Utc::now() + chrono::Duration::from_std(c.webhooks.settle).unwrap_or_default();
    let _ = c.registry.host();
    for p in &c.pipelines {
        use_pipeline(p);
        let _ = c.recipe_dir(p);
        for platform in p.build.iter().flat_map(|b| &b.platforms) {
            let _ = c.builder_for(platform);
        }
    }
}

fn use_pipeline(p: &config::Pipeline) {
    let now = Utc::now();
    for s in [&p.sync_schedule, &p.rebuild_schedule]
        .into_iter()
        .flatten()
    {
        let _ = schedule::next_slot(&s.cron, p.timezone, now);
        let _ = schedule::due_slot(&s.cron, p.timezone, now - chrono::Duration::days(1), now);
    }
    let _ = p.refs.tracks("refs/tags/v1.0.0");
}

/// The folder a config fuzz case loads from (`cfg/`): hab.toml and the
/// pipeline files are written there per case; next to them a real keyring,
/// a keyring that is not one, a webhook secret, a short one, a token file.
fn config_world() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let keys = cfg.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(cfg.join("pipelines")).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    std::fs::copy(shipped.join("bcoin/pinheadmz.gpg"), keys.join("bcoin.gpg")).unwrap();
    std::fs::create_dir_all(cfg.join("keys-junk")).unwrap();
    std::fs::write(
        cfg.join("keys-junk/junk.asc"),
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n",
    )
    .unwrap();
    std::fs::write(cfg.join("secret"), "a-webhook-secret-long-enough\n").unwrap();
    std::fs::write(cfg.join("short-secret"), "short\n").unwrap();
    std::fs::write(cfg.join("tokens"), "# tokens\nt1\n").unwrap();
    dir
}

fn config_case(world: &Path, input: &ConfigInput) -> &'static str {
    match input {
        ConfigInput::Files { daemon, pipelines } => {
            let cfg = world.join("cfg");
            let pdir = cfg.join("pipelines");
            std::fs::write(cfg.join("hab.toml"), daemon).unwrap();
            for i in 0..3 {
                let f = pdir.join(format!("p{i}.toml"));
                match pipelines.get(i) {
                    Some(text) => std::fs::write(&f, text).unwrap(),
                    None => {
                        let _ = std::fs::remove_file(&f);
                    }
                }
            }
            match Config::load(Some(&cfg.join("hab.toml")), &Overrides::default()) {
                Ok(c) => {
                    use_config(&c);
                    "config loaded"
                }
                Err(_) => "config refused",
            }
        }
        ConfigInput::Pipeline(text) => {
            let text = String::from_utf8_lossy(text);
            let file = world.join("cfg/pipelines/node.toml");
            match config::parse_pipeline(&file, &text, &[]) {
                Ok((p, _)) => {
                    use_pipeline(&p);
                    "pipeline parsed"
                }
                Err(_) => "pipeline refused",
            }
        }
        ConfigInput::Duration(text) => match config::parse_duration(text) {
            Ok(d) => {
                let gates = config::Gates {
                    max_lag: 2,
                    soak: d,
                    ready_timeout: d,
                };
                let _ = health::Soak::new(gates, Instant::now()).deadline();
                "duration parsed"
            }
            Err(_) => "duration refused",
        },
        ConfigInput::Schedule {
            text,
            tz,
            now,
            last,
        } => match text.parse::<Schedule>() {
            Ok(s) => {
                let tz: chrono_tz::Tz = tz.parse().unwrap();
                let _ = schedule::next_slot(&s.cron, tz, at(*now));
                let _ = schedule::due_slot(&s.cron, tz, at(*last), at(*now));
                "schedule parsed"
            }
            Err(_) => "schedule refused",
        },
    }
}

#[test]
fn fuzz_config() {
    let world = config_world();
    let mut fuzz = Fuzz::new("config");
    for input in regressions_config() {
        fuzz.one(&input, |i| config_case(world.path(), i));
    }
    fuzz.run(cases(), config_input(), |i| config_case(world.path(), i));
    fuzz.finish();
}

/// Inputs that once panicked (kept so they never do again): durations
/// whose seconds overflowed u64 (`n * 3600`), and one that parsed but made
/// a rollout's deadline (now + ready_timeout) overflow the clock.
fn regressions_config() -> Vec<ConfigInput> {
    let fleet = |soak: &str| {
        ConfigInput::Files {
        daemon: Bytes(
            format!(
                "pipelines_dir = \"pipelines\"\n[[fleet]]\nname = \"edge\"\npipeline = \"node\"\n\
                 channel = \"edge\"\nnodes = 1\n[fleet.gates]\nsoak = \"{soak}\"\nready_timeout = \"{soak}\"\n"
            )
            .into_bytes(),
        ),
        pipelines: vec![Bytes(
            b"name = \"node\"\nimplementation = \"bitcoind\"\n[upstream]\nurl = \"git://127.0.0.1/x.git\"\n\
              [signature]\npolicy = \"none\"\n[[channel]]\nname = \"edge\"\n"
                .to_vec(),
        )],
    }
    };
    vec![
        ConfigInput::Duration("5402640031841945913h".into()),
        ConfigInput::Duration("762291835898341907m".into()),
        ConfigInput::Duration("305056457822545815m".into()),
        ConfigInput::Duration("18446744073709551615s".into()),
        fleet("18446744073709551615s"),
        fleet("30s"),
    ]
}

// ---------------------------------------------------------------------------
// Webhooks: signature headers, events, payloads, repository URLs.

fn url_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(URLS).prop_map(String::from),
        3 => "(https?|git|ssh|file|HTTPS|)://([a-z0-9]{0,6}@)?[A-Za-z0-9.:\\[\\]-]{0,20}(/[A-Za-z0-9._~%@:-]{0,10}){0,4}(\\.git)?/{0,2}"
            .prop_map(String::from),
        2 => "[a-z@]{0,8}[a-z.]{0,10}:[A-Za-z/.]{0,16}(\\.git)?".prop_map(String::from),
        1 => ".{0,40}".prop_map(String::from),
    ]
    .boxed()
}

fn signature_header() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[0-9a-f]{64}".prop_map(|h| format!("sha256={h}")),
        2 => "[0-9a-f]{64}".prop_map(String::from),
        2 => "(sha256|sha1|SHA256|sha256 |)=?[0-9a-fA-F]{0,80}".prop_map(String::from),
        1 => "[ \t]{0,2}sha256=[0-9a-fA-Fé]{60,68}[ \t\r]{0,2}".prop_map(String::from),
        1 => ".{0,80}".prop_map(String::from),
    ]
    .boxed()
}

fn repository_object() -> BoxedStrategy<Value> {
    let url = || json_of(url_text().prop_map(Value::from).boxed());
    json_of(json_object(vec![
        (
            "full_name",
            json_str(&["bitcoin/bitcoin", "fixture/node", ""]),
        ),
        ("clone_url", url()),
        ("html_url", url()),
        ("git_url", url()),
        ("ssh_url", url()),
        ("url", url()),
        ("name", json_str(&["bitcoin"])),
        (
            "private",
            json_of(any::<bool>().prop_map(Value::from).boxed()),
        ),
    ]))
}

/// Payloads of the shapes GitHub, Gitea and generic senders send.
fn payload() -> BoxedStrategy<Value> {
    let hex = || json_of("[0-9a-f]{40}".prop_map(Value::from).boxed());
    let person = || {
        json_of(json_object(vec![
            ("login", json_str(&["octocat"])),
            ("email", json_str(&["dev@example.org"])),
            ("name", json_str(&["Dev"])),
        ]))
    };
    let github = json_object(vec![
        (
            "ref",
            json_str(&["refs/tags/v27.0", "refs/heads/master", ""]),
        ),
        ("before", hex()),
        ("after", hex()),
        (
            "created",
            json_of(any::<bool>().prop_map(Value::from).boxed()),
        ),
        ("ref_type", json_str(&["tag", "branch"])),
        ("repository", repository_object()),
        ("pusher", person()),
        ("sender", person()),
        (
            "commits",
            json_of(vec(json_value(), 0..3).prop_map(Value::Array).boxed()),
        ),
        ("zen", json_str(&["Keep it logically awesome."])),
        (
            "hook_id",
            json_of(any::<i64>().prop_map(Value::from).boxed()),
        ),
    ]);
    let gitea = json_object(vec![
        ("secret", json_str(&[""])),
        ("ref", json_str(&["refs/tags/v1.0.0"])),
        ("before", hex()),
        ("after", hex()),
        ("compare_url", json_str(&["http://gitea/x/compare"])),
        ("repository", repository_object()),
        ("pusher", person()),
    ]);
    prop_oneof![4 => github, 3 => gitea, 1 => json_value()].boxed()
}

#[derive(Debug, Clone)]
struct WebhookInput {
    header: String,
    event: Option<String>,
    secret: Bytes,
    body: Bytes,
    upstream: String,
    url: String,
}

fn webhook_input() -> impl Strategy<Value = WebhookInput> {
    (
        signature_header(),
        prop::option::of(prop_oneof![
            4 => select(&["push", "create", "release", "ping", "issues", "PUSH", ""][..]).prop_map(String::from),
            1 => ".{0,12}".prop_map(String::from),
        ]),
        bytes(80),
        json_bytes(payload()),
        url_text(),
        url_text(),
        any::<u8>(),
    )
        .prop_map(|(header, event, secret, body, upstream, url, choice)| {
            // A third of the time, the right signature.
            let header = if choice % 3 == 0 {
                format!("sha256={}", hooks::sign(&secret, &body))
            } else {
                header
            };
            // Half the time, the upstream the payload names.
            let upstream = match serde_json::from_slice::<Value>(&body) {
                Ok(v) if choice % 2 == 0 => hooks::repository_urls(&v)
                    .into_iter()
                    .next()
                    .unwrap_or(upstream),
                _ => upstream,
            };
            WebhookInput {
                header,
                event,
                secret,
                body,
                upstream,
                url,
            }
        })
}

fn webhook_case(i: &WebhookInput) -> &'static str {
    for provider in [Provider::Github, Provider::Gitea, Provider::Generic] {
        let mac = provider.parse_signature(&i.header);
        let mac = mac.as_deref().unwrap_or(i.header.as_bytes());
        let _ = hooks::signature_valid(&i.secret, &i.body, mac);
        let _ = hooks::action(provider, i.event.as_deref());
    }
    let _ = hooks::normalize_url(&i.url);
    let _ = hooks::normalize_url(&i.upstream);
    let signed = Provider::Github
        .parse_signature(&i.header)
        .is_some_and(|mac| hooks::signature_valid(&i.secret, &i.body, &mac));
    let Ok(payload) = serde_json::from_slice::<Value>(&i.body) else {
        return if signed {
            "signed, not JSON"
        } else {
            "not JSON"
        };
    };
    for u in hooks::repository_urls(&payload) {
        let _ = hooks::normalize_url(&u);
    }
    let _ = hooks::repository_name(&payload);
    match (signed, hooks::names_upstream(&payload, &i.upstream)) {
        (true, true) => "signed, names the upstream",
        (true, false) => "signed, another repository",
        (false, true) => "unsigned, names the upstream",
        (false, false) => "unsigned JSON",
    }
}

#[test]
fn fuzz_webhooks() {
    let mut fuzz = Fuzz::new("webhooks");
    fuzz.run(cases(), webhook_input(), webhook_case);
    fuzz.finish();
}

// ---------------------------------------------------------------------------
// Webhooks through a real habd: the handler's header and body reading.

#[derive(Debug, Clone)]
struct HookRequest {
    path: &'static str,
    headers: Vec<(&'static str, Bytes)>,
    body: Bytes,
    /// Signed with the secret, in the path's header.
    sign: bool,
    /// The event header, when signed.
    event: &'static str,
    /// The payload's repository is set to the pipeline's upstream.
    name_upstream: bool,
}

const HOOK_SECRET: &str = "a-webhook-secret-of-the-fuzz-pipeline";
/// Not there: a sync a delivery queues would fail at once (and the settle
/// time keeps it from running during the test anyway).
const UPSTREAM: &str = "file:///nonexistent/fuzz.git";

fn hook_request() -> impl Strategy<Value = HookRequest> {
    let header_value = prop_oneof![
        4 => ".{0,40}".prop_map(|s| Bytes(s.into_bytes())),
        1 => bytes(40),
        1 => "[0-9]{1,25}".prop_map(|s| Bytes(s.into_bytes())),
    ];
    let name = select(
        &[
            "x-github-event",
            "x-github-delivery",
            "x-hub-signature-256",
            "x-gitea-event",
            "x-gitea-delivery",
            "x-gitea-signature",
            "x-hab-signature-256",
            "x-hab-delivery",
            "content-type",
        ][..],
    );
    (
        select(
            &[
                "/hooks/github",
                "/hooks/gitea",
                "/hooks/generic/fuzz",
                "/hooks/generic/nope",
            ][..],
        ),
        vec((name, header_value), 0..6),
        json_bytes(payload()),
        prop::bool::weighted(0.75),
        select(&["push", "create", "release", "ping", "issues", ""][..]),
        any::<bool>(),
    )
        .prop_map(
            |(path, headers, body, sign, event, name_upstream)| HookRequest {
                path,
                headers,
                body,
                sign,
                event,
                name_upstream,
            },
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_webhook_http() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(dir.path().join("secret"), HOOK_SECRET).unwrap();
    std::fs::write(
        pipelines.join("fuzz.toml"),
        format!(
            "implementation = \"bitcoind\"\n[upstream]\nurl = \"{UPSTREAM}\"\n\
             [signature]\npolicy = \"none\"\n[webhook]\nsecret_file = \"../secret\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hab.toml"),
        "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
         [webhooks]\nmax_body_bytes = 4096\nsettle = \"10m\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&dir.path().join("hab.toml")), &Overrides::default()).unwrap();
    let habd = Habd::start_config(config).await;
    let http = client();
    let n = (cases() / 20).max(50);

    let mut fuzz = Fuzz::new("webhook-http");
    let strategy = hook_request();
    let mut unexpected = Vec::new();
    // A kept-alive connection the server closes (as it may after a refusal
    // that left the body unread, a 413) can be picked from the pool just
    // as it closes: such a request is sent again on a connection of its own.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for k in 0..n {
        let Ok(tree) = strategy.new_tree(&mut fuzz.runner) else {
            continue;
        };
        let mut r = tree.current();
        if r.name_upstream {
            if let Ok(Value::Object(mut payload)) = serde_json::from_slice::<Value>(&r.body) {
                payload.insert("repository".into(), json!({"clone_url": UPSTREAM}));
                r.body = Bytes(serde_json::to_vec(&payload).unwrap());
            }
        }
        if r.sign {
            let provider = match r.path {
                "/hooks/github" => Provider::Github,
                "/hooks/gitea" => Provider::Gitea,
                _ => Provider::Generic,
            };
            let sig = hooks::sign(HOOK_SECRET.as_bytes(), &r.body);
            let v = if provider == Provider::Gitea {
                sig
            } else {
                format!("sha256={sig}")
            };
            r.headers
                .push((provider.signature_header(), Bytes(v.into_bytes())));
            let delivery = Bytes(format!("d-{}-{k}", fuzz.seed).into_bytes());
            r.headers.push((provider.delivery_header(), delivery));
            if let Some(h) = provider.event_header() {
                r.headers.push((h, Bytes(r.event.as_bytes().to_vec())));
            }
        }
        let request = |c: &reqwest::Client| {
            let mut req = c
                .post(format!("{}{}", habd.url, r.path))
                .body(r.body.0.clone());
            for (name, value) in &r.headers {
                if let Ok(v) = reqwest::header::HeaderValue::from_bytes(value) {
                    req = req.header(*name, v);
                }
            }
            req
        };
        fuzz.inputs += 1;
        // A handler that panics is counted by the panic hook (habd runs in
        // this process) and drops the connection; one that fails answers
        // 500. Either counts as a panic, and so does no answer twice.
        let panics_before = OTHER_PANICS.load(std::sync::atomic::Ordering::SeqCst);
        let answer = match request(&http).send().await {
            Ok(resp) => Ok(resp),
            Err(_) => {
                *fuzz
                    .outcomes
                    .entry("connection closed, sent again")
                    .or_default() += 1;
                request(&fresh).send().await
            }
        };
        let panicked = OTHER_PANICS.load(std::sync::atomic::Ordering::SeqCst) - panics_before;
        if panicked > 0 {
            fuzz.panics += panicked;
            fuzz.examples
                .push(format!("habd panicked (above)\n  input: {r:?}"));
            continue;
        }
        match answer {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                let json_answer = serde_json::from_str::<Value>(&body).is_ok();
                let label = match status {
                    200 => "200 (pong, ignored, duplicate)",
                    202 => "202 queued",
                    400 => "400",
                    401 => "401",
                    404 => "404",
                    413 => "413",
                    _ => "other",
                };
                *fuzz.outcomes.entry(label).or_default() += 1;
                if status >= 500 {
                    fuzz.panics += 1;
                    fuzz.examples
                        .push(format!("HTTP {status} {body}\n  input: {r:?}"));
                } else if !json_answer || ![200, 202, 400, 401, 404, 413].contains(&status) {
                    unexpected.push(format!("HTTP {status} {body}\n  input: {r:?}"));
                }
            }
            Err(e) => {
                fuzz.panics += 1;
                fuzz.examples
                    .push(format!("no answer, twice: {e:?}\n  input: {r:?}"));
            }
        }
    }
    // habd still answers.
    let (s, _) = call(http.get(format!("{}/healthz", habd.url))).await;
    assert_eq!(s, 200);
    habd.stop().await;
    assert!(
        unexpected.is_empty(),
        "answers that are not a JSON refusal or acceptance:\n{}",
        unexpected[..unexpected.len().min(5)].join("\n")
    );
    fuzz.finish();
}

// ---------------------------------------------------------------------------
// Tag objects, OpenPGP keys and signatures.

/// CRC-24 of OpenPGP armor.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for b in data {
        crc ^= u32::from(*b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

fn armor(kind: &str, data: &[u8], with_crc: bool, width: usize) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = b64.encode(data);
    let mut out = format!("-----BEGIN PGP {kind}-----\n\n");
    for chunk in text.as_bytes().chunks(width.max(4)) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    if with_crc {
        out.push('=');
        out.push_str(&b64.encode(&crc24(data).to_be_bytes()[1..]));
        out.push('\n');
    }
    out.push_str(&format!("-----END PGP {kind}-----\n"));
    out.into_bytes()
}

/// The binary packets inside an armored block.
fn dearmor(armored: &str) -> Vec<u8> {
    let body: String = armored
        .lines()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .take_while(|l| !l.starts_with('=') && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("gpg armor")
}

/// Real material to mutate: a key made by GnuPG, tags it signed.
struct Material {
    _dir: tempfile::TempDir,
    keyring: Keyring,
    key_armored: Vec<u8>,
    key_binary: Vec<u8>,
    shipped_key: Vec<u8>,
    /// (payload, armored signature), signed by the key.
    tags: Vec<(String, String)>,
    sig_binary: Vec<u8>,
}

fn material() -> Material {
    let dir = tempfile::tempdir().unwrap();
    let gpg = Gpg::new(dir.path());
    let fpr = gpg.gen_key("fuzz", T2020_01_01);
    let key_armored = gpg.export(&fpr).into_bytes();
    let out = gpg.cmd(None).args(["--export", &fpr]).output().unwrap();
    assert!(out.status.success());
    let key_binary = out.stdout;
    let key_file = dir.path().join("fuzz.asc");
    std::fs::write(&key_file, &key_armored).unwrap();
    let keyring = Keyring::load(&key_file).unwrap();
    let mut tags = Vec::new();
    for (name, extra) in [
        ("v1.0.0", &[][..]),
        ("v2.0.0", &["--textmode"][..]),
        ("v3.0.0", &["--digest-algo", "SHA512"][..]),
    ] {
        let payload = format!(
            "object {}\ntype commit\ntag {name}\ntagger Upstream Dev <dev@example.org> 1580515200 +0000\n\nRelease {name}\n",
            "0123456789abcdef0123456789abcdef01234567"
        );
        let sig = gpg.sign_with(&fpr, payload.as_bytes(), T2020_02_01, extra);
        tags.push((payload, sig));
    }
    let sig_binary = dearmor(&tags[0].1);
    // A shipped key of another kind (RSA, several subkeys): bcoin's.
    let shipped_key =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/bcoin/pinheadmz.gpg"))
            .unwrap();
    // The material must verify as made, or the fuzzing reaches nothing deep.
    let (payload, sig) = &tags[0];
    assert!(
        matches!(
            keyring.verify_tag("refs/tags/v1.0.0", format!("{payload}{sig}").as_bytes()),
            signature::Verdict::Verified { .. }
        ),
        "the fuzz key must verify its own tag"
    );
    Material {
        _dir: dir,
        keyring,
        key_armored,
        key_binary,
        shipped_key,
        tags,
        sig_binary,
    }
}

#[derive(Debug, Clone)]
enum SigBlock {
    /// One of the real signatures, its armored text mangled.
    Armored(usize, Vec<Mutation>),
    /// A real signature's packets mangled, then armored again.
    Packets(usize, Vec<Mutation>, bool, usize),
    /// Random packets, armored.
    Random(Bytes, bool),
    /// Raw bytes after the payload (a binary signature, or garbage).
    Raw(Bytes),
    None,
}

#[derive(Debug, Clone)]
struct TagInput {
    /// Which real tag's payload to start from.
    base: usize,
    /// Header lines swapped in (key, value), or none.
    headers: Vec<(String, String)>,
    keep_header: bool,
    message: String,
    payload_mutations: Vec<Mutation>,
    sig: SigBlock,
    ref_name: String,
    now: i64,
}

#[derive(Debug, Clone)]
enum KeyFile {
    /// The fuzz key, armored, mangled.
    Armored(Vec<Mutation>),
    /// The fuzz key's packets mangled, then armored (or not).
    Packets(Vec<Mutation>, bool),
    /// The shipped RSA key's packets mangled.
    Shipped(Vec<Mutation>),
    /// Several blocks one after the other.
    Blocks(Vec<Mutation>, Vec<Mutation>),
    Random(Bytes, bool),
}

#[derive(Debug, Clone)]
enum VerifyInput {
    Tag(TagInput),
    Key(KeyFile),
}

fn tag_input() -> impl Strategy<Value = TagInput> {
    let header = (
        select(
            &[
                "object", "type", "tag", "tagger", "type", "tag", "encoding", "gpgsig", "",
            ][..],
        )
        .prop_map(String::from),
        prop_oneof![
            3 => select(&["commit", "tree", "blob", "tag", "v1.0.0", "v2.0.0", "", "commit "][..]).prop_map(String::from),
            1 => ".{0,20}".prop_map(String::from),
        ],
    );
    let sig = prop_oneof![
        3 => (0usize..3, prop_oneof![Just(Vec::new()), vec(mutation(), 1..3)]).prop_map(|(i, m)| SigBlock::Armored(i, m)),
        4 => (0usize..3, vec(mutation(), 1..3), any::<bool>(), prop_oneof![Just(64usize), Just(76), 4usize..200])
            .prop_map(|(i, m, crc, w)| SigBlock::Packets(i, m, crc, w)),
        1 => (bytes(300), any::<bool>()).prop_map(|(b, crc)| SigBlock::Random(b, crc)),
        1 => bytes(300).prop_map(SigBlock::Raw),
        1 => Just(SigBlock::None),
    ];
    (
        0usize..3,
        prop_oneof![3 => Just(Vec::new()), 1 => vec(header, 1..4)],
        prop::bool::weighted(0.8),
        prop_oneof![4 => Just(String::new()), 1 => ".{0,40}".prop_map(String::from)],
        prop_oneof![4 => Just(Vec::new()), 1 => vec(mutation(), 1..3)],
        sig,
        // None: the ref the base tag names.
        prop_oneof![
            4 => Just(None),
            1 => select(&["refs/tags/v1.0.0", "refs/tags/v2.0.0", "v1.0.0"][..]).prop_map(|r| Some(r.to_string())),
            1 => ".{0,20}".prop_map(Some),
        ],
        prop_oneof![3 => Just(1_700_000_000i64), 1 => any::<i64>()],
    )
        .prop_map(|(base, headers, keep_header, message, payload_mutations, sig, ref_name, now)| TagInput {
            base,
            headers,
            keep_header,
            message,
            payload_mutations,
            sig,
            ref_name: ref_name.unwrap_or_else(|| format!("refs/tags/v{}.0.0", base + 1)),
            now,
        })
}

fn key_file() -> impl Strategy<Value = KeyFile> {
    prop_oneof![
        2 => prop_oneof![Just(Vec::new()), vec(mutation(), 1..3)].prop_map(KeyFile::Armored),
        4 => (vec(mutation(), 1..3), any::<bool>()).prop_map(|(m, a)| KeyFile::Packets(m, a)),
        2 => vec(mutation(), 1..3).prop_map(KeyFile::Shipped),
        1 => (vec(mutation(), 0..2), vec(mutation(), 0..2)).prop_map(|(a, b)| KeyFile::Blocks(a, b)),
        1 => (bytes(400), any::<bool>()).prop_map(|(b, a)| KeyFile::Random(b, a)),
    ]
}

fn verify_input() -> impl Strategy<Value = VerifyInput> {
    prop_oneof![
        3 => tag_input().prop_map(VerifyInput::Tag),
        2 => key_file().prop_map(VerifyInput::Key),
    ]
}

fn tag_bytes(m: &Material, t: &TagInput) -> Vec<u8> {
    let (payload, _) = &m.tags[t.base];
    let mut lines: Vec<String> = Vec::new();
    let (head, body) = payload.split_once("\n\n").unwrap_or((payload, ""));
    if t.keep_header {
        lines.extend(head.lines().map(String::from));
    }
    for (k, v) in &t.headers {
        lines.push(format!("{k} {v}"));
    }
    let mut text = lines.join("\n");
    text.push_str("\n\n");
    text.push_str(if t.message.is_empty() {
        body
    } else {
        &t.message
    });
    let mut raw = if t.headers.is_empty() && t.keep_header && t.message.is_empty() {
        payload.clone().into_bytes()
    } else {
        text.into_bytes()
    };
    raw = apply(raw, &t.payload_mutations);
    let block = match &t.sig {
        SigBlock::Armored(i, muts) => apply(m.tags[*i].1.clone().into_bytes(), muts),
        SigBlock::Packets(i, muts, crc, width) => {
            let packets = if *i == 0 {
                m.sig_binary.clone()
            } else {
                dearmor(&m.tags[*i].1)
            };
            armor("SIGNATURE", &apply(packets, muts), *crc, *width)
        }
        SigBlock::Random(bytes, crc) => armor("SIGNATURE", bytes, *crc, 64),
        SigBlock::Raw(bytes) => bytes.0.clone(),
        SigBlock::None => Vec::new(),
    };
    raw.extend(block);
    raw
}

fn key_bytes(m: &Material, k: &KeyFile) -> Vec<u8> {
    match k {
        KeyFile::Armored(muts) => apply(m.key_armored.clone(), muts),
        KeyFile::Packets(muts, armored) => {
            let packets = apply(m.key_binary.clone(), muts);
            if *armored {
                armor("PUBLIC KEY BLOCK", &packets, true, 64)
            } else {
                packets
            }
        }
        KeyFile::Shipped(muts) => apply(m.shipped_key.clone(), muts),
        KeyFile::Blocks(a, b) => {
            let mut out = apply(m.key_armored.clone(), a);
            out.extend(apply(
                armor("PUBLIC KEY BLOCK", &m.shipped_key, false, 64),
                b,
            ));
            out
        }
        KeyFile::Random(bytes, armored) => {
            if *armored {
                armor("PUBLIC KEY BLOCK", bytes, true, 64)
            } else {
                bytes.0.clone()
            }
        }
    }
}

fn verify_case(m: &Material, file: &Path, input: &VerifyInput) -> &'static str {
    match input {
        VerifyInput::Tag(t) => {
            let raw = tag_bytes(m, t);
            let now = Utc.timestamp_opt(t.now, 0).single().unwrap_or_default();
            let verdict = m.keyring.verify_tag_at(&t.ref_name, &raw, now);
            let _ = m.keyring.verify_tag(&t.ref_name, &raw);
            let detached = signature::split_signed_tag(&raw).map(|(payload, sig)| {
                let _ = Keyring::empty().verify_detached(payload, sig);
                m.keyring.verify_detached(payload, sig)
            });
            // The tag's verdict, or, when the header refused it first, what
            // its signature alone came to.
            match (verdict.kind(), detached) {
                ("not_a_commit" | "tag_name_mismatch", Some(d)) => d.kind(),
                (kind, _) => kind,
            }
        }
        VerifyInput::Key(k) => {
            std::fs::write(file, key_bytes(m, k)).unwrap();
            let Ok(ring) = Keyring::load(file) else {
                return "key refused";
            };
            let _ = ring.fingerprints();
            // A key that loads is then used: every real tag against it.
            let mut verified = false;
            for (name, (payload, sig)) in ["v1.0.0", "v2.0.0", "v3.0.0"].iter().zip(&m.tags) {
                let raw = format!("{payload}{sig}");
                let v = ring.verify_tag(&format!("refs/tags/{name}"), raw.as_bytes());
                verified |= matches!(v, signature::Verdict::Verified { .. });
            }
            if verified {
                "key loaded, verifies"
            } else {
                "key loaded, verifies nothing"
            }
        }
    }
}

#[test]
fn fuzz_tags_keys_and_signatures() {
    let m = material();
    let file = m._dir.path().join("fuzzed.asc");
    let mut fuzz = Fuzz::new("tags-keys-signatures");
    fuzz.run(cases(), verify_input(), |i| verify_case(&m, &file, i));
    fuzz.finish();
}

// ---------------------------------------------------------------------------
// Registry: image indexes, manifests, image configs read back.

const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/json",
    "",
];

fn digest() -> BoxedStrategy<Value> {
    json_of(
        prop_oneof![
            4 => "sha256:[0-9a-f]{64}".prop_map(String::from),
            2 => "(sha256|sha512|SHA256|)[:@]?[0-9a-fA-F]{0,130}".prop_map(String::from),
            1 => "[a-z0-9+._-]{0,10}:[A-Za-z0-9=_./-]{0,80}".prop_map(String::from),
            1 => ".{0,30}".prop_map(String::from),
        ]
        .prop_map(Value::from)
        .boxed(),
    )
}

fn size() -> BoxedStrategy<Value> {
    json_of(
        prop_oneof![
            16 => (0i64..100_000).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
            1 => Just(json!(1e300)),
        ]
        .boxed(),
    )
}

fn descriptor() -> BoxedStrategy<Value> {
    json_of(json_object(vec![
        ("mediaType", json_str(MEDIA_TYPES)),
        ("digest", digest()),
        ("size", size()),
        (
            "annotations",
            json_of(
                btree_map(".{0,10}", ".{0,10}", 0..3)
                    .prop_map(|m| json!(m))
                    .boxed(),
            ),
        ),
    ]))
}

fn platform() -> BoxedStrategy<Value> {
    json_of(json_object(vec![
        ("os", json_str(&["linux", "windows", "", "unknown"])),
        (
            "architecture",
            json_str(&["amd64", "arm64", "arm", "riscv64", "unknown"]),
        ),
        ("variant", json_str(&["v8", "v7"])),
        ("os.version", json_str(&["10.0"])),
    ]))
}

fn index() -> BoxedStrategy<Value> {
    let entry = json_of(json_object(vec![
        ("mediaType", json_str(MEDIA_TYPES)),
        ("digest", digest()),
        ("size", size()),
        ("platform", platform()),
        (
            "annotations",
            json_of(
                btree_map(".{0,10}", ".{0,10}", 0..3)
                    .prop_map(|m| json!(m))
                    .boxed(),
            ),
        ),
    ]));
    json_object(vec![
        (
            "schemaVersion",
            json_of(select(&[2i64, 1, 3][..]).prop_map(Value::from).boxed()),
        ),
        ("mediaType", json_str(MEDIA_TYPES)),
        (
            "manifests",
            json_of(vec(entry, 0..5).prop_map(Value::Array).boxed()),
        ),
        (
            "annotations",
            json_of(
                btree_map(
                    prop_oneof![
                        select(
                            &[
                                "org.opencontainers.image.revision",
                                "org.opencontainers.image.source",
                                "dev.hab.build-key"
                            ][..]
                        )
                        .prop_map(String::from),
                        ".{0,12}".prop_map(String::from)
                    ],
                    ".{0,20}",
                    0..4,
                )
                .prop_map(|m| json!(m))
                .boxed(),
            ),
        ),
        ("subject", descriptor()),
    ])
}

fn manifest() -> BoxedStrategy<Value> {
    json_object(vec![
        (
            "schemaVersion",
            json_of(select(&[2i64, 1][..]).prop_map(Value::from).boxed()),
        ),
        ("mediaType", json_str(MEDIA_TYPES)),
        ("config", descriptor()),
        (
            "layers",
            json_of(vec(descriptor(), 0..5).prop_map(Value::Array).boxed()),
        ),
        (
            "annotations",
            json_of(
                btree_map(".{0,10}", ".{0,10}", 0..3)
                    .prop_map(|m| json!(m))
                    .boxed(),
            ),
        ),
    ])
}

fn image_config() -> BoxedStrategy<Value> {
    json_object(vec![
        ("os", json_str(&["linux", "windows", ""])),
        ("architecture", json_str(&["amd64", "arm64", "s390x"])),
        ("variant", json_str(&["v8"])),
        (
            "rootfs",
            json_of(json_object(vec![
                ("type", json_str(&["layers"])),
                (
                    "diff_ids",
                    json_of(vec(digest(), 0..3).prop_map(Value::Array).boxed()),
                ),
            ])),
        ),
        ("config", json_value()),
    ])
}

#[derive(Debug, Clone)]
struct RegistryInput {
    bytes: Bytes,
    platform: String,
}

fn registry_input() -> impl Strategy<Value = RegistryInput> {
    (
        prop_oneof![
            3 => json_bytes(index()),
            3 => json_bytes(manifest()),
            1 => json_bytes(image_config()),
        ],
        prop_oneof![4 => select(PLATFORMS).prop_map(String::from), 1 => ".{0,12}".prop_map(String::from)],
    )
        .prop_map(|(bytes, platform)| RegistryInput { bytes, platform })
}

fn registry_case(reg: &registry::Registry, i: &RegistryInput) -> &'static str {
    let mut reached = "none parses";
    if let Ok(index) = registry::parse_index(&i.bytes) {
        reached = "index";
        for p in hab::config::Platform::ALL
            .map(hab::config::Platform::as_str)
            .into_iter()
            .chain([i.platform.as_str()])
        {
            for m in index.entries_for(p) {
                let _ = reg.pinned("hab/fuzz", &m.digest);
                let _ = reg.pinned_for_nodes("hab/fuzz", &m.digest);
            }
        }
    }
    if let Ok(m) = registry::parse_manifest(&i.bytes) {
        reached = "manifest";
        for d in std::iter::once(&m.config).chain(&m.layers) {
            let _ = reg.pinned("hab/fuzz", &d.digest);
        }
    }
    if registry::parse_config_platform(&i.bytes).is_ok() {
        reached = "image config";
    }
    reached
}

#[test]
fn fuzz_registry_manifests_and_indexes() {
    let reg = registry::Registry::new(&Config::embedded_defaults().registry).unwrap();
    let mut fuzz = Fuzz::new("registry");
    fuzz.run(cases(), registry_input(), |i| registry_case(&reg, i));
    fuzz.finish();
}

// ---------------------------------------------------------------------------
// Node RPC: getblockchaininfo answers, then judged by the gates.

fn rpc_answer() -> BoxedStrategy<Value> {
    let height = || {
        json_of(
            prop_oneof![
                4 => (0u64..1_000_000).prop_map(Value::from),
                2 => any::<u64>().prop_map(Value::from),
                1 => Just(json!(u64::MAX)),
                1 => any::<i64>().prop_map(Value::from),
                1 => any::<f64>().prop_map(Value::from),
                1 => "[0-9]{1,25}".prop_map(Value::from),
            ]
            .boxed(),
        )
    };
    let result = json_of(json_object(vec![
        (
            "chain",
            json_str(&["main", "test", "testnet4", "signet", "regtest", ""]),
        ),
        ("blocks", height()),
        ("headers", height()),
        (
            "bestblockhash",
            json_of("[0-9a-f]{64}".prop_map(Value::from).boxed()),
        ),
        (
            "initialblockdownload",
            json_of(any::<bool>().prop_map(Value::from).boxed()),
        ),
        (
            "verificationprogress",
            json_of(any::<f64>().prop_map(Value::from).boxed()),
        ),
        ("warnings", json_value()),
    ]));
    let error = prop_oneof![
        6 => Just(Value::Null),
        2 => json_object(vec![
            ("code", json_of(select(&[-28i64, -1, -32601, i64::MIN][..]).prop_map(Value::from).boxed())),
            ("message", json_str(&["Loading block index…", "Verifying blocks…", ""])),
        ]),
        1 => json_value(),
    ];
    json_object(vec![
        ("result", result),
        ("error", error.boxed()),
        ("id", json_str(&["hab", ""])),
    ])
}

#[derive(Debug, Clone)]
struct RpcInput {
    body: Bytes,
    peers: Vec<(bool, u64, bool)>,
    max_lag: u64,
}

fn rpc_input() -> impl Strategy<Value = RpcInput> {
    (
        json_bytes(rpc_answer()),
        vec(
            (
                any::<bool>(),
                prop_oneof![2 => 0u64..1_000_000, 1 => any::<u64>()],
                any::<bool>(),
            ),
            0..4,
        ),
        // From hab.toml: a TOML integer, at most i64::MAX.
        prop_oneof![3 => 0u64..10, 1 => 0u64..=i64::MAX as u64],
    )
        .prop_map(|(body, peers, max_lag)| RpcInput {
            body,
            peers,
            max_lag,
        })
}

fn rpc_case(i: &RpcInput) -> &'static str {
    let parsed = health::parse_blockchain_info(&i.body);
    let reached = match &parsed {
        Ok(_) => "chain info",
        Err(health::AnswerError::NotJson(_)) => "not JSON",
        Err(health::AnswerError::Rpc { .. }) => "RPC error",
        Err(health::AnswerError::Unexpected(_)) => "unexpected answer",
    };
    let rpc = parsed.map_err(|e| e.to_string());
    let node = Observation { running: true, rpc };
    let peers: Vec<Observation> = i
        .peers
        .iter()
        .map(|(running, blocks, ibd)| Observation {
            running: *running,
            rpc: Ok(ChainInfo {
                chain: "regtest".into(),
                blocks: *blocks,
                headers: *blocks,
                initialblockdownload: *ibd,
            }),
        })
        .collect();
    let best = health::best_tip(peers.iter().chain([&node]));
    let _ = health::judge(&node, best, i.max_lag);
    let _ = health::judge(&node, Some(u64::MAX), i.max_lag);
    reached
}

#[test]
fn fuzz_node_rpc_answers() {
    let mut fuzz = Fuzz::new("node-rpc");
    // Once a panic: a node claiming the highest height there is, judged
    // against a peer's tip (blocks + max_lag overflowed).
    let claims_max = RpcInput {
        body: Bytes(
            br#"{"result":{"chain":"regtest","blocks":18446744073709551615,"headers":1,"initialblockdownload":false},"error":null,"id":"hab"}"#
                .to_vec(),
        ),
        peers: vec![(true, 100, false)],
        max_lag: 2,
    };
    fuzz.one(&claims_max, rpc_case);
    fuzz.run(cases(), rpc_input(), rpc_case);
    fuzz.finish();
}
