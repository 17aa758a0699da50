//! Builds in tests: a world with signed and unsigned releases, hab.toml and
//! pipeline files for it, recipes, and helpers to drive builds over the API.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use hab::{
    config::{Config, Overrides},
    store::BuildState,
};
use serde_json::Value;

use super::*;

pub const BOTH: &str = r#"["linux/amd64", "linux/arm64"]"#;
pub const AMD64: &str = r#"["linux/amd64"]"#;

/// The fixture node's recipe.
pub fn fixture_recipe() -> PathBuf {
    repo_root().join("dockerfiles/fixture")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn docker(args: &[&str]) -> String {
    run(Command::new("/usr/bin/docker").args(args))
}

/// A world with a signed `v1.0.0`, an unsigned `v2.0.0-unsigned`, and the
/// `node` pipeline building `recipe` for `platforms` into `repository`.
pub struct BuildWorld {
    pub world: World,
    pub commit: String,
    pub fpr: String,
}

impl BuildWorld {
    pub fn new() -> Self {
        require_docker();
        for arch in ["amd64", "arm64"] {
            let base = repo_root().join(format!("dockerfiles/fixture/base/busybox-{arch}"));
            assert!(
                base.is_file(),
                "{} is missing: run `bash scripts/setup.sh` (it takes it from Debian's busybox-static:{arch})",
                base.display()
            );
        }
        let (world, fpr, commit) = World::with_release();
        let c2 = world.upstream.commit("candidate 2");
        world.upstream.unsigned_tag("v2.0.0-unsigned", &c2);
        BuildWorld { world, commit, fpr }
    }

    /// Also signed upstream: `v1.1.0` (a healthy node), `v1.2.0` (a node
    /// that never becomes healthy) and `v1.3.0` (a node 5 blocks behind).
    pub fn with_node_releases() -> Self {
        let bw = BuildWorld::new();
        let up = &bw.world.upstream;
        for (tag, conf) in [
            ("v1.1.0", "behaviour=healthy\n"),
            ("v1.2.0", "behaviour=never-healthy\n"),
            ("v1.3.0", "behaviour=lagging\nlag=5\n"),
        ] {
            up.write("node.conf", conf);
            let c = up.commit(tag);
            up.signed_tag(&bw.world.gpg, &bw.fpr, tag, &c, T2020_02_01);
        }
        bw
    }

    /// Writes hab.toml and pipelines/node.toml; loads them.
    pub fn config(
        &self,
        registry_url: &str,
        credentials: Option<(&str, &str)>,
        recipe: &Path,
        platforms: &str,
    ) -> Config {
        self.write_hab(registry_url, credentials);
        self.write_pipeline(
            "node",
            recipe,
            platforms,
            r#"["fixture-node", "--version"]"#,
            "",
        );
        self.load()
    }

    /// habd for the `node` pipeline building `recipe`, synced.
    pub async fn habd(&self, registry_url: &str, recipe: &Path, platforms: &str) -> Habd {
        let habd = Habd::start_config(self.config(registry_url, None, recipe, platforms)).await;
        habd.sync_node().await;
        habd
    }

    pub fn load(&self) -> Config {
        Config::load(Some(&self.world.path("hab.toml")), &Overrides::default()).unwrap()
    }

    pub fn write_hab(&self, registry_url: &str, credentials: Option<(&str, &str)>) {
        let w = &self.world;
        let mut hab = format!(
            "state_dir = \"state\"\npipelines_dir = \"pipelines\"\n\
             [registry]\nurl = \"{registry_url}\"\n"
        );
        if let Some((user, pass)) = credentials {
            std::fs::write(w.path("registry-password"), format!("{pass}\n")).unwrap();
            hab.push_str(&format!(
                "username = \"{user}\"\npassword_file = \"registry-password\"\n"
            ));
        }
        hab.push_str(
            "[[builder]]\nname = \"local\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\nemulated = [\"linux/arm64\"]\n",
        );
        std::fs::write(w.path("hab.toml"), hab).unwrap();
    }

    /// `pipelines/<name>.toml` over the world's upstream, into `hab/<name>`.
    pub fn write_pipeline(
        &self,
        name: &str,
        recipe: &Path,
        platforms: &str,
        smoke: &str,
        extra: &str,
    ) {
        let w = &self.world;
        std::fs::create_dir_all(w.path("pipelines")).unwrap();
        std::fs::write(
            w.path(&format!("pipelines/{name}.toml")),
            format!(
                "implementation = \"bitcoind\"\n\
                 [upstream]\nurl = \"{url}\"\n\
                 [refs]\ntrack = [\"refs/tags/v*\"]\n\
                 [signature]\npolicy = \"signed\"\nkeyring = \"../keys\"\n\
                 [build]\nrecipe = \"{recipe}\"\nplatforms = {platforms}\n\
                 smoke = {smoke}\n{extra}\
                 [image]\nrepository = \"hab/{name}\"\n",
                url = w.daemon.url("node.git"),
                recipe = recipe.display(),
            ),
        )
        .unwrap();
    }

    /// An amd64 recipe whose one step runs `script` with busybox's sh.
    pub fn shell_recipe(&self, name: &str, script: &str) -> PathBuf {
        self.recipe(
            name,
            &format!(
                "FROM scratch\nCOPY base/busybox-amd64 /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"sh\", \"-c\", {}]\n",
                serde_json::Value::String(script.into())
            ),
        )
    }

    /// A recipe folder with the static busybox of each platform in base/.
    pub fn recipe(&self, name: &str, dockerfile: &str) -> PathBuf {
        let recipe = self.world.path(&format!("recipes/{name}"));
        std::fs::create_dir_all(recipe.join("base")).unwrap();
        for arch in ["amd64", "arm64"] {
            std::fs::copy(
                repo_root().join(format!("dockerfiles/fixture/base/busybox-{arch}")),
                recipe.join(format!("base/busybox-{arch}")),
            )
            .unwrap();
        }
        std::fs::write(recipe.join("Dockerfile"), dockerfile).unwrap();
        recipe
    }
}

/// Polls a build until it ends.
pub async fn wait_build(habd: &Habd, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (s, b) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}"))).await;
        assert_eq!(s, 200, "{b}");
        let state: BuildState = serde_json::from_value(b["state"].clone()).unwrap();
        if state.is_final() {
            return b;
        }
        assert!(Instant::now() < deadline, "build {id} still {state:?}: {b}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn start_build(habd: &Habd, r: &str) -> (u16, Value) {
    call(
        habd.api(reqwest::Method::POST, "/pipelines/node/builds")
            .json(&serde_json::json!({ "ref": r })),
    )
    .await
}

pub async fn logs(habd: &Habd, id: i64) -> String {
    let (_, page) = call(habd.api(reqwest::Method::GET, &format!("/builds/{id}/logs"))).await;
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn habctl(habd: &Habd) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_habctl"));
    c.env("HAB_SERVER", &habd.url)
        .env("HAB_TOKEN", TOKEN)
        .env_remove("HAB_TOKEN_FILE");
    c
}

/// Builds `tag` of `pipeline` and waits until it is VERIFIED.
pub async fn build_of(habd: &Habd, pipeline: &str, tag: &str) -> Value {
    let (s, b) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/builds"),
        )
        .json(&serde_json::json!({ "ref": tag })),
    )
    .await;
    assert!(s == 202 || s == 200, "{b}");
    let b = wait_build(habd, b["id"].as_i64().unwrap()).await;
    assert_eq!(b["state"], "verified", "{b}");
    b
}

/// Promotes `build` to `stable` and waits for the rollout it queues to end.
pub async fn promote_and_wait(habd: &Habd, build: &Value) -> Value {
    let pipeline = build["pipeline"].as_str().unwrap();
    let (s, p) = call(
        habd.api(
            reqwest::Method::POST,
            &format!("/pipelines/{pipeline}/promote"),
        )
        .json(&serde_json::json!({ "target": build["id"].to_string(), "channel": "stable", "by": "test" })),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let id = p["rollouts"][0]["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let (_, r) = call(habd.api(reqwest::Method::GET, &format!("/rollouts/{id}"))).await;
        if ["succeeded", "failed"].contains(&r["state"].as_str().unwrap_or("")) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "rollout stuck: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
