//! What a comparison ignores or treats leniently: response headers by name,
//! JSON values by path.

/// Response headers ignored by default: they differ between any two
/// servers, or between two answers of the same one.
pub const DEFAULT_IGNORED_HEADERS: [&str; 8] = [
    "date",
    "age",
    "expires",
    "server",
    "set-cookie",
    "via",
    "x-request-id",
    "content-length",
];

/// Hop-by-hop fields (RFC 9110 §7.6.1) and framing: never compared (a
/// body is compared after its framing and encoding are removed).
pub const FRAMING_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-encoding",
    "content-length",
];

/// How values at matching JSON paths are compared.
#[derive(Debug, Clone, PartialEq)]
pub enum PathRule {
    /// Any difference here is ignored (reported, marked ignored).
    Ignore,
    /// An array compared as a multiset: order does not matter.
    Set,
    /// Numbers equal within this absolute tolerance.
    Tolerance(f64),
}

/// A JSON Pointer pattern: `/items/*/price`, where `*` stands for any one
/// key or index.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPattern {
    segments: Vec<String>,
}

impl PathPattern {
    /// Parses a pattern; it must be empty (the root) or start with `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(PathPattern { segments: Vec::new() });
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "JSON path {s:?} must start with / (a JSON Pointer, e.g. /items/*/price)"
            ));
        };
        Ok(PathPattern {
            segments: rest.split('/').map(unescape).collect(),
        })
    }

    /// Whether `path` (unescaped segments) matches.
    pub fn matches(&self, path: &[String]) -> bool {
        self.segments.len() == path.len() && self.segments.iter().zip(path).all(|(p, s)| p == "*" || p == s)
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Escapes one JSON Pointer segment (RFC 6901).
pub fn escape(segment: &str) -> String {
    if segment.contains(['~', '/']) {
        segment.replace('~', "~0").replace('/', "~1")
    } else {
        segment.to_string()
    }
}

/// Everything a comparison is told.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Response header names not compared (lower case).
    pub ignored_headers: Vec<String>,
    /// JSON path rules, the first matching pattern wins.
    pub paths: Vec<(PathPattern, PathRule)>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ignored_headers: DEFAULT_IGNORED_HEADERS.iter().map(|s| s.to_string()).collect(),
            paths: Vec::new(),
        }
    }
}

impl Rules {
    /// Whether header `name` is compared.
    pub fn compares_header(&self, name: &str) -> bool {
        !FRAMING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
            && !self.ignored_headers.iter().any(|h| name.eq_ignore_ascii_case(h))
    }

    /// The rule for the JSON value at `path`, if any.
    pub fn rule(&self, path: &[String]) -> Option<&PathRule> {
        self.paths.iter().find(|(p, _)| p.matches(path)).map(|(_, r)| r)
    }

    /// Whether a difference at `path` or under it is ignored.
    pub fn ignores(&self, path: &[String]) -> bool {
        (0..=path.len()).any(|n| matches!(self.rule(&path[..n]), Some(PathRule::Ignore)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Vec<String> {
        s.split('/').skip(1).map(String::from).collect()
    }

    #[test]
    fn patterns_match_one_segment_per_star() {
        let p = PathPattern::parse("/items/*/price").unwrap();
        assert!(p.matches(&path("/items/3/price")));
        assert!(p.matches(&path("/items/x/price")));
        assert!(!p.matches(&path("/items/3/price/cents")));
        assert!(!p.matches(&path("/items/price")));
        assert!(PathPattern::parse("items").unwrap_err().contains("must start with /"));
        assert!(PathPattern::parse("/a~1b").unwrap().matches(&["a/b".to_string()]));
    }

    #[test]
    fn ignoring_a_path_ignores_what_is_under_it() {
        let rules = Rules {
            paths: vec![(PathPattern::parse("/meta").unwrap(), PathRule::Ignore)],
            ..Rules::default()
        };
        assert!(rules.ignores(&path("/meta/generated_at")));
        assert!(!rules.ignores(&path("/items/0")));
        assert!(!rules.compares_header("Date"));
        assert!(!rules.compares_header("transfer-encoding"));
        assert!(rules.compares_header("content-type"));
        assert_eq!(escape("a/b~c"), "a~1b~0c");
    }
}
