//! Campaign parameters (`utm_*` and ad click ids) of a landing URL's query string.
//!
//! [`parse`] runs in the pipeline, once per event; [`fingerprint`] runs in the request path
//! and never allocates. Both read the query through the same normalisation, so two queries
//! that [`parse`] to the same [`Campaign`] always get the same fingerprint.
//!
//! # Normalisation
//! - Parameter names are matched ASCII case-insensitively (`UTM_Source` is `utm_source`).
//!   Names are not percent-decoded: nobody encodes `utm_source`, and skipping it keeps the
//!   scan cheap.
//! - Values are percent-decoded (`+` is a space; a malformed escape is kept literally; bytes
//!   that are not UTF-8 become U+FFFD), trimmed, cut to [`MAX_VALUE_CHARS`] characters, and
//!   trimmed again. A value that ends up empty counts as absent.
//! - `source` and `medium` are lower-cased, as GA4 does before matching channels.
//!   `campaign`, `term` and `content` keep the case they were given.
//! - When a parameter repeats, the first non-empty occurrence wins.
//!
//! # Click ids
//! At most one click id is kept. When several are present the first in this order wins:
//! `gclid`, `gbraid`, `wbraid`, `dclid`, `msclkid`, `ttclid`, `li_fat_id`, `twclid`, `fbclid`.
//! Google's ids come first because Google Ads auto-tagging is the most common and GA4 itself
//! prefers them; `fbclid` comes last because it is the weakest evidence of a paid click
//! (see below).
//!
//! When the query has neither `utm_source` nor `utm_medium`, the kept click id implies both:
//!
//! | click id | source / medium | why |
//! |---|---|---|
//! | `gclid`, `gbraid`, `wbraid` | `google` / `cpc` | Google Ads auto-tagging; GA4 reports these as google / cpc. |
//! | `dclid` | `dv360` / `cpm` | Display & Video 360 (and Campaign Manager) display ads; `cpm` lands in GA4's Display channel. |
//! | `msclkid` | `bing` / `cpc` | Microsoft Advertising auto-tagging (Bing search ads). |
//! | `ttclid` | `tiktok` / `cpc` | TikTok adds it to ad clicks only, so it means paid social. |
//! | `li_fat_id` | `linkedin` / `cpc` | LinkedIn adds it to ad clicks only, so it means paid social. |
//! | `twclid` | `twitter` / `cpc` | X (Twitter) adds it to ad clicks only, so it means paid social. |
//! | `fbclid` | nothing | Facebook and Instagram add it to **every** outbound link, organic posts included, so it says nothing about paid; the referrer decides (usually Organic Social). |
//!
//! If either `utm_source` or `utm_medium` is given, nothing is implied: explicit tagging
//! always wins, and mixing a tagger's source with an implied medium would produce a pair
//! nobody chose.

/// The longest value kept, in characters; longer values are cut at a character boundary.
pub const MAX_VALUE_CHARS: usize = 256;

/// Campaign parameters of a landing URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    /// `utm_source`, lower-cased; or implied by the click id (see the module docs).
    pub source: Option<String>,
    /// `utm_medium`, lower-cased; or implied by the click id (see the module docs).
    pub medium: Option<String>,
    /// `utm_campaign`, as given (trimmed).
    pub campaign: Option<String>,
    /// `utm_term`, as given (trimmed).
    pub term: Option<String>,
    /// `utm_content`, as given (trimmed).
    pub content: Option<String>,
    /// Which click id was kept: "gclid", "gbraid", "wbraid", "dclid", "fbclid", "msclkid",
    /// "ttclid", "li_fat_id" or "twclid".
    pub click_id_type: Option<&'static str>,
    /// The value of that click id, as given (trimmed).
    pub click_id: Option<String>,
}

impl Campaign {
    /// True when the query carried no campaign parameter at all.
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.term.is_none()
            && self.content.is_none()
            && self.click_id_type.is_none()
            && self.click_id.is_none()
    }
}

