//! `habd check`: every problem as `file:line:col: field: message`, exit status 2.

use std::{path::Path, process::Command};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/keys/btcd");

fn good_pipeline(name: &str) -> String {
    format!(
        "name = \"{name}\"
implementation = \"btcd\"

[upstream]
url = \"https://github.com/btcsuite/btcd.git\"

[refs]
track = [\"refs/tags/v*\"]

[signature]
policy = \"signed\"
keyring = \"{KEYS}\"

[build]
recipe = \"btcd\"
platforms = [\"linux/amd64\", \"linux/arm64\"]

[schedule]
sync = \"*/30 * * * *\"
"
    )
}

/// Writes hab.toml and pipeline files into a temp folder and runs `habd check`.
fn check(hab_toml: &str, pipelines: &[(&str, &str)]) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    for (file, text) in pipelines {
        std::fs::write(dir.path().join("pipelines").join(file), text).unwrap();
    }
    let config = dir.path().join("hab.toml");
    std::fs::write(
        &config,
        format!("pipelines_dir = \"pipelines\"\n{hab_toml}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("HAB_PIPELINES_DIR")
        .env_remove("HAB_STATE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr, dir)
}

/// Asserts one diagnostic line `<file>:<line>:<col>: <field>: <message containing needle>`.
fn assert_diag(stderr: &str, dir: &Path, file: &str, line: usize, field: &str, needle: &str) {
    let prefix = format!("{}:{line}:", dir.join(file).display());
    let found = stderr.lines().any(|l| {
        l.starts_with(&prefix) && l.split(": ").nth(1) == Some(field) && l.contains(needle)
    });
    assert!(
        found,
        "no diagnostic {prefix}…: {field}: …{needle}… in:\n{stderr}"
    );
}

/// Checks the good `btcd` pipeline with `from` replaced by `to`, and asserts
/// exit 2 and the one diagnostic at `line` on `field` mentioning `needle`.
fn expect_pipeline_problem(from: &str, to: &str, line: usize, field: &str, needle: &str) {
    let text = good_pipeline("btcd").replace(from, to);
    assert_ne!(
        text,
        good_pipeline("btcd"),
        "{from:?} not in the good pipeline"
    );
    let (code, stderr, d) = check("", &[("btcd.toml", &text)]);
    assert_eq!(code, 2, "{stderr}");
    assert_diag(
        &stderr,
        d.path(),
        "pipelines/btcd.toml",
        line,
        field,
        needle,
    );
}

/// Checks `hab_toml` (with no pipelines) and asserts exit 2 and the
/// diagnostic in hab.toml at `line` on `field` mentioning `needle`.
fn expect_daemon_problem(hab_toml: &str, line: usize, field: &str, needle: &str) {
    let (code, stderr, d) = check(hab_toml, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_diag(&stderr, d.path(), "hab.toml", line, field, needle);
}

#[test]
fn good_config_passes() {
    let (code, stderr, _d) = check("", &[("btcd.toml", &good_pipeline("btcd"))]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn shipped_example_and_pipelines_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_habd"))
        .args(["check", "--config", &format!("{root}/examples/hab.toml")])
        .env_remove("HAB_PIPELINES_DIR")
        .env_remove("HAB_STATE_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("4 pipelines: bcoin, bitcoind, btcd, hab"),
        "{stdout}"
    );
}

#[test]
fn unknown_field_in_pipeline() {
    expect_pipeline_problem(
        "[refs]\n",
        "[refs]\ntrak = [\"x\"]\n",
        8,
        "refs.trak",
        "unknown field `trak`",
    );
}

#[test]
fn unknown_field_in_daemon_file() {
    expect_daemon_problem(
        "[registry]\nurl = \"http://127.0.0.1:5000\"\nusr = \"x\"\n",
        4,
        "registry.usr",
        "unknown field `usr`",
    );
}

#[test]
fn bad_glob() {
    expect_pipeline_problem(
        "\"refs/tags/v*\"]",
        "\"refs/tags/[v*\"]",
        8,
        "refs.track",
        "bad glob",
    );
}

#[test]
fn bad_cron_expression() {
    expect_pipeline_problem(
        "*/30 * * * *",
        "*/30 * * *",
        19,
        "schedule.sync",
        "5-field cron",
    );
    expect_pipeline_problem(
        "*/30 * * * *",
        "75 * * * *",
        19,
        "schedule.sync",
        "bad cron expression",
    );
}

#[test]
fn unknown_platform() {
    expect_pipeline_problem(
        "\"linux/arm64\"]",
        "\"linux/riscv64\"]",
        16,
        "build.platforms",
        "unknown platform \"linux/riscv64\"",
    );
    expect_daemon_problem(
        "[[builder]]\nname = \"b\"\nendpoint = \"unix:///var/run/docker.sock\"\nplatforms = [\"linux/s390x\"]\n",
        5,
        "builder[0].platforms",
        "unknown platform",
    );
}

#[test]
fn platform_without_builder() {
    let (code, stderr, d) = check(
        "[[builder]]\nname = \"b\"\nendpoint = \"unix:///var/run/docker.sock\"\nplatforms = [\"linux/amd64\"]\n",
        &[("btcd.toml", &good_pipeline("btcd"))],
    );
    assert_eq!(code, 2);
    assert_diag(
        &stderr,
        d.path(),
        "pipelines/btcd.toml",
        16,
        "build.platforms",
        "no [[builder]] in hab.toml builds linux/arm64",
    );
}

#[test]
fn missing_keyring_file() {
    expect_pipeline_problem(
        KEYS,
        "keys/nowhere.asc",
        12,
        "signature.keyring",
        "does not exist",
    );
}

#[test]
fn duplicate_pipeline_name() {
    let (code, stderr, d) = check(
        "",
        &[
            ("a.toml", &good_pipeline("btcd")),
            ("b.toml", &good_pipeline("btcd")),
        ],
    );
    assert_eq!(code, 2);
    assert_diag(
        &stderr,
        d.path(),
        "pipelines/b.toml",
        1,
        "name",
        "duplicate pipeline name \"btcd\"",
    );
}

#[test]
fn invalid_registry_url() {
    expect_daemon_problem(
        "[registry]\nurl = \"127.0.0.1:5000\"\n",
        3,
        "registry.url",
        "is not a URL",
    );
    expect_daemon_problem(
        "[registry]\nurl = \"ftp://registry.local\"\n",
        3,
        "registry.url",
        "registry URL starts with http",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = good_pipeline("btcd")
        .replace("*/30 * * * *", "nope")
        .replace("\"linux/arm64\"]", "\"linux/mips\"]");
    let (code, stderr, _d) = check("", &[("btcd.toml", &text)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("2 problems found"), "{stderr}");
}

#[test]
fn fleets_name_a_pipeline_a_target_and_a_declared_channel() {
    let pipeline = format!(
        "{}[[channel]]\nname = \"edge\"\nauto = true\n",
        good_pipeline("btcd")
    );
    let fleet = |body: &str| format!("[[fleet]]\nname = \"core\"\n{body}");
    // Good.
    let (code, stderr, _d) = check(
        &fleet(
            "pipeline = \"btcd\"\nchannel = \"edge\"\nnodes = 2\n[fleet.gates]\nsoak = \"10s\"\n",
        ),
        &[("btcd.toml", &pipeline)],
    );
    assert_eq!(code, 0, "{stderr}");
    // Cross references, reported at the fleet's pipeline line.
    for (body, field, needle) in [
        (
            "pipeline = \"nope\"\nchannel = \"edge\"\nnodes = 2\n",
            "fleet[0].pipeline",
            "no pipeline named \"nope\"",
        ),
        (
            "pipeline = \"btcd\"\nchannel = \"stable\"\nnodes = 2\n",
            "fleet[0].channel",
            "declares no channel \"stable\"",
        ),
        (
            "pipeline = \"btcd\"\nchannel = \"edge\"\ntarget = \"moon\"\nnodes = 2\n",
            "fleet[0].target",
            "no [[target]] named \"moon\"",
        ),
    ] {
        let (code, stderr, d) = check(&fleet(body), &[("btcd.toml", &pipeline)]);
        assert_eq!(code, 2, "{stderr}");
        assert_diag(&stderr, d.path(), "hab.toml", 4, field, needle);
    }
    // Values, at their own line.
    let (code, stderr, d) = check(
        &fleet("pipeline = \"btcd\"\nchannel = \"edge\"\nnodes = 0\n[fleet.gates]\nsoak = \"ten seconds\"\n"),
        &[("btcd.toml", &pipeline)],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_diag(
        &stderr,
        d.path(),
        "hab.toml",
        6,
        "fleet[0].nodes",
        "1 to 1000 nodes",
    );
    assert_diag(
        &stderr,
        d.path(),
        "hab.toml",
        8,
        "fleet[0].gates.soak",
        "not a duration",
    );
}

#[test]
fn webhook_secrets_and_intake_limits_are_checked() {
    // A secret file that does not exist.
    expect_pipeline_problem(
        "[schedule]\n",
        "[webhook]\nsecret_file = \"no-such-secret\"\n\n[schedule]\n",
        19,
        "webhook.secret_file",
        "cannot read",
    );
    // One too short to resist guessing.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "hunter2\n").unwrap();
    expect_pipeline_problem(
        "[schedule]\n",
        &format!(
            "[webhook]\nsecret_file = \"{}\"\n\n[schedule]\n",
            short.display()
        ),
        19,
        "webhook.secret_file",
        "at least 16",
    );
    expect_daemon_problem(
        "[webhooks]\nsettle = \"soon\"\n",
        3,
        "webhooks.settle",
        "soon",
    );
    expect_daemon_problem(
        "[webhooks]\nmax_body_bytes = 10\n",
        3,
        "webhooks.max_body_bytes",
        "at least 1024",
    );
}

#[test]
fn timeouts_must_be_durations_between_a_second_and_an_hour() {
    expect_pipeline_problem(
        "git\"\n",
        "git\"\ntimeout = \"forever\"\n",
        6,
        "upstream.timeout",
        "is not a duration",
    );
    expect_pipeline_problem(
        "git\"\n",
        "git\"\ntimeout = \"2h\"\n",
        6,
        "upstream.timeout",
        "between 1s and 1h",
    );
    expect_daemon_problem(
        "[registry]\nurl = \"http://127.0.0.1:5000\"\ntimeout = \"100ms\"\n",
        4,
        "registry.timeout",
        "between 1s and 1h",
    );
    let good = good_pipeline("btcd").replace("git\"\n", "git\"\ntimeout = \"30s\"\n");
    let (code, stderr, _d) = check(
        "[registry]\nurl = \"http://127.0.0.1:5000\"\ntimeout = \"2m\"\n",
        &[("btcd.toml", &good)],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_front_doors_users_fleets_and_limits_are_checked() {
    let user = hab::gateway::access::User::rpcauth("reader", "5a17", "pw");
    expect_daemon_problem(
        &format!("[gateway]\nlisten = \"somewhere\"\n[[gateway.user]]\nrpcauth = \"{user}\"\n"),
        3,
        "gateway.listen",
        "not host:port",
    );
    expect_daemon_problem(
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:8332\"\nfleets = [\"nope\"]\n[[gateway.user]]\nrpcauth = \"{user}\"\n"
        ),
        4,
        "gateway.fleets",
        "no fleet \"nope\"",
    );
    expect_daemon_problem(
        "[gateway]\nlisten = \"127.0.0.1:8332\"\n[[gateway.user]]\nrpcauth = \"reader:hunter2\"\n",
        5,
        "gateway.user[0].rpcauth",
        "not an rpcauth line",
    );
    expect_daemon_problem(
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:8332\"\n[[gateway.user]]\nrpcauth = \"{user}\"\nallow = [\"stop\"]\n"
        ),
        6,
        "gateway.user[0].allow",
        "\"stop\" is not a call the front door forwards",
    );
    expect_daemon_problem(
        "[gateway]\nlisten = \"127.0.0.1:8332\"\n",
        3,
        "gateway.user",
        "at least one [[gateway.user]]",
    );
    for (line, field, says) in [
        (
            "run = \"sideways\"",
            "gateway.run",
            "\"habd\" (habd serve runs it) or \"apart\"",
        ),
        ("drain_wait = \"soon\"", "gateway.drain_wait", "soon"),
        ("drain_wait = \"1h\"", "gateway.drain_wait", "at most 5m"),
        (
            "max_calls_per_second = 0",
            "gateway.max_calls_per_second",
            "at least 1",
        ),
    ] {
        expect_daemon_problem(
            &format!("[gateway]\nlisten = \"127.0.0.1:8332\"\n{line}\n[[gateway.user]]\nrpcauth = \"{user}\"\n"),
            4,
            field,
            says,
        );
    }
}

#[test]
fn a_signing_key_file_that_is_not_there_is_named() {
    let (code, stderr, dir) = check("signing_key_file = \"keys/habd.key\"\n", &[]);
    assert_eq!(code, 2, "{stderr}");
    assert_diag(
        &stderr,
        dir.path(),
        "hab.toml",
        2,
        "signing_key_file",
        "does not exist",
    );
}
