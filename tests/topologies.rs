//! Every topology on the process backend, assembled through its proxies:
//! the addresses servers hand out are proxy addresses, the workload's client
//! works through them, and with every client-path proxy disabled not one
//! client operation succeeds (no bypass).

use crate::common::docker_ready;
use gameday::testing::Lab;
use gameday::testing::NetFault;
use gameday::testing::Port;
use gameday::testing::RedisConn;
use gameday::testing::Role;
use gameday::testing::TopologyPlan;
use gameday::testing::Trace;
use gameday::testing::{Backend, TopologyKind};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

async fn lab_on(kind: TopologyKind, backend: Backend) -> Lab {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let plan = TopologyPlan {
        backend,
        ..TopologyPlan::of_kind(kind)
    };
    let started = Instant::now();
    let run_id = format!("test-{:08x}", rand::random::<u32>());
    let lab = Lab::start(&plan, &run_id, rx).await.unwrap();
    eprintln!("{kind:?} on {backend:?} ready in {:?}", started.elapsed());
    lab
}

/// Containers still carrying the label of run `run`.
fn containers_of(run: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=gameday.run={run}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

async fn admin<T: redis::FromRedisValue>(addr: SocketAddr, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

fn proxy_ports(lab: &Lab) -> BTreeSet<u16> {
    lab.wired.iter().map(|w| w.proxy_addr.port()).collect()
}

/// SET then GET through the lab's client spec, as the workload does.
async fn set_get(lab: &Lab, key: &str) -> Result<(), String> {
    let mut conn = RedisConn::new(&lab.client, Duration::from_secs(2), Instant::now());
    let mut trace = Trace::default();
    conn.query::<()>("redis_set", redis::cmd("SET").arg(key).arg("v"), &mut trace)
        .await
        .map_err(|c| c.as_str().to_string())?;
    let v: Option<String> = conn
        .query("redis_get", redis::cmd("GET").arg(key), &mut trace)
        .await
        .map_err(|c| c.as_str().to_string())?;
    if v.as_deref() == Some("v") {
        Ok(())
    } else {
        Err(format!("read back {v:?}"))
    }
}

/// Disables every client-path proxy; every op, on a fresh client and on an
/// already open one, must fail.
async fn assert_no_bypass(lab: &Lab) {
    let mut open = RedisConn::new(&lab.client, Duration::from_secs(2), Instant::now());
    let mut trace = Trace::default();
    open.query::<()>(
        "redis_set",
        redis::cmd("SET").arg("warm").arg("1"),
        &mut trace,
    )
    .await
    .unwrap();
    for w in lab.wired.iter().filter(|w| w.endpoint.port == Port::Client) {
        let name = w.proxy.clone();
        lab.control
            .call(move |c| c.apply(&name, &NetFault::Down))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let key = format!("k{i}");
        assert!(
            set_get(lab, &key).await.is_err(),
            "an op succeeded with every client proxy down (fresh client)"
        );
        let r = open
            .query::<()>(
                "redis_set",
                redis::cmd("SET").arg(&key).arg("1"),
                &mut trace,
            )
            .await;
        assert!(
            r.is_err(),
            "an op succeeded with every client proxy down (open connection)"
        );
    }
    for w in lab.wired.iter().filter(|w| w.endpoint.port == Port::Client) {
        let name = w.proxy.clone();
        lab.control
            .call(move |c| c.clear(&name, &NetFault::Down))
            .await
            .unwrap();
    }
}

async fn assert_stops_clean(lab: Lab) {
    let pids: Vec<u32> = lab.topology.nodes.iter().map(|n| n.pid()).collect();
    lab.stop().await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived"
        );
    }
}

async fn replicated(backend: Backend) {
    let lab = lab_on(TopologyKind::Replicated, backend).await;
    let info: String = admin(
        lab.topology.primary().addr,
        redis::cmd("INFO").arg("replication"),
    )
    .await;
    let ports = proxy_ports(&lab);
    let replica_ports: Vec<u16> = info
        .lines()
        .filter(|l| l.starts_with("slave"))
        .filter_map(|l| {
            l.split(',')
                .find_map(|f| f.strip_prefix("port="))
                .and_then(|p| p.parse().ok())
        })
        .collect();
    assert_eq!(replica_ports.len(), 2, "{info}");
    assert!(
        replica_ports.iter().all(|p| ports.contains(p)),
        "replicas announce proxies: {replica_ports:?}"
    );
    set_get(&lab, "hello").await.unwrap();
    assert_no_bypass(&lab).await;
    set_get(&lab, "again").await.unwrap();
    assert_stops_clean(lab).await;
}

