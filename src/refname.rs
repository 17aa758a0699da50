//! Ref names as operators write them and as git stores them: one resolver
//! for `v1.2.0` → `refs/tags/v1.2.0` (or `refs/heads/…`), one short form
//! for display and versions, and the natural order of release names.
//! Pure: callers say which full names exist.

use std::cmp::Ordering;

/// The full names an operator's `asked` may mean, in the order they are
/// tried: a full name (`refs/…`) means itself; a short one is a tag first,
/// then a branch.
pub fn candidates(asked: &str) -> Vec<String> {
    if asked.starts_with("refs/") {
        vec![asked.to_string()]
    } else {
        vec![format!("refs/tags/{asked}"), format!("refs/heads/{asked}")]
    }
}

/// The first of [`candidates`] that `exists` accepts.
///
/// # Errors
/// What `exists` returns.
pub fn resolve<E>(
    asked: &str,
    mut exists: impl FnMut(&str) -> Result<bool, E>,
) -> Result<Option<String>, E> {
    for c in candidates(asked) {
        if exists(&c)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The full name a short one means when none is known yet: a tag.
pub fn default_full(asked: &str) -> String {
    candidates(asked).swap_remove(0)
}

/// `refs/tags/v1.2.0` → `v1.2.0`, `refs/heads/master` → `master`; any other
/// name as it is.
pub fn short(full: &str) -> &str {
    full.strip_prefix("refs/tags/")
        .or_else(|| full.strip_prefix("refs/heads/"))
        .unwrap_or(full)
}

/// Compares runs of digits as numbers and the rest as text, so `v1.10.0`
/// comes after `v1.9.2`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_try_a_tag_then_a_branch() {
        assert_eq!(
            candidates("v1.0"),
            vec!["refs/tags/v1.0".to_string(), "refs/heads/v1.0".into()]
        );
        assert_eq!(candidates("refs/heads/x"), vec!["refs/heads/x".to_string()]);
        let known = ["refs/heads/master", "refs/tags/v1"];
        let found = |asked| {
            resolve::<()>(asked, |c| Ok(known.contains(&c)))
                .unwrap()
                .unwrap_or_default()
        };
        assert_eq!(found("master"), "refs/heads/master");
        assert_eq!(found("v1"), "refs/tags/v1");
        assert_eq!(found("refs/tags/v1"), "refs/tags/v1");
        assert_eq!(found("v2"), "");
        assert_eq!(default_full("v2"), "refs/tags/v2");
        assert_eq!(default_full("refs/heads/x"), "refs/heads/x");
    }

    #[test]
    fn short_forms_strip_only_the_namespace() {
        assert_eq!(short("refs/tags/v1.2.0"), "v1.2.0");
        assert_eq!(short("refs/heads/master"), "master");
        assert_eq!(short("refs/notes/x"), "refs/notes/x");
        assert_eq!(short("v1"), "v1");
    }

    #[test]
    fn versions_sort_naturally() {
        assert_eq!(natural_cmp("v1.10.0", "v1.9.2"), Ordering::Greater);
        assert_eq!(natural_cmp("v1.0", "v1.0.1"), Ordering::Less);
        assert_eq!(natural_cmp("v007", "v7"), Ordering::Equal);
        assert_eq!(natural_cmp("v27.1", "v27.1"), Ordering::Equal);
        assert_eq!(natural_cmp("v28.0rc1", "v28.0"), Ordering::Greater);
    }
}
