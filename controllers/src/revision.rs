//! What workload controllers share about versions of a pod template: a stable hash of it (the
//! `controller-revision-hash` / `pod-template-hash` label values), and the arithmetic of
//! `maxSurge`/`maxUnavailable` values given as counts or percentages. Pure.

use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// The characters Kubernetes' SafeEncodeString maps digits onto (no vowels, no look-alikes),
/// so a hash never spells a word and is a valid label value.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, stable, label-safe hash of `value` (a pod template) and `collision_count`: FNV-1a
/// over its JSON (field order is fixed by the types, maps are sorted), rendered as Kubernetes
/// renders its template hashes. A collision with an existing revision of different content is
/// resolved by the caller bumping `collision_count`.
pub fn template_hash<T: Serialize>(value: &T, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(serde_json::to_string(value).unwrap_or_default().as_bytes());
    if let Some(count) = collision_count {
        feed(&count.to_be_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|d| char::from(SAFE[usize::from(d - b'0') % SAFE.len()]))
        .collect()
}

/// `value` (a count, or a percentage of `total`) as a count, rounding a percentage up or
/// down. An unparsable percentage counts as 0 (validation refuses them before this).
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_is_stable_label_safe_and_changes_with_content_and_collisions() {
        let a = json!({"spec": {"containers": [{"image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "nginx:2"}]}});
        assert_eq!(template_hash(&a, None), template_hash(&a, None));
        assert_ne!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        let h = template_hash(&a, None);
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|c| SAFE.contains(&c)));
    }

    #[test]
    fn percentages_scale_with_the_rounding_asked_for() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled(Some(&p("25%")), 10, true), 3);
        assert_eq!(scaled(Some(&p("25%")), 10, false), 2);
        assert_eq!(scaled(Some(&p("100%")), 7, false), 7);
        assert_eq!(scaled(Some(&IntOrString::Int(4)), 10, true), 4);
        assert_eq!(scaled(None, 10, true), 0);
        assert_eq!(scaled(Some(&p("x%")), 10, true), 0);
    }
}