/// Parse the campaign parameters from a raw (not yet redacted, still percent-encoded) query
/// string, with or without the leading `?`. Unknown parameters are ignored; a query without
/// campaign parameters gives an empty [`Campaign`].
pub fn parse(query: &str) -> Campaign {
    let fields = extract(query, |field, value| {
        if field.lower_cased() {
            lower_case(value)
        } else {
            value.to_owned()
        }
    });
    let [source, medium, campaign, term, content] = fields.utm;
    let (click_id_type, click_id) = match fields.click {
        Some((index, value)) => (Some(CLICK_IDS[index].name), Some(value)),
        None => (None, None),
    };
    Campaign {
        source,
        medium,
        campaign,
        term,
        content,
        click_id_type,
        click_id,
    }
}

/// A cheap fingerprint of the campaign parameters in a raw query string, or `None` if it has
/// none.
///
/// Runs in the request path (the proxy compares it with the one in the session cookie to
/// decide whether a new campaign starts a new session), so it never allocates. It hashes
/// exactly what [`parse`] keeps, after the same normalisation: parameter order, non-campaign
/// parameters, the case of `utm_source` and `utm_medium`, and how a value is percent-encoded
/// do not change it; any kept value changing does. A lone `fbclid` counts (Facebook mints a
/// new one per click, so each click from Facebook starts a session, as a new `gclid` does).
///
/// Deterministic (no per-process seed), so it can live in a cookie. Changing this function
/// changes the values; at worst that starts one extra session per visitor who lands with
/// campaign parameters.
pub fn fingerprint(query: &str) -> Option<u64> {
    let fields = extract(query, |field, value| {
        let mut h = WordHash::default();
        if field.lower_cased() && !value.is_ascii() {
            // Rare: hash the lower-cased characters one by one, as `lower_case` makes them.
            let mut count = 0u64;
            for c in value.chars().flat_map(char::to_lowercase) {
                h.word(u64::from(u32::from(c)));
                count += 1;
            }
            h.word(count);
        } else {
            h.bytes(value.as_bytes(), field.lower_cased());
        }
        h.finish()
    });
    if fields.utm.iter().all(Option::is_none) && fields.click.is_none() {
        return None;
    }
    // Absent and present fields must not line up, so each slot adds a marker word.
    let mut h = WordHash::default();
    for field in &fields.utm {
        match field {
            Some(v) => {
                h.word(1);
                h.word(*v);
            }
            None => h.word(0),
        }
    }
    match fields.click {
        Some((index, v)) => {
            h.word(2 + index as u64);
            h.word(v);
        }
        None => h.word(0),
    }
    Some(h.finish())
}

/// Lower-case per character, the same way [`fingerprint`] hashes it (so no special final-sigma
/// rule, unlike `str::to_lowercase`). The one rule for `utm_source` and `utm_medium`, whether
/// they come from a URL or a client states them (`crate::ingest::draft`).
pub fn lower_case(value: &str) -> String {
    if value.is_ascii() {
        value.to_ascii_lowercase()
    } else {
        value.chars().flat_map(char::to_lowercase).collect()
    }
}

/// Which kept value a string is; source and medium are lower-cased, the rest are not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Source,
    Medium,
    Campaign,
    Term,
    Content,
    ClickId,
}

impl Field {
    const UTM: [Field; 5] = [
        Field::Source,
        Field::Medium,
        Field::Campaign,
        Field::Term,
        Field::Content,
    ];

    fn lower_cased(self) -> bool {
        matches!(self, Field::Source | Field::Medium)
    }
}

struct ClickId {
    name: &'static str,
    /// Source and medium implied when the query has neither `utm_source` nor `utm_medium`.
    implies: Option<(&'static str, &'static str)>,
}

/// Click ids in priority order: the first one present wins. The module docs give the reasons.
const CLICK_IDS: [ClickId; 9] = [
    ClickId {
        name: "gclid",
        implies: Some(("google", "cpc")),
    },
    ClickId {
        name: "gbraid",
        implies: Some(("google", "cpc")),
    },
    ClickId {
        name: "wbraid",
        implies: Some(("google", "cpc")),
    },
    ClickId {
        name: "dclid",
        implies: Some(("dv360", "cpm")),
    },
    ClickId {
        name: "msclkid",
        implies: Some(("bing", "cpc")),
    },
    ClickId {
        name: "ttclid",
        implies: Some(("tiktok", "cpc")),
    },
    ClickId {
        name: "li_fat_id",
        implies: Some(("linkedin", "cpc")),
    },
    ClickId {
        name: "twclid",
        implies: Some(("twitter", "cpc")),
    },
    ClickId {
        name: "fbclid",
        implies: None,
    },
];

