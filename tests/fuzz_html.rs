//! Fuzzing the HTML scanner that places the tracker's tag: generated adversarial pages, cut
//! into random chunks, checked against a whole-document reference tokenizer written here.
//!
//! It runs on stable Rust in the normal suite, for `TOLLGATE_FUZZ_SECS` seconds (default 5; a
//! change to the scanner deserves `TOLLGATE_FUZZ_SECS=600`). `TOLLGATE_FUZZ_SEED` sets
//! the first case's seed (default: from the clock); each case draws its page and its chunks
//! from its own seed only, and a failure prints it: `TOLLGATE_FUZZ_SEED=<seed>
//! TOLLGATE_FUZZ_SECS=0` replays that case alone. `-- --nocapture` shows the figures.
//!
//! For every case: the scanner does not panic; its output is the page, or the page with the
//! tag inserted exactly once (nothing held back, nothing lost); and where it inserted, or why
//! it did not, is what the reference says: before the first `</head` or `</body` that starts
//! in the data state, outside every tag, attribute value, comment and raw text, unless an
//! `<svg>` or `<math>` start tag, a `<plaintext>`, or a `<meta>` CSP came first.

use bytes::Bytes;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};
use tollgate::proxy::inject::{Injector, Outcome, MAX_TAG};

#[path = "common/html.rs"]
mod html;
use html::{chunks, page, Rng};

const TAG: &[u8] = b"<script src=\"/_tollgate/t.js\" defer></script>";
const SRC: &[u8] = b"/_tollgate/t.js";

#[test]
fn the_scanner_agrees_with_the_reference_on_generated_pages() {
    let secs: f64 = env("TOLLGATE_FUZZ_SECS").map_or(5.0, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("TOLLGATE_FUZZ_SECS={s:?} is not a number of seconds"))
    });
    let first: u64 = env("TOLLGATE_FUZZ_SEED").map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        },
        |s| {
            s.parse()
                .unwrap_or_else(|_| panic!("TOLLGATE_FUZZ_SEED={s:?} is not a u64"))
        },
    );
    let budget = Duration::from_secs_f64(secs.max(0.0));
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut seed = first;
    // At least one case, so that a seed can be replayed with no time at all.
    while stats.cases == 0 || start.elapsed() < budget {
        let case = Case::new(seed);
        let verdict = catch_unwind(AssertUnwindSafe(|| case.check(&mut stats)));
        match verdict {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!(
                "case seed {seed}: {why}\n{}\nreplay: TOLLGATE_FUZZ_SEED={seed} TOLLGATE_FUZZ_SECS=0 \
                 cargo test --release --test fuzz_html -- --nocapture",
                case.describe()
            ),
            Err(_) => panic!(
                "case seed {seed}: the scanner panicked (message above)\n{}\nreplay: \
                 TOLLGATE_FUZZ_SEED={seed} TOLLGATE_FUZZ_SECS=0 cargo test --release --test fuzz_html",
                case.describe()
            ),
        }
        stats.cases += 1;
        seed = seed.wrapping_add(1);
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "fuzz_html: {} cases in {took:.1} s ({:.0} cases/s), seeds {first}..{seed}: {} injected \
         before </head>, {} before </body>, {} meta CSP, {} already present, {} with SVG or \
         MathML first, {} without a place; \
         {:.1} MB of HTML in {} chunks",
        stats.cases,
        stats.cases as f64 / took.max(1e-9),
        stats.outcomes[0],
        stats.outcomes[1],
        stats.outcomes[2],
        stats.outcomes[3],
        stats.outcomes[4],
        stats.outcomes[5],
        stats.bytes as f64 / 1e6,
        stats.chunks,
    );
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

#[derive(Default)]
struct Stats {
    cases: u64,
    bytes: u64,
    chunks: u64,
    /// Head, Body, MetaCsp, AlreadyPresent, ForeignContent, NoTag.
    outcomes: [u64; 6],
}

