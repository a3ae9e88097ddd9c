//! `[capture]`: what becomes an event, and the `[[capture.rules]]` that name events; and the
//! path patterns those rules (and `inject.exclude_paths`) are written in.

use super::file::{CaptureSection, RuleSection};
use super::Problems;
use http::Method;

#[derive(Debug, Clone)]
pub struct Capture {
    /// Off: tollgate is a plain proxy (identity headers stay on).
    pub enabled: bool,
    /// Store static assets as `asset` events.
    pub assets: bool,
    /// Path prefixes whose requests are `api_call`s, each starting with `/`.
    pub api_prefixes: Vec<String>,
    /// The rules that name events, in order; the first match wins.
    pub rules: Vec<Rule>,
}

/// A validated `[[capture.rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub method: Option<Method>,
    pub path: PathPattern,
    /// Inclusive status range.
    pub status: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    /// Segments; `None` is a `:param` that matches any one segment.
    Route(Vec<Option<String>>),
}

pub(super) fn validate(c: &CaptureSection, p: &mut Problems) -> Capture {
    for (i, prefix) in c.api_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            p.item("api_prefixes", i)
                .here(format!("{prefix:?} must start with `/`"));
        }
    }
    let mut rules = Vec::new();
    for (i, r) in c.rules.iter().enumerate() {
        if let Some(rule) = parse_rule(r, &mut p.item("rules", i)) {
            rules.push(rule);
        }
    }
    Capture {
        enabled: c.enabled,
        assets: c.assets,
        api_prefixes: c.api_prefixes.clone(),
        rules,
    }
}

/// A path pattern: `/exact`, `/prefix*` or `/route/:param`.
pub(super) fn parse_path(p: &str) -> Result<PathPattern, String> {
    if !p.starts_with('/') {
        Err(format!("{p:?} must start with `/`"))
    } else if let Some(prefix) = p.strip_suffix('*') {
        Ok(PathPattern::Prefix(prefix.to_string()))
    } else if p.contains("/:") {
        Ok(PathPattern::Route(
            p.split('/')
                .map(|seg| (!seg.starts_with(':')).then(|| seg.to_string()))
                .collect(),
        ))
    } else {
        Ok(PathPattern::Exact(p.to_string()))
    }
}

/// One rule; `None` when a problem with it was reported.
fn parse_rule(r: &RuleSection, p: &mut Problems) -> Option<Rule> {
    let before = p.count();
    if r.name.is_empty()
        || !r
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        p.report(
            "name",
            format!(
                "{:?} is not a valid event name (letters, digits, `_ - . :`)",
                r.name
            ),
        );
    }
    let method = if r.method.is_empty() {
        None
    } else {
        Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| p.report("method", format!("{:?} is not an HTTP method", r.method)))
            .ok()
    };
    let path = if r.path.is_empty() {
        PathPattern::Any
    } else {
        parse_path(&r.path)
            .map_err(|e| p.report("path", e))
            .unwrap_or(PathPattern::Any)
    };
    let status = if r.status.is_empty() {
        None
    } else {
        let status = parse_status(&r.status);
        if status.is_none() {
            p.report(
                "status",
                format!(
                    "{:?} is not a status pattern (expected 200, 2xx, or 200-299)",
                    r.status
                ),
            );
        }
        status
    };
    (p.count() == before).then(|| Rule {
        name: r.name.clone(),
        method,
        path,
        status,
    })
}

fn parse_status(s: &str) -> Option<(u16, u16)> {
    let valid = |n: u16| (100..=599).contains(&n);
    let s = s.trim().to_ascii_lowercase();
    if let Some(class) = s.strip_suffix("xx") {
        let c: u16 = class.parse().ok()?;
        return valid(c * 100).then_some((c * 100, c * 100 + 99));
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (valid(a) && valid(b) && a <= b).then_some((a, b));
    }
    let n: u16 = s.parse().ok()?;
    valid(n).then_some((n, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        assert_eq!(parse_status("2xx"), Some((200, 299)));
        assert_eq!(parse_status("201"), Some((201, 201)));
        assert_eq!(parse_status("200-204"), Some((200, 204)));
        assert_eq!(parse_status("7xx"), None);
        assert_eq!(parse_status("abc"), None);
        assert_eq!(parse_status("300-200"), None);
    }
}
