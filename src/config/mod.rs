//! Configuration: the daemon file `hab.toml` and one file per pipeline.
//!
//! Files are TOML, read into raw structs with `deny_unknown_fields`, then
//! validated into domain types (a socket address, a glob set, a cron schedule,
//! a platform, a loaded keyring). Every problem becomes a [`Diagnostic`] that
//! names the file, line, column and field, and all of them are reported at
//! once, so an operator fixes a config in one pass.
//!
//! By concern: `diagnostics` (where a problem is, and all of them at once),
//! `daemon` (`hab.toml`, [`Config`]), `pipeline` (a pipeline file,
//! [`Pipeline`]), `fleets` (`[[fleet]]` in `hab.toml`) and `platform` (the
//! platforms hab builds for). Their public items are re-exported here.

use std::path::{Path, PathBuf};

use toml::Spanned;

mod daemon;
mod diagnostics;
mod fleets;
mod gateway;
mod pipeline;
mod platform;
mod registry;

pub use daemon::{
    ApiConfig, BuilderConfig, Config, Overrides, RegistryConfig, TargetConfig, TargetKind,
    WebhookConfig, DEFAULT_LISTEN, DEFAULT_PIPELINES_DIR, DEFAULT_RECIPES_DIR,
    DEFAULT_REGISTRY_TIMEOUT, DEFAULT_STATE_DIR,
};
pub use diagnostics::{ConfigError, Diagnostic};
pub use fleets::{parse_duration, FleetConfig, Gates, MAX_DURATION};
pub use gateway::{GatewayConfig, DRAIN_ANNOTATION};
pub use pipeline::{
    load_pipelines, parse_pipeline, BuildRecipe, Channel, Implementation, Pipeline, RefFilter,
    Schedule, Secret, SignaturePolicy, DEFAULT_UPSTREAM_TIMEOUT,
};
pub use platform::{Platform, UnknownPlatform};

use diagnostics::{read_source, Source};

/// `p`, relative to `base` (the folder of the file that names it) unless
/// absolute.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A timeout for talking to an outside system: a duration from 1s to 1h.
/// Shorter would cut off healthy peers on a busy link; longer is no bound.
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(3600) {
        return Err(format!("{s:?}: between 1s and 1h"));
    }
    Ok(d)
}

/// Each platform of `list`, a problem in `field` for each unknown one.
fn parse_platforms(src: &mut Source<'_>, list: &[Spanned<String>], field: &str) -> Vec<Platform> {
    list.iter()
        .filter_map(|p| match p.get_ref().parse::<Platform>() {
            Ok(p) => Some(p),
            Err(e) => {
                src.error(p.span(), field, e.to_string());
                None
            }
        })
        .collect()
}
