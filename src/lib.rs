//! gameday: a chaos and load testing harness for systems that depend on Redis.
//!
//! The modules are layered; an import only ever points down a layer (see
//! ARCHITECTURE.md, and `tests/layers.rs`, which checks it):
//!
//! - L6 [`cli`]: the `gameday` command line; resolves flags and scenario
//!   into the final plan once.
//! - L5 [`run`] (the seam: `run(plan, options, shutdown)`), [`lab`] (a
//!   topology with a proxy on every path), [`bench`] (same-run ratios),
//!   [`gate`] (a run against its baselines: `compare`, `trend`).
//! - L4 [`report`]: `Summary::assemble` and the renderers of the report
//!   directory.
//! - L3 [`scenario`]: a TOML file, validated with file:line:col, into one
//!   [`scenario::plan::RunPlan`] of engine-owned configurations.
//! - L2 the engine: [`fault`] (one file per fault kind), [`conductor`]
//!   (the timeline), [`load`] (goose users), [`workload`] (one file per
//!   workload kind), [`recorder`], [`telemetry`], [`ledger`], [`testbed`].
//! - L1 infrastructure: [`topology`] (process, docker and external
//!   backends), [`proxy`] (the Toxiproxy-compatible proxy and its client),
//!   [`redis_admin`] (the harness's own path to a node).
//! - L0 [`vocab`]: outcomes, counters, topology words, units, the
//!   expectation grammar, span-carrying checks.

//!
//! The public surface is narrow: the command line ([`cli`]), the run seam
//! ([`run`], [`RunOptions`]), reading a scenario ([`load_scenario`],
//! [`parse_scenario`]), the report's contract ([`Summary`]) and the
//! embedded Toxiproxy-compatible proxy ([`EmbeddedProxy`]). The integration
//! tests reach the internals they drive through [`testing`], behind the
//! `testing` feature (the crate's own dev-dependency turns it on).

mod bench;
mod bench_gate;
mod bench_http;
mod bench_open;
mod bench_peer;
mod bench_proxy;
mod bench_soak;
mod capacity;
mod clean;
pub mod cli;
mod conductor;
mod fault;
mod gate;
mod lab;
mod ledger;
mod load;
mod proxy;
mod recorder;
mod redis_admin;
mod report;
mod run;
mod scenario;
mod stop;
mod telemetry;
mod testbed;
#[cfg(feature = "testing")]
pub mod testing;
mod topology;
mod vocab;
mod workload;

pub use proxy::EmbeddedProxy;
pub use report::summary::{Summary, SCHEMA};
pub use run::{default_dir, run, RunError, RunOptions, RunOutcome};
pub use scenario::plan::{Overrides, RunPlan};
pub use scenario::{load as load_scenario, parse as parse_scenario, ScenarioError};
