//! The `gameday` command line. What the user typed (clap) is resolved here
//! into plans and options; the work happens in `run`, `proxy` and `bench`.

mod lab_cmds;

use crate::run::{self, RunOptions};
use crate::scenario;
use crate::scenario::plan::{Overrides, RunPlan};
use crate::vocab::topo::Backend;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::sync::watch;

/// Chaos and load testing for systems that depend on Redis.
#[derive(Debug, Parser)]
#[command(name = "gameday", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios end to end and write a report directory for each.
    ///
    /// Exit codes: 0 every expectation held, 1 an expectation failed,
    /// 2 bad usage or scenario, 3 the infrastructure could not be
    /// provisioned, 5 a stop condition ended it, 130 interrupted.
    Run(RunArgs),
    /// Check scenario files without running anything.
    Validate {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// List the scenarios in a directory with their descriptions.
    List {
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Serve the Toxiproxy-compatible API alone, until Ctrl-C.
    ///
    /// Takes Toxiproxy's own `--host`, `--port` and `--config` too, so that
    /// it can stand in for the Toxiproxy image (see docker-compose.yml).
    Proxy(ProxyArgs),
    /// Start a topology with a proxy on every path and print its addresses,
    /// for exploring by hand during a game day; Ctrl-C tears it down.
    Up {
        topology: crate::vocab::topo::TopologyKind,
        #[arg(long, value_enum, default_value = "process")]
        backend: Backend,
        /// Drive this Toxiproxy API (loopback only) instead of the embedded one.
        #[arg(long, value_name = "URL")]
        toxiproxy_url: Option<String>,
    },
    /// Remove what dead gameday processes left behind: containers labelled
    /// with a dead gameday.owner, their temporary directories and, with
    /// --toxiproxy-url, the toxics and proxies they put on that Toxiproxy.
    /// Nothing of a live gameday, nor anything not named as gameday's, is
    /// touched. `run` and `up` do the same at start.
    Clean {
        /// Also clean this Toxiproxy API (loopback only).
        #[arg(long, value_name = "URL")]
        toxiproxy_url: Option<String>,
    },
    /// Compare a run with its baselines: did it get worse, significantly
    /// and beyond the tolerance band? Writes compare.json, compare.md,
    /// compare.html and junit.xml.
    ///
    /// Exit codes: 0 pass (warnings do not fail), 1 regression, 2 bad
    /// usage, 4 inconclusive (too few baselines, or too noisy).
    Compare {
        /// The report directory of the run under test.
        candidate: PathBuf,
        /// A report directory, or a directory of them (a store of past
        /// runs); repeatable. Only runs of the same scenario, content hash,
        /// topology, backend and testbed count.
        #[arg(long = "baseline", value_name = "DIR", required = true)]
        baselines: Vec<PathBuf>,
        /// Where to write the comparison (default <CANDIDATE>/compare).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the verdict and the output directory.
        #[arg(long, short)]
        quiet: bool,
    },
    /// The gated metrics over many runs, ordered by time, with their change
    /// points: trend.csv and trend.html.
    Trend {
        /// Report directories or stores of them.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long, default_value = "reports/trend")]
        out: PathBuf,
    },
    /// Measure gameday against peers on this machine and print ratios.
    Bench {
        #[command(subcommand)]
        which: crate::bench::Which,
    },
}

/// `gameday run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files (TOML).
    #[arg(required = true)]
    pub scenarios: Vec<PathBuf>,
    /// Report directory (default reports/<UTC time>-<name>/; with several
    /// scenarios, one subdirectory each).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who provisions Redis; overrides the scenario's `backend`.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Seed for every random choice; overrides the scenario's `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Drive this Toxiproxy API (loopback only) instead of the embedded one.
    #[arg(long, value_name = "URL")]
    pub toxiproxy_url: Option<String>,
    /// No progress lines, no tables: only errors and the report path.
    #[arg(long, short)]
    pub quiet: bool,
    /// Confirm the scenario's `allow_destructive`: node, memory and
    /// failover faults on an external topology.
    #[arg(long)]
    pub allow_destructive: bool,
    /// KEY=VALUE in the environment of the target service gameday starts,
    /// over the scenario's `env` (repeatable), e.g. SHOP_MODE=naive.
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub target_env: Vec<(String, String)>,
    /// After the run, compare it with these baselines (as `gameday
    /// compare`); the exit code is the run's and the comparison's combined.
    #[arg(long = "baseline", value_name = "DIR")]
    pub baseline: Vec<PathBuf>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `gameday proxy`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Loopback address for the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8474", conflicts_with_all = ["host", "port"])]
    pub listen: SocketAddr,
    /// The API's host, as toxiproxy-server takes it (loopback only).
    #[arg(long)]
    pub host: Option<std::net::IpAddr>,
    /// The API's port, as toxiproxy-server takes it.
    #[arg(long)]
    pub port: Option<u16>,
    /// A Toxiproxy config file (a JSON list of {name, listen, upstream,
    /// enabled}) whose proxies are created at start.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The process's logger: errors only, as `gameday: [target] message`. It
/// is installed before goose tries to install its own, so that library
/// warnings (the cluster client reports every reconnect during a failover)
/// do not flood the terminal; what matters is in the report.
struct ErrorsOnly;

impl log::Log for ErrorsOnly {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Error
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("gameday: [{}] {}", r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: ErrorsOnly = ErrorsOnly;

/// Installs the errors-only logger unless the process has one already.
/// The binary calls it first thing; the integration tests call it too, since
/// their in-process runs would otherwise let goose install a logger that
/// prints every cluster client reconnect straight to the terminal, burying
/// the failure messages.
pub fn quiet_logs() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Error);
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_logs();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gameday: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    runtime.block_on(async {
        match dispatch(cli.command).await {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("gameday: {e:#}");
                ExitCode::from(2)
            }
        }
    })
}

