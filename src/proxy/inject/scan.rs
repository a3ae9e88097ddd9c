//! The streaming HTML scanner that places the tracker's `<script>` tag: an HTML tokenizer cut
//! down to the states that decide where a tag, attribute value, comment or raw text ends.
//!
//! The tag goes before the first `</head>`, or the first `</body>` when the head has no end
//! tag, and only where the HTML tokenizer (HTML Standard §13.2.5) is in its data state. Never
//! inside an attribute value of any tag, end tags included (a page may reflect
//! `</head><img onerror=…>` into a quoted `href`: moved there, the tag's own quotes would end
//! the attribute and let the rest run), nor in a comment, a bogus comment (`<!DOCTYPE …>`,
//! `<![CDATA[…]]>`, `<?…>`, all of which end at the first `>`), or the text of a raw-text
//! element: `<script>` with its `<!--`-escaped states, `<style>`, `<title>`, `<textarea>`,
//! `<noscript>`, `<xmp>`, `<iframe>`, `<noembed>`, `<noframes>`; after `<plaintext>` nothing is
//! markup any more.
//!
//! Inside `<svg>` and `<math>` a browser tokenizes by other rules, which depend on the tree it
//! builds: `<![CDATA[` opens a section that ends at `]]>`, and `<style>` or `<title>` hold
//! markup, quoted attributes included. A scanner cannot follow that, so a page that opens
//! either before the insertion point is left as it is ([`Outcome::ForeignContent`]). Pages close
//! their head before any inline SVG; only a page without `</head>` loses the tracker this way.
//!
//! The tokenizer's state carries from chunk to chunk, so a tag of any length streams through.
//! Only bytes that might begin `</head` or `</body` are held back (at most six), and the first
//! [`MAX_TAG`] bytes of each `<meta>` and `<script>` start tag are copied aside, to notice a
//! `<meta http-equiv="Content-Security-Policy">` or a page that already loads the tracker. Once
//! the tag is placed, or the page is found not to want it, chunks pass untouched.
//!
//! Otherwise it models the tokenizer, not the tree builder: the raw-text elements are taken
//! for raw text wherever they start, as Chromium does (even inside `<select>`); a `<frameset>`
//! page, which drops them, is not modelled.

use crate::proxy::capture::contains_ci;
use bytes::{Bytes, BytesMut};
use memchr::{memchr, memchr2, memmem};

/// Elements whose text runs to their end tag, besides `<script>`: RCDATA (`title`,
/// `textarea`) and RAWTEXT (`noscript` too, as in a browser that runs scripts).
const RAW_TEXT: &[&[u8]] = &[
    b"style",
    b"title",
    b"textarea",
    b"noscript",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
];

/// The longest tag name that means something here: `plaintext`.
const NAME: usize = 9;

/// How much of a `<meta ...>` or `<script ...>` start tag is looked at; the rest is not.
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
    /// Not inserted: an `<svg>` or `<math>` element starts before the insertion point, and
    /// what their content is made of depends on the tree a browser builds.
    ForeignContent,
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
            Outcome::ForeignContent => "skipped_svg_math",
            Outcome::NoTag => "skipped_no_tag",
        }
    }
}

/// Where the tokenizer is, before the next byte. The names are the HTML Standard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// After `<`.
    TagOpen,
    /// After `</`.
    EndTagOpen,
    TagName,
    Attr(Attr),
    Comment(Comment),
    /// The RCDATA or RAWTEXT of the element named.
    RawText(&'static [u8], EndTag),
    Script(Script),
    /// Decided: the rest passes untouched.
    Done,
}

/// The states between a tag's name and its `>`: its attributes, and the `/` of a
/// self-closing tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    BeforeName,
    Name,
    AfterName,
    BeforeValue,
    /// Inside a value quoted with this byte.
    ValueQuoted(u8),
    ValueUnquoted,
    AfterValueQuoted,
    SelfClosingStartTag,
}

