//! Bot detection: the verdict from the user agent alone, from request headers, and from the
//! client address.
//!
//! The UA verdict ([`BotRules::check_ua`]) runs in the enrichment stage through
//! [`UaAnalyzer`](crate::enrich::useragent::UaAnalyzer), which caches it per UA string. The
//! header verdict ([`check_request`]) and the address verdict ([`check_ip`]) are per request and
//! are not cached.
//!
//! Every verdict is a short, stable reason string, stored in the `bot_reason` column:
//!
//! | reason | meaning |
//! |---|---|
//! | `ua:empty` | no UA, or only whitespace |
//! | `ua:headless` | a headless or scripted browser names itself (HeadlessChrome, PhantomJS, …) |
//! | `ua:list:<pattern>` | a pattern of isbot's list matched (pattern cut to 40 characters) |
//! | `ua:spider` | uap-core calls the device a `Spider` |
//! | `ua:malformed` | something no real browser sends (control characters, absurd length, …) |
//! | `header:headless` | `Sec-CH-UA` names HeadlessChrome |
//! | `header:no-accept-language` | a browser-looking page view without `Accept-Language` |
//! | `ip:<net>` | the client address is in a configured network |
//!
//! The UA rules are measured by `tests/bots.rs` against two outside data sets: recall on
//! crawler-user-agents and false positives on real browser UAs. Run it after changing a rule or
//! updating `data/isbot-list.json`.

use crate::event::RequestSignals;
use std::net::IpAddr;

/// isbot's pattern list (npm `isbot`, see `data/README.md`): JavaScript regex sources, matched
/// case-insensitively.
const ISBOT_LIST: &str = include_str!("data/isbot-list.json");

/// How much of a matching isbot pattern goes into the `ua:list:` reason. The pattern is there
/// for a human asking "why"; a long one is recognisable from its start.
const REASON_PATTERN_CHARS: usize = 40;

/// Lazy DFA cache for the isbot set. At the `regex` default (2 MiB) two hundred
/// case-insensitive patterns fill it within a few thousand distinct UAs; the engine then keeps
/// clearing it and falls back to its slow NFA simulation, and a miss costs 10× more. The cache
/// grows only as states are built, so this is a ceiling, not an allocation (measured: a few
/// MiB after nine thousand distinct UAs).
const DFA_CACHE_BYTES: usize = 16 << 20;

/// A UA longer than this is not from a browser. The longest in our sample of real browser
/// traffic (`tests/fixtures/ua/browsers.txt`) is under 300 bytes; in-app browsers that append
/// their own tokens reach about 600.
pub const MALFORMED_MIN_LEN: usize = 1000;

/// UA substrings of headless or scripted browsers, lowercase. Only names of automation tools:
/// Electron itself is not here, because ordinary desktop apps (Obsidian, Slack, …) are Electron
/// and their users are people.
const HEADLESS_TOKENS: &[&str] = &[
    "headlesschrome",
    "headless chrome",
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "nightmare",
    "cypress/",
    "jsdom/",
    "htmlunit",
    "zombie.js",
];

/// Why the bot rules could not be built. Only a bad vendored data file causes this.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(
        "failed to read the isbot pattern list (src/enrich/data/isbot-list.json): {0} \
         (expected a JSON array of regex source strings)"
    )]
    List(#[source] serde_json::Error),
    #[error(
        "isbot pattern {pattern:?} does not compile: {message} \
         (is src/enrich/data/isbot-list.json from a newer isbot that uses other regex syntax?)"
    )]
    Pattern { pattern: String, message: String },
}

/// The UA bot rules: isbot's pattern list plus tollgate's own rules. Built once at start-up;
/// matching takes `&self`.
pub struct BotRules {
    /// isbot patterns the `regex` crate can run, in list order.
    plain: regex::RegexSet,
    /// Their sources, index-aligned with `plain`, for the reason.
    plain_sources: Vec<String>,
    /// isbot patterns with lookaround, which only `fancy_regex` can run, with their sources.
    lookaround: Vec<(String, fancy_regex::Regex)>,
    /// The lookaround patterns with their lookarounds removed, index-aligned with `lookaround`.
    /// Removing an assertion only widens a pattern, so a UA none of these match cannot match
    /// the full one, and the slow backtracking engine runs only on the few that do.
    lookaround_prefilter: regex::RegexSet,
}

