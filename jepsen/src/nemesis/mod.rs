//! Nemeses: faults injected on a schedule while the workload runs. Each fault family runs its
//! own loop (so combinations overlap): a healthy pause, the fault, a hold, the repair. Every
//! start and stop is recorded in the history and in the timeline.

pub mod disk;
pub mod partition;

use std::sync::Arc;
use std::time::Duration;

use keel_proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberRemoveRequest};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::client::timed_admin;
use crate::cluster::Cluster;
use crate::history::Kind;
use crate::workload::Recorder;
use crate::Error;
use partition::Shape;

/// A fault family, with the variant asked for on the command line if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL and restart; `true`: always the leader.
    Kill {
        leader: Option<bool>,
    },
    /// SIGSTOP and SIGCONT.
    Pause {
        leader: Option<bool>,
    },
    Partition(Option<Shape>),
    /// Restart a member with its wall clock shifted (libfaketime).
    Skew,
    /// Remove a member through the Cluster API, wipe it, add it back.
    Member,
    /// Kill, damage the tail of the newest files, restart.
    Disk,
}

impl Fault {
    pub fn family(self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Partition(_) => "partition",
            Fault::Skew => "skew",
            Fault::Member => "member",
            Fault::Disk => "disk",
        }
    }
}

/// Parses `kill,partition-leader,...`; `none` is no fault.
pub fn parse(list: &str) -> Result<Vec<Fault>, Error> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(match name {
            "none" => continue,
            "kill" => Fault::Kill { leader: None },
            "kill-leader" => Fault::Kill { leader: Some(true) },
            "kill-random" => Fault::Kill {
                leader: Some(false),
            },
            "pause" => Fault::Pause { leader: None },
            "pause-leader" => Fault::Pause { leader: Some(true) },
            "pause-random" => Fault::Pause {
                leader: Some(false),
            },
            "partition" => Fault::Partition(None),
            "partition-halves" => Fault::Partition(Some(Shape::Halves)),
            "partition-leader" => Fault::Partition(Some(Shape::IsolateLeader)),
            "partition-ring" => Fault::Partition(Some(Shape::MajoritiesRing)),
            "partition-bridge" => Fault::Partition(Some(Shape::Bridge)),
            "skew" | "clock" => Fault::Skew,
            "member" => Fault::Member,
            "disk" => Fault::Disk,
            other => {
                return Err(Error::Unknown {
                    kind: "nemesis",
                    name: other.to_string(),
                })
            }
        });
    }
    Ok(out)
}

/// One fault window of the timeline. Times are nanoseconds since the test started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub fault: String,
    pub detail: Value,
    pub start: u64,
    pub stop: Option<u64>,
}

/// Timing of the fault loops.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Healthy time between faults (uniform in the range).
    pub calm: (Duration, Duration),
    /// How long a fault lasts.
    pub hold: (Duration, Duration),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            calm: (Duration::from_secs(2), Duration::from_secs(4)),
            hold: (Duration::from_secs(3), Duration::from_secs(6)),
        }
    }
}

pub type Shared = Arc<Mutex<Cluster>>;

/// What must be undone when a fault ends.
enum Active {
    Restart(usize),
    Resume(usize),
    Heal,
    Unskew(usize),
    Readd(usize),
    /// A damaged member: see whether it came back.
    Damaged(usize),
    Nothing,
}

fn pick(rng: &mut impl Rng, candidates: &[usize]) -> Option<usize> {
    (!candidates.is_empty()).then(|| candidates[rng.random_range(0..candidates.len())])
}

/// Members that are up, not paused, and in the cluster.
fn healthy(c: &mut Cluster) -> Vec<usize> {
    (0..c.len())
        .filter(|&i| {
            c.is_running(i) && !c.members[i].paused && !c.members[i].removed && !c.members[i].broken
        })
        .collect()
}

async fn target(c: &mut Cluster, leader: Option<bool>) -> Option<usize> {
    let want_leader = leader.unwrap_or_else(|| rand::rng().random_bool(0.5));
    let up = healthy(c);
    if want_leader {
        if let Some(l) = c.leader().await {
            return Some(l);
        }
    }
    pick(&mut rand::rng(), &up)
}