/// One generated page and how it is cut.
struct Case {
    page: Vec<u8>,
    /// Chunk lengths, adding up to the page's (an empty chunk now and then).
    chunks: Vec<usize>,
    /// The last chunk comes with `end = false`, and the end as a separate call with no body.
    end_apart: bool,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut r = Rng(seed);
        let page = page(&mut r);
        let chunks = chunks(&mut r, page.len());
        let end_apart = r.chance(20);
        Case {
            page,
            chunks,
            end_apart,
        }
    }

    fn describe(&self) -> String {
        let shown: String = String::from_utf8_lossy(&self.page)
            .escape_debug()
            .take(4000)
            .collect();
        format!(
            "page ({} bytes): \"{shown}\"\nchunks: {:?}{}",
            self.page.len(),
            &self.chunks[..self.chunks.len().min(200)],
            if self.end_apart {
                ", then the end alone"
            } else {
                ""
            }
        )
    }

    /// Run the scanner over the chunks and hold its output to the reference.
    ///
    /// One check of one case: run the scanner, then hold its single output to the reference in
    /// successive conditions that share that output and the failure message.
    fn check(&self, stats: &mut Stats) -> Result<(), String> {
        let mut inj = Injector::new(Bytes::from_static(TAG), Bytes::from_static(SRC));
        let mut out = Vec::with_capacity(self.page.len() + TAG.len());
        let mut from = 0;
        for (k, &len) in self.chunks.iter().enumerate() {
            let last = k + 1 == self.chunks.len();
            let mut body = Some(Bytes::copy_from_slice(&self.page[from..from + len]));
            inj.filter(&mut body, last && !self.end_apart);
            out.extend_from_slice(&body.unwrap_or_default());
            from += len;
        }
        if self.end_apart {
            let mut body = None;
            inj.filter(&mut body, true);
            out.extend_from_slice(&body.unwrap_or_default());
        }
        stats.bytes += self.page.len() as u64;
        stats.chunks += self.chunks.len() as u64;

        let got = inj
            .outcome()
            .ok_or("no outcome after the last chunk".to_string())?;
        let want = reference(&self.page);
        let at = match got {
            Outcome::Head | Outcome::Body => {
                // Exactly one tag more than the page, and the page around it.
                if out.len() != self.page.len() + TAG.len() {
                    return Err(format!(
                        "{got:?}, but the output is {} bytes for a {}-byte page and a {}-byte tag",
                        out.len(),
                        self.page.len(),
                        TAG.len()
                    ));
                }
                // The tag can only sit between the longest common prefix and suffix.
                let same =
                    |a: &mut dyn Iterator<Item = (&u8, &u8)>| a.take_while(|(x, y)| x == y).count();
                let prefix = same(&mut out.iter().zip(&self.page));
                let suffix = same(&mut out.iter().rev().zip(self.page.iter().rev()));
                let fits = |k: usize| &out[k..k + TAG.len()] == TAG;
                let range = self.page.len().saturating_sub(suffix)..=prefix.min(self.page.len());
                let at = match want.at {
                    Some(e) if range.contains(&e) && fits(e) => Some(e),
                    _ => range.clone().find(|&k| fits(k)),
                };
                Some(at.ok_or(format!(
                    "{got:?}, but the output is not the page with the tag inserted once"
                ))?)
            }
            _ if out != self.page => {
                return Err(format!(
                    "{got:?}, but the output ({} bytes) is not the page ({} bytes)",
                    out.len(),
                    self.page.len()
                ))
            }
            _ => None,
        };
        if let Some(at) = at {
            if !want.data[at] {
                return Err(format!(
                    "inserted at {at}, which the reference does not see in the data state \
                     (inside a tag, attribute, comment or raw text): …{}…",
                    window(&self.page, at)
                ));
            }
        }
        if (at, got) != (want.at, want.outcome) {
            return Err(format!(
                "the scanner says {got:?} at {at:?}, the reference {:?} at {:?}: …{}…",
                want.outcome,
                want.at,
                window(&self.page, at.or(want.at).unwrap_or(0))
            ));
        }
        let i = match got {
            Outcome::Head => 0,
            Outcome::Body => 1,
            Outcome::MetaCsp => 2,
            Outcome::AlreadyPresent => 3,
            Outcome::ForeignContent => 4,
            Outcome::NoTag => 5,
        };
        stats.outcomes[i] += 1;
        Ok(())
    }
}

