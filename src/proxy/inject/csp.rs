//! Content-Security-Policy: would a page's policy block the tracker, and how to allow it.
//!
//! The tracker needs two things: its `<script src>` element may load (`script-src-elem`, else
//! `script-src`, else `default-src`), and it may send to the collect endpoint (`connect-src`,
//! else `default-src`). A policy that already allows both is left alone. Otherwise:
//! - the script gets a fresh nonce, appended to the directive that governs it (a
//!   `script-src` built from `default-src` when that is the one);
//! - the endpoint's exact URL is added to `connect-src` the same way, nothing broader;
//! - a policy that relies on `'unsafe-inline'` without nonces or hashes is not touched: adding a
//!   nonce would switch `'unsafe-inline'` off and break the page's own inline scripts, so the
//!   page is not injected.
//!
//! Only what can be decided from the policy text is trusted as "allowed": `'self'`, `*`, the
//! page's scheme, or the page's own host; anything else gets the explicit allowance, which is
//! harmless when it was not needed.

/// What one `Content-Security-Policy` header value needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allows the tracker as it is.
    Allowed,
    /// Allows it once rewritten to this.
    Rewritten(String),
    /// Cannot allow it without weakening the page's own scripts.
    Blocked(&'static str),
}

/// Where the page is: its scheme (`http`/`https`) and host (`Host` header, with any port).
pub struct Origin<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// The collect endpoint's full URL, e.g. `https://shop.example/_tollgate/e`.
    pub endpoint: &'a str,
}

/// Judge one header value (which may hold several comma-separated policies).
pub fn adapt(value: &str, nonce: &str, origin: &Origin) -> Verdict {
    let mut changed = false;
    let mut out = Vec::new();
    for policy in value.split(',') {
        match adapt_policy(policy, nonce, origin) {
            Verdict::Allowed => out.push(policy.trim().to_string()),
            Verdict::Rewritten(p) => {
                changed = true;
                out.push(p);
            }
            blocked @ Verdict::Blocked(_) => return blocked,
        }
    }
    if changed {
        Verdict::Rewritten(out.join(", "))
    } else {
        Verdict::Allowed
    }
}

struct Directive<'a> {
    name: String,
    sources: Vec<&'a str>,
}

