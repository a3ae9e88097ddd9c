//! Adversarial HTML from a seed, for the scanner that places the tracker's tag: quotes of both
//! kinds and unbalanced ones, `</head>` and `</body>` inside attribute values, comments and
//! near-comments, scripts with `</head>` in strings and `<!--` escapes, CDATA, DOCTYPE, `<?xml`,
//! raw-text elements, names in any case, `<meta>` CSP, long attributes, random and non-UTF-8
//! bytes. `tests/fuzz_html.rs` checks the scanner on them, `tests/inject.rs` Chromium.

use tollgate::proxy::inject::MAX_TAG;

/// SplitMix64: small, seedable, and the same on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T: ?Sized>(&mut self, from: &[&'a T]) -> &'a T {
        from[self.below(from.len())]
    }
}

/// Bytes that end, or seem to end, something.
const TRAPS: &[&str] = &[
    "</head>",
    "</body>",
    "</HEAD >",
    "</Body\n>",
    "</head",
    "</body/>",
    ">",
    "\"",
    "'",
    "`",
    "=",
    "<!--",
    "-->",
    "--!>",
    "<!-->",
    "</script>",
    "<script>",
    "</style>",
    "</title>",
    "<![CDATA[",
    "]]>",
    "<?",
    "?>",
    "<",
    "</",
    "&quot;",
    "&",
    "http-equiv",
    "Content-Security-Policy",
    "<img src=x onerror=window.__pwned=-~window.__pwned>",
    " ",
    "\n",
    "\t",
    "\r",
    "\x0c",
    "/",
    "\0",
    "<p>",
    "é",
];

const TEXT: &[&str] = &[
    "hello",
    " a > b ",
    "1 < 2",
    "<3",
    "&lt;/head&gt;",
    "x",
    "\n",
    "é",
    "< /head>",
];

/// Tag names: ordinary, raw text, near misses, any case.
const NAMES: &[&str] = &[
    "html", "head", "body", "meta", "link", "a", "p", "div", "img", "svgx", "select", "template",
    "headers", "head-x", "bodyx", "scripts", "HEAD", "Body", "META", "x", "script", "ScRiPt",
    "style", "STYLE", "title", "TiTlE", "textarea", "noscript", "xmp", "iframe", "noembed",
    "noframes",
];

const RAW: &[&str] = &[
    "style", "title", "textarea", "noscript", "xmp", "iframe", "noembed", "noframes", "STYLE",
    "Title", "xMp",
];

const ATTRS: &[&str] = &[
    "href",
    "src",
    "content",
    "http-equiv",
    "name",
    "title",
    "data-x",
    "onerror",
    "\"",
    "'",
    "=x",
    "a<b",
    "HTTP-EQUIV",
    "charset",
    "x\"y",
];

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// One page: a random run of pieces, each of which tries to mislead a scanner.
pub fn page(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if r.chance(50) {
        push(
            &mut out,
            r.pick(&[
                "<!doctype html>",
                "<!DOCTYPE html PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"x>y\">",
                "<?xml version=\"1.0\"?>\n",
            ]),
        );
    }
    if r.chance(60) {
        push(&mut out, "<html><head>");
    }
    for _ in 0..1 + r.below(40) {
        piece(r, &mut out);
    }
    if r.chance(60) {
        push(
            &mut out,
            r.pick(&[
                "</head><body><p>x</p></body></html>",
                "</HEAD>\n<BODY></BODY>",
                "<body></body>",
                "</body>",
                "",
            ]),
        );
    }
    out
}