/// The page around `at`, `|` marking it.
fn window(page: &[u8], at: usize) -> String {
    let from = at.saturating_sub(120);
    let to = (at + 80).min(page.len());
    format!(
        "{}|{}",
        String::from_utf8_lossy(&page[from..at.min(page.len())]).escape_debug(),
        String::from_utf8_lossy(&page[at.min(page.len())..to]).escape_debug()
    )
}

// ---------------------------------------------------------------------------------------------
// The reference: the whole document at once, looking ahead as far as it likes, written from the
// HTML Standard's tokenizer (§13.2.5) apart from the scanner's incremental state machine.

struct Reference {
    at: Option<usize>,
    outcome: Outcome,
    /// `data[i]`: the tokenizer is in the data state before byte `i`.
    data: Vec<bool>,
}

fn reference(doc: &[u8]) -> Reference {
    let mut data = vec![false; doc.len() + 1];
    let (at, outcome) = tokenize(doc, &mut data);
    Reference { at, outcome, data }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn ends_name(c: u8) -> bool {
    is_space(c) || c == b'/' || c == b'>'
}

/// `doc[i..]` is `prefix` (ASCII case aside) followed by a byte that ends a tag name.
fn at_name(doc: &[u8], i: usize, prefix: &[u8]) -> bool {
    doc.len() > i + prefix.len()
        && doc[i..i + prefix.len()].eq_ignore_ascii_case(prefix)
        && ends_name(doc[i + prefix.len()])
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn tokenize(doc: &[u8], data: &mut [bool]) -> (Option<usize>, Outcome) {
    let n = doc.len();
    let mut i = 0;
    loop {
        while i < n && doc[i] != b'<' {
            data[i] = true;
            i += 1;
        }
        data[i] = true;
        if i == n {
            return (None, Outcome::NoTag);
        }
        let lt = i;
        if at_name(doc, lt, b"</head") {
            return (Some(lt), Outcome::Head);
        }
        if at_name(doc, lt, b"</body") {
            return (Some(lt), Outcome::Body);
        }
        let next = doc.get(lt + 1).copied();
        let after = match next {
            Some(b'!') if doc[lt + 2..].starts_with(b"--") => comment(doc, lt + 4),
            // DOCTYPE, CDATA (in HTML content) and other `<!`: all end at the first `>`.
            Some(b'!') | Some(b'?') => bogus(doc, lt + 1),
            Some(b'/') => match doc.get(lt + 2) {
                Some(c) if c.is_ascii_alphabetic() => tag(doc, lt + 2).map(|(gt, _)| gt + 1),
                Some(b'>') => Some(lt + 3),
                Some(_) => bogus(doc, lt + 2),
                None => Some(lt + 1),
            },
            Some(c) if c.is_ascii_alphabetic() => match tag(doc, lt + 1) {
                None => None,
                Some((gt, name)) => {
                    let seen = &doc[lt..gt.min(lt + MAX_TAG)];
                    let name = name.to_ascii_lowercase();
                    if name == b"meta"
                        && contains_ci(seen, b"http-equiv")
                        && contains_ci(seen, b"content-security-policy")
                    {
                        return (None, Outcome::MetaCsp);
                    }
                    if name == b"script" && seen.windows(SRC.len()).any(|w| w == SRC) {
                        return (None, Outcome::AlreadyPresent);
                    }
                    match &name[..] {
                        b"script" => script(doc, gt + 1),
                        b"plaintext" => None,
                        b"svg" | b"math" => return (None, Outcome::ForeignContent),
                        b"style" | b"title" | b"textarea" | b"noscript" | b"xmp" | b"iframe"
                        | b"noembed" | b"noframes" => raw_text(doc, gt + 1, &name),
                        _ => Some(gt + 1),
                    }
                }
            },
            // A `<` that starts nothing is text; so is a `<` at the very end.
            _ => Some(lt + 1),
        };
        match after {
            Some(a) => i = a,
            // The rest of the page is inside something that never ends.
            None => return (None, Outcome::NoTag),
        }
    }
}

/// A bogus comment whose text starts at `from`: it ends after the first `>`.
fn bogus(doc: &[u8], from: usize) -> Option<usize> {
    doc[from..]
        .iter()
        .position(|&c| c == b'>')
        .map(|k| from + k + 1)
}

/// A comment whose text starts at `from` (after `<!--`): where the data state resumes.
fn comment(doc: &[u8], from: usize) -> Option<usize> {
    let rest = &doc[from..];
    if rest.starts_with(b">") {
        return Some(from + 1);
    }
    if rest.starts_with(b"->") {
        return Some(from + 2);
    }
    (from..doc.len()).find_map(|k| {
        if doc[k..].starts_with(b"-->") {
            Some(k + 3)
        } else if doc[k..].starts_with(b"--!>") {
            Some(k + 4)
        } else {
            None
        }
    })
}

/// A tag whose name starts at `i`: the index of its `>` and its name, or `None` when the page
/// ends first.
fn tag(doc: &[u8], mut i: usize) -> Option<(usize, &[u8])> {
    let n = doc.len();
    let from = i;
    while i < n && !ends_name(doc[i]) {
        i += 1;
    }
    let name = &doc[from..i];
    let skip = |i: &mut usize| {
        while *i < n && is_space(doc[*i]) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i);
        match doc.get(i)? {
            b'>' => return Some((i, name)),
            b'/' => i += 1,
            _ => {
                // An attribute: its name (whose first byte may be `=`), then maybe a value.
                i += 1;
                while i < n && !ends_name(doc[i]) && doc[i] != b'=' {
                    i += 1;
                }
                skip(&mut i);
                if doc.get(i) == Some(&b'=') {
                    i += 1;
                    skip(&mut i);
                    match *doc.get(i)? {
                        q @ (b'"' | b'\'') => {
                            i += 1 + doc[i + 1..].iter().position(|&c| c == q)? + 1;
                        }
                        // No value: `>` ends the tag, as below.
                        b'>' => {}
                        _ => {
                            while i < n && !is_space(doc[i]) && doc[i] != b'>' {
                                i += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The text of a RAWTEXT or RCDATA element, from `from`: it ends at `</name` and a byte that
/// ends a name, an end tag whose attributes are read as any tag's.
fn raw_text(doc: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut end = b"</".to_vec();
    end.extend_from_slice(name);
    let k = (from..doc.len()).find(|&k| at_name(doc, k, &end))?;
    tag(doc, k + 2).map(|(gt, _)| gt + 1)
}

/// A script's text, from `from`, with the escaped and double-escaped states: where the data
/// state resumes after its end tag.
fn script(doc: &[u8], from: usize) -> Option<usize> {
    #[derive(PartialEq, Clone, Copy)]
    enum S {
        Plain,
        Escaped,
        EscapedDash,
        EscapedDashDash,
        Double,
        DoubleDash,
        DoubleDashDash,
    }
    let end_tag = |k: usize| tag(doc, k + 2).map(|(gt, _)| gt + 1);
    let mut s = S::Plain;
    let mut k = from;
    while k < doc.len() {
        let c = doc[k];
        match s {
            S::Plain => {
                if at_name(doc, k, b"</script") {
                    return end_tag(k);
                }
                if doc[k..].starts_with(b"<!--") {
                    s = S::EscapedDashDash;
                    k += 4;
                    continue;
                }
            }
            S::Escaped | S::EscapedDash | S::EscapedDashDash => {
                if c == b'<' {
                    if at_name(doc, k, b"</script") {
                        return end_tag(k);
                    }
                    // `<script` and a byte that ends the name: double-escaped, that byte taken.
                    if at_name(doc, k + 1, b"script") {
                        s = S::Double;
                        k += 8;
                        continue;
                    }
                    s = S::Escaped;
                } else if c == b'-' {
                    s = match s {
                        S::Escaped => S::EscapedDash,
                        _ => S::EscapedDashDash,
                    };
                } else if c == b'>' && s == S::EscapedDashDash {
                    s = S::Plain;
                } else {
                    s = S::Escaped;
                }
            }
            S::Double | S::DoubleDash | S::DoubleDashDash => {
                if c == b'<' {
                    if at_name(doc, k + 1, b"/script") {
                        s = S::Escaped;
                        k += 9;
                        continue;
                    }
                    s = S::Double;
                } else if c == b'-' {
                    s = match s {
                        S::Double => S::DoubleDash,
                        _ => S::DoubleDashDash,
                    };
                } else if c == b'>' && s == S::DoubleDashDash {
                    s = S::Plain;
                } else {
                    s = S::Double;
                }
            }
        }
        k += 1;
    }
    None
}
