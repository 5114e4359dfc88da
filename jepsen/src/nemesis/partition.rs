//! Partition shapes as pure data: for each member, the members whose packets it drops.

use rand::seq::SliceRandom;
use rand::Rng;

/// Which partition to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A random minority against the rest.
    Halves,
    /// The leader alone against the rest.
    IsolateLeader,
    /// Every member sees a majority, no two the same one.
    MajoritiesRing,
    /// Two halves that cannot talk, and one member that talks to both.
    Bridge,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Halves => "halves",
            Shape::IsolateLeader => "isolate-leader",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
        }
    }

    pub fn random(rng: &mut impl Rng) -> Shape {
        [
            Shape::Halves,
            Shape::IsolateLeader,
            Shape::MajoritiesRing,
            Shape::Bridge,
        ][rng.random_range(0..4)]
    }
}

/// Drop lists over `members` (indices): `drops[k]` = (member, members it must not hear).
pub fn drops(
    shape: Shape,
    members: &[usize],
    leader: Option<usize>,
    rng: &mut impl Rng,
) -> Vec<(usize, Vec<usize>)> {
    let mut m = members.to_vec();
    let n = m.len();
    let cut = |a: &[usize], b: &[usize]| -> Vec<(usize, Vec<usize>)> {
        a.iter()
            .map(|x| (*x, b.to_vec()))
            .chain(b.iter().map(|x| (*x, a.to_vec())))
            .collect()
    };
    match shape {
        Shape::Halves => {
            m.shuffle(rng);
            let (a, b) = m.split_at(n / 2);
            cut(a, b)
        }
        Shape::IsolateLeader => {
            let l = leader
                .filter(|l| m.contains(l))
                .unwrap_or_else(|| m[rng.random_range(0..n)]);
            let rest: Vec<usize> = m.iter().copied().filter(|x| *x != l).collect();
            cut(&[l], &rest)
        }
        Shape::MajoritiesRing => {
            m.shuffle(rng);
            let majority = n / 2 + 1;
            (0..n)
                .map(|i| {
                    let hears: Vec<usize> = (0..majority).map(|k| m[(i + k) % n]).collect();
                    (
                        m[i],
                        m.iter().copied().filter(|x| !hears.contains(x)).collect(),
                    )
                })
                .collect()
        }
        Shape::Bridge => {
            m.shuffle(rng);
            let rest = &m[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            cut(a, b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn hears(d: &[(usize, Vec<usize>)], x: usize, y: usize) -> bool {
        !d.iter().any(|(a, from)| *a == x && from.contains(&y))
    }

    #[test]
    fn isolating_the_leader_cuts_it_from_everyone_both_ways() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let d = drops(Shape::IsolateLeader, &[0, 1, 2], Some(1), &mut rng);
        for o in [0, 2] {
            assert!(!hears(&d, 1, o) && !hears(&d, o, 1));
        }
        assert!(hears(&d, 0, 2) && hears(&d, 2, 0));
    }

    #[test]
    fn in_a_majorities_ring_everyone_hears_a_different_majority() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let members = [0, 1, 2, 3, 4];
        let d = drops(Shape::MajoritiesRing, &members, None, &mut rng);
        let mut seen = std::collections::BTreeSet::new();
        for x in members {
            let heard: Vec<usize> = members
                .iter()
                .copied()
                .filter(|y| hears(&d, x, *y))
                .collect();
            assert_eq!(heard.len(), 3);
            assert!(heard.contains(&x));
            assert!(seen.insert(heard));
        }
    }

    #[test]
    fn a_bridge_member_hears_both_halves_which_do_not_hear_each_other() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let members = [0, 1, 2, 3, 4];
        let d = drops(Shape::Bridge, &members, None, &mut rng);
        let bridge: Vec<usize> = members
            .iter()
            .copied()
            .filter(|x| members.iter().all(|y| hears(&d, *x, *y)))
            .collect();
        assert_eq!(bridge.len(), 1);
        let cut = members
            .iter()
            .filter(|x| members.iter().any(|y| !hears(&d, **x, *y)))
            .count();
        assert_eq!(cut, 4);
    }
}