/// One random piece of a document, appended to `out`. Long, but one flat `match` of cases:
/// split up, the cases would only be harder to compare.
fn piece(r: &mut Rng, out: &mut Vec<u8>) {
    match r.below(100) {
        0..=11 => text(r, out),
        12..=31 => {
            let name = r.pick(NAMES);
            push(out, "<");
            push(out, name);
            attrs(r, out);
            if r.chance(90) {
                push(out, r.pick(&[">", "/>", " >", "\n/>"]));
            }
        }
        32..=37 => {
            push(out, "</");
            push(out, r.pick(NAMES));
            if r.chance(30) {
                attrs(r, out);
            }
            push(out, ">");
        }
        38..=47 => gen_comment(r, out),
        48..=53 => {
            let traps = traps(r, 3);
            match r.below(10) {
                0 => push(out, "<!DOCTYPE html>"),
                1 => push(out, &format!("<!doctype html PUBLIC \"{traps}\">")),
                2 => push(out, &format!("<![CDATA[{traps}]]>")),
                3 => push(out, &format!("<?xml {traps}?>")),
                4 => push(out, &format!("<!{traps}>")),
                5 => push(out, &format!("</ {traps}>")),
                6 => push(out, &format!("</3{traps}>")),
                7 => push(out, "</>"),
                8 => push(out, "<!>"),
                _ => push(out, r.pick(&["<!->", "<?>", "<!-", "<!", "<?"])),
            }
        }
        54..=63 => {
            let name = r.pick(RAW);
            push(out, "<");
            push(out, name);
            attrs(r, out);
            push(out, ">");
            for _ in 0..r.below(5) {
                match r.below(4) {
                    0 => push(out, &format!("</{name}x>")),
                    1 => push(out, &format!("</{name}")),
                    _ => push(out, r.pick(TRAPS)),
                }
            }
            if r.chance(85) {
                let name = if r.chance(50) {
                    name.to_ascii_uppercase()
                } else {
                    name.to_string()
                };
                let close = r.pick(&[">", " x=\"</head>\">", "/>", "\n>", " '>'>", "\t"]);
                push(out, &format!("</{name}{close}"));
            }
        }
        64..=71 => {
            push(
                out,
                r.pick(&["<script>", "<SCRIPT type=module>", "<script\n>"]),
            );
            for _ in 0..r.below(9) {
                push(
                    out,
                    r.pick(&[
                        "<!--",
                        "-->",
                        "<script>",
                        "<SCRIPT ",
                        "</script>",
                        "</script",
                        "<script",
                        "--",
                        "-",
                        "<",
                        ">",
                        "\"</head>\"",
                        "'</body>'",
                        "</scriptx>",
                        "<!-",
                        "<!--<script>",
                        "var a = 1;",
                        "</head>",
                        "\n",
                        "</ScRiPt/",
                    ]),
                );
            }
            if r.chance(90) {
                push(
                    out,
                    r.pick(&["</script>", "</SCRIPT >", "</script x=\">\">"]),
                );
            }
        }
        72 => {
            // Rarely: pages that must stay untouched, and near misses.
            let pad = " x".repeat(MAX_TAG / 2 + 10);
            push(
                out,
                r.pick(&[
                    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'\">",
                    "<META CONTENT=\"a>b\" HTTP-EQUIV='content-security-policy'>",
                    "<script src=\"/_tollgate/t.js\" defer></script>",
                    "<script data-x='>' src=/_tollgate/t.js></script>",
                ]),
            );
            if r.chance(50) {
                push(
                    out,
                    &format!("<meta{pad} http-equiv=Content-Security-Policy content=x>"),
                );
                push(
                    out,
                    &format!("<script{pad} src=\"/_tollgate/t.js\"></script>"),
                );
            }
        }
        73..=76 => push(
            out,
            r.pick(&[
                "<meta name=http-equiv content=x>",
                "<meta content=content-security-policy>",
                "<a href=\"/_tollgate/t.js\">",
                "<script src=\"/other.js\"></script>",
                "<!-- <meta http-equiv=Content-Security-Policy> -->",
                "<PlainText title='</head>'>",
                "<svg><![CDATA[ a > <x y=\"]]><z w=\">",
                "<MATH><mi>",
            ]),
        ),
        77..=84 => {
            for _ in 0..1 + r.below(24) {
                let c = if r.chance(50) {
                    b"<>\"'-!/=?& \n\tabhdyeo"[r.below(20)]
                } else {
                    r.next() as u8
                };
                out.push(c);
            }
        }
        85..=88 => {
            // A long attribute value, with what may end it.
            let len = match r.below(20) {
                0 => 20_000 + r.below(100_000),
                1..=9 => 2_000 + r.below(18_000),
                _ => 100 + r.below(1_900),
            };
            let quote = r.pick(&["\"", "'", ""]);
            push(out, &format!("<a href={quote}"));
            let stop = out.len() + len;
            while out.len() < stop {
                let t = r.pick(TRAPS);
                if quote.is_empty() || t != quote || r.chance(2) {
                    push(out, t);
                }
                if r.chance(50) {
                    push(out, r.pick(TEXT));
                }
            }
            push(out, quote);
            push(out, ">");
        }
        _ => push(
            out,
            r.pick(&[
                "</head>",
                "</HEAD>",
                "</head\n>",
                "</head/>",
                "</head x=\"</body>\">",
                "</body>",
                "</BODY >",
                "</body\t>",
                "</heads>",
                "</bod>",
                "</head",
                "</ head>",
                "< /head>",
                "<head>",
                "<body>",
            ]),
        ),
    }
}