/// Turns SIGINT/SIGTERM/SIGHUP into the shutdown signal. It registers
/// through `ctrlc`, which takes one handler per process: goose's own attempt
/// to take the signals is then refused (goose carries on without), so an
/// interrupt always reaches gameday's teardown. A second signal exits at once.
fn shutdown_signal() -> anyhow::Result<watch::Receiver<bool>> {
    static SHUTDOWN: std::sync::OnceLock<watch::Sender<bool>> = std::sync::OnceLock::new();
    let mut fresh = false;
    let tx = SHUTDOWN.get_or_init(|| {
        fresh = true;
        watch::channel(false).0
    });
    if fresh {
        ctrlc::set_handler(|| {
            let tx = SHUTDOWN.get().expect("set before the handler");
            if *tx.borrow() {
                eprintln!("gameday: second interrupt, exiting now");
                std::process::exit(130);
            }
            eprintln!(
                "gameday: interrupted, stopping load and tearing down (again to exit at once)"
            );
            tx.send_replace(true);
            goose::trigger_killswitch("gameday: interrupted");
        })
        .context("cannot handle Ctrl-C")?;
    }
    Ok(tx.subscribe())
}

async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run(args) => run_scenarios(args).await,
        Command::Validate { scenarios } => Ok(validate(&scenarios)),
        Command::List { dir } => list(&dir),
        Command::Proxy(args) => serve_proxy(args).await,
        Command::Up {
            topology,
            backend,
            toxiproxy_url,
        } => lab_cmds::up(topology, backend, toxiproxy_url).await,
        Command::Clean { toxiproxy_url } => lab_cmds::clean(toxiproxy_url).await,
        Command::Compare {
            candidate,
            baselines,
            out,
            quiet,
        } => Ok(crate::gate::command(
            &candidate,
            &baselines,
            out.as_deref(),
            quiet,
        )),
        Command::Trend { dirs, out } => Ok(crate::gate::trend::command(&dirs, &out)),
        Command::Bench { which } => crate::bench::run(which).await,
    }
}

/// Every scenario validated (and resolved) before any starts; `None`
/// after printing why one is refused.
fn plans_of(scenarios: &[PathBuf], overrides: &Overrides) -> Option<Vec<RunPlan>> {
    let mut plans = Vec::new();
    for path in scenarios {
        match scenario::load(path) {
            Ok(p) if !overrides.target_env.is_empty() && !p.workload.starts_a_service() => {
                eprintln!(
                    "gameday: {}: --target-env is for a [target] with a `command` (a service gameday starts)",
                    path.display()
                );
                return None;
            }
            Ok(p) => plans.push(p.resolve(overrides)),
            Err(e) => {
                eprintln!("gameday: {e}");
                return None;
            }
        }
    }
    Some(plans)
}