impl BotRules {
    /// Compiles the vendored isbot list. Fails, naming the pattern, if one does not compile.
    pub fn new() -> Result<Self, BotError> {
        let list: Vec<String> = serde_json::from_str(ISBOT_LIST).map_err(BotError::List)?;
        let (fancy, plain): (Vec<String>, Vec<String>) =
            list.into_iter().partition(|p| has_lookaround(p));

        // Compile one by one first, so that an error names its pattern; the set's own error
        // would not say which one it was.
        let translated: Vec<String> = plain
            .iter()
            .map(|p| js_to_rust(p, Flavour::Regex))
            .collect();
        for (p, t) in plain.iter().zip(&translated) {
            regex::RegexBuilder::new(t)
                .case_insensitive(true)
                .build()
                .map_err(|e| pattern_error(p, &e))?;
        }
        let set = regex::RegexSetBuilder::new(&translated)
            .case_insensitive(true)
            .dfa_size_limit(DFA_CACHE_BYTES)
            .build()
            .map_err(|e| pattern_error(&plain.join("|"), &e))?;

        let mut lookaround = Vec::with_capacity(fancy.len());
        let mut prefilters = Vec::with_capacity(fancy.len());
        for p in fancy {
            // Inline `(?i)`: fancy-regex 0.14's `RegexBuilder::case_insensitive` does not reach
            // patterns with lookaround (`java(?!;)` missed "Java/1.8").
            let source = format!("(?i){}", js_to_rust(&p, Flavour::Fancy));
            let re = fancy_regex::Regex::new(&source).map_err(|e| pattern_error(&p, &e))?;
            let prefilter = js_to_rust(&strip_lookaround(&p), Flavour::Regex);
            regex::RegexBuilder::new(&prefilter)
                .case_insensitive(true)
                .build()
                .map_err(|e| pattern_error(&p, &e))?;
            prefilters.push(prefilter);
            lookaround.push((p, re));
        }
        let lookaround_prefilter = regex::RegexSetBuilder::new(&prefilters)
            .case_insensitive(true)
            .dfa_size_limit(DFA_CACHE_BYTES)
            .build()
            .map_err(|e| pattern_error(&prefilters.join("|"), &e))?;

        Ok(BotRules {
            plain: set,
            plain_sources: plain,
            lookaround,
            lookaround_prefilter,
        })
    }

    /// Reason if the UA alone says bot, else `None`. `spider` says whether uap-core reads the
    /// same UA as a `Spider` device; it is asked only when the rules before it found nothing. Rules run in this order, and the first that fires gives the reason:
    /// empty, headless, isbot list, spider, malformed.
    pub fn check_ua(&self, ua: &str, spider: impl FnOnce() -> bool) -> Option<String> {
        if ua.trim().is_empty() {
            return Some("ua:empty".to_owned());
        }
        if is_headless(ua) {
            return Some("ua:headless".to_owned());
        }
        if let Some(pattern) = self.list_match(ua) {
            let cut: String = pattern.chars().take(REASON_PATTERN_CHARS).collect();
            return Some(format!("ua:list:{cut}"));
        }
        if spider() {
            return Some("ua:spider".to_owned());
        }
        if is_malformed(ua) {
            return Some("ua:malformed".to_owned());
        }
        None
    }

    /// The first isbot pattern (in list order among each kind) that matches `ua`.
    fn list_match(&self, ua: &str) -> Option<&str> {
        if let Some(i) = self.plain.matches(ua).iter().next() {
            return Some(&self.plain_sources[i]);
        }
        self.lookaround_prefilter
            .matches(ua)
            .iter()
            .map(|i| &self.lookaround[i])
            // A backtracking limit error counts as no match: a bot verdict needs evidence.
            .find(|(_, re)| re.is_match(ua).unwrap_or(false))
            .map(|(p, _)| p.as_str())
    }
}

fn pattern_error(pattern: &str, e: &dyn std::fmt::Display) -> BotError {
    BotError::Pattern {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    }
}

/// Whether a JavaScript regex source uses lookahead or lookbehind, which the `regex` crate
/// cannot run.
fn has_lookaround(pattern: &str) -> bool {
    strip_lookaround(pattern) != pattern
}