fn text(r: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..1 + r.below(4) {
        push(out, r.pick(TEXT));
    }
}

/// Up to `n` traps and bits of text.
fn traps(r: &mut Rng, n: usize) -> String {
    (0..r.below(n + 1))
        .map(|_| {
            if r.chance(60) {
                r.pick(TRAPS)
            } else {
                r.pick(TEXT)
            }
        })
        .collect()
}

fn attrs(r: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..r.below(5) {
        push(
            out,
            r.pick(&[" ", " ", "\n", "\t", "/", "  ", "\r\n", "\x0c", ""]),
        );
        push(out, r.pick(ATTRS));
        match r.below(10) {
            0 => {}
            1 => push(out, " = "),
            _ => push(out, "="),
        }
        let value = traps(r, 4);
        match r.below(10) {
            0..=3 => {
                // Double quotes; now and then unbalanced.
                let value = if r.chance(95) {
                    value.replace('"', "")
                } else {
                    value
                };
                let close = if r.chance(97) { "\"" } else { "" };
                push(out, &format!("\"{value}{close}"));
            }
            4..=6 => {
                let value = if r.chance(95) {
                    value.replace('\'', "")
                } else {
                    value
                };
                let close = if r.chance(97) { "'" } else { "" };
                push(out, &format!("'{value}{close}"));
            }
            7..=8 => push(out, &value),
            _ => {}
        }
    }
}

fn gen_comment(r: &mut Rng, out: &mut Vec<u8>) {
    push(out, "<!--");
    for _ in 0..r.below(7) {
        push(
            out,
            r.pick(&[
                "-", "--", "->", "-!>", "--!", "<!--", "</head>", ">", "!", " ", "x", "<!-",
                "--!-", "\"", "'",
            ]),
        );
    }
    let end = match r.below(20) {
        0 => "",
        1 => "-- >",
        2 => "- ->",
        3..=5 => "--!>",
        6 => "--->",
        _ => "-->",
    };
    push(out, end);
}

/// Chunk lengths for a page of `len` bytes: whole, byte by byte, or cut at random.
pub fn chunks(r: &mut Rng, len: usize) -> Vec<usize> {
    let max = match r.below(10) {
        0 => return vec![len],
        1 if len <= 8192 => 1,
        1..=4 => 1 + r.below(8),
        5..=7 => 1 + r.below(512),
        _ => 1 + r.below(8192),
    };
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = if r.chance(3) {
            0
        } else {
            (1 + r.below(max)).min(left)
        };
        out.push(n);
        left -= n;
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}
