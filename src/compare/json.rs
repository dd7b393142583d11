//! Structural comparison of two JSON documents: each difference named by
//! its JSON Pointer path, with both values rendered and truncated.

use serde_json::Value;

use super::rules::{PathRule, Rules, escape};

/// Most differences reported for one body; the rest are not looked for.
pub const MAX_JSON_DIFFERENCES: usize = 64;
/// Longest rendering of a value in a difference, in characters.
pub const MAX_VALUE_CHARS: usize = 120;

/// One difference between two JSON documents.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDifference {
    /// JSON Pointer of the value (`""` for the root).
    pub path: String,
    /// The master's value, rendered (`None`: absent there).
    pub master: Option<String>,
    /// The shadow's value, rendered (`None`: absent there).
    pub shadow: Option<String>,
    /// An ignore rule covers the path.
    pub ignored: bool,
}

/// The differences between `master` and `shadow` under `rules`.
pub fn diff(master: &Value, shadow: &Value, rules: &Rules) -> Vec<JsonDifference> {
    let mut out = Vec::new();
    walk(Some(master), Some(shadow), &mut Vec::new(), rules, &mut out);
    out
}

fn walk(a: Option<&Value>, b: Option<&Value>, path: &mut Vec<String>, rules: &Rules, out: &mut Vec<JsonDifference>) {
    if out.len() >= MAX_JSON_DIFFERENCES {
        return;
    }
    let (Some(a), Some(b)) = (a, b) else {
        push(a, b, path, rules, out);
        return;
    };
    match (rules.rule(path), a, b) {
        (Some(PathRule::Tolerance(t)), Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) {
                if (x - y).abs() > *t {
                    push(Some(a), Some(b), path, rules, out);
                }
                return;
            }
        }
        (Some(PathRule::Set), Value::Array(x), Value::Array(y)) => {
            if !same_multiset(x, y) {
                push(Some(a), Some(b), path, rules, out);
            }
            return;
        }
        _ => {}
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                path.push(k.clone());
                walk(Some(va), y.get(k), path, rules, out);
                path.pop();
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                path.push(k.clone());
                walk(None, Some(vb), path, rules, out);
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                path.push(i.to_string());
                walk(x.get(i), y.get(i), path, rules, out);
                path.pop();
            }
        }
        _ if a != b => push(Some(a), Some(b), path, rules, out),
        _ => {}
    }
}

fn same_multiset(x: &[Value], y: &[Value]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    // serde_json's maps are ordered by key: a rendering is canonical.
    let mut xs: Vec<String> = x.iter().map(Value::to_string).collect();
    let mut ys: Vec<String> = y.iter().map(Value::to_string).collect();
    xs.sort_unstable();
    ys.sort_unstable();
    xs == ys
}

fn push(a: Option<&Value>, b: Option<&Value>, path: &[String], rules: &Rules, out: &mut Vec<JsonDifference>) {
    out.push(JsonDifference {
        path: pointer(path),
        master: a.map(render),
        shadow: b.map(render),
        ignored: rules.ignores(path),
    });
}

/// The JSON Pointer of `path`.
pub fn pointer(path: &[String]) -> String {
    path.iter().map(|s| format!("/{}", escape(s))).collect()
}

/// A value as JSON text, cut at [`MAX_VALUE_CHARS`].
pub fn render(v: &Value) -> String {
    truncate(v.to_string())
}

/// `s` cut at [`MAX_VALUE_CHARS`] characters, marked with `…`.
pub fn truncate(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(MAX_VALUE_CHARS) {
        s.truncate(at);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::rules::PathPattern;
    use super::*;
    use serde_json::json;

    fn rules(paths: &[(&str, PathRule)]) -> Rules {
        Rules {
            paths: paths
                .iter()
                .map(|(p, r)| (PathPattern::parse(p).unwrap(), r.clone()))
                .collect(),
            ..Rules::default()
        }
    }

    #[test]
    fn differences_are_named_by_json_pointer() {
        let a = json!({"items": [{"price": 10, "id": 1}, {"price": 5}], "a/b": 1, "gone": true});
        let b = json!({"items": [{"price": 12, "id": 1}, {"price": 5}, 7], "a/b": 2, "new": null});
        let d = diff(&a, &b, &Rules::default());
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/a~1b", "/gone", "/items/0/price", "/items/2", "/new"]);
        let price = &d[2];
        assert_eq!(
            (price.master.as_deref(), price.shadow.as_deref()),
            (Some("10"), Some("12"))
        );
        assert_eq!((d[1].master.as_deref(), d[1].shadow.as_deref()), (Some("true"), None));
        assert!(d.iter().all(|d| !d.ignored));
        assert!(diff(&a, &a, &Rules::default()).is_empty());
    }

    #[test]
    fn ignore_set_and_tolerance_rules() {
        let r = rules(&[
            ("/items/*/updated", PathRule::Ignore),
            ("/tags", PathRule::Set),
            ("/total", PathRule::Tolerance(0.01)),
        ]);
        let a = json!({"items": [{"updated": 1}], "tags": ["a", "b"], "total": 10.0});
        let b = json!({"items": [{"updated": 2}], "tags": ["b", "a"], "total": 10.005});
        let d = diff(&a, &b, &r);
        assert_eq!(d.len(), 1);
        assert!(d[0].ignored && d[0].path == "/items/0/updated");
        let c = json!({"items": [{"updated": 1}], "tags": ["a", "c"], "total": 10.5});
        let d = diff(&a, &c, &r);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/tags", "/total"]);
    }

    #[test]
    fn long_values_are_truncated_on_a_character_boundary() {
        let long = "é".repeat(500);
        let r = render(&json!(long));
        assert_eq!(r.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(r.ends_with('…'));
    }
}
