//! What the garbage collector does with one object, decided from what is known of it and of
//! its owners (Kubernetes' attemptToDeleteItem, classifyReferences and
//! processDeletingDependentsItem): keep it, drop references to owners that are gone or that
//! wait for their dependents, or delete it; and for an owner being deleted in the foreground,
//! whether it may go yet.

use std::collections::BTreeSet;

use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::{Node, Uid, FOREGROUND, ORPHAN};

/// What became of one owner reference's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists with the uid referenced and is not waiting for its dependents.
    Solid,
    /// It exists, is being deleted in the foreground, and waits for its dependents.
    Waiting,
    /// It does not exist, or another object (another uid) has its name: the reference dangles.
    Absent,
    /// Its kind is not one this server serves: nothing can be known of it, and the reference
    /// is left alone as though its owner were there.
    Unknown,
}

/// How a delete propagates to the deleted object's own dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// Its name in DeleteOptions' `propagationPolicy`.
    pub fn policy(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// What to do with an object that names owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An owner remains and no reference needs fixing.
    Keep,
    /// An owner remains: drop the references to these owners (gone, or waiting for their
    /// dependents, which this object will no longer hold back).
    RemoveReferences(BTreeSet<Uid>),
    /// No owner remains: delete it. With `unblock_first`, its own references stop blocking
    /// their owners first (a cycle of foreground deletions would otherwise wait for ever).
    Delete {
        propagation: Propagation,
        unblock_first: bool,
    },
}

/// What the object's surroundings say, besides its owners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// Some object names it as an owner.
    pub has_dependents: bool,
    /// One of those is itself being deleted in the foreground.
    pub a_dependent_deletes_dependents: bool,
}

