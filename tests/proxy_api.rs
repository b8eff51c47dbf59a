//! The embedded proxy speaks Toxiproxy's HTTP API: the `toxiproxy_rust`
//! client (the one gameday itself uses) creates, lists, toxics, disables and
//! resets proxies on it.

use gameday::EmbeddedProxy;
use std::net::SocketAddr;
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

async fn server() -> EmbeddedProxy {
    EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn toxiproxy_rust_client_drives_the_embedded_server() {
    let _gate = crate::common::gate(module_path!());
    let proxy = server().await;
    let addr = proxy.addr;
    tokio::task::spawn_blocking(move || {
        let client = Client::new(addr);
        assert!(client.is_running());
        let version = client.version().unwrap();
        assert!(version.contains("\"version\":\"2."), "version: {version}");

        let created = client
            .populate(vec![
                ProxyPack::new("one".into(), "127.0.0.1:0".into(), "127.0.0.1:6379".into()),
                ProxyPack::new("two".into(), "127.0.0.1:0".into(), "localhost:6380".into()),
            ])
            .unwrap();
        assert_eq!(created.len(), 2);
        let listen = &created[0].proxy_pack.listen;
        assert!(
            listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
            "a real port: {listen}"
        );

        let all = client.all().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all["one"].proxy_pack.enabled);

        let one = client.find_proxy("one").unwrap();
        one.with_latency("downstream".into(), 50, 5, 1.0);
        one.with_bandwidth("upstream".into(), 100, 0.5);
        one.with_slicer("downstream".into(), 64, 8, 100, 1.0);
        let toxics = one.toxics().unwrap();
        let names: Vec<&str> = toxics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "latency_downstream",
                "bandwidth_upstream",
                "slicer_downstream"
            ]
        );
        assert_eq!(toxics[0].attributes["latency"], 50);
        assert_eq!(toxics[0].attributes["jitter"], 5);
        assert_eq!(toxics[1].toxicity, 0.5);

        one.disable().unwrap();
        assert!(!client.find_proxy("one").unwrap().proxy_pack.enabled);
        one.enable().unwrap();
        assert!(client.find_proxy("one").unwrap().proxy_pack.enabled);
        assert_eq!(
            client.find_proxy("one").unwrap().proxy_pack.listen,
            *listen,
            "re-enabling keeps the port"
        );

        one.disable().unwrap();
        client.reset().unwrap();
        let one = client.find_proxy("one").unwrap();
        assert!(one.proxy_pack.enabled, "reset enables");
        assert!(one.toxics().unwrap().is_empty(), "reset removes toxics");

        client.find_proxy("two").unwrap().delete().unwrap();
        assert!(client.find_proxy("two").is_err());
        assert_eq!(client.all().unwrap().len(), 1);
    })
    .await
    .unwrap();
}