/// `gameday run`: every scenario validated before any starts, then each in
/// turn; the exit code is the worst one.
async fn run_scenarios(args: RunArgs) -> anyhow::Result<u8> {
    let RunArgs {
        scenarios,
        out,
        backend,
        seed,
        toxiproxy_url,
        quiet,
        allow_destructive,
        target_env,
        baseline,
    } = args;
    if !baseline.is_empty() {
        if let Some(b) = baseline.iter().find(|b| !b.is_dir()) {
            eprintln!("gameday: --baseline {}: not a directory", b.display());
            return Ok(2);
        }
    }
    let overrides = Overrides {
        backend,
        seed,
        toxiproxy_url: toxiproxy_url.clone(),
        allow_destructive,
        target_env,
    };
    let Some(plans) = plans_of(&scenarios, &overrides) else {
        return Ok(2);
    };
    if let Some(url) = &toxiproxy_url {
        if let Err(e) = crate::proxy::control::check_url(url) {
            eprintln!("gameday: --toxiproxy-url: {e}");
            return Ok(2);
        }
    }
    let shutdown = shutdown_signal()?;
    let several = plans.len() > 1;
    let mut worst = 0u8;
    for plan in &plans {
        if *shutdown.borrow() {
            break;
        }
        let opts = RunOptions {
            out_dir: out.as_ref().map(|o| {
                if several {
                    o.join(&plan.name)
                } else {
                    o.clone()
                }
            }),
            progress: !quiet,
        };
        let code = run_one(plan, &opts, shutdown.clone(), &baseline).await;
        worst = worst.max(code);
    }
    Ok(worst)
}

/// One scenario's run (then its comparison with `baseline`, if any); its
/// exit code.
async fn run_one(
    plan: &RunPlan,
    opts: &RunOptions,
    shutdown: watch::Receiver<bool>,
    baseline: &[PathBuf],
) -> u8 {
    let quiet = !opts.progress;
    if !quiet {
        eprintln!(
            "gameday: running {} ({}): {}",
            plan.name,
            plan.source.display(),
            plan.description
        );
    }
    match with_test_panic(run::run(plan, opts, shutdown)).await {
        Ok(o) => {
            if quiet {
                println!("{} {} {}", plan.name, o.summary.verdict, o.dir.display());
            }
            let code = if o.summary.aborted.is_some() {
                5 // a stop condition ended it
            } else if o.interrupted {
                130
            } else if o.passed {
                0
            } else {
                1
            };
            if baseline.is_empty() || o.interrupted {
                return code;
            }
            crate::gate::reports_of(&o.dir)
                .iter()
                .map(|d| crate::gate::command(d, baseline, None, quiet))
                .fold(code, crate::gate::combine)
        }
        Err(e) => {
            eprintln!("gameday: {}: {e}", plan.name);
            e.exit_code()
        }
    }
}

/// The run, unless `GAMEDAY_TEST_PANIC_AFTER=<duration>` asks for a panic
/// on the main thread that long into it: the tests' way to check that a
/// crashing gameday leaves no service, node or proxy behind.
async fn with_test_panic<T>(run: impl std::future::Future<Output = T>) -> T {
    let after = std::env::var("GAMEDAY_TEST_PANIC_AFTER")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok());
    let Some(after) = after else {
        return run.await;
    };
    tokio::select! {
        r = run => r,
        _ = tokio::time::sleep(after) => panic!("GAMEDAY_TEST_PANIC_AFTER={after:?}: panicking as asked"),
    }
}

/// `gameday validate`.
fn validate(scenarios: &[PathBuf]) -> u8 {
    let mut code = 0;
    for path in scenarios {
        match scenario::load(path) {
            Ok(p) => println!(
                "ok: {} ({}, {} faults, {} expectations)",
                path.display(),
                p.name,
                p.faults.len(),
                p.expectations.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                code = 2;
            }
        }
    }
    code
}

/// `gameday proxy`: the Toxiproxy-compatible API alone, until Ctrl-C.
async fn serve_proxy(args: ProxyArgs) -> anyhow::Result<u8> {
    let ProxyArgs {
        listen,
        host,
        port,
        config,
    } = args;
    let listen = SocketAddr::new(host.unwrap_or(listen.ip()), port.unwrap_or(listen.port()));
    let proxy = crate::proxy::EmbeddedProxy::start(listen)
        .await
        .with_context(|| format!("cannot serve the proxy API on {listen}"))?;
    if let Some(path) = &config {
        let created = crate::proxy::populate_from_file(&proxy, path).await?;
        for p in &created {
            eprintln!(
                "gameday proxy: {} listens on {} for {}{}",
                p.name,
                p.listen,
                p.upstream,
                if p.enabled { "" } else { " (disabled)" }
            );
        }
    }
    eprintln!(
        "gameday proxy: Toxiproxy API {} on {} (Ctrl-C to stop)",
        crate::proxy::api::VERSION,
        proxy.url()
    );
    let mut shutdown = shutdown_signal()?;
    let _ = shutdown.wait_for(|s| *s).await;
    drop(proxy);
    Ok(0)
}

fn list(dir: &Path) -> anyhow::Result<u8> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the scenario directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    let mut code = 0;
    for path in entries {
        match scenario::load(&path) {
            Ok(p) => println!("{:<32} {}", path.display(), p.description),
            Err(e) => {
                println!("{:<32} INVALID: {e}", path.display());
                code = 2;
            }
        }
    }
    Ok(code)
}
