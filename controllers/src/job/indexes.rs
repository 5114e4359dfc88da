//! Completion indexes of an Indexed job: the `status.completedIndexes` text ("1,3-5,7") read
//! and written as Kubernetes does (ascending, consecutive runs as `first-last`), and which
//! indexes still need a pod.

use std::collections::BTreeSet;

/// The annotation (and label) naming a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Parses `completedIndexes`, keeping only indexes below `completions`. Malformed parts are
/// skipped: the field is the controller's own, and a bad value must not stop the job.
pub fn parse(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            out.extend((first.max(0)..=last.min(completions - 1)).filter(|i| *i >= first));
        }
    }
    out
}

/// Writes indexes as `completedIndexes`: ascending, consecutive runs as `first-last`.
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((first, last)) if i == last + 1 => Some((first, i)),
            Some(done) => {
                parts.push(render(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some(done) = run {
        parts.push(render(done));
    }
    parts.join(",")
}

fn render((first, last): (i32, i32)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The completion index a pod carries in its annotation (or, failing that, its label), if
/// valid for `completions`.
pub fn of_pod(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    completions: i32,
) -> Option<i32> {
    let text = annotations
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| labels.and_then(|l| l.get(COMPLETION_INDEX)))?;
    text.parse::<i32>()
        .ok()
        .filter(|i| (0..completions).contains(i))
}

/// The lowest `count` indexes below `completions` that are neither completed nor running.
pub fn to_start(
    completions: i32,
    completed: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    count: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !completed.contains(i) && !running.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_with_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format(&set), "0-2,4,6-7");
        assert_eq!(parse("0-2,4,6-7", 10), set);
        assert_eq!(format(&BTreeSet::new()), "");
        assert!(parse("", 3).is_empty());
    }

    #[test]
    fn parsing_drops_indexes_beyond_completions_and_garbage() {
        assert_eq!(parse("1,3-9,x,5-", 5), [1, 3, 4].into_iter().collect());
    }

    #[test]
    fn the_lowest_free_indexes_start_first() {
        let completed = [0, 2].into_iter().collect();
        let running = [1].into_iter().collect();
        assert_eq!(to_start(6, &completed, &running, 2), vec![3, 4]);
        assert_eq!(to_start(3, &completed, &running, 2), Vec::<i32>::new());
    }

    #[test]
    fn a_pods_index_comes_from_its_annotation_and_must_be_in_range() {
        let map = |v: &str| [(COMPLETION_INDEX.to_string(), v.to_string())].into();
        assert_eq!(of_pod(Some(&map("2")), None, 3), Some(2));
        assert_eq!(of_pod(None, Some(&map("1")), 3), Some(1));
        assert_eq!(of_pod(Some(&map("3")), None, 3), None);
        assert_eq!(of_pod(Some(&map("x")), None, 3), None);
    }
}