/// The parts of the API toxiproxy_rust does not cover, over plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn raw_api_status_codes_and_toxic_updates() {
    let _gate = crate::common::gate(module_path!());
    let proxy = server().await;
    let base = proxy.url();
    tokio::task::spawn_blocking(move || {
        let http = reqwest::blocking::Client::new();
        let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send().unwrap();
        let get = |path: &str| http.get(format!("{base}{path}")).send().unwrap();

        let r = post("/proxies", serde_json::json!({"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}));
        assert_eq!(r.status(), 201);
        let r = post("/proxies", serde_json::json!({"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}));
        assert_eq!(r.status(), 409, "duplicate proxy");
        assert_eq!(get("/proxies/nope").status(), 404);

        let r = post("/proxies/p/toxics", serde_json::json!({"type": "reset_peer", "attributes": {"timeout": 10}}));
        assert_eq!(r.status(), 200);
        let t: serde_json::Value = r.json().unwrap();
        assert_eq!(t["name"], "reset_peer_downstream");
        assert_eq!(t["stream"], "downstream");
        assert_eq!(t["toxicity"], 1.0);

        let r = post("/proxies/p/toxics/reset_peer_downstream", serde_json::json!({"attributes": {"timeout": 99}}));
        assert_eq!(r.status(), 200);
        let t: serde_json::Value = get("/proxies/p/toxics/reset_peer_downstream").json().unwrap();
        assert_eq!(t["attributes"]["timeout"], 99);

        let r = post("/proxies/p/toxics", serde_json::json!({"type": "latency", "toxicity": 1.5, "attributes": {"latency": 1}}));
        assert_eq!(r.status(), 400, "toxicity above 1");
        let r = post("/proxies/p/toxics", serde_json::json!({"type": "gremlins", "attributes": {}}));
        assert_eq!(r.status(), 400, "unknown toxic type");

        let r = http.delete(format!("{base}/proxies/p/toxics/reset_peer_downstream")).send().unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(get("/proxies/p/toxics/reset_peer_downstream").status(), 404);

        // Safety: a listener on loopback only (the upstream is checked
        // when a connection dials it: `fidelity` below).
        let r = post("/proxies", serde_json::json!({"name": "wide", "listen": "0.0.0.0:0", "upstream": "127.0.0.1:6379"}));
        assert_eq!(r.status(), 400);

        // A body is JSON whatever its Content-Type, as with Toxiproxy
        // (`curl -d` sends none of JSON's).
        let raw = |path: &str, body: &str| http.post(format!("{base}{path}")).body(body.to_string()).send().unwrap();
        let r = raw("/populate", r#"[{"name": "bare", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}]"#);
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        assert_eq!(get("/proxies/bare").status(), 200);
        let r = raw("/proxies/bare/toxics", "{not json");
        assert_eq!(r.status(), 400);
        assert!(r.text().unwrap().contains("bad request body"));
    })
    .await
    .unwrap();
}

/// Disabling closes the listener before the API answers, so an enable sent
/// straight after rebinds the same port; a proxy stays listed while it
/// rebinds. (The listener used to close some time after the answer, and an
/// immediate enable could find its own port still taken.)
#[tokio::test(flavor = "multi_thread")]
async fn toggling_fast_keeps_the_port_and_the_listing() {
    let _gate = crate::common::gate(module_path!());
    let proxy = server().await;
    let base = proxy.url();
    tokio::task::spawn_blocking(move || {
        let http = reqwest::blocking::Client::new();
        let r = http
            .post(format!("{base}/proxies"))
            .json(&serde_json::json!({"name": "t", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let listen = r.json::<serde_json::Value>().unwrap()["listen"].as_str().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (base, stop) = (base.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http.get(format!("{base}/proxies/t")).send().unwrap().status();
                    assert_eq!(status, 200, "the proxy vanished from the listing mid-toggle");
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..200 {
            for enabled in [false, true] {
                let r = http
                    .post(format!("{base}/proxies/t"))
                    .json(&serde_json::json!({ "enabled": enabled }))
                    .send()
                    .unwrap();
                let status = r.status();
                let body = r.text().unwrap();
                assert_eq!(status, 200, "round {round}, enabled={enabled}: {body}");
            }
            let reachable = std::net::TcpStream::connect(&listen).is_ok();
            assert!(reachable, "round {round}: not listening on {listen} after enable");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0, "the reader never ran");
        let after = http.get(format!("{base}/proxies/t")).send().unwrap();
        assert_eq!(after.json::<serde_json::Value>().unwrap()["listen"], listen.as_str());
    })
    .await
    .unwrap();
}

/// The points where clients written for Toxiproxy 2.x rely on its exact
/// behaviour (its api.go): PATCH, JSON /version, toxic defaults, updates
/// that change attributes and toxicity only, an idempotent and atomic
/// /populate, and upstreams dialled per connection — where gameday's
/// loopback rule closes the connection and counts it.
#[tokio::test(flavor = "multi_thread")]
async fn toxiproxy_fidelity() {
    let _gate = crate::common::gate(module_path!());
    let proxy = server().await;
    let base = proxy.url();
    let redis = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = redis.local_addr().unwrap().port();
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{base}{path}"))
            .body(body.to_string())
            .send()
    };
    use reqwest::Method;
    use serde_json::json;
    let show = |path: &str| {
        let req = http.get(format!("{base}{path}")).send();
        async move {
            req.await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let v = show("/version").await;
    assert!(v["version"].as_str().unwrap().starts_with("2.12"), "{v}");

    let r = send(
        Method::POST,
        "/populate",
        json!([{"name": "p", "listen": "127.0.0.1:0", "upstream": format!("127.0.0.1:{up}")}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let listen = show("/proxies/p").await["listen"]
        .as_str()
        .unwrap()
        .to_string();
    let port = listen.rsplit_once(':').unwrap().1.to_string();
    // The same definition, written differently: left alone, toxics kept.
    let r = send(
        Method::POST,
        "/proxies/p/toxics",
        json!({"name": "", "type": "latency", "attributes": {"latency": 5}}),
    )
    .await
    .unwrap();
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(t["name"], "latency_downstream", "an empty name is no name");
    let r = send(Method::POST, "/populate", json!([{"name": "p", "listen": format!("localhost:{port}"), "upstream": format!("127.0.0.1:{up}")}])).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let p = show("/proxies/p").await;
    assert_eq!(
        (
            p["enabled"].as_bool(),
            p["toxics"].as_array().unwrap().len()
        ),
        (Some(true), 1),
        "{p}"
    );
    // A changed upstream: replaced in place, still listed and enabled.
    let r = send(
        Method::POST,
        "/populate",
        json!([{"name": "p", "listen": listen, "upstream": format!("localhost:{up}")}]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let p = show("/proxies/p").await;
    assert!(
        p["toxics"].as_array().unwrap().is_empty(),
        "a new proxy: {p}"
    );
    assert_eq!(p["upstream"], format!("localhost:{up}"));
    assert_eq!(
        (p["enabled"].as_bool(), p["listen"].as_str()),
        (Some(true), Some(listen.as_str())),
        "{p}"
    );
    // Atomic: an invalid entry creates nothing.
    let r = send(Method::POST, "/populate", json!([{"name": "new1", "listen": "127.0.0.1:0", "upstream": format!("127.0.0.1:{up}")}, {"name": "", "listen": "127.0.0.1:0", "upstream": "x:1"}])).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        send(Method::GET, "/proxies/new1", json!(null))
            .await
            .unwrap()
            .status(),
        404
    );

    let latency = json!({"type": "latency", "attributes": {"latency": 5}});
    let r = send(Method::POST, "/proxies/p/toxics", latency)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // PATCH as POST; an update changes attributes and toxicity only.
    let r = send(Method::PATCH, "/proxies/p", json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(Method::PATCH, "/proxies/p", json!({"enabled": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(Method::PATCH, "/proxies/p/toxics/latency_downstream", json!({"stream": "upstream", "type": "timeout", "toxicity": 0.5, "attributes": {"latency": 9}})).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let t: serde_json::Value = send(
        Method::GET,
        "/proxies/p/toxics/latency_downstream",
        json!(null),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (t["type"].as_str(), t["stream"].as_str()),
        (Some("latency"), Some("downstream")),
        "{t}"
    );
    assert_eq!(
        (t["attributes"]["latency"].as_u64(), t["toxicity"].as_f64()),
        (Some(9), Some(0.5)),
        "{t}"
    );
    // Missing or null attributes are zero values.
    for body in [
        json!({"type": "timeout"}),
        json!({"type": "bandwidth", "attributes": null}),
    ] {
        let r = send(Method::POST, "/proxies/p/toxics", body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{body}: {}", r.text().await.unwrap());
    }

    // A non-loopback upstream is a valid definition; a connection that
    // dials it is closed, counted, and sends nothing anywhere.
    let r = send(
        Method::POST,
        "/proxies",
        json!({"name": "out", "listen": "127.0.0.1:0", "upstream": "10.1.2.3:6379"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let out = show("/proxies/out").await;
    let before = proxy.server.refused_dials();
    let mut c = tokio::net::TcpStream::connect(out["listen"].as_str().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    use tokio::io::AsyncReadExt;
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(proxy.server.refused_dials(), before + 1);
    drop(redis);
}