async fn sentinel(backend: Backend) {
    let lab = lab_on(TopologyKind::Sentinel, backend).await;
    let ports = proxy_ports(&lab);
    let sentinel = lab
        .topology
        .nodes
        .iter()
        .find(|n| n.role == Role::Sentinel)
        .unwrap()
        .addr;
    let master: Vec<String> = admin(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("gameday"),
    )
    .await;
    assert!(
        ports.contains(&master[1].parse().unwrap()),
        "master is a proxy: {master:?}"
    );
    for what in ["REPLICAS", "SENTINELS"] {
        let entries: Vec<Vec<String>> =
            admin(sentinel, redis::cmd("SENTINEL").arg(what).arg("gameday")).await;
        assert_eq!(entries.len(), 2, "{what}");
        for e in entries {
            let port: u16 = e.chunks(2).find(|c| c[0] == "port").unwrap()[1]
                .parse()
                .unwrap();
            assert!(
                ports.contains(&port),
                "{what} entry on port {port} is not a proxy"
            );
        }
    }
    set_get(&lab, "hello").await.unwrap();
    assert_no_bypass(&lab).await;
    set_get(&lab, "again").await.unwrap();
    assert_stops_clean(lab).await;
}

async fn cluster(backend: Backend) {
    let lab = lab_on(TopologyKind::Cluster, backend).await;
    let ports = proxy_ports(&lab);
    let node = lab.topology.nodes[0].addr;
    for i in 0..20 {
        set_get(&lab, &format!("key-{i}")).await.unwrap();
    }
    // Redis lists a replica in CLUSTER SLOTS once gossip shows it has a
    // replication offset, i.e. after the writes above have reached it.
    let client_proxies: BTreeSet<u16> = lab
        .wired
        .iter()
        .filter(|w| w.endpoint.port == Port::Client)
        .map(|w| w.proxy_addr.port())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slots: Vec<Vec<redis::Value>> = admin(node, redis::cmd("CLUSTER").arg("SLOTS")).await;
        let mut announced = BTreeSet::new();
        for range in &slots {
            for entry in &range[2..] {
                let fields: Vec<redis::Value> = redis::from_redis_value(entry.clone()).unwrap();
                announced.insert(redis::from_redis_value::<u16>(fields[1].clone()).unwrap());
            }
        }
        assert!(
            announced.is_subset(&client_proxies),
            "CLUSTER SLOTS names a port that is no proxy: {announced:?}"
        );
        if announced == client_proxies {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never listed: {announced:?} vs {client_proxies:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ports.len() == 12, "a client and a bus proxy per node");
    assert_no_bypass(&lab).await;
    assert_stops_clean(lab).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicated_announces_proxies_and_has_no_bypass() {
    let _gate = crate::common::gate(module_path!());
    replicated(Backend::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_hands_out_proxies_and_has_no_bypass() {
    let _gate = crate::common::gate(module_path!());
    sentinel(Backend::Process).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_hands_out_proxies_and_has_no_bypass() {
    let _gate = crate::common::gate(module_path!());
    cluster(Backend::Process).await;
}

/// The same checks on the docker backend, one topology after another, plus
/// the containers' labels.
#[tokio::test(flavor = "multi_thread")]
async fn docker_backend_topologies_hand_out_proxies_and_have_no_bypass() {
    let _gate = crate::common::gate(module_path!());
    if !docker_ready() {
        return;
    }
    let lab = lab_on(TopologyKind::Standalone, Backend::Docker).await;
    let ids: Vec<String> = lab
        .topology
        .nodes
        .iter()
        .filter_map(|n| n.container_id())
        .collect();
    assert_eq!(ids.len(), 1, "one container");
    // gameday-<owner tag>-<run id>-redis-0, the run id being test-<hex>
    let proxy = &lab.wired[0].proxy;
    let from = proxy.find("-test-").expect("the run id in the proxy name") + 1;
    let run = proxy[from..].trim_end_matches("-redis-0").to_string();
    assert_eq!(
        containers_of(&run).len(),
        1,
        "the container carries the run's label"
    );
    set_get(&lab, "hello").await.unwrap();
    assert_no_bypass(&lab).await;
    assert_stops_clean(lab).await;
    assert!(containers_of(&run).is_empty());
    replicated(Backend::Docker).await;
    sentinel(Backend::Docker).await;
    cluster(Backend::Docker).await;
}
