//! Privacy in the stored row: IP anonymisation, and redaction of secrets and personal data in
//! paths, query strings and referrers.
//!
//! Redaction has two layers. Parameters named like secrets (`token`, `password`, `email`, …,
//! `privacy.redact_params`) have their values replaced by `[redacted]`, whatever they hold.
//! Values that look like e-mail addresses or phone numbers are replaced by `[email]` or
//! `[phone]` wherever they appear: in any parameter, in a path segment, in the referrer.

use super::campaign::hex;
use crate::config::IpHandling;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The stored form of `ip` under `handling`: the address, its network address, or nothing.
pub fn anonymise_ip(ip: IpAddr, handling: IpHandling) -> Option<IpAddr> {
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; it is an IPv4 address
    // and is truncated as one.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match handling {
        IpHandling::Keep => Some(ip),
        IpHandling::Drop => None,
        IpHandling::Truncate { v4, v6 } => Some(match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = if v4 == 0 { 0 } else { u32::MAX << (32 - v4) };
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = if v6 == 0 { 0 } else { u128::MAX << (128 - v6) };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }),
    }
}

/// What redaction looks for, from `[privacy]`.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Lower-cased parameter names whose values are always redacted.
    params: Vec<String>,
    /// Also redact e-mail and phone-like values anywhere.
    values: bool,
}

impl Redactor {
    pub fn new(params: &[String], values: bool) -> Self {
        Redactor {
            params: params.iter().map(|p| p.to_ascii_lowercase()).collect(),
            values,
        }
    }

    /// `query` with secret parameters and personal values redacted. Parameter order, names and
    /// the encoding of untouched values are kept.
    pub fn query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        rewrite(query, '&', |pair| {
            let (key, value) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let r = if value.is_some() && self.is_secret(key) {
                Some("[redacted]")
            } else if self.values {
                // A parameter without `=` is all value as far as personal data goes.
                personal(value.unwrap_or(key))
            } else {
                None
            };
            r.map(|r| match value {
                Some(_) => Cow::Owned(format!("{key}={r}")),
                None => Cow::Borrowed(r),
            })
        })
    }

    /// `path` with each segment that looks like an e-mail address or phone number replaced.
    pub fn path<'a>(&self, path: &'a str) -> Cow<'a, str> {
        if !self.values {
            return Cow::Borrowed(path);
        }
        rewrite(path, '/', |seg| personal(seg).map(Cow::Borrowed))
    }

    /// A URL (the referrer) with its path and query redacted; the fragment is dropped.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let url_no_frag = url.split('#').next().unwrap_or(url);
        let (before_q, q) = match url_no_frag.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url_no_frag, None),
        };
        // The path starts at the first `/` after `scheme://host`.
        let path_at = before_q
            .find("://")
            .map(|i| i + 3)
            .and_then(|h| before_q[h..].find('/').map(|p| h + p));
        let (origin, path) = match path_at {
            Some(p) => (&before_q[..p], &before_q[p..]),
            None => (before_q, ""),
        };
        let new_path = self.path(path);
        let new_q = q.map(|q| self.query(q));
        let changed = url_no_frag.len() != url.len()
            || matches!(new_path, Cow::Owned(_))
            || matches!(new_q, Some(Cow::Owned(_)));
        if !changed {
            return Cow::Borrowed(url);
        }
        let mut o = String::with_capacity(url.len());
        o.push_str(origin);
        o.push_str(&new_path);
        if let Some(q) = new_q {
            o.push('?');
            o.push_str(&q);
        }
        Cow::Owned(o)
    }

    fn is_secret(&self, key: &str) -> bool {
        let key = percent_decode(key);
        self.params.iter().any(|s| s.eq_ignore_ascii_case(&key))
    }
}

/// `text` split at `sep`, with the parts `replace` returns something for replaced. Borrows
/// when nothing is replaced, which is the common case.
fn rewrite<'a>(
    text: &'a str,
    sep: char,
    mut replace: impl FnMut(&str) -> Option<Cow<'static, str>>,
) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    // Bytes of `text` before the current part, separators included.
    let mut before = 0;
    for (i, part) in text.split(sep).enumerate() {
        match (replace(part), out.as_mut()) {
            (Some(r), None) => {
                let mut o = String::with_capacity(text.len() + 8);
                o.push_str(&text[..before]);
                o.push_str(&r);
                out = Some(o);
            }
            (Some(r), Some(o)) => {
                o.push(sep);
                o.push_str(&r);
            }
            (None, Some(o)) => {
                if i > 0 {
                    o.push(sep);
                }
                o.push_str(part);
            }
            (None, None) => {}
        }
        before += part.len() + sep.len_utf8();
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `[email]` or `[phone]` when the (percent-encoded) text holds one.
fn personal(raw: &str) -> Option<&'static str> {
    // Cheap screens first: most values hold neither an `@` nor enough digits.
    let has_at = raw.contains('@') || raw.contains("%40");
    let digits = raw.bytes().filter(u8::is_ascii_digit).count();
    if !has_at && digits < 7 {
        return None;
    }
    let text = percent_decode(raw);
    if has_at && contains_email(&text) {
        return Some("[email]");
    }
    if digits >= 7 && is_phone(text.trim()) {
        return Some("[phone]");
    }
    None
}

/// True when `s` holds `local@domain.tld` anywhere.
pub fn contains_email(s: &str) -> bool {
    let b = s.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&c);
    for (at, _) in s.match_indices('@') {
        let local_len = b[..at].iter().rev().take_while(|&&c| local(c)).count();
        if local_len == 0 {
            continue;
        }
        let domain: &[u8] = &b[at + 1..];
        let dlen = domain
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.' || **c == b'-')
            .count();
        let domain = &domain[..dlen];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
            return true;
        }
    }
    false
}

