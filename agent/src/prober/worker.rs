//! The state of one probe of one container, as kubelet's probe worker keeps it: which
//! container instance it probes, whether a probe is due at a tick, and how results in a row
//! turn into the verdict the rest of the agent sees. Plain data and decisions; the async
//! shell ([`super::ProbeManager`]) feeds it ticks and check outcomes.

use std::time::Duration;

use super::spec::{ProbeKind, ProbeTiming};

/// A probe's verdict on a container instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    Success,
    Failure,
}

/// What the worker sees of its container at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed<'a> {
    /// The current instance's runtime id; `None` before the container was ever created.
    pub container_id: Option<&'a str>,
    /// How long the instance has been running; `None` when it is not running.
    pub running_for: Option<Duration>,
    /// Whether the container counts as started (see [`started`]).
    pub started: bool,
}

/// What a tick decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// Run the check now.
    pub probe: bool,
    /// The verdict changed to this (a new instance's initial value, or a stopped one's
    /// failure).
    pub changed: Option<ProbeResult>,
}

/// One probe worker's state.
#[derive(Clone, Debug)]
pub struct ProbeWorker {
    kind: ProbeKind,
    timing: ProbeTiming,
    /// The instance the verdict is about.
    container_id: Option<String>,
    /// `None` is unknown: a startup probe that has not yet decided.
    result: Option<ProbeResult>,
    last: Option<ProbeResult>,
    run: u32,
    /// After a liveness or startup failure the container is about to be killed: probing it
    /// again could only race with that, so the worker waits for the next instance.
    on_hold: bool,
}

impl ProbeWorker {
    pub fn new(kind: ProbeKind, timing: ProbeTiming) -> Self {
        Self {
            kind,
            timing,
            container_id: None,
            result: None,
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn timing(&self) -> ProbeTiming {
        self.timing
    }

    /// The instance the current verdict is about.
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }

    /// The current verdict; `None` before the first instance and while a startup probe is
    /// undecided.
    pub fn result(&self) -> Option<ProbeResult> {
        self.result
    }

    /// The value before any probe of a new instance: readiness starts failed (not ready
    /// until shown to be), liveness succeeded (alive until shown not to be), startup unknown.
    fn initial(&self) -> Option<ProbeResult> {
        match self.kind {
            ProbeKind::Readiness => Some(ProbeResult::Failure),
            ProbeKind::Liveness => Some(ProbeResult::Success),
            ProbeKind::Startup => None,
        }
    }

    fn set(&mut self, result: Option<ProbeResult>) -> Option<ProbeResult> {
        let before = std::mem::replace(&mut self.result, result);
        result.filter(|r| before != Some(*r))
    }

    /// Follows the container and decides whether a probe is due at this tick.
    pub fn tick(&mut self, observed: Observed<'_>) -> Tick {
        let wait = |changed| Tick {
            probe: false,
            changed,
        };
        let Some(id) = observed.container_id else {
            return wait(None);
        };
        let mut changed = None;
        if self.container_id.as_deref() != Some(id) {
            // A new instance (a restart): it is judged afresh.
            self.container_id = Some(id.to_owned());
            self.last = None;
            self.run = 0;
            self.on_hold = false;
            let initial = self.initial();
            changed = self.set(initial);
        }
        if self.on_hold {
            return wait(changed);
        }
        let Some(running_for) = observed.running_for else {
            return wait(self.set(Some(ProbeResult::Failure)).or(changed));
        };
        if running_for.as_secs() < self.timing.initial_delay_seconds {
            return wait(changed);
        }
        // A startup probe runs until the container has started; the others only after.
        let due = match self.kind {
            ProbeKind::Startup => !observed.started,
            ProbeKind::Liveness | ProbeKind::Readiness => observed.started,
        };
        Tick {
            probe: due,
            changed,
        }
    }

    /// Takes the outcome of a check of the current instance (a check that errored is not an
    /// outcome and is not recorded). Returns the new verdict if it changed.
    pub fn record(&mut self, outcome: ProbeResult) -> Option<ProbeResult> {
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        let threshold = match outcome {
            ProbeResult::Success => self.timing.success_threshold,
            ProbeResult::Failure => self.timing.failure_threshold,
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.set(Some(outcome));
        if outcome == ProbeResult::Failure
            && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup)
        {
            self.on_hold = true;
            self.run = 0;
        }
        changed
    }

    /// Pod deletion: liveness and startup stop with a last success, so that a container
    /// being shut down is not killed or reported for failing its probes meanwhile.
    pub fn settle_for_shutdown(&mut self) -> Option<ProbeResult> {
        match self.kind {
            ProbeKind::Liveness | ProbeKind::Startup if self.container_id.is_some() => {
                self.on_hold = true;
                self.set(Some(ProbeResult::Success))
            }
            _ => None,
        }
    }
}

/// Whether a container has started: it runs, and it has no startup probe or that probe has
/// succeeded on this instance.
pub fn started(running: bool, has_startup_probe: bool, startup: Option<ProbeResult>) -> bool {
    running && (!has_startup_probe || startup == Some(ProbeResult::Success))
}

/// Whether a container is ready: it has started, and it has no readiness probe or that probe
/// says success for this instance.
pub fn ready(started: bool, has_readiness_probe: bool, readiness: Option<ProbeResult>) -> bool {
    started && (!has_readiness_probe || readiness == Some(ProbeResult::Success))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeResult::{Failure, Success};

    fn timing(delay: u64, success: u32, failure: u32) -> ProbeTiming {
        ProbeTiming {
            initial_delay_seconds: delay,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn running<'a>(id: &'a str, secs: u64, started: bool) -> Observed<'a> {
        Observed {
            container_id: Some(id),
            running_for: Some(Duration::from_secs(secs)),
            started,
        }
    }

    #[test]
    fn readiness_starts_failed_liveness_succeeded_and_startup_unknown() {
        let mut readiness = ProbeWorker::new(ProbeKind::Readiness, timing(0, 1, 3));
        let mut liveness = ProbeWorker::new(ProbeKind::Liveness, timing(0, 1, 3));
        let mut startup = ProbeWorker::new(ProbeKind::Startup, timing(0, 1, 3));
        assert_eq!(readiness.result(), None);
        let tick = readiness.tick(running("c1", 0, true));
        assert_eq!(tick.changed, Some(Failure));
        assert_eq!(readiness.result(), Some(Failure));
        assert_eq!(liveness.tick(running("c1", 0, true)).changed, Some(Success));
        assert_eq!(startup.tick(running("c1", 0, false)).changed, None);
        assert_eq!(startup.result(), None);
    }

    #[test]
    fn nothing_is_probed_before_the_container_exists() {
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, ProbeTiming::default());
        let tick = worker.tick(Observed {
            container_id: None,
            running_for: None,
            started: false,
        });
        assert_eq!(
            tick,
            Tick {
                probe: false,
                changed: None
            }
        );
    }

