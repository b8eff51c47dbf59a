//! `gameday bench http`: the most requests/s gameday's HTTP target drives at
//! a trivial local endpoint (the reference shop's `/healthz`, which touches
//! no Redis) vs `wrk` at the same connection count, against the same shop
//! process, in the same invocation.

use crate::load::{self, LoadSpec};
use crate::recorder::Recorder;
use crate::topology::process::free_port;
use crate::topology::ClientSpec;
use crate::workload::http::service::{wait_healthy, CommandPlan, Service};
use crate::workload::http::Http;
use crate::workload::lock::GcPause;
use crate::workload::{Setup, WorkloadPlan};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The shop built next to this gameday (`cargo build --release --examples`).
fn shop_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find gameday's own path")?;
    let shop = exe
        .parent()
        .map(|d| d.join("examples").join("shop"))
        .context("gameday's path has no directory")?;
    if !shop.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --examples`",
            shop.display()
        );
    }
    Ok(shop)
}

/// `wrk` with two threads (the cores gameday's runtime uses) and `c`
/// connections for `seconds`; returns requests per second.
fn wrk(url: &str, c: usize, seconds: u64) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(["-t", &c.min(2).to_string(), "-c", &c.to_string()])
        .args(["-d", &format!("{seconds}s"), url])
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors: {text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("cannot read wrk's output: {text}"))
}

/// The HTTP target with one request, `GET /healthz`.
fn target(base: &str) -> anyhow::Result<crate::workload::http::HttpPlan> {
    let text = format!(
        "name = \"bench-http\"\nduration = \"1s\"\n[topology]\nkind = \"standalone\"\n[load]\nusers = 1\n\
         [target]\nkind = \"http\"\nbase_url = \"{base}\"\n[[target.request]]\nname = \"healthz\"\npath = \"/healthz\"\n"
    );
    let plan = crate::scenario::parse(std::path::Path::new("bench-http.toml"), &text)?;
    let WorkloadPlan::Http(p) = plan.workload else {
        bail!("the bench's target table is not an http target");
    };
    Ok(p)
}

async fn gameday_rate(
    base: &str,
    users: usize,
    seconds: u64,
    goose_metrics: bool,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let plan = target(base)?;
    let setup = Setup {
        client: ClientSpec::Direct(SocketAddr::from(([127, 0, 0, 1], 1))),
        prefix: String::new(),
        t0,
        seed: 1,
        users,
        gc: Arc::new(GcPause::default()),
    };
    let ops = plan.ops;
    let workload = Arc::new(Http::new(plan, &setup));
    let recorder = Arc::new(Mutex::new(Recorder::new(t0, ops)));
    let spec = LoadSpec {
        goose_metrics,
        ..LoadSpec::closed(users, None, Duration::from_secs(seconds))
    };
    load::drive(workload, &spec, recorder.clone(), t0).await?;
    let rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
    let r = rec.phases()[0]
        .ops
        .get("healthz")
        .context("no request was recorded")?;
    if r.errors > 0 {
        bail!("{} of {} requests failed", r.errors, r.count);
    }
    Ok(r.count as f64 / seconds as f64)
}

pub async fn bench_http(connections: usize, seconds: u64) -> anyhow::Result<u8> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let cmd = CommandPlan {
        argv: vec![shop_binary()?.display().to_string()],
        env: vec![("SHOP_ADDR".into(), addr.clone())],
    };
    let log = std::env::temp_dir().join(format!("gameday-bench-http-{port}.log"));
    // /healthz never touches Redis: the shop needs an address, not a server.
    let never = ClientSpec::Direct(SocketAddr::from(([127, 0, 0, 1], 1)));
    let mut shop = Service::start(&cmd, &never, &log, Duration::from_secs(2))?;
    let base = format!("http://{addr}");
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let healthy = wait_healthy(
        &format!("{base}/healthz"),
        Duration::from_secs(20),
        Some(&mut shop),
        &shutdown,
    )
    .await;
    let result = async {
        healthy?;
        println!("bench http: {connections} connections, GET /healthz of the reference shop on {addr}, {seconds}s each");
        let url = format!("{base}/healthz");
        let peer = tokio::task::spawn_blocking(move || wrk(&url, connections, seconds)).await??;
        println!("  wrk -t2 -c {connections}                      {peer:>10.0} req/s");
        let ours = gameday_rate(&base, connections, seconds, true).await?;
        println!(
            "  gameday (goose + reqwest + recorder + goose metrics) {ours:>10.0} req/s   ratio {:.2}",
            ours / peer
        );
        let bare = gameday_rate(&base, connections, seconds, false).await?;
        println!(
            "  gameday (goose + reqwest + recorder only)            {bare:>10.0} req/s   ratio {:.2}",
            bare / peer
        );
        println!("ratio gameday/wrk: {:.2} (target >= 1.0)", ours / peer);
        anyhow::Ok(0)
    }
    .await;
    shop.stop().await;
    let _ = std::fs::remove_file(&log);
    result
}