/// Starts a fault; returns what undoes it and what was done.
async fn begin(fault: Fault, c: &mut Cluster) -> Result<(Active, Value), String> {
    let e = |e: Error| e.to_string();
    match fault {
        Fault::Kill { leader } => {
            let Some(i) = target(c, leader).await else {
                return Ok((Active::Nothing, json!("no target")));
            };
            c.kill(i);
            Ok((Active::Restart(i), json!({"member": i})))
        }
        Fault::Pause { leader } => {
            let Some(i) = target(c, leader).await else {
                return Ok((Active::Nothing, json!("no target")));
            };
            c.signal(i, true).map_err(e)?;
            Ok((Active::Resume(i), json!({"member": i})))
        }
        Fault::Partition(shape) => {
            let shape = shape.unwrap_or_else(|| Shape::random(&mut rand::rng()));
            let leader = c.leader().await;
            let members: Vec<usize> = (0..c.len()).filter(|&i| !c.members[i].removed).collect();
            let drops = partition::drops(shape, &members, leader, &mut rand::rng());
            let Some(net) = &c.net else {
                return Err("unsupported: partitions need network namespaces".into());
            };
            for (i, from) in &drops {
                net.block(*i, from).map_err(e)?;
            }
            Ok((
                Active::Heal,
                json!({"shape": shape.name(), "leader": leader, "drops": drops}),
            ))
        }
        Fault::Skew => {
            let up = healthy(c);
            let Some(i) = pick(&mut rand::rng(), &up) else {
                return Ok((Active::Nothing, json!("no target")));
            };
            let secs = [-300i64, -30, -5, 5, 30, 300, 3600][rand::rng().random_range(0..7)];
            let skew = format!("{secs:+}s");
            c.kill(i);
            c.members[i].skew = Some(skew.clone());
            c.spawn(i).map_err(e)?;
            Ok((Active::Unskew(i), json!({"member": i, "offset": skew})))
        }
        Fault::Member => {
            // One member out at a time: removing a second would leave no majority to re-add.
            if c.members.iter().any(|m| m.removed) {
                return Ok((Active::Nothing, json!("a member is already out")));
            }
            let up = healthy(c);
            let Some(i) = pick(&mut rand::rng(), &up) else {
                return Ok((Active::Nothing, json!("no target")));
            };
            let Some(via) = up.iter().copied().find(|&j| j != i) else {
                return Ok((Active::Nothing, json!("no peer")));
            };
            let Some(id) = c.member_id(i).await else {
                return Ok((Active::Nothing, json!("member id unknown")));
            };
            let mut api = c.clients[via].cluster.clone();
            match timed_admin(api.member_remove(MemberRemoveRequest { id })).await {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    return Err(format!("unsupported: MemberRemove: {}", s.message()))
                }
                Err(s) => {
                    // The outcome is unknown: the member list says whether it happened.
                    let list = timed_admin(api.member_list(MemberListRequest {
                        linearizable: false,
                    }))
                    .await;
                    let still_in = list
                        .as_ref()
                        .map_or(true, |l| l.members.iter().any(|m| m.id == id));
                    if still_in {
                        return Ok((
                            Active::Nothing,
                            json!({"member": i, "remove_failed": crate::client::describe(&s)}),
                        ));
                    }
                }
            }
            c.kill(i);
            c.members[i].removed = true;
            let dir = c.members[i].data_dir.clone();
            let _ = std::fs::remove_dir_all(&dir);
            Ok((
                Active::Readd(i),
                json!({"member": i, "id": format!("{id:x}")}),
            ))
        }
        Fault::Disk => {
            if c.members.iter().any(|m| m.broken) {
                return Ok((Active::Nothing, json!("a member is already broken")));
            }
            let up = healthy(c);
            let Some(i) = pick(&mut rand::rng(), &up) else {
                return Ok((Active::Nothing, json!("no target")));
            };
            c.kill(i);
            // Keep the crashed state: a member that refuses the damaged copy gets it back, as
            // if the crash had done no damage, so the run goes on with every member.
            let dir = c.members[i].data_dir.clone();
            let pristine = dir.with_extension("pristine");
            let _ = std::fs::remove_dir_all(&pristine);
            crate::cluster::net::sh(
                "cp",
                &[
                    "-a",
                    &dir.display().to_string(),
                    &pristine.display().to_string(),
                ],
            )
            .map_err(e)?;
            let mut rng = rand::rng();
            let mut damage = Vec::new();
            for (file, len) in disk::newest_files(&c.members[i].data_dir, 2) {
                let truncate = rng.random_bool(0.5);
                damage.push(disk::damage(&file, len, truncate, &mut rng).map_err(e)?);
            }
            c.spawn(i).map_err(e)?;
            Ok((Active::Damaged(i), json!({"member": i, "damage": damage})))
        }
    }
}