/// The comment states, from `<!` on. A comment ends at `-->` or `--!>`; anything else after
/// `<!` (`<!DOCTYPE …>`, `<![CDATA[…]]>`), and `<?…>`, is a bogus comment that ends at the
/// first `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comment {
    /// After `<!`.
    MarkupDeclOpen,
    /// After `<!-`.
    MarkupDeclDash,
    Bogus,
    Start,
    StartDash,
    /// The comment's text.
    Text,
    EndDash,
    End,
    EndBang,
}

/// How much of `</name` a raw-text element has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndTag {
    Text,
    Lt,
    /// This many letters of the name after `</`.
    Name(u8),
}

/// The script data states. `<!--` in a script starts an escaped part, where `<script>` starts
/// a double-escaped part, where `</script>` does not end the element (only `-->` ends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Data,
    Lt,
    EndName(u8),
    EscapeStart,
    EscapeStartDash,
    Escaped,
    EscapedDash,
    EscapedDashDash,
    EscapedLt,
    EscapedEndName(u8),
    DoubleEscapeStart(u8),
    DoubleEscaped,
    DoubleEscapedDash,
    DoubleEscapedDashDash,
    DoubleEscapedLt,
    DoubleEscapeEnd(u8),
}

/// What a start tag does once it ends.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Other,
    Meta,
    Script,
    RawText(&'static [u8]),
    Plaintext,
    /// `<svg>` or `<math>`.
    Foreign,
}

/// The tag being read.
#[derive(Debug, Clone, Copy)]
struct Tag {
    end: bool,
    /// The first bytes of its name, as written.
    name: [u8; NAME],
    /// The length of its name so far, which may be more than `name` holds.
    len: usize,
    kind: Kind,
}

impl Tag {
    fn new(end: bool) -> Tag {
        Tag {
            end,
            name: [0; NAME],
            len: 0,
            kind: Kind::Other,
        }
    }

    fn push(&mut self, part: &[u8]) {
        let at = self.len.min(NAME);
        let n = part.len().min(NAME - at);
        self.name[at..at + n].copy_from_slice(&part[..n]);
        self.len = self.len.saturating_add(part.len());
    }

    /// Its name, when it is short enough to matter.
    fn name(&self) -> Option<&[u8]> {
        (self.len <= NAME).then(|| &self.name[..self.len])
    }
}

/// What a `<` in the data state starts.
enum Lookahead {
    Insert(Outcome),
    Other,
    /// Too few bytes yet to tell.
    Undecided,
}

/// One page's injection state.
pub struct Injector {
    tag: Bytes,
    /// The script path, to notice a page that already has the tracker.
    src: Bytes,
    state: State,
    /// Held-back bytes: a `<` in the data state that may begin `</head` or `</body`.
    carry: Vec<u8>,
    outcome: Option<Outcome>,
    /// The tag being tokenized.
    open: Tag,
    /// The first bytes of the `<meta>` or `<script>` start tag being read, while `copying`.
    aside: Vec<u8>,
    copying: bool,
}

