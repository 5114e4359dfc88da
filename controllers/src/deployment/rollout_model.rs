//! A property of the rolling-update decisions, checked against a model of the world they act
//! on: ReplicaSets that create and delete pods some time after their spec changes (deleting
//! unavailable pods first, as the ReplicaSet controller does), pods that become available in
//! any order, and templates that change again mid-rollout. Whatever the interleaving, the
//! Deployment never has more than replicas + maxSurge pods, never fewer than
//! replicas − maxUnavailable available ones, and the rollout ends with every replica updated.

use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keel_client::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::rolling::{new_replicas, scale_new, scale_old, Bounds};
use super::surge::resolve_fenceposts;
use super::view::{Rs, Scale};

/// A ReplicaSet and its pods (true: available).
#[derive(Debug, Clone)]
struct Set {
    rs: Rs,
    pods: Vec<bool>,
}

impl Set {
    /// Status written together with every change of pods: it may lag the spec, not the pods.
    fn sync_status(&mut self) {
        self.rs.status_replicas = i32::try_from(self.pods.len()).unwrap_or(i32::MAX);
        self.rs.available = i32::try_from(self.pods.iter().filter(|a| **a).count()).unwrap_or(0);
        self.rs.ready = self.rs.available;
    }

    /// The ReplicaSet controller's turn: new pods start unavailable; surplus pods go
    /// unavailable first.
    fn converge(&mut self) {
        let want = usize::try_from(self.rs.replicas).unwrap_or(0);
        while self.pods.len() < want {
            self.pods.push(false);
        }
        while self.pods.len() > want {
            match self.pods.iter().position(|a| !a) {
                Some(i) => self.pods.remove(i),
                None => self.pods.remove(0),
            };
        }
        self.sync_status();
    }
}

#[derive(Debug)]
struct World {
    b: Bounds,
    sets: Vec<Set>,
    /// The set matching the current template, once created.
    new: Option<usize>,
    clock: i64,
}

impl World {
    fn start(b: Bounds) -> World {
        let mut first = Set {
            rs: rs_named("rev1", 0, b.replicas),
            pods: vec![true; usize::try_from(b.replicas).unwrap_or(0)],
        };
        first.sync_status();
        World {
            b,
            sets: vec![first],
            new: None,
            clock: 1,
        }
    }

    fn pods(&self) -> i32 {
        self.sets.iter().map(|s| s.rs.status_replicas).sum()
    }

    fn available(&self) -> i32 {
        self.sets.iter().map(|s| s.rs.available).sum()
    }

    fn apply(&mut self, scale: &Scale) {
        if let Some(s) = self.sets.iter_mut().find(|s| s.rs.name == scale.name) {
            assert_eq!(
                s.rs.replicas, scale.from,
                "a scale starts from the current size"
            );
            s.rs.replicas = scale.to;
        }
    }

    /// One sync of the Deployment in rolling mode (rolloutRolling).
    fn deployment_step(&mut self) {
        let new = match self.new {
            Some(i) => i,
            None => {
                let mut fresh = rs_named(&format!("rev{}", self.clock + 1), self.clock, 0);
                let views: Vec<&Rs> = self
                    .sets
                    .iter()
                    .map(|s| &s.rs)
                    .chain(std::iter::once(&fresh))
                    .collect();
                fresh.replicas = new_replicas(&self.b, &views, &fresh);
                self.clock += 1;
                self.sets.push(Set {
                    rs: fresh,
                    pods: Vec::new(),
                });
                self.new = Some(self.sets.len() - 1);
                return;
            }
        };
        let all: Vec<Rs> = self.sets.iter().map(|s| s.rs.clone()).collect();
        let refs: Vec<&Rs> = all.iter().collect();
        if let Some(up) = scale_new(&self.b, &refs, &all[new]) {
            self.apply(&up);
            return;
        }
        let old: Vec<&Rs> = all
            .iter()
            .enumerate()
            .filter(|(i, r)| *i != new && r.is_active())
            .map(|(_, r)| r)
            .collect();
        for down in scale_old(&self.b, &refs, &old, &all[new]) {
            self.apply(&down);
        }
    }

    fn act(&mut self, op: u8, pick: usize) {
        match op % 4 {
            0 => self.deployment_step(),
            1 => {
                let i = pick % self.sets.len();
                self.sets[i].converge();
            }
            2 => {
                let waiting: Vec<(usize, usize)> = self
                    .sets
                    .iter()
                    .enumerate()
                    .flat_map(|(i, s)| {
                        s.pods
                            .iter()
                            .enumerate()
                            .filter(|(_, a)| !**a)
                            .map(move |(j, _)| (i, j))
                    })
                    .collect();
                if !waiting.is_empty() {
                    let (i, j) = waiting[pick % waiting.len()];
                    self.sets[i].pods[j] = true;
                    self.sets[i].sync_status();
                }
            }
            _ => {
                // A new template: the current new set becomes old (at most three rollouts).
                if self.new.is_some() && self.sets.len() < 4 {
                    self.new = None;
                }
            }
        }
    }

    fn check(&self, started_available: bool) -> Result<(), TestCaseError> {
        prop_assert!(
            self.pods() <= self.b.replicas + self.b.max_surge,
            "{} pods exceed {} + {}: {:?}",
            self.pods(),
            self.b.replicas,
            self.b.max_surge,
            self.sets
        );
        if started_available {
            prop_assert!(
                self.available() >= self.b.min_available(),
                "{} available below {} − {}: {:?}",
                self.available(),
                self.b.replicas,
                self.b.max_unavailable,
                self.sets
            );
        }
        Ok(())
    }
}

fn rs_named(name: &str, created: i64, replicas: i32) -> Rs {
    Rs {
        name: name.into(),
        created: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(created),
        replicas,
        status_replicas: 0,
        ready: 0,
        available: 0,
        revision: created + 1,
        desired_annotation: None,
        max_annotation: None,
    }
}

fn bound() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        (0..5i32).prop_map(IntOrString::Int),
        (0..=100i32).prop_map(|p| IntOrString::String(format!("{p}%"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rolling_updates_stay_within_their_bounds_and_finish(
        replicas in 0..12i32,
        surge in bound(),
        unavailable in bound(),
        ops in prop::collection::vec((any::<u8>(), any::<usize>()), 0..300),
    ) {
        let (max_surge, max_unavailable) = resolve_fenceposts(&surge, &unavailable, replicas)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = Bounds { replicas, max_surge, max_unavailable };
        let mut world = World::start(b);
        world.check(true)?;
        for (op, pick) in ops {
            world.act(op, pick);
            world.check(true)?;
        }
        // From here on every actor keeps taking turns: the rollout must finish.
        for _ in 0..(20 * (replicas + 2)) {
            world.deployment_step();
            world.check(true)?;
            for i in 0..world.sets.len() {
                world.sets[i].converge();
                world.check(true)?;
            }
            for s in &mut world.sets {
                s.pods.iter_mut().for_each(|a| *a = true);
                s.sync_status();
            }
        }
        let new = world.new.ok_or_else(|| TestCaseError::fail("no new set"))?;
        for (i, s) in world.sets.iter().enumerate() {
            let want = if i == new { replicas } else { 0 };
            prop_assert_eq!(s.rs.replicas, want, "{:?}", world.sets);
            prop_assert_eq!(s.rs.available, want, "{:?}", world.sets);
        }
    }
}