enum Param {
    Utm(usize),
    Click(usize),
}

/// Which campaign parameter `name` is, ASCII case-insensitively. A `match` on the lower-cased
/// name rather than a scan of the tables: this runs for every parameter of every query. The
/// indices follow [`Field::UTM`] and [`CLICK_IDS`] (a test keeps them in step).
fn lookup(name: &str) -> Option<Param> {
    let mut buf = [0u8; 12];
    // Longer names are none of ours.
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"utm_source" => Param::Utm(0),
        b"utm_medium" => Param::Utm(1),
        b"utm_campaign" => Param::Utm(2),
        b"utm_term" => Param::Utm(3),
        b"utm_content" => Param::Utm(4),
        b"gclid" => Param::Click(0),
        b"gbraid" => Param::Click(1),
        b"wbraid" => Param::Click(2),
        b"dclid" => Param::Click(3),
        b"msclkid" => Param::Click(4),
        b"ttclid" => Param::Click(5),
        b"li_fat_id" => Param::Click(6),
        b"twclid" => Param::Click(7),
        b"fbclid" => Param::Click(8),
        _ => return None,
    })
}

/// The campaign fields of a query, each already converted by the caller's `conv`.
struct Fields<T> {
    utm: [Option<T>; 5],
    /// Index into [`CLICK_IDS`] and the converted value.
    click: Option<(usize, T)>,
}

/// Scan `query` once and hand every kept, normalised value to `conv`. This is the single
/// place that decides what a campaign is, so [`parse`] and [`fingerprint`] cannot disagree.
fn extract<T>(query: &str, mut conv: impl FnMut(Field, &str) -> T) -> Fields<T> {
    let mut scratch = Scratch::default();
    let mut fields = Fields {
        utm: [None, None, None, None, None],
        click: None,
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    // A fragment never belongs to the query; drop one if the caller passed it along.
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    for pair in query.split('&') {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        match lookup(name) {
            Some(Param::Utm(i)) if fields.utm[i].is_none() => {
                if let Some(v) = normalize(raw, &mut scratch) {
                    fields.utm[i] = Some(conv(Field::UTM[i], v));
                }
            }
            Some(Param::Click(i)) if fields.click.as_ref().is_none_or(|(best, _)| i < *best) => {
                if let Some(v) = normalize(raw, &mut scratch) {
                    fields.click = Some((i, conv(Field::ClickId, v)));
                }
            }
            _ => {}
        }
    }
    if fields.utm[0].is_none() && fields.utm[1].is_none() {
        if let Some((source, medium)) = fields
            .click
            .as_ref()
            .and_then(|(i, _)| CLICK_IDS[*i].implies)
        {
            fields.utm[0] = Some(conv(Field::Source, source));
            fields.utm[1] = Some(conv(Field::Medium, medium));
        }
    }
    fields
}

/// Worst case bytes of [`MAX_VALUE_CHARS`] characters, plus room for one more, so a cut in
/// the decoded bytes always falls after the characters we keep.
const DECODED_CAP: usize = MAX_VALUE_CHARS * 4 + 4;

/// Stack buffers for decoding values, reused across the values of one query. Each is filled
/// in only when first needed: most values need no decoding, and zeroing 2 KiB per query would
/// cost more than the scan.
#[derive(Default)]
struct Scratch {
    decoded: Option<[u8; DECODED_CAP]>,
    lossy: Option<[u8; MAX_VALUE_CHARS * 4]>,
}

/// Percent-decode, trim and cap one raw value. `None` when nothing is left.
fn normalize<'a>(raw: &'a str, scratch: &'a mut Scratch) -> Option<&'a str> {
    let Scratch { decoded, lossy } = scratch;
    let value: &str = if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        raw
    } else {
        let decoded = decoded.get_or_insert([0; DECODED_CAP]);
        let n = percent_decode(raw.as_bytes(), decoded);
        let bytes = &decoded[..n];
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            // Cut mid-character by the buffer limit: drop the partial character.
            Err(e) if e.error_len().is_none() && n == DECODED_CAP => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => to_str_lossy(bytes, lossy.get_or_insert([0; MAX_VALUE_CHARS * 4])),
        }
    };
    let value = value.trim_start();
    // Short values cannot be over the cap; only long ones need their characters counted.
    let value = if value.len() <= MAX_VALUE_CHARS {
        value
    } else {
        match value.char_indices().nth(MAX_VALUE_CHARS) {
            Some((cut, _)) => &value[..cut],
            None => value,
        }
    };
    let value = value.trim_end();
    (!value.is_empty()).then_some(value)
}

