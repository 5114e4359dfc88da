//! The controller runtime: a [`Controller`] turns watch events into calls of a reconcile
//! function, one key at a time per object, with bounded concurrency, requeues, exponential
//! backoff on errors, and graceful shutdown.
//!
//! The pieces: `queue` and `backoff` decide what runs when, and `triggers` maps watch events
//! to keys — pure code over data, tested without a runtime; `applier` is the async shell that
//! runs reconciles as owned tasks; [`Controller`] wires watches, a cache and the shell
//! together. `tests` specifies the whole on scripted event streams and a paused clock.

mod action;
mod applier;
mod backoff;
mod config;
mod controller;
mod error;
mod queue;
mod triggers;

#[cfg(test)]
mod tests;

pub use action::Action;
pub use applier::Outcome;
pub use backoff::Backoff;
pub use config::Config;
pub use controller::Controller;
pub use error::ReconcileError;
pub use triggers::owner_keys;
