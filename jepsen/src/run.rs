//! One test run from start to verdict: cluster up, workload and nemeses concurrently until the
//! time limit, faults stopped and healed, final reads, check, report, cluster down.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::check::{Validity, Verdict};
use crate::cluster::{net, Cluster, ClusterConfig, Target};
use crate::history::Kind;
use crate::nemesis::{self, Fault, Schedule, Window};
use crate::report::{self, RunReport};
use crate::workload::{self, Ctx, Recorder, Workload};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workload: Workload,
    /// As given on the command line (for names and reports).
    pub nemesis: String,
    pub faults: Vec<Fault>,
    pub time_limit: Duration,
    pub target: Target,
    pub nodes: usize,
    pub keel_bin: PathBuf,
    pub member_args: Vec<String>,
    /// Reports go to `out/<run name>/`.
    pub out: PathBuf,
    /// Client processes (default: two per member).
    pub concurrency: usize,
    pub think: Duration,
    pub schedule: Schedule,
    /// `None`: namespaces if available, else loopback.
    pub namespaces: Option<bool>,
}

/// How long healing and final reads may take after the time limit.
const WIND_DOWN: Duration = Duration::from_secs(180);

/// Runs the test once and writes its report. Never fails: what went wrong is in the report.
pub async fn run_once(cfg: &RunConfig, k: usize) -> RunReport {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "{stamp}-{}-{}-{}-{k}",
        cfg.target,
        cfg.workload,
        cfg.nemesis.replace(',', "+")
    );
    let dir = cfg.out.join(&name);
    let namespaces = cfg.namespaces.unwrap_or_else(net::available);
    let mut rep = RunReport {
        name,
        workload: cfg.workload.to_string(),
        nemesis: cfg.nemesis.clone(),
        target: cfg.target.to_string(),
        nodes: cfg.nodes,
        time_limit_s: cfg.time_limit.as_secs(),
        namespaces,
        valid: Validity::Unknown,
        verdict: Verdict::new(&cfg.workload.to_string()),
        stats: report::OpStats::default(),
        faults: 0,
        failing_subhistory: Vec::new(),
        error: None,
    };
    let ccfg = ClusterConfig {
        target: cfg.target,
        nodes: cfg.nodes,
        keel_bin: cfg.keel_bin.clone(),
        member_args: cfg.member_args.clone(),
        dir: dir.clone(),
        namespaces,
    };
    let rec = Recorder::new();
    let (events, timeline, extra) = match Cluster::start(ccfg).await {
        Err(e) => {
            rep.error = Some(format!("cluster did not start: {e}"));
            (Vec::new(), Vec::new(), None)
        }
        Ok(cluster) => {
            let (timeline, extra, err) = drive(cfg, cluster, rec.clone()).await;
            rep.error = err;
            (rec.events(), timeline, extra)
        }
    };
    let (w, ev, ex) = (cfg.workload, events.clone(), extra.clone());
    let verdict = tokio::task::spawn_blocking(move || workload::check(w, &ev, &ex))
        .await
        .unwrap_or_else(|e| {
            let mut v = Verdict::new("check");
            v.undecided(format!("checker crashed: {e}"));
            v
        });
    rep.valid = match (verdict.valid, &rep.error) {
        (Validity::Valid, Some(_)) => Validity::Unknown,
        (v, _) => v,
    };
    rep.failing_subhistory = report::subhistory(&events, &verdict.witness);
    rep.verdict = verdict;
    rep.stats = report::op_stats(&events);
    rep.faults = timeline.len();
    if let Err(e) = report::write_run(&dir, &rep, &events, &timeline, &extra) {
        rep.error.get_or_insert(format!("writing the report: {e}"));
    }
    let _ = report::write_index(&cfg.out);
    rep
}

/// The part with a live cluster. Returns the timeline, the workload's extra record, and what
/// kept the run from completing.
async fn drive(
    cfg: &RunConfig,
    cluster: Cluster,
    rec: Arc<Recorder>,
) -> (Vec<Window>, workload::Extra, Option<String>) {
    let clients = cluster.clients.clone();
    let shared = Arc::new(Mutex::new(cluster));
    let stop = CancellationToken::new();
    let nemeses = tokio::spawn(nemesis::run(
        cfg.faults.clone(),
        shared.clone(),
        rec.clone(),
        stop.clone(),
        cfg.schedule,
    ));
    let ctx = Ctx {
        rec: rec.clone(),
        clients,
        concurrency: cfg.concurrency,
        deadline: Instant::now() + cfg.time_limit,
        prefix: "/kj/".into(),
        think: cfg.think,
        counter: Arc::new(AtomicU64::new(0)),
    };
    let timeline = std::sync::Mutex::new(Vec::new());
    let recovered = std::sync::Mutex::new(None::<String>);
    let heal = async {
        stop.cancel();
        let windows = match nemeses.await {
            Ok(w) => w,
            Err(e) => vec![Window {
                fault: "nemesis".into(),
                detail: serde_json::json!({"crashed": e.to_string()}),
                start: 0,
                stop: None,
            }],
        };
        if let Ok(mut t) = timeline.lock() {
            *t = windows;
        }
        let mut c = shared.lock().await;
        rec.nemesis(Kind::Invoke, "heal", serde_json::Value::Null);
        let healed = nemesis::heal_all(&mut c).await;
        rec.nemesis(Kind::Info, "heal", healed);
        if let Err(e) = c.wait_ready(Duration::from_secs(60)).await {
            if let Ok(mut r) = recovered.lock() {
                *r = Some(format!("the cluster did not recover after healing: {e}"));
            }
        }
    };
    let result = tokio::time::timeout(
        cfg.time_limit + WIND_DOWN,
        workload::run(cfg.workload, &ctx, heal),
    )
    .await;
    stop.cancel();
    let mut err = recovered.lock().ok().and_then(|mut r| r.take());
    let extra = match result {
        Ok(Ok(extra)) => extra,
        Ok(Err(e)) => {
            err.get_or_insert(e.to_string());
            None
        }
        Err(_) => {
            err.get_or_insert("the run did not finish in time".into());
            None
        }
    };
    shared.lock().await.stop_all();
    let windows = timeline
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    (windows, extra, err)
}
