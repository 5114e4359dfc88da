//! Specification of the scheduling queue: ordering, backoff, and which events wake which
//! unschedulable pods.

use super::*;
use crate::test_support;

fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
    Arc::new(test_support::pod(name).priority(priority).info())
}

fn hints() -> HashMap<&'static str, HashSet<ClusterEvent>> {
    HashMap::from([
        (
            "NodeResourcesFit",
            HashSet::from([ClusterEvent::NodeAdded, ClusterEvent::AssignedPodDeleted]),
        ),
        (
            "TaintToleration",
            HashSet::from([ClusterEvent::NodeAdded, ClusterEvent::NodeTaintsChanged]),
        ),
    ])
}

fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(p) = q.pop(now) {
        out.push(p.info.name.clone());
    }
    out
}

#[test]
fn higher_priority_pods_pop_first_then_the_longest_waiting() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("low-old", 0), t);
    q.add(pod("high", 100), t + Duration::from_millis(2));
    q.add(pod("low-new", 0), t + Duration::from_millis(3));
    assert_eq!(
        names(&mut q, t + Duration::from_millis(4)),
        ["high", "low-old", "low-new"]
    );
}

#[test]
fn a_failed_attempt_backs_off_one_second_then_doubles_up_to_ten() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let mut now = t;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let p = q.pop(now).expect("a pod is ready");
        q.retry(p, now);
        let until = q.next_backoff().expect("backing off");
        waits.push((until - now).as_secs());
        assert!(
            q.pop(until - Duration::from_millis(1)).is_none(),
            "not before the backoff ends"
        );
        now = until;
    }
    assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn an_unschedulable_pod_waits_for_an_event_its_rejecting_plugin_registered() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["TaintToleration"]), t);
    assert_eq!(q.counts(), (0, 0, 1));
    let later = t + Duration::from_secs(30);
    q.on_event(ClusterEvent::AssignedPodDeleted, later);
    assert_eq!(
        q.counts(),
        (0, 0, 1),
        "a pod deletion cannot remove a taint"
    );
    q.on_event(ClusterEvent::NodeTaintsChanged, later);
    assert_eq!(q.counts(), (1, 0, 0), "a taint change may make it fit");
    assert_eq!(
        q.pop(later).map(|p| p.info.name.clone()).as_deref(),
        Some("a")
    );
}

#[test]
fn an_event_during_the_attempt_sends_the_rejected_pod_to_backoff_not_unschedulable() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    // While the pod was being scheduled, a node was added: the attempt may have missed it.
    q.on_event(ClusterEvent::NodeAdded, t);
    q.unschedulable(p, HashSet::from(["NodeResourcesFit"]), t);
    assert_eq!(q.counts(), (0, 1, 0));
    assert!(q.pop(t + Duration::from_secs(1)).is_some());
}

#[test]
fn a_woken_pod_still_serves_the_rest_of_its_backoff() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["NodeResourcesFit"]), t);
    q.on_event(ClusterEvent::NodeAdded, t + Duration::from_millis(100));
    assert_eq!(q.counts(), (0, 1, 0));
    assert!(q.pop(t + Duration::from_millis(500)).is_none());
    assert!(q.pop(t + Duration::from_secs(1)).is_some());
}

#[test]
fn a_pod_unschedulable_for_five_minutes_is_tried_again_without_an_event() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["NodeResourcesFit"]), t);
    assert!(q.pop(t + Duration::from_secs(299)).is_none());
    assert!(q.pop(t + MAX_UNSCHEDULABLE).is_some());
}

#[test]
fn updating_an_unschedulable_pods_spec_tries_it_again() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["TaintToleration"]), t);
    let mut tolerating = Pod::clone(&pod("a", 0).pod);
    tolerating
        .spec
        .get_or_insert_with(Default::default)
        .tolerations = Some(vec![Default::default()]);
    q.update(
        Arc::new(PodInfo::new(Arc::new(tolerating))),
        t + Duration::from_secs(5),
    );
    assert_eq!(q.counts(), (1, 0, 0));
}

#[test]
fn a_pod_deleted_while_in_flight_is_not_requeued() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.delete("default/a");
    q.unschedulable(p, HashSet::new(), t);
    assert!(q.is_empty());
}

#[test]
fn a_rejection_by_a_plugin_without_hints_is_woken_by_any_event() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["SomethingElse"]), t);
    q.on_event(
        ClusterEvent::AssignedPodDeleted,
        t + Duration::from_secs(20),
    );
    assert_eq!(q.counts(), (1, 0, 0));
}

#[test]
fn a_priority_change_reorders_an_active_pod() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    q.add(pod("b", 0), t + Duration::from_millis(1));
    q.update(pod("b", 10), t + Duration::from_millis(2));
    assert_eq!(names(&mut q, t + Duration::from_millis(3)), ["b", "a"]);
}

#[test]
fn a_status_only_update_leaves_an_unschedulable_pod_waiting() {
    let t = Instant::now();
    let mut q = SchedulingQueue::new(hints());
    q.add(pod("a", 0), t);
    let p = q.pop(t).expect("a");
    q.unschedulable(p, HashSet::from(["TaintToleration"]), t);
    let mut written = Pod::clone(&pod("a", 0).pod);
    written.metadata.resource_version = Some("42".into());
    written.status = Some(Default::default());
    q.update(
        Arc::new(PodInfo::new(Arc::new(written))),
        t + Duration::from_secs(5),
    );
    assert_eq!(
        q.counts(),
        (0, 0, 1),
        "the scheduler's own status write wakes nothing"
    );
}
