//! The streaming HTML scanner that places the tracker's `<script>` tag.
//!
//! It finds the first `</head>`, or the first `</body>` when the head has no end tag, outside
//! comments and raw-text elements (`<script>`, `<style>`, `<title>`, ...), so a `"</head>"`
//! inside a script's string is never taken for the real one. Chunks are scanned as they come;
//! only the bytes that might start a tag still undecided at a chunk's end are held back (at
//! most [`MAX_TAG`] bytes, for a `<meta>` or `<script>` tag whose attributes must be read
//! whole). Once the tag is placed, or the page is found not to want it, chunks pass untouched.

use crate::proxy::capture::contains_ci;
use bytes::{Bytes, BytesMut};
use memchr::{memchr, memmem};

/// Elements whose content is text up to their end tag.
const RAW_TEXT: &[&[u8]] = &[
    b"script",
    b"style",
    b"title",
    b"textarea",
    b"noscript",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
];

/// Bytes needed after a `<` to recognise any tag this scanner cares about: `</noscript` and
/// the character after the name.
const LOOKAHEAD: usize = 11;

/// The longest `<meta ...>` or `<script ...>` tag read whole; a longer one is not inspected.
pub const MAX_TAG: usize = 2048;

/// How the scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Inserted before `</head>`.
    Head,
    /// Inserted before `</body>` (the page has no `</head>`).
    Body,
    /// Not inserted: the page sets a policy in `<meta http-equiv="Content-Security-Policy">`,
    /// which a proxy cannot safely rewrite in a stream.
    MetaCsp,
    /// Not inserted: the page already loads the tracker.
    AlreadyPresent,
    /// Not inserted: neither `</head>` nor `</body>` was found.
    NoTag,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Head => "injected",
            Outcome::Body => "injected_body",
            Outcome::MetaCsp => "skipped_meta_csp",
            Outcome::AlreadyPresent => "skipped_present",
            Outcome::NoTag => "skipped_no_tag",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Text,
    Comment,
    RawText(&'static [u8]),
    Done,
}

/// One page's injection state.
pub struct Injector {
    tag: Bytes,
    /// The script path, to notice a page that already has the tracker.
    src: Bytes,
    state: State,
    carry: Vec<u8>,
    outcome: Option<Outcome>,
}

impl Injector {
    pub fn new(tag: Bytes, src: Bytes) -> Self {
        Injector {
            tag,
            src,
            state: State::Text,
            carry: Vec::new(),
            outcome: None,
        }
    }

    /// How the scan ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Filter one body chunk in place; `end` marks the last one. What is held back is
    /// released with a later chunk, and all of it by the last.
    pub fn filter(&mut self, body: &mut Option<Bytes>, end: bool) {
        if matches!(self.state, State::Done) && self.carry.is_empty() {
            return;
        }
        let input = body.take().unwrap_or_default();
        // Held-back bytes go in front of the new chunk; without them the chunk is scanned
        // where it lies.
        let held = !self.carry.is_empty();
        let joined;
        let buf: &[u8] = if held {
            self.carry.extend_from_slice(&input);
            joined = std::mem::take(&mut self.carry);
            &joined
        } else {
            &input
        };
        let (at, keep) = self.scan(buf, end);
        if end && self.outcome.is_none() {
            self.outcome = Some(Outcome::NoTag);
        }
        let out = match at {
            Some(at) => {
                let mut out = BytesMut::with_capacity(keep + self.tag.len());
                out.extend_from_slice(&buf[..at]);
                out.extend_from_slice(&self.tag);
                out.extend_from_slice(&buf[at..keep]);
                out.freeze()
            }
            None if held => Bytes::copy_from_slice(&buf[..keep]),
            None if keep == buf.len() => input.clone(),
            None => input.slice(..keep),
        };
        self.carry.extend_from_slice(&buf[keep..]);
        *body = (!out.is_empty() || end).then_some(out);
    }

