//! "Did you mean --shadow?": the nearest known name to a mistyped one,
//! by edit distance. The known long flags come from each help page, so
//! the list cannot drift from what the page documents.

use lexopt::Arg;

use super::Topic;

/// Edits (insert, delete, substitute) a suggestion may be away; past it
/// the guess is more likely wrong than helpful.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// The `--name` flags a help page mentions, without the dashes, deduplicated.
pub(super) fn long_flags(page: &str) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    for (i, _) in page.match_indices("--") {
        let name: String = page[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        let name = name.trim_end_matches('-');
        if !name.is_empty() && !flags.iter().any(|f| f == name) {
            flags.push(name.to_string());
        }
    }
    flags
}

/// Levenshtein distance, by chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `"; did you mean {prefix}{nearest}?"`, or `""` when nothing is near.
pub(super) fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>, prefix: &str) -> String {
    let best = known
        .into_iter()
        .map(|k| (distance(name, k), k))
        // Short names: one edit in three characters is already a different word.
        .filter(|(d, k)| *d <= MAX_SUGGESTION_DISTANCE && *d < k.len().max(name.len()).div_ceil(2))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!("; did you mean {prefix}{k}?"),
        None => String::new(),
    }
}

/// The error for an argument a subcommand does not know: lexopt's message,
/// the subcommand, and the nearest known flag.
pub(super) fn unexpected(arg: Arg<'_>, topic: Topic) -> String {
    let hint = match &arg {
        Arg::Long(name) => {
            let flags = topic.flags();
            did_you_mean(name, flags.iter().map(String::as_str), "--")
        }
        _ => String::new(),
    };
    let context = match topic {
        Topic::Proxy => String::new(),
        t => format!(" ({})", t.command()),
    };
    format!("{}{context}{hint}", arg.unexpected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("shadow", "shadow"), 0);
        assert_eq!(distance("shadwo", "shadow"), 2);
        assert_eq!(distance("listn", "listen"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggests_the_nearest_flag_or_nothing() {
        let flags = Topic::Proxy.flags();
        let known = || flags.iter().map(String::as_str);
        assert!(flags.iter().any(|f| f == "shadow-timeout"), "{flags:?}");
        assert_eq!(did_you_mean("shadwo", known(), "--"), "; did you mean --shadow?");
        assert_eq!(did_you_mean("mastr", known(), "--"), "; did you mean --master?");
        assert_eq!(did_you_mean("bogus", known(), "--"), "");
        assert_eq!(did_you_mean("x", known(), "--"), "");
        let route = Topic::Route.flags();
        assert!(!route.iter().any(|f| f == "shadow"), "{route:?}");
    }
}