fn adapt_policy(policy: &str, nonce: &str, origin: &Origin) -> Verdict {
    let mut dirs: Vec<Directive> = Vec::new();
    for d in policy.split(';') {
        let mut words = d.split_ascii_whitespace();
        if let Some(name) = words.next() {
            dirs.push(Directive {
                name: name.to_ascii_lowercase(),
                sources: words.collect(),
            });
        }
    }
    // The first directive of a name counts; later duplicates are ignored by browsers.
    let find = |dirs: &[Directive], names: &[&str]| {
        names
            .iter()
            .find_map(|n| dirs.iter().position(|d| d.name == *n))
    };
    if dirs.iter().any(|d| d.name == "sandbox") {
        // A sandboxed page may run no scripts at all, or only from an opaque origin whose
        // beacons would not carry the visitor's cookie.
        return Verdict::Blocked("the page's policy sandboxes it");
    }
    let nonce_src = format!("'nonce-{nonce}'");
    let mut changed = false;

    if let Some(i) = find(&dirs, &["script-src-elem", "script-src", "default-src"]) {
        let sources = &dirs[i].sources;
        let strict = has(sources, "'strict-dynamic'");
        if strict || !allows_origin(sources, origin) {
            let keyed = sources.iter().any(|s| {
                let s = s.to_ascii_lowercase();
                s.starts_with("'nonce-") || s.starts_with("'sha")
            });
            if has(sources, "'unsafe-inline'") && !keyed {
                return Verdict::Blocked(
                    "the page's policy allows inline scripts with 'unsafe-inline'; a nonce would turn that off",
                );
            }
            extend(&mut dirs, i, "script-src", &nonce_src);
            changed = true;
        }
    }
    if let Some(i) = find(&dirs, &["connect-src", "default-src"]) {
        let sources = &dirs[i].sources;
        if !allows_origin(sources, origin) && !sources.contains(&origin.endpoint) {
            extend(&mut dirs, i, "connect-src", origin.endpoint);
            changed = true;
        }
    }
    if !changed {
        return Verdict::Allowed;
    }
    let text: Vec<String> = dirs
        .iter()
        .map(|d| {
            std::iter::once(d.name.as_str())
                .chain(d.sources.iter().copied())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Verdict::Rewritten(text.join("; "))
}

/// Add `source` to directive `i`, or, when that is `default-src`, to a new directive `name`
/// that starts as a copy of it (so everything else `default-src` governs stays as it was).
fn extend<'a>(dirs: &mut Vec<Directive<'a>>, i: usize, name: &str, source: &'a str) {
    let mut sources: Vec<&str> = dirs[i]
        .sources
        .iter()
        .copied()
        .filter(|s| !s.eq_ignore_ascii_case("'none'"))
        .collect();
    sources.push(source);
    if dirs[i].name == "default-src" {
        dirs.push(Directive {
            name: name.to_string(),
            sources,
        });
    } else {
        dirs[i].sources = sources;
    }
}

fn has(sources: &[&str], keyword: &str) -> bool {
    sources.iter().any(|s| s.eq_ignore_ascii_case(keyword))
}

/// Whether a source list certainly allows a same-origin URL.
fn allows_origin(sources: &[&str], origin: &Origin) -> bool {
    sources.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        if s == "'self'" || s == "*" || s == format!("{}:", origin.scheme) {
            return true;
        }
        // A host source, with this page's scheme or none: only the exact host counts, and only
        // without a path (a path limits it to part of the site).
        let rest = s
            .strip_prefix(&format!("{}://", origin.scheme))
            .unwrap_or(&s);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        host == origin.host.to_ascii_lowercase() && path.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin = Origin {
        scheme: "https",
        host: "shop.example",
        endpoint: "https://shop.example/_tollgate/e",
    };

    fn judge(policy: &str) -> Verdict {
        adapt(policy, "N0NCE", &ORIGIN)
    }

    #[test]
    fn policies_that_already_allow_the_tracker() {
        for p in [
            "default-src 'self'",
            "script-src 'self' https://cdn.example; connect-src 'self'",
            "img-src *; style-src 'unsafe-inline'",
            "default-src https:",
            "default-src shop.example",
            "script-src https://shop.example/; connect-src *",
            "default-src 'self' https://shop.example/static/",
            "upgrade-insecure-requests",
        ] {
            assert_eq!(judge(p), Verdict::Allowed, "{p}");
        }
    }

    #[test]
    fn a_nonce_for_the_script_and_the_endpoint_for_beacons() {
        assert_eq!(
            judge("default-src 'none'; img-src 'self'"),
            Verdict::Rewritten(
                "default-src 'none'; img-src 'self'; script-src 'nonce-N0NCE'; connect-src https://shop.example/_tollgate/e".into()
            )
        );
        assert_eq!(
            judge("script-src 'strict-dynamic' 'nonce-abc' 'self'; connect-src 'self'"),
            Verdict::Rewritten(
                "script-src 'strict-dynamic' 'nonce-abc' 'self' 'nonce-N0NCE'; connect-src 'self'"
                    .into()
            )
        );
        // script-src-elem governs script elements; script-src is left as it was.
        assert_eq!(
            judge("script-src 'self'; script-src-elem 'sha256-xyz'; connect-src 'self'"),
            Verdict::Rewritten(
                "script-src 'self'; script-src-elem 'sha256-xyz' 'nonce-N0NCE'; connect-src 'self'"
                    .into()
            )
        );
        // Hashes already switch 'unsafe-inline' off, so a nonce changes nothing for the page.
        assert!(matches!(
            judge("script-src 'unsafe-inline' 'sha256-xyz'; connect-src 'self'"),
            Verdict::Rewritten(_)
        ));
        // A host source with a path covers part of the site only.
        assert!(matches!(
            judge("script-src https://shop.example/static/; connect-src 'self'"),
            Verdict::Rewritten(_)
        ));
        // Two policies in one value: each is judged.
        assert_eq!(
            judge("default-src 'self', script-src 'none'"),
            Verdict::Rewritten("default-src 'self', script-src 'nonce-N0NCE'".into())
        );
    }

    #[test]
    fn pages_that_rely_on_unsafe_inline_are_not_injected() {
        assert!(matches!(
            judge("script-src 'unsafe-inline' https://cdn.example"),
            Verdict::Blocked(_)
        ));
        assert!(matches!(
            judge("default-src 'self'; sandbox allow-scripts"),
            Verdict::Blocked(_)
        ));
    }
}
