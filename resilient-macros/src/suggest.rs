//! "Did you mean" hints for misspelled option names and values.

/// The candidate closest to `typo`, if it is close enough to be a plausible misspelling.
///
/// A candidate qualifies when it is within a third of the typo's length in edits (rustc's
/// `find_best_match_for_name` cut-off), or when the two share a stem of four or more
/// characters and differ in at most half the longer one: that second rule catches
/// `retries` → `retry` and `timeout` → `timeout_ms`, which a pure distance cut-off misses.
/// A case-insensitive match always wins, so `"Write"` suggests `"write"`.
pub(crate) fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let typo_len = typo.chars().count();
    candidates
        .into_iter()
        .filter_map(|c| {
            if c.eq_ignore_ascii_case(typo) {
                return Some((0, c));
            }
            let d = edit_distance(typo, c);
            let stem = typo
                .chars()
                .zip(c.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let close = d <= (typo_len / 3).max(1)
                || (stem >= 4 && d <= typo_len.max(c.chars().count()) / 2);
            close.then_some((d, c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so
/// `wirte` is one edit away from `write`, not two.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows: the transposition case looks two rows back.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("retries", "retry"), 3);
        assert_eq!(edit_distance("wirte", "write"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestions() {
        let keys = ["retry", "timeout_ms", "deadline_ms", "delay_ms"];
        assert_eq!(did_you_mean("retrys", keys), Some("retry"));
        assert_eq!(did_you_mean("retries", keys), Some("retry"));
        assert_eq!(did_you_mean("timeout", keys), Some("timeout_ms"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("READ", ["read", "write"]), Some("read"));
        assert_eq!(
            did_you_mean("reed", ["read", "write", "report"]),
            Some("read")
        );
    }
}
