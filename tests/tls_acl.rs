//! `[topology] tls` and `auth`: a run's own CA and certificates on every
//! client port, replication and Sentinel; an ACL user with the default
//! user off. Plain and unauthenticated clients are refused, the proxy's
//! faults still work on TLS bytes, and the password appears in no file
//! of the report, no log and no console line.

use crate::common::Scratch;
use gameday::testing::{Backend, Lab, TopologyKind, TopologyPlan};
use std::time::{Duration, Instant};

/// A password no run would print by chance.
fn secret() -> String {
    format!("pw-{:016x}-never-print-me", rand::random::<u64>())
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

#[test]
fn the_tls_sentinel_failover_scenario_passes_and_its_secret_is_nowhere() {
    let _gate = crate::common::gate(module_path!());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios/tls-sentinel-failover.toml"),
    )
    .unwrap();
    // One rule that cannot hold, so the run keeps the Redis logs (a run
    // that passes drops them) and they are searched too.
    let text = text.replace(
        "\"run.lost_writes < 200\",",
        "\"run.lost_writes < 200\",\n  \"run.caller_errors < 0\",",
    );
    let scratch = Scratch::new(&text);
    let pw = secret();
    let out = scratch
        .run_cmd()
        .env("REDIS_PASSWORD", &pw)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let s = scratch.summary();
    for e in s["expectations"].as_array().unwrap() {
        let planted = e["rule"] == "run.caller_errors < 0";
        assert_eq!(e["passed"], !planted, "{e}\n{stdout}\n{stderr}");
    }
    assert!(
        !stdout.contains(&pw) && !stderr.contains(&pw),
        "the console shows the secret"
    );
    let leaks = files_containing(&scratch.report(), &pw);
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
    let logs = std::fs::read_dir(scratch.report())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(logs >= 6, "the Redis logs were searched too ({logs})");
    scratch.assert_nothing_left();
}

/// PING at `addr` as `access` says, within 5 s; the error's text otherwise.
async fn ping(addr: std::net::SocketAddr, access: &gameday::testing::Access) -> Result<(), String> {
    let client = access
        .client(access.info(addr))
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 5 s".into()),
    }
}

#[test]
fn plain_and_unauthenticated_clients_are_refused_and_faults_work_on_tls() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pw = secret();
        let var = format!("GAMEDAY_TEST_PW_{}", std::process::id());
        std::env::set_var(&var, &pw);
        let mut labs = vec![
            (TopologyKind::Replicated, Backend::Process),
            (TopologyKind::Cluster, Backend::Process),
        ];
        if crate::common::docker_ready() {
            labs.push((TopologyKind::Replicated, Backend::Docker));
        }
        for (kind, backend) in labs {
            let plan = TopologyPlan {
                backend,
                security: gameday::testing::SecurityPlan {
                    tls: true,
                    ca_file: None,
                    auth: Some(gameday::testing::AuthPlan {
                        user: "app".into(),
                        password_env: var.clone(),
                    }),
                },
                ..TopologyPlan::of_kind(kind)
            };
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let lab = Lab::start(
                &plan,
                &format!("tls-{:06x}", rand::random::<u32>() & 0xffffff),
                rx,
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?} on {backend:?}: {e}"));
            let w = &lab.wired[0];
            let access = gameday::testing::access(w.proxy_addr);
            assert_eq!(access.user.as_ref().unwrap().1.expose(), pw);
            assert!(
                ping(w.proxy_addr, &access).await.is_ok(),
                "{kind:?}: TLS + ACL answers"
            );
            assert!(
                ping(w.endpoint.addr, &access).await.is_ok(),
                "{kind:?}: the node itself too"
            );
            let plain = gameday::testing::Access {
                tls_ca: None,
                ..access.clone()
            };
            assert!(
                ping(w.proxy_addr, &plain).await.is_err(),
                "{kind:?}: plain TCP is refused"
            );
            let anonymous = gameday::testing::Access {
                user: None,
                ..access.clone()
            };
            let err = ping(w.proxy_addr, &anonymous).await.unwrap_err();
            assert!(
                err.contains("NOAUTH") || err.contains("WRONGPASS") || err.contains("auth"),
                "{kind:?}: {err}"
            );
            let wrong = gameday::testing::Access {
                user: Some(("app".into(), gameday::testing::Secret::new("wrong"))),
                ..access.clone()
            };
            assert!(
                ping(w.proxy_addr, &wrong).await.is_err(),
                "{kind:?}: a wrong password is refused"
            );

            // A latency toxic delays TLS bytes as it delays plain ones.
            let client =
                redis::Client::build_with_tls(access.info(w.proxy_addr), access.certs().unwrap())
                    .unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let time_ping = |conn: &mut redis::aio::MultiplexedConnection| {
                let mut c = conn.clone();
                async move {
                    let t = Instant::now();
                    redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .unwrap();
                    t.elapsed()
                }
            };
            let before = time_ping(&mut conn).await;
            let fault = gameday::testing::NetFault::Toxic {
                kind: gameday::testing::ToxicKind::Latency {
                    latency: 100,
                    jitter: 0,
                },
                streams: vec![gameday::testing::Stream::Downstream],
                toxicity: 1.0,
                path: Default::default(),
            };
            let (name, f) = (w.proxy.clone(), fault.clone());
            lab.control.call(move |c| c.apply(&name, &f)).await.unwrap();
            let slowed = time_ping(&mut conn).await;
            assert!(
                slowed >= Duration::from_millis(95) && slowed < before + Duration::from_millis(150),
                "{kind:?}: PING took {before:?}, then {slowed:?} under 100 ms latency"
            );
            let name = w.proxy.clone();
            lab.control
                .call(move |c| c.clear(&name, &fault))
                .await
                .unwrap();
            lab.stop().await;
        }
        std::env::remove_var(&var);
    });
}