/// Decode `%XX` escapes and `+` into `out`, skipping leading ASCII whitespace (so a value of
/// many encoded spaces cannot crowd out the text) and stopping when `out` is full.
fn percent_decode(src: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < src.len() && n < out.len() {
        let b = match src[i] {
            b'+' => {
                i += 1;
                b' '
            }
            b'%' => match (
                src.get(i + 1).copied().and_then(hex),
                src.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    i += 3;
                    high << 4 | low
                }
                _ => {
                    i += 1;
                    b'%'
                }
            },
            b => {
                i += 1;
                b
            }
        };
        if n == 0 && b.is_ascii_whitespace() {
            continue;
        }
        out[n] = b;
        n += 1;
    }
    n
}

/// The value of one hex digit.
pub(super) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Like `String::from_utf8_lossy`, into a fixed buffer, stopping at [`MAX_VALUE_CHARS`].
fn to_str_lossy<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    let mut n = 0;
    let mut chars = 0;
    'chunks: for chunk in bytes.utf8_chunks() {
        let replacement = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
        for c in chunk.valid().chars().chain(replacement) {
            if chars == MAX_VALUE_CHARS || n + c.len_utf8() > out.len() {
                break 'chunks;
            }
            n += c.encode_utf8(&mut out[n..]).len();
            chars += 1;
        }
    }
    // Only whole characters were written, so this never falls back.
    std::str::from_utf8(&out[..n]).unwrap_or_default()
}

/// A small word-at-a-time hash: each 8-byte word is folded in with a 64x64->128 bit multiply
/// (as foldhash and wyhash do), and [`WordHash::finish`] runs the splitmix64 finaliser.
/// Allocation-free and far cheaper than hashing byte by byte; not meant to resist crafted
/// collisions, which would only merge two campaigns' sessions.
#[derive(Default)]
struct WordHash(u64);