/// Decides for an object whose owner references are `owners`, each with its owner's state,
/// and whose finalizers are `finalizers`.
pub fn decide(
    owners: &[(&OwnerReference, OwnerState)],
    finalizers: &[String],
    around: Surroundings,
) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let with = |state: OwnerState| -> BTreeSet<Uid> {
        owners
            .iter()
            .filter(|(_, s)| *s == state)
            .map(|(r, _)| r.uid.clone())
            .collect()
    };
    let solid = owners
        .iter()
        .any(|(_, s)| matches!(s, OwnerState::Solid | OwnerState::Unknown));
    let dangling = with(OwnerState::Absent);
    let waiting = with(OwnerState::Waiting);
    if solid {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Keep;
        }
        return Decision::RemoveReferences(dangling.into_iter().chain(waiting).collect());
    }
    if !waiting.is_empty() && around.has_dependents {
        return Decision::Delete {
            propagation: Propagation::Foreground,
            unblock_first: around.a_dependent_deletes_dependents,
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let propagation = if has(ORPHAN) {
        Propagation::Orphan
    } else if has(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete {
        propagation,
        unblock_first: false,
    }
}

/// For an owner being deleted in the foreground, given its dependents as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreground {
    /// No dependent blocks it any more: remove the `foregroundDeletion` finalizer.
    Finish,
    /// Some still block it: look at these (the blocking ones not themselves waiting for
    /// dependents of their own) so they are deleted.
    Wait(Vec<Uid>),
}

pub fn foreground(owner: &str, dependents: &[&Node]) -> Foreground {
    let blocking: Vec<&&Node> = dependents.iter().filter(|d| d.blocks(owner)).collect();
    if blocking.is_empty() {
        return Foreground::Finish;
    }
    Foreground::Wait(
        blocking
            .iter()
            .filter(|d| !d.deleting_dependents())
            .map(|d| d.uid().to_string())
            .collect(),
    )
}

/// `references` without those to any of `uids`.
pub fn without(references: &[OwnerReference], uids: &BTreeSet<Uid>) -> Vec<OwnerReference> {
    references
        .iter()
        .filter(|r| !uids.contains(&r.uid))
        .cloned()
        .collect()
}

/// `references` with none of them blocking its owner's deletion.
pub fn unblocked(references: &[OwnerReference]) -> Vec<OwnerReference> {
    references
        .iter()
        .map(|r| OwnerReference {
            block_owner_deletion: r.block_owner_deletion.map(|_| false),
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::{node, reference};
    use super::*;
    use OwnerState::*;

    fn refs(uids: &[&str]) -> Vec<OwnerReference> {
        uids.iter().map(|u| reference(u, true)).collect()
    }

    fn classified<'a>(
        references: &'a [OwnerReference],
        states: &[OwnerState],
    ) -> Vec<(&'a OwnerReference, OwnerState)> {
        references.iter().zip(states.iter().copied()).collect()
    }

    fn uids(list: &[&str]) -> BTreeSet<Uid> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const ALONE: Surroundings = Surroundings {
        has_dependents: false,
        a_dependent_deletes_dependents: false,
    };

    fn delete(propagation: Propagation) -> Decision {
        Decision::Delete {
            propagation,
            unblock_first: false,
        }
    }

    #[test]
    fn an_object_with_a_solid_owner_and_nothing_to_fix_is_kept() {
        let r = refs(&["a", "b"]);
        assert_eq!(
            decide(&classified(&r, &[Solid, Solid]), &[], ALONE),
            Decision::Keep
        );
        assert_eq!(decide(&[], &[], ALONE), Decision::Keep);
    }

    #[test]
    fn a_surviving_object_loses_its_references_to_gone_and_waiting_owners() {
        let r = refs(&["a", "b", "c"]);

        let decision = decide(&classified(&r, &[Solid, Absent, Waiting]), &[], ALONE);

        assert_eq!(decision, Decision::RemoveReferences(uids(&["b", "c"])));
    }

    #[test]
    fn an_object_whose_owners_are_all_gone_is_deleted_in_the_background() {
        let r = refs(&["a", "b"]);

        let decision = decide(&classified(&r, &[Absent, Absent]), &[], ALONE);

        assert_eq!(decision, delete(Propagation::Background));
    }

    #[test]
    fn a_reference_to_an_unknown_kind_keeps_the_object_but_dangling_ones_are_dropped() {
        let r = refs(&["a", "b"]);

        let decision = decide(&classified(&r, &[Unknown, Absent]), &[], ALONE);

        assert_eq!(decision, Decision::RemoveReferences(uids(&["b"])));
    }

    #[test]
    fn the_objects_own_finalizers_choose_the_propagation() {
        let r = refs(&["a"]);
        let gone = classified(&r, &[Absent]);

        assert_eq!(
            decide(&gone, &[ORPHAN.into()], ALONE),
            delete(Propagation::Orphan)
        );
        assert_eq!(
            decide(&gone, &[FOREGROUND.into()], ALONE),
            delete(Propagation::Foreground)
        );
    }

    #[test]
    fn a_dependent_of_a_waiting_owner_with_dependents_of_its_own_goes_in_the_foreground() {
        let r = refs(&["a"]);
        let waiting = classified(&r, &[Waiting]);
        let parent = Surroundings {
            has_dependents: true,
            a_dependent_deletes_dependents: false,
        };
        let in_a_cycle = Surroundings {
            has_dependents: true,
            a_dependent_deletes_dependents: true,
        };

        assert_eq!(
            decide(&waiting, &[], parent),
            delete(Propagation::Foreground)
        );
        assert_eq!(
            decide(&waiting, &[], in_a_cycle),
            Decision::Delete {
                propagation: Propagation::Foreground,
                unblock_first: true
            }
        );
        assert_eq!(
            decide(&waiting, &[], ALONE),
            delete(Propagation::Background)
        );
    }

    #[test]
    fn a_foreground_owner_finishes_once_no_dependent_blocks_it() {
        let mut free = node("free", &[]);
        free.owners = vec![reference("o", false)];
        let blocking = node("blocking", &["o"]);
        let mut waiting = node("waiting", &["o"]);
        waiting.deleting = true;
        waiting.finalizers = vec![FOREGROUND.into()];

        assert_eq!(foreground("o", &[&free]), Foreground::Finish);
        assert_eq!(
            foreground("o", &[&free, &blocking, &waiting]),
            Foreground::Wait(vec!["blocking".into()])
        );
        assert_eq!(foreground("o", &[&waiting]), Foreground::Wait(vec![]));
    }

    #[test]
    fn references_are_dropped_or_unblocked_by_uid() {
        let mut r = refs(&["a", "b"]);
        r[1].block_owner_deletion = None;

        let kept = without(&r, &uids(&["a"]));
        let open = unblocked(&r);

        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].uid, "b");
        assert_eq!(open[0].block_owner_deletion, Some(false));
        assert_eq!(open[1].block_owner_deletion, None);
    }
}