    /// Scan `b` from the current state. Returns where to insert the tag, if here, and how many
    /// bytes are decided (the rest is held back). With `end`, everything is decided.
    fn scan(&mut self, b: &[u8], end: bool) -> (Option<usize>, usize) {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => return (None, b.len()),
                // A comment ends at "-->" or "--!>".
                State::Comment => match memmem::find(&b[i..], b"--") {
                    Some(q) => {
                        let after = &b[i + q + 2..];
                        if after.starts_with(b">") {
                            self.state = State::Text;
                            i += q + 3;
                        } else if after.starts_with(b"!>") {
                            self.state = State::Text;
                            i += q + 4;
                        } else if after.len() < 2 && !end {
                            return (None, i + q);
                        } else {
                            i += q + 1;
                        }
                    }
                    None if end => return (None, b.len()),
                    // "-" may end this chunk and "->" start the next
                    None => return (None, b.len().saturating_sub(1).max(i)),
                },
                State::RawText(name) => {
                    let Some(q) = memchr(b'<', &b[i..]) else {
                        return (None, b.len());
                    };
                    let p = i + q;
                    let rest = &b[p..];
                    if rest.len() < name.len() + 3 && !end {
                        return (None, p);
                    }
                    if closes(rest, name) {
                        self.state = State::Text;
                        i = p + 2 + name.len();
                    } else {
                        i = p + 1;
                    }
                }
                State::Text => {
                    let Some(q) = memchr(b'<', &b[i..]) else {
                        return (None, b.len());
                    };
                    let p = i + q;
                    let rest = &b[p..];
                    if rest.len() < LOOKAHEAD && !end {
                        return (None, p);
                    }
                    if rest.starts_with(b"<!--") {
                        // `<!-->` and `<!--->` are whole (empty) comments in HTML.
                        match &rest[4..] {
                            [b'>', ..] => i = p + 5,
                            [b'-', b'>', ..] => i = p + 6,
                            _ => {
                                self.state = State::Comment;
                                i = p + 4;
                            }
                        }
                        continue;
                    }
                    for (name, outcome) in [(&b"head"[..], Outcome::Head), (b"body", Outcome::Body)]
                    {
                        if closes(rest, name) {
                            self.finish(outcome);
                            return (Some(p), b.len());
                        }
                    }
                    let meta = opens(rest, b"meta");
                    if meta || opens(rest, b"script") {
                        // Read the whole tag: its attributes decide, and a "</head>" inside an
                        // attribute value is not the end of the head.
                        let (tag, after) = match memchr(b'>', rest) {
                            Some(gt) => (&rest[..gt], p + gt + 1),
                            None if !end && rest.len() < MAX_TAG => return (None, p),
                            None => (&rest[..rest.len().min(MAX_TAG)], p + 1),
                        };
                        if meta
                            && contains_ci(tag, b"http-equiv")
                            && contains_ci(tag, b"content-security-policy")
                        {
                            self.finish(Outcome::MetaCsp);
                            return (None, b.len());
                        }
                        if !meta && memmem::find(tag, &self.src).is_some() {
                            self.finish(Outcome::AlreadyPresent);
                            return (None, b.len());
                        }
                        if !meta {
                            self.state = State::RawText(b"script");
                        }
                        i = after;
                        continue;
                    }
                    i = p + 1;
                    if let Some(name) = RAW_TEXT.iter().find(|n| opens(rest, n)) {
                        self.state = State::RawText(name);
                        i = p + 1 + name.len();
                    }
                }
            }
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done;
        self.outcome = Some(outcome);
    }
}

/// `rest` starts with `<name` and a character that ends a tag name.
fn opens(rest: &[u8], name: &[u8]) -> bool {
    rest.len() > name.len() + 1
        && rest[1..=name.len()].eq_ignore_ascii_case(name)
        && ends_name(rest[name.len() + 1])
}

/// `rest` starts with `</name` and a character that ends a tag name.
fn closes(rest: &[u8], name: &[u8]) -> bool {
    rest.len() > name.len() + 2
        && rest[1] == b'/'
        && rest[2..2 + name.len()].eq_ignore_ascii_case(name)
        && ends_name(rest[name.len() + 2])
}