impl WordHash {
    fn word(&mut self, w: u64) {
        let m = u128::from(self.0 ^ w) * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64) ^ 0x2545_f491_4f6c_dd1d;
    }

    /// One whole value: its words (the last zero-padded), then its length, so values that
    /// differ only in trailing zero bytes or in length never line up.
    fn bytes(&mut self, bytes: &[u8], ascii_lower: bool) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            if ascii_lower {
                w.make_ascii_lowercase();
            }
            self.word(u64::from_le_bytes(w));
        }
        self.word(bytes.len() as u64);
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn lookup_follows_the_tables() {
        let utm = [
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
        ];
        for (i, name) in utm.iter().enumerate() {
            assert!(
                matches!(lookup(name), Some(Param::Utm(j)) if j == i),
                "{name}"
            );
            let upper = name.to_ascii_uppercase();
            assert!(
                matches!(lookup(&upper), Some(Param::Utm(j)) if j == i),
                "{upper}"
            );
        }
        for (i, click) in CLICK_IDS.iter().enumerate() {
            assert!(
                matches!(lookup(click.name), Some(Param::Click(j)) if j == i),
                "{}",
                click.name
            );
        }
        for other in ["", "utm", "utm_id", "gclidx", "utm_campaign_x", "ÄÖÜ"] {
            assert!(lookup(other).is_none(), "{other}");
        }
    }

    #[test]
    fn parse_reads_all_utm_fields() {
        let c = parse("utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale&utm_term=running+shoes&utm_content=hero");
        assert_eq!(
            c,
            Campaign {
                source: s("newsletter"),
                medium: s("email"),
                campaign: s("spring_sale"),
                term: s("running shoes"),
                content: s("hero"),
                click_id_type: None,
                click_id: None,
            }
        );
        assert!(!c.is_empty());
    }

    #[test]
    fn parse_without_campaign_params_is_empty() {
        for q in [
            "",
            "?",
            "a=1&b=2",
            "utm_foo=1",
            "utm_source=",
            "utm_source=+%20+",
            "&&=&",
        ] {
            assert!(parse(q).is_empty(), "{q:?}");
        }
    }

    #[test]
    fn parse_decodes_values() {
        let c = parse("utm_campaign=Black%20Friday+2024&utm_term=caf%C3%A9&utm_content=%E2%9C%93");
        assert_eq!(c.campaign, s("Black Friday 2024"));
        assert_eq!(c.term, s("café"));
        assert_eq!(c.content, s("✓"));
        // A malformed escape is kept as written; bytes that are not UTF-8 become U+FFFD.
        let c = parse("utm_campaign=100%25%zz%4&utm_term=%FFok&utm_content=%");
        assert_eq!(c.campaign, s("100%%zz%4"));
        assert_eq!(c.term, s("\u{FFFD}ok"));
        assert_eq!(c.content, s("%"));
        // `%2B` is a literal plus, unlike `+`.
        assert_eq!(parse("utm_term=a%2Bb+c").term, s("a+b c"));
    }

    #[test]
    fn parse_trims_and_lower_cases_source_and_medium_only() {
        let c = parse("?UTM_Source=+Google+&Utm_Medium=%20CPC%20&utm_campaign=%20Summer+Sale%20&UTM_TERM=Shoes");
        assert_eq!(c.source, s("google"));
        assert_eq!(c.medium, s("cpc"));
        assert_eq!(c.campaign, s("Summer Sale"));
        assert_eq!(c.term, s("Shoes"));
        assert_eq!(parse("utm_source=%C3%89COLE").source, s("école"));
    }

    #[test]
    fn parse_caps_long_values_at_a_char_boundary() {
        let long = "a".repeat(1000);
        let c = parse(&format!("utm_campaign={long}"));
        assert_eq!(c.campaign.as_deref().map(str::len), Some(MAX_VALUE_CHARS));

        let wide = "%C3%A9".repeat(400); // "é", two bytes each once decoded
        let c = parse(&format!("utm_campaign={wide}"));
        let campaign = c.campaign.unwrap_or_default();
        assert_eq!(campaign.chars().count(), MAX_VALUE_CHARS);
        assert!(campaign.chars().all(|c| c == 'é'));

        let emoji = "%F0%9F%98%80".repeat(300); // four bytes each
        let c = parse(&format!("utm_content={emoji}"));
        assert_eq!(c.content.map(|v| v.chars().count()), Some(MAX_VALUE_CHARS));

        // Leading encoded spaces do not use up the cap.
        let c = parse(&format!("utm_term={}x", "%20".repeat(2000)));
        assert_eq!(c.term, s("x"));
    }

    #[test]
    fn parse_keeps_the_first_non_empty_repeat() {
        let c = parse("utm_source=&utm_source=first&utm_source=second");
        assert_eq!(c.source, s("first"));
    }

    #[test]
    fn parse_picks_click_id_by_priority() {
        let cases = [
            ("fbclid=a&msclkid=b&gclid=c", "gclid", "c"),
            ("wbraid=w&gbraid=g", "gbraid", "g"),
            ("fbclid=a&ttclid=b", "ttclid", "b"),
            ("twclid=t&li_fat_id=l", "li_fat_id", "l"),
            ("dclid=d&msclkid=m", "dclid", "d"),
            ("FBCLID=IwAR0x", "fbclid", "IwAR0x"),
            ("gclid=&fbclid=f", "fbclid", "f"),
        ];
        for (q, kind, value) in cases {
            let c = parse(q);
            assert_eq!(c.click_id_type, Some(kind), "{q}");
            assert_eq!(c.click_id.as_deref(), Some(value), "{q}");
        }
    }

    #[test]
    fn parse_implies_source_and_medium_from_click_ids() {
        let cases = [
            ("gclid=EAIaIQ", Some("google"), Some("cpc")),
            ("gbraid=0AAA", Some("google"), Some("cpc")),
            ("wbraid=CjkK", Some("google"), Some("cpc")),
            ("dclid=CJ1", Some("dv360"), Some("cpm")),
            ("msclkid=0b1c", Some("bing"), Some("cpc")),
            ("ttclid=E.C.P", Some("tiktok"), Some("cpc")),
            ("li_fat_id=123", Some("linkedin"), Some("cpc")),
            ("twclid=2-abc", Some("twitter"), Some("cpc")),
            ("fbclid=IwAR", None, None),
        ];
        for (q, source, medium) in cases {
            let c = parse(q);
            assert_eq!(c.source.as_deref(), source, "{q}");
            assert_eq!(c.medium.as_deref(), medium, "{q}");
        }
    }

    #[test]
    fn explicit_utm_wins_over_implied_values() {
        let c = parse("gclid=x&utm_source=Newsletter");
        assert_eq!((c.source, c.medium), (s("newsletter"), None));
        let c = parse("utm_medium=display&gclid=x");
        assert_eq!((c.source, c.medium), (None, s("display")));
        let c = parse("gclid=x&utm_campaign=Brand");
        assert_eq!(
            (c.source, c.medium, c.campaign),
            (s("google"), s("cpc"), s("Brand"))
        );
    }

    #[test]
    fn fingerprint_is_order_insensitive() {
        let a = fingerprint("utm_source=google&utm_medium=cpc&utm_campaign=spring&gclid=x");
        let b = fingerprint("gclid=x&utm_campaign=spring&utm_medium=cpc&utm_source=google");
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn fingerprint_is_none_without_campaign_params() {
        for q in [
            "",
            "?",
            "page=2",
            "q=rust&sort=asc",
            "utm_source=",
            "utm_id=7",
            "gclid=%20",
        ] {
            assert_eq!(fingerprint(q), None, "{q:?}");
        }
    }

    #[test]
    fn fingerprint_ignores_other_params_and_encoding() {
        let base = fingerprint("utm_source=news&utm_campaign=Spring+Sale");
        assert_eq!(
            base,
            fingerprint("page=2&utm_source=news&x=y&utm_campaign=Spring%20Sale")
        );
        assert_eq!(
            base,
            fingerprint("utm_source=NEWS&utm_campaign=%20Spring+Sale%20")
        );
        // Same parse result, same fingerprint: gclid implies google / cpc.
        assert_eq!(
            fingerprint("gclid=abc"),
            fingerprint("utm_source=google&utm_medium=cpc&gclid=abc")
        );
    }

    #[test]
    fn fingerprint_changes_when_a_value_changes() {
        let base = fingerprint("utm_source=news&utm_campaign=spring");
        let others = [
            "utm_source=news&utm_campaign=summer",
            "utm_source=ads&utm_campaign=spring",
            "utm_source=news&utm_campaign=Spring",
            "utm_source=news&utm_term=spring",
            "utm_source=news&utm_campaign=spring&utm_content=a",
            "utm_source=news&utm_campaign=spring&fbclid=1",
        ];
        for q in others {
            assert_ne!(base, fingerprint(q), "{q}");
        }
        assert_ne!(fingerprint("gclid=1"), fingerprint("gclid=2"));
        assert_ne!(fingerprint("gclid=1"), fingerprint("gbraid=1"));
    }

    #[test]
    fn fingerprint_agrees_with_parse() {
        let queries = [
            "utm_source=a&utm_source=b",
            "utm_source=b&utm_source=a",
            "fbclid=1&gclid=2",
            "gclid=2&fbclid=3",
            "utm_medium=email",
            "utm_content=%FF",
            "utm_content=%EF%BF%BD",
        ];
        for a in queries {
            for b in queries {
                assert_eq!(
                    parse(a) == parse(b),
                    fingerprint(a) == fingerprint(b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
