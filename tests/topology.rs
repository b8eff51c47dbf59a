//! The process backend starts a real redis-server with the scenario's
//! settings and removes everything it made when dropped.

use crate::common;

use gameday::testing::RedisProcess;
use gameday::testing::Role;
use gameday::testing::TopologyPlan;
use gameday::testing::{MaxmemoryPolicy, Persistence};

async fn config_get(addr: std::net::SocketAddr, key: &str) -> String {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    pair[1].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_reach_the_server_and_nothing_is_left_after_drop() {
    let _gate = crate::common::gate(module_path!());
    let plan = TopologyPlan {
        maxmemory: Some(64 << 20),
        maxmemory_policy: Some(MaxmemoryPolicy::AllkeysLru),
        persistence: Persistence::Aof,
        ..TopologyPlan::standalone()
    };
    let node = RedisProcess::start("topo", Role::Primary, &plan)
        .await
        .unwrap();
    assert!(node.addr.ip().is_loopback());
    assert_eq!(
        config_get(node.addr, "maxmemory").await,
        (64u64 << 20).to_string()
    );
    assert_eq!(
        config_get(node.addr, "maxmemory-policy").await,
        "allkeys-lru"
    );
    assert_eq!(config_get(node.addr, "appendonly").await, "yes");
    assert_eq!(config_get(node.addr, "save").await, "");
    assert_eq!(config_get(node.addr, "bind").await, "127.0.0.1");

    let (pid, dir) = (node.pid(), node.dir().to_path_buf());
    assert!(dir.exists());
    drop(node);
    assert!(!dir.exists(), "the node's directory is removed");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );

    let rdb = TopologyPlan {
        persistence: Persistence::Rdb,
        ..TopologyPlan::standalone()
    };
    let node = RedisProcess::start("topo", Role::Primary, &rdb)
        .await
        .unwrap();
    assert_eq!(config_get(node.addr, "save").await, "1 1");
    assert_eq!(config_get(node.addr, "appendonly").await, "no");
}

#[test]
fn a_missing_redis_server_is_a_clear_error_with_exit_3() {
    let _gate = crate::common::gate(module_path!());
    let scratch = common::Scratch::new(
        "name = \"missing\"\nduration = \"2s\"\n[topology]\nkind = \"standalone\"\n[load]\nusers = 1\n[workload]\nkind = \"cache-aside\"\n",
    );
    let out = scratch
        .run_cmd()
        .env("GAMEDAY_REDIS_SERVER", "/nonexistent/redis-server")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/redis-server") && err.contains("apt-get install redis-server"),
        "{err}"
    );
    scratch.assert_nothing_left();
}
