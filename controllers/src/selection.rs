//! Which controllers run: kube-controller-manager's `--controllers` flag. `*` turns on every
//! controller that is on by default, `name` turns one on, `-name` turns one off; the last word
//! about a name wins over `*`. Unknown names are refused, so a typo never silently disables
//! nothing.

use std::collections::BTreeSet;

/// An unusable `--controllers` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("unknown controller {name:?} in --controllers (known: {known})")]
    Unknown { name: String, known: String },
    #[error("empty entry in --controllers")]
    Empty,
}

/// Resolves `flags` (the flag's comma-separated entries) against `known` controllers, each with
/// whether it is on by default. Returns the names to run.
pub fn select(
    flags: &[String],
    known: &[(&'static str, bool)],
) -> Result<BTreeSet<&'static str>, SelectionError> {
    let mut star = false;
    let mut on = BTreeSet::new();
    let mut off = BTreeSet::new();
    for flag in flags {
        let flag = flag.trim();
        if flag == "*" {
            star = true;
            continue;
        }
        let (disable, name) = match flag.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, flag),
        };
        if name.is_empty() {
            return Err(SelectionError::Empty);
        }
        let Some((known_name, _)) = known.iter().find(|(k, _)| *k == name) else {
            return Err(SelectionError::Unknown {
                name: name.to_string(),
                known: known.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
            });
        };
        if disable {
            on.remove(known_name);
            off.insert(*known_name);
        } else {
            off.remove(known_name);
            on.insert(*known_name);
        }
    }
    if star {
        for (name, default_on) in known {
            if *default_on && !off.contains(name) {
                on.insert(*name);
            }
        }
    }
    Ok(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[(&str, bool)] = &[("job", true), ("cronjob", true), ("bootstrap", false)];

    fn flags(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn star_turns_on_the_default_controllers_only() {
        let chosen = select(&flags("*"), KNOWN).expect("valid");
        assert_eq!(
            chosen.into_iter().collect::<Vec<_>>(),
            vec!["cronjob", "job"]
        );
    }

    #[test]
    fn a_minus_turns_one_off_and_a_name_turns_an_optional_one_on() {
        let chosen = select(&flags("*,-job,bootstrap"), KNOWN).expect("valid");
        assert_eq!(
            chosen.into_iter().collect::<Vec<_>>(),
            vec!["bootstrap", "cronjob"]
        );
    }

    #[test]
    fn without_star_only_the_named_ones_run() {
        let chosen = select(&flags("job"), KNOWN).expect("valid");
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), vec!["job"]);
    }

    #[test]
    fn unknown_and_empty_names_are_refused() {
        assert!(matches!(
            select(&flags("*,-jobs"), KNOWN),
            Err(SelectionError::Unknown { name, .. }) if name == "jobs"
        ));
        assert_eq!(select(&flags("*,-"), KNOWN), Err(SelectionError::Empty));
    }
}
