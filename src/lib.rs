//! hab: keeps a fleet of Bitcoin full nodes highly available and current,
//! built only from upstream sources whose signatures it verified.
//!
//! The modules follow the flow of a release (the README's Architecture
//! section draws it):
//!
//! 1. Triggers: [`schedule`] (cron), [`hooks`] (signed webhooks, behind
//!    `server::hooks`), habctl through [`server`], habd's start: all enter
//!    the [`queue`] through its one writer, `queue::Intake`.
//! 2. A sync ([`sync`]): [`mirror`] (git) fetches, [`refplan`] (pure) says
//!    what changed, [`signature`] (OpenPGP) judges each change against the
//!    pinned keys, [`store`] (SQLite) records it in one transaction.
//!    [`refname`] reads operators' short ref names, for every caller.
//! 3. A build ([`builder`]): plans and build keys (`builder::plan`, pure),
//!    BuildKit through the Docker API (`builder::engine`), the [`registry`]
//!    (moves bytes), the read-back checks ([`readback`], pure), smoke runs:
//!    VERIFIED.
//! 4. The one door ([`promotion`]): a verified build advances the automatic
//!    channels, an operator promotes; both through
//!    `promotion::Promotions::promote`, with the same guards ([`channel`]
//!    holds the policy), queueing the rollouts of the fleets that follow.
//! 5. A rollout ([`rollout`]): one node at a time, gated by [`health`].
//!
//! Around them: [`config`] (files, diagnostics, fleets, platforms),
//! [`api`] (wire types of the HTTP API), [`client`] (habctl's HTTP client and
//! printers), [`prune`], [`secrets`].

#![deny(unsafe_code)]

pub mod api;
pub mod builder;
pub mod channel;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod gateway;
pub mod health;
pub mod hooks;
pub mod mirror;
pub mod offload;
pub mod promotion;
pub mod provenance;
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
pub mod tls;
