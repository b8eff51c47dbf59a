//! Garbage in, no panic out. The scenario parser takes thousands of
//! mutations of the shipped scenarios (lines dropped, doubled and cut,
//! values swapped for hostile ones, bytes inserted) and either accepts
//! each or refuses it with a file:line:col inside the text; `gameday
//! validate` exits 2 on a sample of the refused ones. The proxy API takes
//! random methods and JSON bodies on every route and answers 4xx, never
//! 5xx, with every proxy and toxic unchanged after a refusal. Huge values
//! are refused or read within bounded time.

use crate::common::gameday;
use gameday::EmbeddedProxy;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::Path;

const HOSTILE: &[&str] = &[
    "-1",
    "0",
    "1e308",
    "-9223372036854775808",
    "18446744073709551616",
    "nan",
    "inf",
    "\"\"",
    "\"-5s\"",
    "\"99999999999h\"",
    "\"0s\"",
    "\"1.5.5ms\"",
    "\"\\u0000\"",
    "[]",
    "[[]]",
    "{}",
    "{ a = 1 }",
    "true",
    "\"node:nope\"",
    "\"fault:*.p99 > \"",
    "\"run.p99 <\"",
    "\"💥\"",
];

fn shipped() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// One random change to `text`.
fn mutate(text: &str, rng: &mut SmallRng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let i = rng.gen_range(0..lines.len());
    match rng.gen_range(0..6) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let cut = rng.gen_range(0..=lines[i].len());
            let cut = (0..=cut)
                .rev()
                .find(|c| lines[i].is_char_boundary(*c))
                .unwrap_or(0);
            lines[i].truncate(cut);
        }
        3 | 4 => {
            if let Some((key, _)) = lines[i].split_once(" = ") {
                let v = HOSTILE[rng.gen_range(0..HOSTILE.len())];
                lines[i] = format!("{key} = {v}");
            }
        }
        _ => {
            const JUNK: &[u8] = b"[]{}=\"'#,.\n\\x0";
            let junk: String = (0..rng.gen_range(1..8))
                .map(|_| JUNK[rng.gen_range(0..JUNK.len())] as char)
                .collect();
            let at = (0..=rng.gen_range(0..=lines[i].len()))
                .rev()
                .find(|c| lines[i].is_char_boundary(*c))
                .unwrap_or(0);
            lines[i].insert_str(at, &junk);
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_scenarios_are_accepted_or_refused_at_a_place() {
    let _gate = crate::common::gate(module_path!());
    let corpus = shipped();
    let mut rng = SmallRng::seed_from_u64(0x5ce0);
    let (mut refused, mut accepted) = (Vec::new(), 0);
    for case in 0..4000 {
        let (name, base) = &corpus[case % corpus.len()];
        let mut text = mutate(base, &mut rng);
        if rng.gen_bool(0.3) {
            text = mutate(&text, &mut rng);
        }
        let parsed =
            std::panic::catch_unwind(|| gameday::parse_scenario(Path::new("m.toml"), &text));
        let Ok(parsed) = parsed else {
            panic!("the parser panicked on a mutation of {name}:\n{text}")
        };
        match parsed {
            Ok(_) => accepted += 1,
            Err(e) => {
                let lines = text.lines().count().max(1);
                assert!(
                    e.line >= 1 && e.line <= lines + 1 && e.col >= 1,
                    "{name}: {e} points outside the text ({lines} lines):\n{text}"
                );
                assert!(
                    e.to_string()
                        .starts_with(&format!("m.toml:{}:{}", e.line, e.col)),
                    "{e}"
                );
                refused.push(text);
            }
        }
    }
    eprintln!(
        "hostile: 4000 mutations, {accepted} accepted, {} refused",
        refused.len()
    );
    assert!(
        refused.len() > 1000,
        "the mutations must mostly break something"
    );
    // The CLI says the same with exit 2, on a sample.
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in refused.iter().step_by(refused.len() / 20).enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = gameday().arg("validate").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("{}:", path.display())), "{err}");
    }
}

#[test]
fn huge_values_are_refused_or_read_in_bounded_time() {
    let _gate = crate::common::gate(module_path!());
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/cold-cache.toml"),
    )
    .unwrap();
    let long = base.replacen(
        "description = \"",
        &format!("description = \"{}", "x".repeat(10 << 20)),
        1,
    );
    let rules: String = (0..100_000)
        .map(|i| format!("\"fault:flush.keys_removed > {i}\","))
        .collect();
    let many = base.replace("expect = [", &format!("expect = [{rules}"));
    for (what, text) in [("a 10 MB description", long), ("100 000 rules", many)] {
        let t = std::time::Instant::now();
        let r = gameday::parse_scenario(Path::new("h.toml"), &text);
        let took = t.elapsed();
        assert!(
            took < std::time::Duration::from_secs(20),
            "{what}: {took:?}"
        );
        if let Err(e) = r {
            assert!(e.line >= 1, "{what}: {e}");
        }
    }
}

