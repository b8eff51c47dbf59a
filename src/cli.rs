//! The `gameday` command line. What the user typed (clap) is resolved here
//! into plans and options; the work happens in `run`, `proxy` and `bench`.

use crate::run::{self, RunOptions};
use crate::scenario::{self, raw::Backend};
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
    /// provisioned, 130 interrupted.
    Run {
        /// Scenario files (TOML).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Report directory (default reports/<UTC time>-<name>/; with several
        /// scenarios, one subdirectory each).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Who provisions Redis; overrides the scenario's `backend`.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// Seed for every random choice; overrides the scenario's `seed`.
        #[arg(long)]
        seed: Option<u64>,
        /// Drive this Toxiproxy API (loopback only) instead of the embedded one.
        #[arg(long, value_name = "URL")]
        toxiproxy_url: Option<String>,
        /// No progress lines, no tables: only errors and the report path.
        #[arg(long, short)]
        quiet: bool,
        /// Confirm the scenario's `allow_destructive`: node, memory and
        /// failover faults on an external topology.
        #[arg(long)]
        allow_destructive: bool,
    },
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
    Proxy {
        /// Loopback address for the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8474", conflicts_with_all = ["host", "port"])]
        listen: SocketAddr,
        /// The API's host, as toxiproxy-server takes it (loopback only).
        #[arg(long)]
        host: Option<std::net::IpAddr>,
        /// The API's port, as toxiproxy-server takes it.
        #[arg(long)]
        port: Option<u16>,
        /// A Toxiproxy config file (a JSON list of {name, listen, upstream,
        /// enabled}) whose proxies are created at start.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Start a topology with a proxy on every path and print its addresses,
    /// for exploring by hand during a game day; Ctrl-C tears it down.
    Up {
        topology: crate::scenario::raw::TopologyKind,
        #[arg(long, value_enum, default_value = "process")]
        backend: Backend,
        /// Drive this Toxiproxy API (loopback only) instead of the embedded one.
        #[arg(long, value_name = "URL")]
        toxiproxy_url: Option<String>,
    },
    /// Measure gameday against peers on this machine and print ratios.
    Bench {
        #[command(subcommand)]
        which: crate::bench::Which,
    },
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

/// Entry point of the binary.
pub fn main() -> ExitCode {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Error);
    }
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
        Command::Run {
            scenarios,
            out,
            backend,
            seed,
            toxiproxy_url,
            quiet,
            allow_destructive,
        } => {
            // Validate everything before starting anything.
            let mut plans = Vec::new();
            for path in &scenarios {
                match scenario::load(path) {
                    Ok(p) => plans.push(p),
                    Err(e) => {
                        eprintln!("gameday: {e}");
                        return Ok(2);
                    }
                }
            }
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
                    backend,
                    seed,
                    toxiproxy_url: toxiproxy_url.clone(),
                    progress: !quiet,
                    allow_destructive,
                };
                if !quiet {
                    eprintln!(
                        "gameday: running {} ({}): {}",
                        plan.name,
                        plan.source.display(),
                        plan.description
                    );
                }
                let code = match run::run(plan, &opts, shutdown.clone()).await {
                    Ok(o) => {
                        if quiet {
                            println!("{} {} {}", plan.name, o.summary.verdict, o.dir.display());
                        }
                        if o.interrupted {
                            130
                        } else if o.passed {
                            0
                        } else {
                            1
                        }
                    }
                    Err(e) => {
                        eprintln!("gameday: {}: {e}", plan.name);
                        e.exit_code()
                    }
                };
                worst = worst.max(code);
            }
            Ok(worst)
        }
        Command::Validate { scenarios } => {
            let mut code = 0;
            for path in &scenarios {
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
            Ok(code)
        }
        Command::List { dir } => list(&dir),
        Command::Proxy {
            listen,
            host,
            port,
            config,
        } => {
            let listen =
                SocketAddr::new(host.unwrap_or(listen.ip()), port.unwrap_or(listen.port()));
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
        Command::Up {
            topology,
            backend,
            toxiproxy_url,
        } => up(topology, backend, toxiproxy_url).await,
        Command::Bench { which } => crate::bench::run(which).await,
    }
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

/// The `[topology]` of a scenario that drives `lab` as an external
/// topology, for pasting: every client endpoint with its proxy.
fn external_snippet(lab: &crate::lab::Lab) -> String {
    use std::fmt::Write;
    let mut out = String::from("\n# a scenario drives this lab with:\n");
    let _ = writeln!(out, "[topology]");
    let _ = writeln!(
        out,
        "kind = \"{}\"",
        scenario::topology_name(lab.topology.kind)
    );
    let _ = writeln!(out, "backend = \"external\"");
    let _ = writeln!(out, "toxiproxy_url = \"{}\"", lab.control.url());
    if let crate::topology::ClientSpec::Sentinel { master, .. } = &lab.client {
        let _ = writeln!(out, "master_name = \"{master}\"");
    }
    for w in &lab.wired {
        if w.endpoint.port != crate::topology::Port::Client {
            continue;
        }
        let role = format!("{:?}", w.endpoint.role).to_lowercase();
        let _ = writeln!(out, "[[topology.endpoint]]");
        let _ = writeln!(
            out,
            "node = \"{}\"\nrole = \"{role}\"\naddr = \"{}\"\nproxy = \"{}\"",
            w.endpoint.node, w.proxy_addr, w.proxy
        );
    }
    out.push_str("# (end)\n\n");
    out
}

/// Prints a line of `gameday up`'s output. A reader that went away (a
/// closed pipe) must not take the lab down with a panic: the lab serves
/// until Ctrl-C either way.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

async fn up(
    kind: crate::scenario::raw::TopologyKind,
    backend: Backend,
    url: Option<String>,
) -> anyhow::Result<u8> {
    if let Some(url) = &url {
        crate::proxy::control::check_url(url).context("--toxiproxy-url")?;
    }
    let mut shutdown = shutdown_signal()?;
    let plan = crate::scenario::plan::TopologyPlan::of_kind(kind);
    let started = std::time::Instant::now();
    let run_id = format!("up-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let lab =
        match crate::lab::Lab::start(&plan, backend, url.as_deref(), &run_id, shutdown.clone())
            .await
        {
            Ok(lab) => lab,
            Err(e) => {
                eprintln!("gameday up: {e}");
                return Ok(e.exit_code());
            }
        };
    say!(
        "{} topology ready in {:.1}s",
        scenario::topology_name(kind),
        started.elapsed().as_secs_f64()
    );
    say!(
        "Toxiproxy API: {} ({} {})",
        lab.control.url(),
        lab.proxy_kind,
        lab.proxy_version
    );
    say!(
        "{:<16} {:<8} {:<22} {:<22} proxy",
        "endpoint",
        "role",
        "real address",
        "clients use"
    );
    for w in &lab.wired {
        let role = format!("{:?}", w.endpoint.role).to_lowercase();
        say!(
            "{:<16} {:<8} {:<22} {:<22} {}",
            w.endpoint.name,
            role,
            w.endpoint.addr.to_string(),
            w.proxy_addr.to_string(),
            w.proxy
        );
    }
    match &lab.client {
        crate::topology::ClientSpec::Direct(a) => {
            say!("\nredis-cli -h {} -p {}", a.ip(), a.port())
        }
        crate::topology::ClientSpec::Sentinel { sentinels, master } => say!(
            "\nredis-cli -h {} -p {} SENTINEL get-master-addr-by-name {master}",
            sentinels[0].ip(),
            sentinels[0].port()
        ),
        crate::topology::ClientSpec::Cluster { nodes } => {
            say!("\nredis-cli -c -h {} -p {}", nodes[0].ip(), nodes[0].port())
        }
    }
    say!("{}", external_snippet(&lab).trim_end());
    say!("faults: e.g. curl -X POST {}/proxies/<proxy>/toxics -d '{{\"type\":\"latency\",\"attributes\":{{\"latency\":100}}}}'", lab.control.url());
    say!("Ctrl-C stops everything.");
    let _ = shutdown.wait_for(|s| *s).await;
    lab.stop().await;
    eprintln!("gameday up: stopped, nothing left running");
    Ok(0)
}