/// Ends a fault; returns what happened.
async fn end(active: Active, c: &mut Cluster) -> Result<Value, String> {
    let e = |e: Error| e.to_string();
    match active {
        Active::Nothing => Ok(Value::Null),
        Active::Restart(i) => {
            if !c.is_running(i) && !c.members[i].removed && !c.members[i].broken {
                c.spawn(i).map_err(e)?;
            }
            Ok(json!({"restarted": i}))
        }
        Active::Resume(i) => {
            c.signal(i, false).map_err(e)?;
            Ok(json!({"resumed": i}))
        }
        Active::Heal => {
            if let Some(net) = &c.net {
                net.heal().map_err(e)?;
            }
            Ok(json!("healed"))
        }
        Active::Unskew(i) => {
            c.kill(i);
            c.members[i].skew = None;
            if !c.members[i].removed && !c.members[i].broken {
                c.spawn(i).map_err(e)?;
            }
            Ok(json!({"unskewed": i}))
        }
        Active::Readd(i) => readd(c, i).await,
        Active::Damaged(i) => {
            let dir = c.members[i].data_dir.clone();
            let pristine = dir.with_extension("pristine");
            if settled_serving(c, i).await {
                let _ = std::fs::remove_dir_all(&pristine);
                return Ok(json!({"member": i, "running": true}));
            }
            let why = refusal(&c.members[i].log);
            let restored =
                std::fs::remove_dir_all(&dir).is_ok() && std::fs::rename(&pristine, &dir).is_ok();
            if restored {
                c.spawn(i).map_err(e)?;
            } else {
                c.members[i].broken = true;
            }
            Ok(json!({"member": i, "running": false, "refused": why, "restored": restored}))
        }
    }
}

/// Waits until a member restarted on damaged files either serves (its status answers, so the
/// store opened) or exits. Deciding on `is_running` alone raced a member still opening its files:
/// it was judged healthy, its good copy dropped, and it exited a moment later.
async fn settled_serving(c: &mut Cluster, i: usize) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if !c.is_running(i) {
            return false;
        }
        let mut m = c.clients[i].maintenance.clone();
        let answered = tokio::time::timeout(
            Duration::from_secs(1),
            m.status(keel_proto::etcdserverpb::StatusRequest {}),
        )
        .await;
        if matches!(answered, Ok(Ok(_))) {
            // The open succeeded; a moment more catches a refusal found right after it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return c.is_running(i);
        }
        if tokio::time::Instant::now() > deadline {
            return c.is_running(i);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The reason a member gave for refusing to start: its last error or panic message.
fn refusal(log: &std::path::Path) -> String {
    let text = crate::cluster::tail(log, 50_000);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.contains("panicked at") || l.starts_with("Error"));
    match at {
        Some(k) => lines[k..(k + 3).min(lines.len())].join("\n"),
        None => crate::cluster::tail(log, 300),
    }
}

