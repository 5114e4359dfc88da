//! One reconcile of one Deployment (kube-controller-manager's syncDeployment): claims its
//! ReplicaSets, finds or creates the new one, runs the strategy's next step, and writes the
//! status — reading the caches once and keeping its own copies up to date with what each
//! write returns, so later steps of the same reconcile see earlier ones.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_client::k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use keel_client::k8s_openapi::api::core::v1::PodTemplateSpec;
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use keel_client::k8s_openapi::chrono::{DateTime, SubsecRound, Utc};
use keel_client::runtime::Action;
use keel_client::{Api, DeleteParams, ObjectKey, Patch};
use keel_types::Selector;
use serde_json::json;

use super::hash::{equal_ignore_hash, template_hash, HASH_LABEL};
use super::recreate::{self, Step};
use super::revision::{self, REVISION};
use super::rolling::{self, Bounds};
use super::scale::{self, Target};
use super::status::{self, Facts};
use super::surge;
use super::view::{by_creation, Rs, Scale};
use super::{State, SyncError, COMPONENT};
use crate::events::{self, NORMAL, WARNING};
use crate::pods::{controller_of, controller_reference, is_controlled_by, phase};

/// Requeue at least this often, should an event ever be missed.
const RESYNC: Duration = Duration::from_secs(60);

pub struct Sync<'a> {
    state: &'a State,
    d: Deployment,
    namespace: String,
    name: String,
    uid: String,
    /// The ReplicaSets this Deployment controls, as last written or read.
    sets: Vec<ReplicaSet>,
    selector: Selector,
    now: DateTime<Utc>,
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
}