const ROUTES: &[&str] = &[
    "/version",
    "/reset",
    "/populate",
    "/proxies",
    "/proxies/p",
    "/proxies/nope",
    "/proxies/p/toxics",
    "/proxies/p/toxics/latency_downstream",
    "/proxies/p/toxics/nope",
];

/// A random JSON value, sometimes shaped like the API's bodies.
fn json(rng: &mut SmallRng, depth: u32) -> serde_json::Value {
    use serde_json::json;
    let keys = [
        "name",
        "listen",
        "upstream",
        "enabled",
        "type",
        "stream",
        "toxicity",
        "attributes",
        "latency",
        "jitter",
        "rate",
        "error",
        "commands",
        "probability",
        "every",
        "keys",
    ];
    match rng.gen_range(0..if depth > 2 { 6 } else { 9 }) {
        0 => json!(null),
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen_range(-5i64..100_000)),
        3 => json!(rng.gen::<f64>() * 3.0 - 1.0),
        4 => json!(
            [
                "latency",
                "timeout",
                "redis_error",
                "127.0.0.1:0",
                "10.0.0.1:1",
                "",
                "OOM",
                "x"
            ][rng.gen_range(0..8)]
        ),
        5 => json!(u64::MAX),
        6 | 7 => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..6) {
                m.insert(
                    keys[rng.gen_range(0..keys.len())].into(),
                    json(rng, depth + 1),
                );
            }
            serde_json::Value::Object(m)
        }
        _ => serde_json::Value::Array(
            (0..rng.gen_range(0..3))
                .map(|_| json(rng, depth + 1))
                .collect(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn random_api_requests_get_4xx_never_5xx_and_change_nothing_when_refused() {
    let _gate = crate::common::gate(module_path!());
    let proxy = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = proxy.url();
    let http = reqwest::Client::new();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let setup = serde_json::json!({"name": "p", "listen": "127.0.0.1:0", "upstream": upstream.local_addr().unwrap().to_string()});
    assert_eq!(
        http.post(format!("{base}/proxies"))
            .json(&setup)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let toxic = serde_json::json!({"type": "latency", "attributes": {"latency": 1}});
    assert_eq!(
        http.post(format!("{base}/proxies/p/toxics"))
            .json(&toxic)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let state = || async {
        http.get(format!("{base}/proxies"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let mut rng = SmallRng::seed_from_u64(0xa91);
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ];
    let mut by_class = [0usize; 6];
    for _ in 0..2000 {
        let before = state().await;
        let method = methods[rng.gen_range(0..methods.len())].clone();
        // DELETE and /reset succeed by design; they change state, so only
        // their status is held to the rule.
        let route = ROUTES[rng.gen_range(0..ROUTES.len())];
        let body = if rng.gen_bool(0.1) {
            "{\"name\": \"p\", \x00 garbage".to_string()
        } else {
            json(&mut rng, 0).to_string()
        };
        let r = http
            .request(method.clone(), format!("{base}{route}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        by_class[(status / 100) as usize] += 1;
        assert!(
            status < 500,
            "{method} {route} {body}: {status} {}",
            r.text().await.unwrap_or_default()
        );
        if status >= 400 {
            assert_eq!(
                state().await,
                before,
                "{method} {route} {body} was refused ({status}) but changed something"
            );
        }
        // Keep something to break: put back what a success removed.
        let now = state().await;
        if now.get("p").is_none() {
            let _ = http
                .post(format!("{base}/proxies"))
                .json(&setup)
                .send()
                .await
                .unwrap();
        }
        if state().await["p"]["toxics"]
            .as_array()
            .is_some_and(|t| t.is_empty())
        {
            let _ = http
                .post(format!("{base}/proxies/p/toxics"))
                .json(&toxic)
                .send()
                .await
                .unwrap();
        }
    }
    eprintln!(
        "hostile: 2000 API requests: {} 2xx, {} 4xx",
        by_class[2], by_class[4]
    );
    assert!(by_class[4] > 500, "mostly refused: {by_class:?}");
    drop(upstream);
}