/// `pattern` without its lookahead and lookbehind groups (`(?=…)`, `(?!…)`, `(?<=…)`,
/// `(?<!…)`). Escaped parentheses (`\(?`) and parentheses in classes are not groups.
fn strip_lookaround(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.char_indices().peekable();
    let mut in_class = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some((_, e)) = chars.next() {
                    out.push(e);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '(' if !in_class && is_lookaround_open(&pattern[i + 1..]) => {
                // Skip to the matching `)`.
                let mut depth = 1;
                let mut class = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '[' if !class => class = true,
                        ']' if class => class = false,
                        '(' if !class => depth += 1,
                        ')' if !class => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn is_lookaround_open(after_paren: &str) -> bool {
    ["?=", "?!", "?<=", "?<!"]
        .iter()
        .any(|p| after_paren.starts_with(p))
}

/// Which engine a translated pattern is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Regex,
    /// `fancy_regex` cannot switch Unicode off, so `\b` stays Unicode there.
    Fancy,
}

/// Rewrites a JavaScript regex source (no `u` flag) into the `regex` crate's syntax with the
/// same meaning:
///
/// - `\w`, `\d`, `\b` (and their negations) are ASCII in JavaScript, Unicode in `regex`:
///   spell them out as ASCII. This also keeps the `regex` crate on its fast DFA for non-ASCII
///   UAs, which a Unicode `\b` would not.
/// - Inside a class, JavaScript takes `-` next to a class escape (`[\w-.]`) as a literal and
///   `[`, `&`, `~` as plain characters; `regex` would read a range, a nested class or a set
///   operation, so escape them.
fn js_to_rust(pattern: &str, flavour: Flavour) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // The previous class item was a class escape such as `\w`, so a `-` after it is literal.
    let mut after_class_escape = false;
    while let Some(c) = chars.next() {
        let was_class_escape = std::mem::take(&mut after_class_escape);
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match (e, in_class) {
                    ('w', false) => out.push_str("[0-9A-Za-z_]"),
                    ('W', false) => out.push_str("[^0-9A-Za-z_]"),
                    ('d', false) => out.push_str("[0-9]"),
                    ('D', false) => out.push_str("[^0-9]"),
                    ('b', false) if flavour == Flavour::Regex => out.push_str("(?-u:\\b)"),
                    ('B', false) if flavour == Flavour::Regex => out.push_str("(?-u:\\B)"),
                    ('w', true) => out.push_str("0-9A-Za-z_"),
                    ('d', true) => out.push_str("0-9"),
                    ('W', true) => out.push_str("[^0-9A-Za-z_]"),
                    ('D', true) => out.push_str("[^0-9]"),
                    // In a JavaScript class, `\b` is a backspace.
                    ('b', true) => out.push_str("\\x08"),
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                after_class_escape = in_class && matches!(e, 'w' | 'W' | 'd' | 'D' | 's' | 'S');
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '-' if in_class => {
                let mut ahead = chars.clone();
                let next_is_class_escape = ahead.next() == Some('\\')
                    && matches!(ahead.next(), Some('w' | 'W' | 'd' | 'D' | 's' | 'S'));
                if was_class_escape || next_is_class_escape {
                    out.push_str("\\-");
                } else {
                    out.push('-');
                }
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn is_headless(ua: &str) -> bool {
    let lower = ua.to_ascii_lowercase();
    HEADLESS_TOKENS.iter().any(|t| lower.contains(t))
}

/// Shapes real browsers never send. Kept conservative: each rule is something no browser or
/// in-app browser produces, because a false positive hides a real visitor.
///
/// - control characters (browsers send printable text; these come from scripts and fuzzers);
/// - a UA of [`MALFORMED_MIN_LEN`] bytes or more;
/// - a `Mozilla/` UA without the parenthesised platform comment every browser sends;
/// - a UA that starts with neither a letter nor a digit (quoted strings, JSON, `-`).
fn is_malformed(ua: &str) -> bool {
    if ua.chars().any(char::is_control) || ua.len() >= MALFORMED_MIN_LEN {
        return true;
    }
    if !ua.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return true;
    }
    // Unbalanced parentheses are not a rule: logging systems and some proxies truncate long
    // UAs, and a truncated browser UA is still a person.
    ua.starts_with("Mozilla/") && !ua.contains('(')
}

/// Header heuristics for requests that claim to be a browser (UA starts with `Mozilla/`):
/// headless client hints give `header:headless`, and a page view without `Accept-Language`
/// (every browser sends one on navigation; most HTTP libraries do not) gives
/// `header:no-accept-language`. Other clients get `None` here: the UA rules judge them.
pub fn check_request(sig: &RequestSignals, ua: &str) -> Option<&'static str> {
    if !ua.starts_with("Mozilla/") {
        return None;
    }
    if sig.sec_ch_ua_headless {
        return Some("header:headless");
    }
    if sig.page_view && !sig.accept_language {
        return Some("header:no-accept-language");
    }
    None
}

/// `ip:<net>` (the first configured network, as written) when `ip` is inside one of `nets`,
/// else `None`. Linear in `nets`, which are a handful of operator-listed ranges.
pub fn check_ip(ip: IpAddr, nets: &[ipnet::IpNet]) -> Option<String> {
    nets.iter()
        .find(|net| net.contains(&ip))
        .map(|net| format!("ip:{net}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookaround_detection() {
        assert!(has_lookaround("(?<!cam)scan"));
        assert!(has_lookaround("java(?!;)"));
        assert!(!has_lookaround(r"^[\w \.\-\(?:\):%]+"));
        assert!(!has_lookaround(r"\(?!x"));
        assert_eq!(strip_lookaround("(?<!cam)scan"), "scan");
        assert_eq!(
            strip_lookaround("(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))"),
            "google"
        );
        assert_eq!(strip_lookaround(r"a[(?!]b(?=c\))d"), r"a[(?!]bd");
    }

    #[test]
    fn js_syntax_translation() {
        assert_eq!(
            js_to_rust(r"[\w\d-.]+", Flavour::Regex),
            r"[0-9A-Za-z_0-9\-.]+"
        );
        assert_eq!(
            js_to_rust(r"\bperl\b", Flavour::Regex),
            r"(?-u:\b)perl(?-u:\b)"
        );
        assert_eq!(
            js_to_rust(r"^\w+/\d", Flavour::Regex),
            r"^[0-9A-Za-z_]+/[0-9]"
        );
        assert_eq!(js_to_rust(r"[a-z&[]", Flavour::Regex), r"[a-z\&\[]");
        assert_eq!(js_to_rust(r"\(\)", Flavour::Regex), r"\(\)");
        assert_eq!(js_to_rust(r"bots?\b", Flavour::Fancy), r"bots?\b");
    }

    #[test]
    fn list_is_case_insensitive() {
        let rules = BotRules::new().unwrap();
        // One plain pattern, one with lookahead, one with lookbehind.
        assert_eq!(
            rules.list_match("Mozilla/5.0 (X11) HEADLESS/1"),
            Some("headless")
        );
        assert_eq!(
            rules.list_match("Mozilla/5.0 (Windows NT 10.0) JAVA/1.8 Safari/1"),
            Some("java(?!;)")
        );
        assert_eq!(
            rules.list_match("Mozilla/5.0 (Windows NT 10.0) SCAN/2 Safari/1"),
            Some("(?<!cam)scan")
        );
    }

    #[test]
    fn request_signals() {
        let browser = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0";
        let nav = RequestSignals {
            page_view: true,
            accept_language: false,
            sec_ch_ua_headless: false,
        };
        assert_eq!(
            check_request(&nav, browser),
            Some("header:no-accept-language")
        );
        assert_eq!(check_request(&nav, "curl/8.5.0"), None);
        let ok = RequestSignals {
            accept_language: true,
            ..nav
        };
        assert_eq!(check_request(&ok, browser), None);
        let headless = RequestSignals {
            sec_ch_ua_headless: true,
            ..ok
        };
        assert_eq!(check_request(&headless, browser), Some("header:headless"));
    }

    #[test]
    fn ip_networks() {
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            check_ip("10.1.2.3".parse().unwrap(), &nets).as_deref(),
            Some("ip:10.0.0.0/8")
        );
        assert_eq!(check_ip("192.0.2.1".parse().unwrap(), &nets), None);
    }
}