    #[test]
    fn no_probe_runs_within_the_initial_delay() {
        let mut worker = ProbeWorker::new(ProbeKind::Liveness, timing(5, 1, 3));
        assert!(!worker.tick(running("c1", 0, true)).probe);
        assert!(!worker.tick(running("c1", 4, true)).probe);
        assert!(worker.tick(running("c1", 5, true)).probe);
    }

    #[test]
    fn readiness_needs_success_threshold_successes_in_a_row() {
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, timing(0, 2, 3));
        worker.tick(running("c1", 0, true));
        assert_eq!(worker.record(Success), None);
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Success), None);
        assert_eq!(worker.record(Success), Some(Success));
        assert_eq!(worker.record(Success), None, "no change, no news");
        assert_eq!(worker.result(), Some(Success));
    }

    #[test]
    fn failure_threshold_failures_in_a_row_make_a_failure() {
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, timing(0, 1, 3));
        worker.tick(running("c1", 0, true));
        assert_eq!(worker.record(Success), Some(Success));
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Success), None, "a success breaks the run");
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Failure), Some(Failure));
        assert_eq!(worker.result(), Some(Failure));
        assert!(
            worker.tick(running("c1", 30, true)).probe,
            "readiness keeps probing"
        );
    }

    #[test]
    fn liveness_failure_holds_probing_until_a_new_instance_which_is_judged_afresh() {
        let mut worker = ProbeWorker::new(ProbeKind::Liveness, timing(0, 1, 2));
        assert!(worker.tick(running("c1", 0, true)).probe);
        assert_eq!(worker.record(Failure), None);
        assert_eq!(worker.record(Failure), Some(Failure));
        assert!(!worker.tick(running("c1", 20, true)).probe, "on hold");
        let tick = worker.tick(running("c2", 0, true));
        assert_eq!(
            tick,
            Tick {
                probe: true,
                changed: Some(Success)
            }
        );
        assert_eq!(worker.container_id(), Some("c2"));
        assert_eq!(worker.record(Failure), None, "the count starts again");
        assert_eq!(worker.record(Failure), Some(Failure));
    }

    #[test]
    fn a_restart_resets_readiness_to_failure_and_the_run_count() {
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, timing(0, 2, 3));
        worker.tick(running("c1", 0, true));
        worker.record(Success);
        assert_eq!(worker.record(Success), Some(Success));
        worker.record(Success);
        assert_eq!(worker.tick(running("c2", 0, true)).changed, Some(Failure));
        assert_eq!(worker.record(Success), None, "one success of two");
        assert_eq!(worker.record(Success), Some(Success));
    }

    #[test]
    fn a_container_that_is_not_running_fails_its_probes() {
        let mut worker = ProbeWorker::new(ProbeKind::Readiness, timing(0, 1, 3));
        worker.tick(running("c1", 0, true));
        assert_eq!(worker.record(Success), Some(Success));
        let tick = worker.tick(Observed {
            container_id: Some("c1"),
            running_for: None,
            started: false,
        });
        assert_eq!(
            tick,
            Tick {
                probe: false,
                changed: Some(Failure)
            }
        );
    }

    #[test]
    fn liveness_and_readiness_wait_for_startup_and_startup_stops_once_started() {
        let mut startup = ProbeWorker::new(ProbeKind::Startup, timing(0, 1, 3));
        let mut liveness = ProbeWorker::new(ProbeKind::Liveness, timing(0, 1, 3));
        let mut readiness = ProbeWorker::new(ProbeKind::Readiness, timing(0, 1, 3));
        let has_startup = true;
        let is_started = started(true, has_startup, startup.result());
        assert!(!is_started);
        assert!(startup.tick(running("c1", 1, is_started)).probe);
        assert!(!liveness.tick(running("c1", 1, is_started)).probe);
        assert!(!readiness.tick(running("c1", 1, is_started)).probe);

        assert_eq!(startup.record(Success), Some(Success));
        let is_started = started(true, has_startup, startup.result());
        assert!(is_started);
        assert!(!startup.tick(running("c1", 2, is_started)).probe);
        assert!(liveness.tick(running("c1", 2, is_started)).probe);
        assert!(readiness.tick(running("c1", 2, is_started)).probe);
    }

    #[test]
    fn startup_failure_holds_until_the_next_instance() {
        let mut startup = ProbeWorker::new(ProbeKind::Startup, timing(0, 1, 2));
        startup.tick(running("c1", 0, false));
        assert_eq!(startup.record(Failure), None);
        assert_eq!(startup.record(Failure), Some(Failure));
        assert!(!startup.tick(running("c1", 5, false)).probe);
        assert!(startup.tick(running("c2", 0, false)).probe);
        assert_eq!(startup.result(), None, "unknown again for the new instance");
    }

    #[test]
    fn shutdown_settles_liveness_on_success_and_stops_it() {
        let mut liveness = ProbeWorker::new(ProbeKind::Liveness, timing(0, 1, 1));
        liveness.tick(running("c1", 0, true));
        assert_eq!(liveness.record(Failure), Some(Failure));
        assert_eq!(liveness.settle_for_shutdown(), Some(Success));
        assert!(!liveness.tick(running("c1", 5, true)).probe);
        let mut readiness = ProbeWorker::new(ProbeKind::Readiness, timing(0, 1, 1));
        readiness.tick(running("c1", 0, true));
        assert_eq!(readiness.settle_for_shutdown(), None);
    }

    #[test]
    fn started_and_ready_follow_kubelets_status_rules() {
        assert!(
            started(true, false, None),
            "no startup probe: started when running"
        );
        assert!(!started(false, false, None));
        assert!(!started(true, true, None));
        assert!(!started(true, true, Some(Failure)));
        assert!(started(true, true, Some(Success)));
        assert!(
            ready(true, false, None),
            "no readiness probe: ready once started"
        );
        assert!(!ready(false, false, None));
        assert!(!ready(true, true, None));
        assert!(!ready(true, true, Some(Failure)));
        assert!(ready(true, true, Some(Success)));
    }
}
