//! gameday: a chaos and load testing harness for systems that depend on Redis.
//!
//! The data flow of one run, module by module:
//!
//! - [`scenario`]: a TOML scenario, validated into one [`scenario::plan::RunPlan`].
//! - [`topology`]: provisions the Redis nodes (process backend today) and
//!   assembles them through their proxies.
//! - [`lab`]: a topology with a proxy on every path, ready for load.
//! - [`proxy`]: a Toxiproxy-compatible server and the client that drives it;
//!   one proxy per node, and clients only ever see proxy addresses.
//! - [`load`]: goose virtual users running one [`workload`] op per transaction
//!   on a schedule.
//! - [`conductor`]: applies and removes faults on the timeline, marks phases.
//! - [`recorder`]: every op's samples into histograms per op × phase/second.
//! - [`oracle`]: each workload's metrics of correctness per phase.
//! - [`expect`]: the scenario's rules, judged against the phase summaries.
//! - [`report`]: summary.json, timeseries.csv, latency.hlog, report.html, junit.xml.
//! - [`run`]: the seam that ties them together: `run(plan, options, shutdown)`.
//! - [`cli`]: the `gameday` command line; [`bench`]: the benchmarks.

pub mod bench;
pub mod cli;
pub mod conductor;
pub mod expect;
pub mod failover;
pub mod lab;
pub mod ledger;
pub mod load;
pub mod memory;
pub mod oracle;
pub mod proxy;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
pub mod telemetry;
pub mod topology;
pub mod workload;
