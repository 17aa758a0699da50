//! hab: keeps a fleet of Bitcoin full nodes highly available and current,
//! built only from upstream sources whose signatures it verified.
//!
//! The modules follow the flow of a release (see the README):
//! [`schedule`] (cron), [`hooks`] (signed webhooks) and habctl feed the
//! [`queue`] → [`config`] → [`mirror`] (git) → [`verify`] (OpenPGP) →
//! [`refplan`] (what changed, pure) → [`store`] (SQLite) → [`sync`] (one
//! sync, end to end) → [`build`] (BuildKit via the Docker API, plans in
//! `build::plan`) → [`registry`] (OCI distribution: moves bytes) →
//! [`readback`] (is what the registry holds what was pushed, pure checks) →
//! [`channel`] (promote, automatic channels) → [`rollout`] (fleets, one node
//! at a time, gated by [`health`]) → [`server`] (HTTP API, webhooks, git
//! over HTTP, its wire types in [`api`]) ← [`client`]
//! (habctl).

#![deny(unsafe_code)]

pub mod api;
pub mod builder;
pub mod channel;
pub mod client;
pub mod config;
pub mod health;
pub mod hooks;
pub mod mirror;
pub mod promotion;
pub mod prune;
pub mod queue;
pub mod readback;
pub mod refname;
pub mod refplan;
pub mod registry;
pub mod rollout;
pub mod schedule;
pub mod secrets;
pub mod server;
pub mod signature;
pub mod store;
pub mod sync;
