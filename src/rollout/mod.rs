//! Rollouts: fleets follow channels; when a channel moves, every fleet that
//! follows it is rolled to the new image, one node at a time, behind the
//! health gates. See [`plan`] for the decisions and [`docker`] for the
//! Docker target.

pub mod docker;
pub mod plan;