async fn readd(c: &mut Cluster, i: usize) -> Result<Value, String> {
    let up = healthy(c);
    let Some(via) = up.first().copied() else {
        return Ok(json!({"member": i, "readded": false, "why": "no member up"}));
    };
    let mut api = c.clients[via].cluster.clone();
    let url = c.members[i].peer_url();
    match timed_admin(api.member_add(MemberAddRequest {
        peer_ur_ls: vec![url],
        is_learner: false,
    }))
    .await
    {
        Ok(_) => {
            c.members[i].removed = false;
            c.members[i].join_existing = true;
            c.spawn(i).map_err(|e| e.to_string())?;
            Ok(json!({"member": i, "readded": true}))
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            Ok(json!({"member": i, "readded": false, "unsupported": s.message()}))
        }
        Err(s) => Ok(json!({"member": i, "readded": false, "error": crate::client::describe(&s)})),
    }
}

async fn sleep_or_stop(range: (Duration, Duration), stop: &CancellationToken) -> bool {
    let d = rand::rng()
        .random_range(range.0.as_millis()..=range.1.as_millis().max(range.0.as_millis()))
        as u64;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(d)) => true,
        _ = stop.cancelled() => false,
    }
}

/// One fault family's loop until `stop`.
async fn family(
    fault: Fault,
    cluster: Shared,
    rec: Arc<Recorder>,
    stop: CancellationToken,
    schedule: Schedule,
) -> Vec<Window> {
    let mut windows = Vec::new();
    while sleep_or_stop(schedule.calm, &stop).await {
        let name = fault.family();
        rec.nemesis(Kind::Invoke, &format!("start-{name}"), Value::Null);
        let start = rec.now();
        let begun = {
            let mut c = cluster.lock().await;
            begin(fault, &mut c).await
        };
        let (active, detail) = match begun {
            Ok(x) => x,
            Err(why) => {
                let unsupported = why.starts_with("unsupported");
                rec.nemesis(Kind::Info, &format!("start-{name}"), json!({"error": why}));
                windows.push(Window {
                    fault: name.into(),
                    detail: json!({"error": why}),
                    start,
                    stop: Some(rec.now()),
                });
                if unsupported {
                    return windows;
                }
                continue;
            }
        };
        rec.nemesis(Kind::Info, &format!("start-{name}"), detail.clone());
        sleep_or_stop(schedule.hold, &stop).await;
        rec.nemesis(Kind::Invoke, &format!("stop-{name}"), Value::Null);
        let ended = {
            let mut c = cluster.lock().await;
            end(active, &mut c).await
        };
        let outcome = ended.unwrap_or_else(|e| json!({"error": e}));
        rec.nemesis(Kind::Info, &format!("stop-{name}"), outcome.clone());
        windows.push(Window {
            fault: name.into(),
            detail: json!({"start": detail, "stop": outcome}),
            start,
            stop: Some(rec.now()),
        });
    }
    windows
}

/// Runs every fault family until `stop`; returns the timeline.
pub async fn run(
    faults: Vec<Fault>,
    cluster: Shared,
    rec: Arc<Recorder>,
    stop: CancellationToken,
    schedule: Schedule,
) -> Vec<Window> {
    let loops = faults
        .into_iter()
        .map(|f| family(f, cluster.clone(), rec.clone(), stop.clone(), schedule));
    let mut all: Vec<Window> = futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|w| w.start);
    all
}

/// Undoes every fault still in effect: resumes, heals the network, removes skew, restarts
/// members that are down (except those that were removed for good or refuse to start).
pub async fn heal_all(c: &mut Cluster) -> Value {
    let mut done = Vec::new();
    if let Some(net) = &c.net {
        if let Err(e) = net.heal() {
            done.push(json!({"heal": e.to_string()}));
        }
    }
    for i in 0..c.len() {
        if c.members[i].paused {
            let _ = c.signal(i, false);
            done.push(json!({"resumed": i}));
        }
        if c.members[i].skew.is_some() {
            c.kill(i);
            c.members[i].skew = None;
        }
        if c.members[i].removed {
            done.push(readd(c, i).await.unwrap_or_else(|e| json!({"readd": e})));
            continue;
        }
        if !c.is_running(i) && !c.members[i].broken {
            match c.spawn(i) {
                Ok(()) => done.push(json!({"restarted": i})),
                Err(e) => done.push(json!({"restart": i, "error": e.to_string()})),
            }
        }
    }
    Value::Array(done)
}