fn ends_name(b: u8) -> bool {
    matches!(b, b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "<script src=\"/_tollgate/t.js\" defer></script>";

    fn injector() -> Injector {
        Injector::new(Bytes::from(TAG), Bytes::from_static(b"/_tollgate/t.js"))
    }

    /// Run `page` through an injector in chunks cut at `cuts`.
    fn run(page: &str, cuts: &[usize]) -> (String, Option<Outcome>) {
        let mut inj = injector();
        let mut out = Vec::new();
        let mut from = 0;
        let ends: Vec<usize> = cuts.iter().copied().chain([page.len()]).collect();
        for (k, &to) in ends.iter().enumerate() {
            let mut body = Some(Bytes::copy_from_slice(&page.as_bytes()[from..to]));
            inj.filter(&mut body, k + 1 == ends.len());
            if let Some(b) = body {
                out.extend_from_slice(&b);
            }
            from = to;
        }
        (String::from_utf8(out).unwrap(), inj.outcome())
    }

    /// Every way of cutting `page` in two and three pieces, and byte by byte, gives `want`.
    fn check(page: &str, want: &str, outcome: Outcome) {
        let n = page.len();
        let mut cuts = vec![vec![]];
        cuts.push((1..n).collect());
        for a in 0..=n {
            cuts.push(vec![a]);
            for b in (a..=n).step_by(7) {
                cuts.push(vec![a, b]);
            }
        }
        for c in cuts {
            let (got, o) = run(page, &c);
            assert_eq!(got, want, "cut at {c:?}");
            assert_eq!(o, Some(outcome), "cut at {c:?}");
        }
    }

    #[test]
    fn before_the_end_of_head() {
        let page = "<!doctype html><html><head><title>x</title></head><body>hi</body></html>";
        let want = page.replacen("</head>", &format!("{TAG}</head>"), 1);
        check(page, &want, Outcome::Head);
        let upper = "<HTML><HEAD><TITLE>x</TITLE></HEAD \n><BODY></BODY></HTML>";
        check(
            upper,
            &upper.replacen("</HEAD", &format!("{TAG}</HEAD"), 1),
            Outcome::Head,
        );
    }

    #[test]
    fn before_the_end_of_body_when_head_has_no_end_tag() {
        let page = "<html><title>t</title><p>x</p></body></html>";
        check(
            page,
            &page.replacen("</body>", &format!("{TAG}</body>"), 1),
            Outcome::Body,
        );
    }

    #[test]
    fn not_inside_comments_scripts_or_strings() {
        let page = concat!(
            "<html><head><!-- </head> --><script>var s = \"</head></body>\";</script>",
            "<style>/* </head> */</style><title></head></title><textarea></body></textarea>",
            "<headers></headers></head-x></head><body></body></html>"
        );
        let want = page.replacen("</head><body>", &format!("{TAG}</head><body>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn empty_comments_end_at_once() {
        let page = "<html><head><!--><!---><!-- a -- b --!></head><body></body></html>";
        let want = page.replacen("</head>", &format!("{TAG}</head>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn once_only() {
        let page = "<head></head><head></head><body></body>";
        let want = format!("<head>{TAG}</head><head></head><body></body>");
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn pages_that_must_stay_untouched() {
        for (page, outcome) in [
            (
                "<head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'\"></head>",
                Outcome::MetaCsp,
            ),
            (
                "<head><META HTTP-EQUIV='content-security-policy' CONTENT=\"x\"></head>",
                Outcome::MetaCsp,
            ),
            (
                "<head><script src=\"/_tollgate/t.js\" defer></script></head>",
                Outcome::AlreadyPresent,
            ),
            ("<p>a fragment</p>", Outcome::NoTag),
            ("<head><!-- </head> never closed", Outcome::NoTag),
            ("<head><script> </head>", Outcome::NoTag),
            ("", Outcome::NoTag),
            ("<", Outcome::NoTag),
            ("</hea", Outcome::NoTag),
        ] {
            check(page, page, outcome);
        }
        // Other meta and script tags are read past whole, attributes and all.
        let page = concat!(
            "<head><meta charset=\"utf-8\"><meta name=x content=\"</head>\">",
            "<script src=\"/a.js\" data-x=\"</head>\"></script></head>"
        );
        let want = page.replacen("</script></head>", &format!("</script>{TAG}</head>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn chunks_pass_untouched_after_the_tag() {
        let mut inj = injector();
        let mut first = Some(Bytes::from_static(b"<head></head><body>\n\n\n\n"));
        inj.filter(&mut first, false);
        let later = Bytes::from_static(b"<body>lots of text</head></body>");
        let mut body = Some(later.clone());
        inj.filter(&mut body, false);
        let got = body.unwrap();
        assert_eq!(got, later);
        assert_eq!(got.as_ptr(), later.as_ptr(), "not copied");
    }

    #[test]
    fn held_back_bytes_are_bounded() {
        // An unterminated <meta tag is held back only up to MAX_TAG.
        let mut inj = injector();
        let mut total = 0;
        let mut body = Some(Bytes::from_static(b"<head><meta name="));
        inj.filter(&mut body, false);
        total += body.map_or(0, |b| b.len());
        for _ in 0..100 {
            let mut body = Some(Bytes::from(vec![b'a'; 100]));
            inj.filter(&mut body, false);
            total += body.map_or(0, |b| b.len());
            assert!(inj.carry.len() <= MAX_TAG + 100);
        }
        let mut body = Some(Bytes::from_static(b"\"></head>"));
        inj.filter(&mut body, true);
        total += body.map_or(0, |b| b.len());
        assert_eq!(total, 17 + 100 * 100 + 9 + TAG.len());
    }
}