/// An external topology over TLS with an ACL user: gameday trusts the CA
/// file the scenario names and authenticates with the password from the
/// variable `password_env` names; its own proxy in front passes TLS.
#[test]
fn an_external_tls_topology_is_reached_with_its_ca_file_and_user() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pw = secret();
    let var = format!("GAMEDAY_TEST_EXT_PW_{}", std::process::id());
    std::env::set_var(&var, &pw);
    let plan = TopologyPlan {
        security: gameday::testing::SecurityPlan {
            tls: true,
            ca_file: None,
            auth: Some(gameday::testing::AuthPlan {
                user: "ops".into(),
                password_env: var.clone(),
            }),
        },
        ..TopologyPlan::of_kind(TopologyKind::Standalone)
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let lab = rt.block_on(Lab::start(&plan, "tls-ext", rx)).unwrap();
    let addr = lab.wired[0].proxy_addr;
    let ca = gameday::testing::access(addr).tls_ca.unwrap();
    let scenario = |ca_file: &str| {
        format!(
            r#"name = "external-tls"
duration = "6s"
[topology]
kind = "standalone"
backend = "external"
tls = true
ca_file = "{ca_file}"
auth = {{ user = "ops", password_env = "{var}" }}
[[topology.endpoint]]
node = "lab"
role = "primary"
addr = "{addr}"
[load]
users = 4
rate = 200
[workload]
kind = "cache-aside"
keys = 100
on_redis_error = {{ policy = "fallback" }}
[[fault]]
name = "outage"
kind = "down"
target = "node:lab"
at = "2s"
for = "2s"
expect = ["baseline.redis_errors == 0", "fault:outage.caller_errors == 0", "fault:outage.redis_get.errors > 10"]
"#
        )
    };
    let scratch = Scratch::new("");
    let ca_path = scratch.root.path().join("lab-ca.crt");
    std::fs::write(&ca_path, &ca[..]).unwrap();
    std::fs::write(scratch.scenario(), scenario(&ca_path.display().to_string())).unwrap();
    let out = scratch.run_cmd().output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains(&pw));
    assert!(files_containing(&scratch.report(), &pw).is_empty());

    // Another CA's trust, or no password, is refused before any load.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&ca_path, other.cert.pem()).unwrap();
    let out = scratch.run_cmd().output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "a CA that did not sign the server is refused"
    );
    std::env::remove_var(&var);
    std::fs::write(&ca_path, &ca[..]).unwrap();
    let out = scratch.run_cmd().env_remove(&var).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&var), "names the variable: {said}");
    rt.block_on(lab.stop());
}

/// The reference shop as an HTTP target on a TLS + ACL topology: gameday
/// hands it `rediss://` endpoints, the CA file and the credentials; it
/// serves from Redis, falls back through an outage, and the password is
/// in neither the report nor the shop's own app.log.
#[test]
fn an_http_target_gets_the_ca_and_credentials_and_keeps_them_secret() {
    let _gate = crate::common::gate(module_path!());
    let shop = std::path::PathBuf::from(env!("CARGO_BIN_EXE_gameday"))
        .parent()
        .unwrap()
        .join("examples/shop");
    for kind in ["standalone", "sentinel"] {
        let port = gameday::testing::free_port().unwrap();
        let text = format!(
            r#"name = "shop-tls"
duration = "10s"
[topology]
kind = "{kind}"
tls = true
auth = {{ user = "shop", password_env = "SHOP_REDIS_PASSWORD" }}
[load]
users = 4
rate = 100
[target]
kind = "http"
base_url = "http://127.0.0.1:{port}"
command = ["{shop}"]
env = {{ SHOP_MODE = "resilient", SHOP_ADDR = "127.0.0.1:{port}" }}
keys = 50
count_header = "X-Cache"
[[target.request]]
name = "product"
path = "/product/{{key}}"
[[fault]]
name = "outage"
kind = "down"
at = "4s"
for = "3s"
expect = [
  "baseline.product.error_rate == 0",
  "baseline.header.x-cache.hit > 0",
  "fault:outage.product.error_rate < 1%",
  "fault:outage.header.x-cache.fallback > 0",
]
"#,
            shop = shop.display()
        );
        let scratch = Scratch::new(&text);
        let pw = secret();
        let out = scratch
            .run_cmd()
            .env("SHOP_REDIS_PASSWORD", &pw)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{kind}: {said}");
        assert!(!said.contains(&pw), "{kind}");
        assert!(scratch.report().join("app.log").is_file(), "{kind}");
        let leaks = files_containing(&scratch.report(), &pw);
        assert!(leaks.is_empty(), "{kind}: the secret is in {leaks:?}");
        scratch.assert_nothing_left();
    }
}