/// True when the whole of `s` is written like a phone number: an international number
/// (`+` or `00`, then 8 to 15 digits with optional spaces, dashes, dots or parentheses), or a
/// North American one with its separators (`(555) 123-4567`, `555-123-4567`,
/// `555.123.4567`).
///
/// Bare digit runs are not phones: they are order numbers, ids and timestamps far more often.
/// Dates (`2024-01-15`) and dotted versions or IPs do not have the 3-3-4 shape.
pub fn is_phone(s: &str) -> bool {
    if !s
        .bytes()
        .all(|c| c.is_ascii_digit() || b" -.()+".contains(&c))
    {
        return false;
    }
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let intl = s.starts_with('+') || s.starts_with("00");
    if intl {
        let sig = if s.starts_with("00") {
            digits - 2
        } else {
            digits
        };
        return (8..=15).contains(&sig) && s[1..].bytes().all(|c| c != b'+');
    }
    // Digit groups, as separated by anything that is not a digit.
    let groups: Vec<usize> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let nanp = matches!(groups.as_slice(), [3, 3, 4] | [1, 3, 3, 4]);
    nanp && s.bytes().any(|c| b" -.()".contains(&c))
}

/// `%XX` decoded (and `+` as a space); invalid escapes and invalid UTF-8 are kept as they are.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        let params: Vec<String> = crate::config::DEFAULT_REDACT_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect();
        Redactor::new(&params, true)
    }

    #[test]
    fn ips() {
        let t = IpHandling::Truncate { v4: 24, v6: 48 };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(anonymise_ip(ip("203.0.113.77"), t), Some(ip("203.0.113.0")));
        assert_eq!(
            anonymise_ip(ip("2001:db8:abcd:12:1:2:3:4"), t),
            Some(ip("2001:db8:abcd::"))
        );
        assert_eq!(
            anonymise_ip(ip("::ffff:198.51.100.9"), t),
            Some(ip("198.51.100.0"))
        );
        assert_eq!(
            anonymise_ip(ip("198.51.100.9"), IpHandling::Keep),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(anonymise_ip(ip("198.51.100.9"), IpHandling::Drop), None);
        let t0 = IpHandling::Truncate { v4: 0, v6: 128 };
        assert_eq!(anonymise_ip(ip("198.51.100.9"), t0), Some(ip("0.0.0.0")));
        assert_eq!(anonymise_ip(ip("2001:db8::1"), t0), Some(ip("2001:db8::1")));
    }

    #[test]
    fn queries() {
        let r = r();
        assert_eq!(
            r.query("email=a@b.com&token=xyz"),
            "email=[redacted]&token=[redacted]"
        );
        assert_eq!(
            r.query("a=1&token=xyz&Password=p&api%5Fkey=k&q=shoes"),
            "a=1&token=[redacted]&Password=[redacted]&api%5Fkey=[redacted]&q=shoes"
        );
        assert_eq!(r.query("q=shoes&page=2"), "q=shoes&page=2");
        assert!(matches!(r.query("q=shoes&page=2"), Cow::Borrowed(_)));
        assert_eq!(
            r.query("q=mail%20me%20at%20jo.doe%40example.org&x=1"),
            "q=[email]&x=1"
        );
        assert_eq!(r.query("contact=%2B49%20151%2012345678"), "contact=[phone]");
        assert_eq!(r.query("who=+1 (555) 123-4567"), "who=[phone]");
        assert_eq!(
            r.query("order=123456789012&d=2024-01-15"),
            "order=123456789012&d=2024-01-15"
        );
        assert_eq!(r.query("jo@example.com"), "[email]");
        assert_eq!(r.query("&&a=1&"), "&&a=1&");
        let off = Redactor::new(&[], false);
        assert_eq!(off.query("e=a@b.com"), "e=a@b.com");
    }

    #[test]
    fn paths_and_urls() {
        let r = r();
        assert_eq!(
            r.path("/users/jo%40example.com/orders"),
            "/users/[email]/orders"
        );
        assert_eq!(r.path("/call/555-123-4567"), "/call/[phone]");
        assert_eq!(r.path("/orders/12345678/items"), "/orders/12345678/items");
        assert_eq!(r.path("/"), "/");
        assert_eq!(r.path("/a@b.co"), "/[email]");
        assert_eq!(
            r.url("https://mail.example/inbox/jo@example.com?token=t&q=1#frag"),
            "https://mail.example/inbox/[email]?token=[redacted]&q=1"
        );
        assert_eq!(r.url("https://www.google.com/"), "https://www.google.com/");
        assert_eq!(r.url("https://x.example"), "https://x.example");
    }

    #[test]
    fn detectors() {
        assert!(contains_email("a@b.co"));
        assert!(contains_email(
            "write to first.last+tag@sub.example.org today"
        ));
        assert!(!contains_email("@handle"));
        assert!(!contains_email("user@localhost"));
        assert!(!contains_email("a@b.c1"));
        assert!(is_phone("+44 20 7946 0958"));
        assert!(is_phone("0049 30 1234567"));
        assert!(is_phone("(555) 123-4567"));
        assert!(is_phone("555.123.4567"));
        assert!(!is_phone("5551234567"));
        assert!(!is_phone("2024-01-15"));
        assert!(!is_phone("192.168.100.200"));
        assert!(!is_phone("+12"));
        assert_eq!(percent_decode("a%40b+c%zz%4"), "a@b c%zz%4");
    }
}