impl<'a> Sync<'a> {
    pub fn new(state: &'a State, d: Deployment) -> Self {
        Sync {
            state,
            namespace: d.metadata.namespace.clone().unwrap_or_default(),
            name: d.metadata.name.clone().unwrap_or_default(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
            replicas: surge::replicas(&d),
            d,
            sets: Vec::new(),
            selector: Selector::nothing(),
            // Kubernetes' times have whole seconds; comparing with what was stored needs the same.
            now: Utc::now().trunc_subsecs(0),
            max_surge: 0,
            max_unavailable: 0,
        }
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        self.state.ctx.api(&self.namespace)
    }

    fn d_api(&self) -> Api<Deployment> {
        self.state.ctx.api(&self.namespace)
    }

    fn event(&self, type_: &'static str, reason: &str, message: String) {
        self.state.ctx.recorder.event(
            COMPONENT,
            events::reference(&self.d),
            type_,
            reason,
            message,
        );
    }

    fn spec_selector(&self) -> Option<&LabelSelector> {
        self.d.spec.as_ref().map(|s| &s.selector)
    }

    fn template(&self) -> PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    fn facts(&self) -> Facts {
        let deadline = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .filter(|s| *s != i32::MAX);
        Facts {
            generation: self.d.metadata.generation.unwrap_or(0),
            replicas: self.replicas,
            max_unavailable: self.max_unavailable,
            progress_deadline: deadline,
        }
    }

    fn current_status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn views(&self) -> Vec<Rs> {
        self.sets.iter().map(Rs::of).collect()
    }

    /// Runs the reconcile (syncDeployment).
    pub async fn run(mut self) -> Result<Action, SyncError> {
        let everything = LabelSelector::default();
        if self.spec_selector().is_none_or(|s| *s == everything) {
            self.event(
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            if self.current_status().observed_generation < self.d.metadata.generation {
                let mut s = self.current_status();
                s.observed_generation = self.d.metadata.generation;
                self.write_status(s).await?;
            }
            return Ok(Action::await_change());
        }
        self.selector = match Selector::from_label_selector(self.spec_selector()) {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    WARNING,
                    "InvalidSelector",
                    format!("invalid label selector: {e}"),
                );
                return Ok(Action::await_change());
            }
        };
        match surge::fenceposts(&self.d) {
            Ok((s, u)) => (self.max_surge, self.max_unavailable) = (s, u),
            Err(e) => {
                self.event(WARNING, "InvalidStrategy", e.to_string());
                return Ok(Action::await_change());
            }
        }
        self.claim().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            let new = self.new_rs(false).await?;
            return self.sync_status(new).await;
        }
        self.check_paused_conditions().await?;
        let spec = self.d.spec.clone().unwrap_or_default();
        if spec.paused == Some(true) || self.is_scaling_event().await? {
            return self.scale_sync().await;
        }
        if surge::is_rolling_update(&self.d) {
            self.rollout_rolling().await
        } else {
            self.rollout_recreate().await
        }
    }

    /// Takes the ReplicaSets that are this Deployment's: those it controls and still selects,
    /// and orphans it selects (adopted); lets go of those it controls but no longer selects.
    async fn claim(&mut self) -> Result<(), SyncError> {
        let mut candidates: Vec<ReplicaSet> = self
            .state
            .replica_sets
            .state()
            .iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(self.namespace.as_str()))
            .map(|rs| ReplicaSet::clone(rs))
            .collect();
        candidates.sort_by(|a, b| by_creation(&Rs::of(a), &Rs::of(b)));
        let mut fresh_checked = false;
        for rs in candidates {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let matches = self.selector.matches(&labels);
            match controller_of(&rs.metadata) {
                Some(owner) if owner.uid == self.uid => {
                    if matches {
                        self.sets.push(rs);
                    } else if self.d.metadata.deletion_timestamp.is_none() {
                        // A Deployment being deleted lets go of nothing: its sets go with it.
                        self.release(rs).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if !matches
                        || rs.metadata.deletion_timestamp.is_some()
                        || self.d.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    if !fresh_checked {
                        // Adopt only on behalf of the Deployment as it is now, not a deleted
                        // namesake the cache still holds.
                        let fresh = self.d_api().get(&self.name).await?;
                        if fresh.metadata.uid.as_deref() != Some(self.uid.as_str())
                            || fresh.metadata.deletion_timestamp.is_some()
                        {
                            return Ok(());
                        }
                        fresh_checked = true;
                    }
                    self.adopt(rs).await?;
                }
            }
        }
        Ok(())
    }

    async fn adopt(&mut self, mut rs: ReplicaSet) -> Result<(), SyncError> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        rs.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(controller_reference(&self.d));
        match self.rs_api().replace(&name, &rs).await {
            Ok(adopted) => self.sets.push(adopted),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn release(&mut self, mut rs: ReplicaSet) -> Result<(), SyncError> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        if let Some(owners) = rs.metadata.owner_references.as_mut() {
            owners.retain(|o| o.uid != self.uid);
        }
        match self.rs_api().replace(&name, &rs).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The index of the set whose template is the Deployment's (the oldest such).
    fn find_new(&self) -> Option<usize> {
        let template = self.template();
        let mut order: Vec<usize> = (0..self.sets.len()).collect();
        let views = self.views();
        order.sort_by(|a, b| by_creation(&views[*a], &views[*b]));
        order.into_iter().find(|i| {
            self.sets[*i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        })
    }

    fn old_indices(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        self.d.metadata.annotations.clone().unwrap_or_default()
    }

    /// Finds the new ReplicaSet, bringing its annotations and the Deployment's revision up to
    /// date, or creates it when `create` (getNewReplicaSet).
    async fn new_rs(&mut self, create: bool) -> Result<Option<usize>, SyncError> {
        let existing = self.find_new();
        let views = self.views();
        let max_old = revision::max_revision(
            self.old_indices(existing)
                .into_iter()
                .map(|i| views[i].revision),
        );
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = existing {
            let mut copy = self.sets[i].clone();
            let mut annotations = copy.metadata.annotations.clone().unwrap_or_default();
            let changed = revision::set_new_rs_annotations(
                &self.annotations(),
                &mut annotations,
                new_revision,
                None,
            );
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if changed || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                copy.metadata.annotations = Some(annotations);
                let name = copy.metadata.name.clone().unwrap_or_default();
                self.sets[i] = self.rs_api().replace(&name, &copy).await?;
                return Ok(Some(i));
            }
            let rs_revision = annotations.get(REVISION).cloned().unwrap_or_default();
            self.set_deployment_revision(&rs_revision).await?;
            let mut s = self.current_status();
            if self.facts().progress_deadline.is_some()
                && status::get(&s, status::PROGRESSING).is_none()
            {
                let rs_name = self.sets[i].metadata.name.clone().unwrap_or_default();
                status::set(
                    &mut s,
                    status::condition(
                        status::PROGRESSING,
                        "True",
                        status::FOUND_NEW_RS,
                        format!("Found new replica set {rs_name:?}"),
                        self.now,
                    ),
                );
                self.write_status(s).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(new_revision).await.map(Some)
    }

    async fn create_new_rs(&mut self, new_revision: i64) -> Result<usize, SyncError> {
        let mut template = self.template();
        let collision_count = self.current_status().collision_count;
        let hash = template_hash(&template, collision_count);
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = self.spec_selector().cloned().unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{}-{hash}", self.name);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.namespace.clone()),
                owner_references: Some(vec![controller_reference(&self.d)]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let replicas = if surge::is_rolling_update(&self.d) {
            let mut views = self.views();
            let fresh = Rs::of(&rs);
            views.push(fresh.clone());
            let refs: Vec<&Rs> = views.iter().collect();
            rolling::new_replicas(&self.bounds(), &refs, &fresh)
        } else {
            self.replicas
        };
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(replicas);
        }
        let mut annotations = BTreeMap::new();
        revision::set_new_rs_annotations(
            &self.annotations(),
            &mut annotations,
            new_revision,
            Some((self.replicas, self.replicas + self.max_surge)),
        );
        rs.metadata.annotations = Some(annotations);

        let owner = ObjectKey::of(&self.d);
        let child = ObjectKey::namespaced(self.namespace.clone(), rs_name.clone());
        self.state.expectations.expect_creations(
            &owner,
            [child.clone()],
            std::time::Instant::now(),
        );
        let (created, already_existed) = match self.rs_api().create(&rs).await {
            Ok(created) => (created, false),
            Err(e) if is_already_exists(&e) => {
                self.state.expectations.write_failed(&owner, &child);
                let found = self.rs_api().get(&rs_name).await?;
                let ours = is_controlled_by(&found.metadata, &self.uid)
                    && found
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignore_hash(t, &self.template()));
                if !ours {
                    let mut s = self.current_status();
                    s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
                    self.write_status(s).await?;
                    return Err(SyncError::Collision(rs_name));
                }
                (found, true)
            }
            Err(e) => {
                self.state.expectations.write_failed(&owner, &child);
                let message = format!("Failed to create new replica set {rs_name:?}: {e}");
                if self.facts().progress_deadline.is_some() {
                    let mut s = self.current_status();
                    status::set(
                        &mut s,
                        status::condition(
                            status::PROGRESSING,
                            "False",
                            status::RS_CREATE_ERROR,
                            message.clone(),
                            self.now,
                        ),
                    );
                    // The creation error is what matters; a failed status write adds nothing.
                    let _ = self.write_status(s).await;
                }
                self.event(WARNING, status::RS_CREATE_ERROR, message);
                return Err(e.into());
            }
        };
        if !already_existed && replicas > 0 {
            self.event(
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            );
        }
        self.sets.push(created);
        let index = self.sets.len() - 1;
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_existed && self.facts().progress_deadline.is_some() {
            let mut s = self.current_status();
            status::set(
                &mut s,
                status::condition(
                    status::PROGRESSING,
                    "True",
                    status::NEW_RS_CREATED,
                    format!("Created new replica set {rs_name:?}"),
                    self.now,
                ),
            );
            self.write_status(s).await?;
        }
        Ok(index)
    }

    /// Records the new set's revision on the Deployment.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), SyncError> {
        if self.annotations().get(REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let patched = self.d_api().patch(&self.name, &Patch::Merge(patch)).await?;
        // Keep the status this reconcile has built so far; take the rest as written.
        let status = self.d.status.take();
        self.d = patched;
        self.d.status = status;
        Ok(())
    }

    async fn write_status(&mut self, s: DeploymentStatus) -> Result<(), SyncError> {
        let mut next = self.d.clone();
        next.status = Some(s);
        self.d = self.d_api().replace_status(&self.name, &next).await?;
        Ok(())
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            replicas: self.replicas,
            max_surge: self.max_surge,
            max_unavailable: self.max_unavailable,
        }
    }

    /// Scales one set (scaleReplicaSet), recording the Deployment size it was scaled for;
    /// returns whether its size changed.
    async fn apply_scale(&mut self, scale: &Scale) -> Result<bool, SyncError> {
        let Some(i) = self
            .sets
            .iter()
            .position(|r| r.metadata.name.as_deref() == Some(scale.name.as_str()))
        else {
            return Ok(false);
        };
        let mut copy = self.sets[i].clone();
        let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
        let from = spec.replicas.unwrap_or(1);
        let resize = from != scale.to;
        spec.replicas = Some(scale.to);
        let annotations = copy.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let annotated = revision::set_replicas_annotations(
            annotations,
            self.replicas,
            self.replicas + self.max_surge,
        );
        if !resize && !annotated {
            return Ok(false);
        }
        self.sets[i] = self.rs_api().replace(&scale.name, &copy).await?;
        if resize {
            self.event(
                NORMAL,
                "ScalingReplicaSet",
                format!(
                    "Scaled {} replica set {} from {from} to {}",
                    scale.operation, scale.name, scale.to
                ),
            );
        }
        Ok(resize)
    }

    /// Pausing and resuming show in the Progressing condition (checkPausedConditions).
    async fn check_paused_conditions(&mut self) -> Result<(), SyncError> {
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let mut s = self.current_status();
        if let Some(c) = status::paused_condition(&self.facts(), &s, paused, self.now) {
            status::set(&mut s, c);
            self.write_status(s).await?;
        }
        Ok(())
    }

    /// Whether `spec.replicas` changed since the active sets were last scaled
    /// (isScalingEvent).
    async fn is_scaling_event(&mut self) -> Result<bool, SyncError> {
        self.new_rs(false).await?;
        Ok(self
            .views()
            .iter()
            .filter(|r| r.is_active())
            .any(|r| r.desired_annotation.is_some_and(|d| d != self.replicas)))
    }

    /// A paused Deployment or a change of size (sync): scale proportionally, prune history
    /// while paused, and report counts.
    async fn scale_sync(&mut self) -> Result<Action, SyncError> {
        let new = self.new_rs(false).await?;
        let views = self.views();
        let old: Vec<&Rs> = self
            .old_indices(new)
            .into_iter()
            .map(|i| &views[i])
            .collect();
        let target = Target {
            replicas: self.replicas,
            max_surge: self.max_surge,
            rolling: surge::is_rolling_update(&self.d),
            status_replicas: self.current_status().replicas.unwrap_or(0),
        };
        let scales = scale::scale(&target, new.map(|i| &views[i]), &old);
        for s in &scales {
            self.apply_scale(s).await?;
        }
        if self.d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.clean_up(new).await?;
        }
        self.sync_status(new).await
    }

    /// Writes the counts and the Available condition (syncDeploymentStatus).
    async fn sync_status(&mut self, new: Option<usize>) -> Result<Action, SyncError> {
        let views = self.views();
        let all: Vec<&Rs> = views.iter().collect();
        let current = self.current_status();
        let next = status::calculate(
            &self.facts(),
            &current,
            &all,
            new.map(|i| &views[i]),
            self.now,
        );
        if next != current {
            self.write_status(next).await?;
        }
        Ok(Action::requeue(RESYNC))
    }

    /// A rollout step's closing status, with the Progressing condition (syncRolloutStatus).
    async fn rollout_status(&mut self, new: Option<usize>) -> Result<Action, SyncError> {
        let views = self.views();
        let all: Vec<&Rs> = views.iter().collect();
        let facts = self.facts();
        let current = self.current_status();
        let new_view = new.map(|i| &views[i]);
        let calculated = status::calculate(&facts, &current, &all, new_view, self.now);
        let next = status::rollout(
            &facts,
            &self.name,
            &current,
            calculated,
            new_view.map(|r| r.name.as_str()),
            self.now,
        );
        let recheck = status::recheck_after(&facts, &current, &next, self.now);
        if next != current {
            self.write_status(next).await?;
        }
        Ok(Action::requeue(recheck.map_or(RESYNC, |r| r.min(RESYNC))))
    }

    /// Deletes old sets beyond revisionHistoryLimit (cleanupDeployment).
    async fn clean_up(&mut self, new: Option<usize>) -> Result<(), SyncError> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let old: Vec<revision::Old> = self
            .old_indices(new)
            .into_iter()
            .map(|i| {
                let rs = &self.sets[i];
                let view = Rs::of(rs);
                revision::Old {
                    name: view.name.clone(),
                    revision: view.revision,
                    created: view.created.to_rfc3339(),
                    replicas: view.replicas,
                    status_replicas: view.status_replicas,
                    observed: rs
                        .status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .unwrap_or(0)
                        >= rs.metadata.generation.unwrap_or(0),
                    deleting: rs.metadata.deletion_timestamp.is_some(),
                }
            })
            .collect();
        for name in revision::to_clean_up(&old, limit) {
            match self.rs_api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One RollingUpdate step (rolloutRolling).
    async fn rollout_rolling(&mut self) -> Result<Action, SyncError> {
        let Some(new) = self.new_rs(true).await? else {
            return Ok(Action::requeue(RESYNC));
        };
        let b = self.bounds();
        let views = self.views();
        let all: Vec<&Rs> = views.iter().collect();
        if let Some(up) = rolling::scale_new(&b, &all, &views[new]) {
            if self.apply_scale(&up).await? {
                return self.rollout_status(Some(new)).await;
            }
        }
        let views = self.views();
        let all: Vec<&Rs> = views.iter().collect();
        let old: Vec<&Rs> = self
            .old_indices(Some(new))
            .into_iter()
            .map(|i| &views[i])
            .filter(|r| r.is_active())
            .collect();
        let downs = rolling::scale_old(&b, &all, &old, &views[new]);
        let mut scaled = false;
        for down in &downs {
            scaled |= self.apply_scale(down).await?;
        }
        if scaled {
            return self.rollout_status(Some(new)).await;
        }
        if status::complete(&self.facts(), &self.current_status()) {
            self.clean_up(Some(new)).await?;
        }
        self.rollout_status(Some(new)).await
    }

    /// One Recreate step (rolloutRecreate).
    async fn rollout_recreate(&mut self) -> Result<Action, SyncError> {
        let mut new = self.new_rs(false).await?;
        let views = self.views();
        let old_indices = self.old_indices(new);
        let old: Vec<&Rs> = old_indices.iter().map(|i| &views[*i]).collect();
        let old_uids: Vec<String> = old_indices
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.clone())
            .collect();
        let pods = self.state.pods.state();
        let phases = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(self.namespace.as_str()))
            .filter(|p| controller_of(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid)))
            .map(|p| phase(p));
        match recreate::next_step(&old, phases) {
            Step::ScaleDownOld(downs) => {
                let mut scaled = false;
                for down in &downs {
                    scaled |= self.apply_scale(down).await?;
                }
                if scaled {
                    return self.rollout_status(new).await;
                }
            }
            Step::WaitForOldPods => return self.rollout_status(new).await,
            Step::ScaleUpNew => {}
        }
        if new.is_none() {
            new = self.new_rs(true).await?;
        }
        if let Some(i) = new {
            let up = Scale::of(&Rs::of(&self.sets[i]), self.replicas);
            if up.from != up.to {
                self.apply_scale(&up).await?;
            }
        }
        if status::complete(&self.facts(), &self.current_status()) {
            self.clean_up(new).await?;
        }
        self.rollout_status(new).await
    }
}

fn is_already_exists(e: &keel_client::Error) -> bool {
    matches!(e, keel_client::Error::Api(s) if s.reason == "AlreadyExists")
}
