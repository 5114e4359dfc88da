//! Kubernetes' `$(VAR)` expansion of environment values, commands and arguments: a reference
//! to a variable defined earlier is replaced by its value, `$$` is a literal `$`, and anything
//! else (an undefined name, an unclosed `$(`, a lone `$`) is left as written.

/// Expands `$(NAME)` in `input` with `lookup`; names it does not know stay `$(NAME)`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A `$` ending the input is kept.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            other => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn defined_references_are_replaced() {
        assert_eq!(expand("x-$(A)-y", vars), "x-alpha-y");
        assert_eq!(expand("$(A)$(A)", vars), "alphaalpha");
        assert_eq!(expand("[$(EMPTY)]", vars), "[]");
    }

    #[test]
    fn undefined_references_are_left_as_written() {
        assert_eq!(expand("$(NOPE)", vars), "$(NOPE)");
        assert_eq!(expand("$()", vars), "$()");
    }

    #[test]
    fn a_doubled_dollar_escapes_a_reference() {
        assert_eq!(expand("$$(A)", vars), "$(A)");
        assert_eq!(expand("$$$(A)", vars), "$alpha");
        assert_eq!(expand("$$", vars), "$");
    }

    #[test]
    fn lone_and_unclosed_dollars_are_kept() {
        assert_eq!(expand("cost: $5", vars), "cost: $5");
        assert_eq!(expand("end$", vars), "end$");
        assert_eq!(expand("$(A", vars), "$(A");
        assert_eq!(expand("$é", vars), "$é");
    }
}
