//! The conductor keeps the clock. On paused tokio time (no Redis needed: a
//! `gc_pause` with no lock holder applies and lifts at once), each fault's
//! phase begins exactly when its apply starts and its recovery exactly when
//! its removal is confirmed; a stop ends the timeline early with the fault
//! in force removed and recorded.

use gameday::testing::GcPause;
use gameday::testing::ProxyControl;
use gameday::testing::Recorder;
use gameday::testing::{conduct, Scheduled, Stage};
use gameday::testing::{Env, Fault, FaultKind, FaultPlan, FaultRecord, Target};
use gameday::EmbeddedProxy;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

fn gc_pause(name: &str, at_s: u64, for_s: u64) -> FaultPlan {
    FaultPlan {
        name: name.into(),
        kind: FaultKind::GcPause,
        fault: Fault::GcPause,
        target: Target::Primary,
        at: Duration::from_secs(at_s),
        duration: Duration::from_secs(for_s),
    }
}

struct Clock {
    _proxy: EmbeddedProxy,
    control: ProxyControl,
    gc: Arc<GcPause>,
    t0: Instant,
    recorder: Arc<Mutex<Recorder>>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
}

impl Clock {
    async fn new() -> Clock {
        let proxy = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let control = ProxyControl::connect_async(&proxy.url()).await.unwrap();
        let t0 = Instant::now();
        Clock {
            _proxy: proxy,
            control,
            gc: Arc::new(GcPause::default()),
            t0,
            recorder: Arc::new(Mutex::new(Recorder::new(t0, &["acquire"]))),
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn schedule(&self, plans: Vec<FaultPlan>) -> Vec<Scheduled> {
        plans
            .into_iter()
            .map(|plan| Scheduled {
                plan,
                env: Env {
                    control: self.control.clone(),
                    proxies: Vec::new(),
                    nodes: Vec::new(),
                    failover: None,
                    prefix: "gameday:clock:".into(),
                    gc: Some(self.gc.clone()),
                    peer_source: false,
                    own_proxy: true,
                    primary: None,
                },
            })
            .collect()
    }

    fn stage(&self, stop: watch::Receiver<bool>) -> Stage {
        Stage {
            recorder: self.recorder.clone(),
            records: self.records.clone(),
            t0: self.t0,
            stop,
            ledger: None,
        }
    }

    /// Each phase after `run`, with its start (µs).
    fn phases(&self) -> Vec<(String, u64)> {
        let rec = self.recorder.lock().unwrap();
        rec.phases()[1..]
            .iter()
            .map(|p| (p.name.clone(), p.start_us))
            .collect()
    }
}

fn named(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

#[tokio::test(start_paused = true)]
async fn phases_begin_and_end_exactly_on_the_timeline() {
    let _gate = crate::common::gate(module_path!());
    let clock = Clock::new().await;
    let (_stop_tx, stop) = watch::channel(false);
    let schedule = clock.schedule(vec![gc_pause("a", 2, 3), gc_pause("b", 7, 1)]);
    conduct(schedule, clock.stage(stop)).await.unwrap();
    assert_eq!(
        clock.phases(),
        named(&[
            ("baseline", 0),
            ("fault:a", 2_000_000),
            ("recovery:a", 5_000_000),
            ("fault:b", 7_000_000),
            ("recovery:b", 8_000_000),
        ])
    );
    let records = clock.records.lock().unwrap();
    let seen: Vec<_> = records
        .iter()
        .map(|r| (r.name.as_str(), r.applied_at_s, r.removed_at_s))
        .collect();
    assert_eq!(
        seen,
        [("a", Some(2.0), Some(5.0)), ("b", Some(7.0), Some(8.0))]
    );
    assert_eq!(records[0].kind, "gc_pause");
    assert_eq!(clock.t0.elapsed(), Duration::from_secs(8));
}

#[tokio::test(start_paused = true)]
async fn a_stop_removes_the_fault_in_force_and_begins_no_other() {
    let _gate = crate::common::gate(module_path!());
    let clock = Clock::new().await;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop_tx.send(true);
    });
    let schedule = clock.schedule(vec![gc_pause("a", 2, 10), gc_pause("b", 20, 1)]);
    conduct(schedule, clock.stage(stop)).await.unwrap();
    assert_eq!(
        clock.phases(),
        named(&[
            ("baseline", 0),
            ("fault:a", 2_000_000),
            ("recovery:a", 3_000_000)
        ])
    );
    let records = clock.records.lock().unwrap();
    assert_eq!(records[0].removed_at_s, Some(3.0));
    assert_eq!(records[1].applied_at_s, None, "b never began");
    assert_eq!(clock.t0.elapsed(), Duration::from_secs(3));
}