impl Injector {
    pub fn new(tag: Bytes, src: Bytes) -> Self {
        Injector {
            tag,
            src,
            state: State::Data,
            carry: Vec::new(),
            outcome: None,
            open: Tag::new(false),
            aside: Vec::new(),
            copying: false,
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

    /// Tokenize `b` from the current state. Returns where to insert the tag, if here, and how
    /// many bytes are decided (the rest is held back). With `end`, everything is decided.
    ///
    /// The data and tag-name states are stepped here: they decide where the tracker goes,
    /// and where a `<meta>` or `<script>` tag starts to be copied aside (`mark`). Every other
    /// family of states takes its own steps.
    fn scan(&mut self, b: &[u8], end: bool) -> (Option<usize>, usize) {
        let mut i = 0;
        // Where this buffer's part of the tag being copied aside starts.
        let mut mark = 0;
        while i < b.len() {
            let c = b[i];
            match self.state {
                State::Done => return (None, b.len()),
                State::Data => {
                    let Some(q) = memchr(b'<', &b[i..]) else {
                        break;
                    };
                    let p = i + q;
                    match lookahead(&b[p..], end) {
                        Lookahead::Insert(outcome) => {
                            self.finish(outcome);
                            return (Some(p), b.len());
                        }
                        Lookahead::Undecided => return (None, p),
                        Lookahead::Other => {
                            self.state = State::TagOpen;
                            i = p + 1;
                        }
                    }
                }
                State::TagOpen => match c {
                    b'!' => {
                        self.state = State::Comment(Comment::MarkupDeclOpen);
                        i += 1;
                    }
                    b'/' => {
                        self.state = State::EndTagOpen;
                        i += 1;
                    }
                    b'?' => self.state = State::Comment(Comment::Bogus),
                    c if c.is_ascii_alphabetic() => {
                        self.open = Tag::new(false);
                        self.state = State::TagName;
                    }
                    // A `<` that starts nothing is text.
                    _ => self.state = State::Data,
                },
                State::EndTagOpen => match c {
                    c if c.is_ascii_alphabetic() => {
                        self.open = Tag::new(true);
                        self.state = State::TagName;
                    }
                    // `</>` is nothing at all.
                    b'>' => {
                        self.state = State::Data;
                        i += 1;
                    }
                    _ => self.state = State::Comment(Comment::Bogus),
                },
                State::TagName => {
                    let n = b[i..].iter().position(|&c| ends_name(c));
                    let n = n.unwrap_or(b.len() - i);
                    self.open.push(&b[i..i + n]);
                    i += n;
                    let Some(&c) = b.get(i) else { break };
                    self.name_ends(i, &mut mark);
                    match c {
                        b'/' => self.state = State::Attr(Attr::SelfClosingStartTag),
                        b'>' => self.emit(b, i, mark),
                        _ => self.state = State::Attr(Attr::BeforeName),
                    }
                    i += 1;
                }
                State::Attr(s) => i += self.attribute(s, b, i, mark),
                State::Comment(s) => i += self.comment(s, &b[i..]),
                State::RawText(name, at) => i += self.raw_text(name, at, &b[i..]),
                State::Script(s) => i += self.script(s, &b[i..]),
            }
        }
        if self.copying {
            self.copy_aside(&b[mark..]);
        }
        (None, b.len())
    }

    /// One step in the attribute states of the open tag, at `b[i]`; returns how many bytes it
    /// took (none when the byte is reconsumed in another state). At its `>` the tag ends
    /// ([`Self::emit`]); what of it is copied aside starts at `b[mark]`.
    fn attribute(&mut self, s: Attr, b: &[u8], i: usize, mark: usize) -> usize {
        use Attr::*;
        let rest = &b[i..];
        let c = rest[0];
        let (next, took) = match s {
            BeforeName => match c {
                c if is_space(c) => (BeforeName, 1),
                b'/' | b'>' => (AfterName, 0),
                // A name may start with `=`.
                b'=' => (Name, 1),
                _ => (Name, 0),
            },
            Name => {
                let n = rest.iter().position(|&c| ends_name(c) || c == b'=');
                let n = n.unwrap_or(rest.len());
                match rest.get(n) {
                    Some(b'=') => (BeforeValue, n + 1),
                    Some(_) => (AfterName, n),
                    None => (Name, n),
                }
            }
            AfterName => match c {
                c if is_space(c) => (AfterName, 1),
                b'/' => (SelfClosingStartTag, 1),
                b'=' => (BeforeValue, 1),
                b'>' => {
                    self.emit(b, i, mark);
                    return 1;
                }
                _ => (Name, 0),
            },
            BeforeValue => match c {
                c if is_space(c) => (BeforeValue, 1),
                b'"' | b'\'' => (ValueQuoted(c), 1),
                b'>' => {
                    self.emit(b, i, mark);
                    return 1;
                }
                _ => (ValueUnquoted, 0),
            },
            // Everything up to the closing quote is the value: `>`, `<`, `</head>`.
            ValueQuoted(quote) => match memchr(quote, rest) {
                Some(q) => (AfterValueQuoted, q + 1),
                None => (ValueQuoted(quote), rest.len()),
            },
            ValueUnquoted => {
                let n = rest.iter().position(|&c| is_space(c) || c == b'>');
                let n = n.unwrap_or(rest.len());
                match rest.get(n) {
                    Some(b'>') => {
                        self.emit(b, i + n, mark);
                        return n + 1;
                    }
                    Some(_) => (BeforeName, n + 1),
                    None => (ValueUnquoted, n),
                }
            }
            AfterValueQuoted => match c {
                c if is_space(c) => (BeforeName, 1),
                b'/' => (SelfClosingStartTag, 1),
                b'>' => {
                    self.emit(b, i, mark);
                    return 1;
                }
                _ => (BeforeName, 0),
            },
            SelfClosingStartTag => match c {
                b'>' => {
                    self.emit(b, i, mark);
                    return 1;
                }
                _ => (BeforeName, 0),
            },
        };
        self.state = State::Attr(next);
        took
    }

    /// One step in the comment states, at the start of `b`; returns how many bytes it took
    /// (none when the byte is reconsumed in another state).
    fn comment(&mut self, s: Comment, b: &[u8]) -> usize {
        use Comment::*;
        let c = b[0];
        // `None`: the comment has ended, and the data state follows.
        let (next, took) = match s {
            MarkupDeclOpen => match c {
                b'-' => (Some(MarkupDeclDash), 1),
                // `<!DOCTYPE …>` ends at its first `>` too, even inside a quoted identifier.
                _ => (Some(Bogus), 0),
            },
            MarkupDeclDash => match c {
                b'-' => (Some(Start), 1),
                _ => (Some(Bogus), 0),
            },
            Bogus => match memchr(b'>', b) {
                Some(q) => (None, q + 1),
                None => (Some(Bogus), b.len()),
            },
            // `<!-->` and `<!--->` are whole (empty) comments.
            Start => match c {
                b'-' => (Some(StartDash), 1),
                b'>' => (None, 1),
                _ => (Some(Text), 0),
            },
            StartDash => match c {
                b'-' => (Some(End), 1),
                b'>' => (None, 1),
                _ => (Some(Text), 0),
            },
            // A comment ends at `-->` or `--!>` (a nested `<!--` changes nothing).
            Text => match memchr(b'-', b) {
                Some(q) => (Some(EndDash), q + 1),
                None => (Some(Text), b.len()),
            },
            EndDash => match c {
                b'-' => (Some(End), 1),
                _ => (Some(Text), 0),
            },
            End => match c {
                b'>' => (None, 1),
                b'!' => (Some(EndBang), 1),
                b'-' => (Some(End), 1),
                _ => (Some(Text), 0),
            },
            EndBang => match c {
                b'-' => (Some(EndDash), 1),
                b'>' => (None, 1),
                _ => (Some(Text), 0),
            },
        };
        self.state = next.map_or(State::Data, State::Comment);
        took
    }

    /// One step in the text of the raw-text element `name`, at the start of `b`, looking for
    /// its end tag; returns how many bytes it took (none when the byte is reconsumed).
    fn raw_text(&mut self, name: &'static [u8], at: EndTag, b: &[u8]) -> usize {
        let c = b[0];
        let (next, took) = match at {
            EndTag::Text => match memchr(b'<', b) {
                Some(q) => (EndTag::Lt, q + 1),
                None => (EndTag::Text, b.len()),
            },
            EndTag::Lt if c == b'/' => (EndTag::Name(0), 1),
            EndTag::Lt => (EndTag::Text, 0),
            EndTag::Name(k) => match end_name(name, k, c) {
                Step::Letter => (EndTag::Name(k + 1), 1),
                Step::Tag => return self.end_tag(),
                Step::No => (EndTag::Text, 0),
            },
        };
        self.state = State::RawText(name, next);
        took
    }

    /// One step in the script data states, at the start of `b`; returns how many bytes it
    /// took (none when the byte is reconsumed in another state).
    fn script(&mut self, s: Script, b: &[u8]) -> usize {
        use Script::*;
        let c = b[0];
        let (next, took) = match s {
            Data => match memchr(b'<', b) {
                Some(q) => (Lt, q + 1),
                None => (Data, b.len()),
            },
            Lt => match c {
                b'/' => (EndName(0), 1),
                b'!' => (EscapeStart, 1),
                _ => (Data, 0),
            },
            EndName(k) => match end_name(b"script", k, c) {
                Step::Letter => (EndName(k + 1), 1),
                Step::Tag => return self.end_tag(),
                Step::No => (Data, 0),
            },
            EscapeStart if c == b'-' => (EscapeStartDash, 1),
            EscapeStartDash if c == b'-' => (EscapedDashDash, 1),
            EscapeStart | EscapeStartDash => (Data, 0),
            Escaped => match memchr2(b'-', b'<', b) {
                Some(q) if b[q] == b'-' => (EscapedDash, q + 1),
                Some(q) => (EscapedLt, q + 1),
                None => (Escaped, b.len()),
            },
            EscapedDash | EscapedDashDash => match c {
                b'-' => (EscapedDashDash, 1),
                b'<' => (EscapedLt, 1),
                b'>' if s == EscapedDashDash => (Data, 1),
                _ => (Escaped, 1),
            },
            EscapedLt => match c {
                b'/' => (EscapedEndName(0), 1),
                c if c.is_ascii_alphabetic() => (DoubleEscapeStart(0), 0),
                _ => (Escaped, 0),
            },
            EscapedEndName(k) => match end_name(b"script", k, c) {
                Step::Letter => (EscapedEndName(k + 1), 1),
                Step::Tag => return self.end_tag(),
                Step::No => (Escaped, 0),
            },
            DoubleEscapeStart(k) => match end_name(b"script", k, c) {
                Step::Letter => (DoubleEscapeStart(k + 1), 1),
                Step::Tag => (DoubleEscaped, 1),
                Step::No => (Escaped, 0),
            },
            DoubleEscaped => match memchr2(b'-', b'<', b) {
                Some(q) if b[q] == b'-' => (DoubleEscapedDash, q + 1),
                Some(q) => (DoubleEscapedLt, q + 1),
                None => (DoubleEscaped, b.len()),
            },
            DoubleEscapedDash | DoubleEscapedDashDash => match c {
                b'-' => (DoubleEscapedDashDash, 1),
                b'<' => (DoubleEscapedLt, 1),
                b'>' if s == DoubleEscapedDashDash => (Data, 1),
                _ => (DoubleEscaped, 1),
            },
            DoubleEscapedLt => match c {
                b'/' => (DoubleEscapeEnd(0), 1),
                _ => (DoubleEscaped, 0),
            },
            DoubleEscapeEnd(k) => match end_name(b"script", k, c) {
                Step::Letter => (DoubleEscapeEnd(k + 1), 1),
                Step::Tag => (Escaped, 1),
                Step::No => (DoubleEscaped, 0),
            },
        };
        self.state = State::Script(next);
        took
    }

    /// A raw-text element's end tag: its attributes are read like any tag's. Takes no byte.
    fn end_tag(&mut self) -> usize {
        self.open = Tag::new(true);
        self.state = State::Attr(Attr::BeforeName);
        0
    }

    /// The open tag's name ended at `b[at]`.
    fn name_ends(&mut self, at: usize, mark: &mut usize) {
        let kind = match self.open.name() {
            Some(name) if !self.open.end => kind(name),
            _ => Kind::Other,
        };
        self.open.kind = kind;
        if let (Kind::Meta | Kind::Script, Some(name)) = (kind, self.open.name()) {
            self.aside.clear();
            self.aside.push(b'<');
            self.aside.extend_from_slice(name);
            self.copying = true;
            *mark = at;
        }
    }

    /// The open tag ends at the `>` at `b[gt]`: look at a `<meta>` or `<script>`, and enter
    /// the state its element's content is read in.
    fn emit(&mut self, b: &[u8], gt: usize, mark: usize) {
        self.state = State::Data;
        if self.copying {
            self.copying = false;
            self.copy_aside(&b[mark..gt]);
            let seen = &self.aside;
            let decided = match self.open.kind {
                Kind::Meta
                    if contains_ci(seen, b"http-equiv")
                        && contains_ci(seen, b"content-security-policy") =>
                {
                    Some(Outcome::MetaCsp)
                }
                Kind::Script if memmem::find(seen, &self.src).is_some() => {
                    Some(Outcome::AlreadyPresent)
                }
                _ => None,
            };
            if let Some(outcome) = decided {
                self.finish(outcome);
                return;
            }
        }
        if self.open.end {
            return;
        }
        match self.open.kind {
            Kind::Script => self.state = State::Script(Script::Data),
            Kind::RawText(name) => self.state = State::RawText(name, EndTag::Text),
            // Everything after `<plaintext>` is text: no end tag can come.
            Kind::Plaintext => self.finish(Outcome::NoTag),
            Kind::Foreign => self.finish(Outcome::ForeignContent),
            Kind::Other | Kind::Meta => {}
        }
    }

    fn copy_aside(&mut self, part: &[u8]) {
        let room = MAX_TAG.saturating_sub(self.aside.len());
        self.aside.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done;
        self.outcome = Some(outcome);
        self.copying = false;
    }
}

/// Whether `rest`, which starts with a `<` in the data state, is `</head` or `</body` and a
/// character that ends a tag name. At the end of the page, what is there decides.
fn lookahead(rest: &[u8], end: bool) -> Lookahead {
    for (name, outcome) in [(&b"</head"[..], Outcome::Head), (b"</body", Outcome::Body)] {
        let n = rest.len().min(name.len());
        if !rest[..n].eq_ignore_ascii_case(&name[..n]) {
            continue;
        }
        match rest.get(name.len()) {
            Some(&c) if ends_name(c) => return Lookahead::Insert(outcome),
            Some(_) => {}
            None if !end => return Lookahead::Undecided,
            None => {}
        }
    }
    Lookahead::Other
}

/// What the start tag named `name` does.
fn kind(name: &[u8]) -> Kind {
    if name.eq_ignore_ascii_case(b"meta") {
        Kind::Meta
    } else if name.eq_ignore_ascii_case(b"script") {
        Kind::Script
    } else if name.eq_ignore_ascii_case(b"plaintext") {
        Kind::Plaintext
    } else if name.eq_ignore_ascii_case(b"svg") || name.eq_ignore_ascii_case(b"math") {
        Kind::Foreign
    } else {
        RAW_TEXT
            .iter()
            .copied()
            .find(|n| name.eq_ignore_ascii_case(n))
            .map_or(Kind::Other, Kind::RawText)
    }
}

/// One byte after `</` and `k` letters of `name` in raw text.
enum Step {
    /// The next letter of the name.
    Letter,
    /// The whole name, then a character that ends it: the element's end tag.
    Tag,
    /// Not the end tag: still text.
    No,
}

fn end_name(name: &[u8], k: u8, c: u8) -> Step {
    let k = usize::from(k);
    if k < name.len() && c.to_ascii_lowercase() == name[k] {
        Step::Letter
    } else if k == name.len() && ends_name(c) {
        Step::Tag
    } else {
        Step::No
    }
}

/// HTML's whitespace in tags (a CR counts: the input stream turns it into a LF).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn ends_name(c: u8) -> bool {
    is_space(c) || c == b'/' || c == b'>'
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
    fn never_inside_an_attribute_value() {
        // The page: the site reflects `</head><img onerror=…>` into a quoted href of
        // a tag that is neither `<meta>` nor `<script>`. Then the same in single quotes,
        // unquoted, with a `>` inside, on end tags and on a raw-text element's tags.
        let page = concat!(
            "<html><head><link rel=canonical href=\"/s?q=</head><img src=x onerror=alert(1)>\">",
            "<a title='</head>' data-x=</body>><p class=\"a>b\" id=</head\">",
            "</p title=\"</head>\"><title x=\"</head>\">t</title foo=\"</head>\">",
            "<div\n\"=</head>>x</div></head><body></body></html>"
        );
        let want = page.replacen("</head><body>", &format!("{TAG}</head><body>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn a_quoted_gt_does_not_end_a_meta_or_script_tag() {
        for (page, outcome) in [
            (
                "<head><meta content=\"a>b\" http-equiv=\"Content-Security-Policy\"></head>",
                Outcome::MetaCsp,
            ),
            (
                "<head><script data-x='a>b' src=\"/_tollgate/t.js\"></script></head>",
                Outcome::AlreadyPresent,
            ),
        ] {
            check(page, page, outcome);
        }
        // Each tag is judged alone.
        let page = "<head><meta name=http-equiv><meta content=content-security-policy></head>";
        let want = page.replacen("</head>", &format!("{TAG}</head>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn script_escapes() {
        // `<!--<script>` makes the first `</script>` part of the script; `-->` undoes it. A
        // style has no such states.
        let page = concat!(
            "<head><script><!--<script></script></head>--></script>",
            "<script>a<!--b-->c<script>d</script><script><!-- x </script>",
            "<style><!--</style></head><body>"
        );
        let want = page.replacen("</head><body>", &format!("{TAG}</head><body>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn comments_and_bogus_comments_end_where_browsers_end_them() {
        let page = concat!(
            "<!DOCTYPE html PUBLIC \"a\" \"</head\"><?xml </head ?><![CDATA[</head]]>",
            "<!--><!---><!----><!-- -- --!><!-- --!-- -></head> -->",
            "</ head></></3 </head><!x </head></head><body>"
        );
        let want = page.replacen("</head><body>", &format!("{TAG}</head><body>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn nothing_after_plaintext_or_inside_an_unended_tag() {
        for page in [
            "<head><plaintext></head></body>",
            "<head><PlainText x=1></head>",
            "<head><xmp></head>",
            "<head><a href=\"</head>",
            "<head><a href='</head>\"></head>",
        ] {
            check(page, page, Outcome::NoTag);
        }
    }

    #[test]
    fn nothing_once_svg_or_math_starts() {
        for page in [
            "<head><svg><![CDATA[ a > <x y=\"]]><z w=\"></head>\"></z></svg>",
            "<head><SVG/><style><a title=\"</style>\"></a></style></head>",
            "<head><math display=block><mi>x</mi></math></head>",
        ] {
            check(page, page, Outcome::ForeignContent);
        }
        // Only a start tag that ends opens them.
        let page = "<head><svgx><p title=\"<svg>\"></svg><!--<math>--></head><svg";
        let want = page.replacen("</head>", &format!("{TAG}</head>"), 1);
        check(page, &want, Outcome::Head);
    }

    #[test]
    fn a_long_tag_streams_through() {
        // A 100 KB attribute value full of `</head>` passes chunk by chunk, uncopied.
        let mut inj = injector();
        let mut total = 0;
        let mut feed = |inj: &mut Injector, chunk: Bytes, end: bool| {
            let mut body = Some(chunk.clone());
            inj.filter(&mut body, end);
            let got = body.unwrap_or_default();
            total += got.len();
            (got, chunk)
        };
        let (got, sent) = feed(
            &mut inj,
            Bytes::from("<head><meta name=x content=\""),
            false,
        );
        assert_eq!(got, sent);
        for _ in 0..100 {
            let (got, sent) = feed(&mut inj, Bytes::from("</head> ".repeat(125)), false);
            assert_eq!(got.as_ptr(), sent.as_ptr(), "not copied");
            assert_eq!(got.len(), 1000);
            assert!(inj.carry.is_empty());
        }
        let (got, _) = feed(&mut inj, Bytes::from("\"></head>"), true);
        assert_eq!(got, format!("\">{TAG}</head>"));
        assert_eq!(total, 28 + 100 * 1000 + 9 + TAG.len());
        assert!(inj.aside.len() <= MAX_TAG);
    }

    #[test]
    fn only_what_may_be_an_end_of_head_is_held_back() {
        for (first, held) in [
            ("<head></hea", 5),
            ("<head></BODY", 6),
            ("<head></", 2),
            ("<head><", 1),
            ("<head></head", 6),
            ("<head></headx", 0),
            ("<head><d", 0),
            ("<head><!", 0),
            ("<head></p", 0),
            ("<head><meta charset=\"", 0),
        ] {
            let mut inj = injector();
            let mut body = Some(Bytes::from(first));
            inj.filter(&mut body, false);
            assert_eq!(inj.carry.len(), held, "{first}");
            assert_eq!(body.map_or(0, |b| b.len()), first.len() - held, "{first}");
        }
    }
}
