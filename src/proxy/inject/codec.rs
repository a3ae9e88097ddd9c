//! Content codings for injected pages, without Pingora.
//!
//! A page that gets the tracker must be edited as text, so an upstream's gzip or brotli body is
//! decoded first ([`coding_of`], [`Decoder`]), and the edited page is encoded again for the
//! client as gzip only ([`accepts_gzip`], [`GzipEncoder`]), or sent in identity. Everything
//! streams: each chunk from the upstream is decoded and, once edited, re-encoded and flushed at
//! once, so a page the upstream streams (a slow server-rendered page, say) is not held back.
//!
//! Decoding is bounded: a [`Decoder`] refuses to produce more than its `max_output` bytes in
//! all, so a small compressed body cannot make tollgate build a huge page (a decompression
//! bomb). Bytes after the end of the compressed stream are ignored, as browsers do.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::header::{HeaderMap, ACCEPT_ENCODING, CONTENT_ENCODING};
use std::io;

/// A `Content-Encoding` tollgate can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `br`.
    Br,
}

/// A `Content-Encoding` that is neither identity, gzip nor br, or several codings applied in
/// turn: such a body passes untouched.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported content coding")]
pub struct Unsupported;

/// The coding of a response body, from its `Content-Encoding`: `Ok(None)` when there is none
/// (or only `identity`), `Ok(Some(_))` for gzip, x-gzip or br. Names are case-insensitive,
/// and several header lines or comma lists count as one list.
pub fn coding_of(headers: &HeaderMap) -> Result<Option<Coding>, Unsupported> {
    let mut coding = None;
    for value in headers.get_all(CONTENT_ENCODING) {
        let value = value.to_str().map_err(|_| Unsupported)?;
        for name in value.split(',').map(str::trim) {
            if name.is_empty() || name.eq_ignore_ascii_case("identity") {
                continue;
            }
            let this = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                Coding::Gzip
            } else if name.eq_ignore_ascii_case("br") {
                Coding::Br
            } else {
                return Err(Unsupported);
            };
            if coding.replace(this).is_some() {
                return Err(Unsupported);
            }
        }
    }
    Ok(coding)
}

/// Whether the client's `Accept-Encoding` takes gzip: `gzip` or `x-gzip` listed without `q=0`,
/// or else `*` without `q=0` (RFC 9110 §12.5.3: `*` stands for the codings not listed).
/// Case-insensitive; several header lines and comma lists.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut star = None;
    let entries = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for entry in entries {
        let mut parts = entry.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.split_once('=').is_some_and(|(name, q)| {
                name.trim().eq_ignore_ascii_case("q")
                    && q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
            })
        });
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut star
        } else {
            continue;
        };
        *slot = Some(slot.unwrap_or(false) || !refused);
    }
    gzip.or(star).unwrap_or(false)
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the compressed body is corrupt")]
    Corrupt,
    #[error("the compressed body ends before its end of stream")]
    Truncated,
    #[error("the decoded body exceeds {0} bytes")]
    TooLarge(usize),
}

impl From<DecodeError> for io::Error {
    fn from(e: DecodeError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// How much is decoded per step: the most a [`Decoder`] can overshoot `max_output` by before it
/// notices, and the size of its scratch buffer.
const STEP: usize = 32 * 1024;

/// A streaming gzip or brotli decoder that produces at most `max_output` bytes in all.
///
/// Memory: the scratch buffer ([`STEP`]) and the coding's own window (32 KiB for gzip; up to
/// 16 MiB for brotli, the format's largest window: large-window brotli, a non-standard
/// extension browsers do not accept either, is refused), plus what one [`push`](Self::push)
/// returns. After an error, the decoder must not be used again.
pub struct Decoder {
    state: State,
    /// Decoded output not yet returned.
    out: BytesMut,
    scratch: Box<[u8]>,
    produced: usize,
    max_output: usize,
    ended: bool,
}

enum State {
    Gzip(Decompress),
    Br(Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>),
}

impl Decoder {
    /// A decoder that fails with [`DecodeError::TooLarge`] once the decoded body would exceed
    /// `max_output` bytes.
    pub fn new(coding: Coding, max_output: usize) -> Self {
        let state = match coding {
            // 15: the largest window; zlib reads the gzip header and checks the CRC and length
            Coding::Gzip => State::Gzip(Decompress::new_gzip(15)),
            Coding::Br => State::Br(Box::new(BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ))),
        };
        Decoder {
            state,
            out: BytesMut::new(),
            scratch: vec![0; STEP].into_boxed_slice(),
            produced: 0,
            max_output,
            ended: false,
        }
    }

    /// Decodes the next chunk of the body: returns what it decodes to so far (possibly nothing,
    /// as a decoder may need more input first).
    pub fn push(&mut self, input: &[u8]) -> Result<Bytes, DecodeError> {
        if !self.ended {
            match &mut self.state {
                State::Gzip(z) => {
                    let mut rest = input;
                    loop {
                        let (before_in, before_out) = (z.total_in(), z.total_out());
                        let status = z
                            .decompress(rest, &mut self.scratch, FlushDecompress::None)
                            .map_err(|_| DecodeError::Corrupt)?;
                        rest = &rest[(z.total_in() - before_in) as usize..];
                        let made = (z.total_out() - before_out) as usize;
                        emit(
                            &mut self.out,
                            &self.scratch[..made],
                            &mut self.produced,
                            self.max_output,
                        )?;
                        if status == Status::StreamEnd {
                            self.ended = true;
                            break;
                        }
                        // room left in the scratch buffer: zlib took all the input it could
                        if made < self.scratch.len() {
                            break;
                        }
                    }
                }
                State::Br(state) => {
                    let (mut available_in, mut input_offset, mut total_out) = (input.len(), 0, 0);
                    loop {
                        let (mut available_out, mut output_offset) = (self.scratch.len(), 0);
                        let result = BrotliDecompressStream(
                            &mut available_in,
                            &mut input_offset,
                            input,
                            &mut available_out,
                            &mut output_offset,
                            &mut self.scratch,
                            &mut total_out,
                            &mut **state,
                        );
                        emit(
                            &mut self.out,
                            &self.scratch[..output_offset],
                            &mut self.produced,
                            self.max_output,
                        )?;
                        match result {
                            BrotliResult::NeedsMoreOutput => {}
                            BrotliResult::NeedsMoreInput => break,
                            BrotliResult::ResultSuccess => {
                                self.ended = true;
                                break;
                            }
                            BrotliResult::ResultFailure => return Err(DecodeError::Corrupt),
                        }
                    }
                }
            }
        }
        Ok(self.out.split().freeze())
    }

    /// Checks, once the upstream's body is over, that the compressed stream was complete. All
    /// the decoded output has already come from [`push`](Self::push).
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if self.ended {
            Ok(())
        } else {
            Err(DecodeError::Truncated)
        }
    }
}

fn emit(
    out: &mut BytesMut,
    decoded: &[u8],
    produced: &mut usize,
    max: usize,
) -> Result<(), DecodeError> {
    *produced = produced.saturating_add(decoded.len());
    if *produced > max {
        return Err(DecodeError::TooLarge(max));
    }
    out.extend_from_slice(decoded);
    Ok(())
}

/// A streaming gzip encoder whose every [`push`](Self::push) is sync-flushed: the client can
/// decode all the input so far from the output so far, so a streamed page is not held back.
pub struct GzipEncoder {
    z: Compress,
    /// Reused between calls; its contents are copied out.
    out: Vec<u8>,
}

impl GzipEncoder {
    /// An encoder at `level`, 1 (fastest) to 9 (smallest); other values are clamped.
    pub fn new(level: u32) -> Self {
        GzipEncoder {
            z: Compress::new_gzip(Compression::new(level.clamp(1, 9)), 15),
            out: Vec::new(),
        }
    }

    /// Compresses `input` and flushes: the returned bytes end on a byte boundary with all of
    /// `input` decodable. An empty `input` gives empty output.
    pub fn push(&mut self, input: &[u8]) -> io::Result<Bytes> {
        if input.is_empty() {
            return Ok(Bytes::new());
        }
        let mut rest = input;
        loop {
            // zlib wants more than 6 bytes of room for a sync flush's marker
            self.out.reserve(rest.len() / 2 + 64);
            let before = self.z.total_in();
            self.z
                .compress_vec(rest, &mut self.out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            rest = &rest[(self.z.total_in() - before) as usize..];
            // room left: the flush is complete
            if rest.is_empty() && self.out.len() < self.out.capacity() {
                break;
            }
        }
        let chunk = Bytes::copy_from_slice(&self.out);
        self.out.clear();
        Ok(chunk)
    }

    /// Ends the stream: the last block and the gzip trailer (CRC and length).
    pub fn finish(mut self) -> io::Result<Bytes> {
        loop {
            self.out.reserve(64);
            let status = self
                .z
                .compress_vec(&[], &mut self.out, FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == Status::StreamEnd {
                return Ok(Bytes::from(self.out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::io::{Read, Write};

    /// xorshift64: reproducible chunk sizes and filler without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// About 240 KB of HTML: compressible markup with some incompressible runs, so decoding
    /// takes many scratch buffers per push.
    fn page() -> Vec<u8> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut page = b"<!doctype html><html><head><title>Page</title></head><body>\n".to_vec();
        for i in 0..3000 {
            page.extend_from_slice(
                format!(
                    "<li><a href=\"/item/{i}\">Item {i}</a> <span>{}</span></li>\n",
                    i * 7
                )
                .as_bytes(),
            );
            if i % 100 == 0 {
                page.extend((0..2000).map(|_| rng.next() as u8));
            }
        }
        page.extend_from_slice(b"</body></html>\n");
        page
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        w.write_all(data).unwrap();
        w.into_inner()
    }

    /// Feeds `body` in chunks of the sizes `sizes` yields, then finishes.
    fn decode_in(
        coding: Coding,
        body: &[u8],
        max: usize,
        mut sizes: impl FnMut() -> usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::new(coding, max);
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = sizes().clamp(1, rest.len());
            out.extend_from_slice(&d.push(&rest[..n])?);
            rest = &rest[n..];
        }
        d.finish()?;
        Ok(out)
    }

    fn decode(coding: Coding, body: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
        let mut rng = Rng(42);
        decode_in(coding, body, max, || match rng.below(3) {
            0 => 1,
            1 => 1 + rng.below(64),
            _ => 1 + rng.below(100_000),
        })
    }

    fn encoded(coding: Coding, data: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Gzip => gzip(data),
            Coding::Br => brotli(data),
        }
    }

    #[test]
    fn round_trips_in_random_chunks() {
        let page = page();
        for coding in [Coding::Gzip, Coding::Br] {
            let body = encoded(coding, &page);
            assert_eq!(
                decode(coding, &body, usize::MAX).unwrap(),
                page,
                "{coding:?}"
            );
            assert_eq!(decode_in(coding, &body, usize::MAX, || 1).unwrap(), page);
            assert_eq!(
                decode_in(coding, &body, usize::MAX, || body.len()).unwrap(),
                page
            );
            let empty = encoded(coding, b"");
            assert_eq!(decode_in(coding, &empty, 0, || 1).unwrap(), b"");
        }
    }

    #[test]
    fn bytes_after_the_stream_are_ignored() {
        for coding in [Coding::Gzip, Coding::Br] {
            let mut body = encoded(coding, b"<p>hello</p>");
            body.extend_from_slice(b"\0\0\0\ntrailing junk");
            assert_eq!(decode(coding, &body, 100).unwrap(), b"<p>hello</p>");
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let page = page();
        for coding in [Coding::Gzip, Coding::Br] {
            let body = encoded(coding, &page);
            for cut in [0, 1, 5, body.len() / 2, body.len() - 1] {
                assert_eq!(
                    decode(coding, &body[..cut], usize::MAX),
                    Err(DecodeError::Truncated),
                    "{coding:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let page = page();
        let body = gzip(&page);
        // the header's magic, a byte of the deflate data, the CRC, the length
        for at in [0, body.len() / 3, body.len() - 6, body.len() - 2] {
            let mut bad = body.clone();
            bad[at] ^= 0x55;
            assert_eq!(
                decode(Coding::Gzip, &bad, usize::MAX),
                Err(DecodeError::Corrupt)
            );
        }
        // brotli has no checksum; these bytes break its structure
        let mut bad = brotli(&page);
        bad[1..9].copy_from_slice(&[0xff; 8]);
        assert_eq!(
            decode(Coding::Br, &bad, usize::MAX),
            Err(DecodeError::Corrupt)
        );
        assert_eq!(
            decode(Coding::Br, b"this is not brotli at all", usize::MAX),
            Err(DecodeError::Corrupt)
        );
        assert_eq!(
            decode(Coding::Gzip, page.as_slice(), usize::MAX),
            Err(DecodeError::Corrupt)
        );
    }

    #[test]
    fn the_output_limit_stops_a_bomb() {
        let zeros = vec![0u8; 64 << 20];
        for coding in [Coding::Gzip, Coding::Br] {
            let bomb = encoded(coding, &zeros);
            assert!(bomb.len() < 100_000, "{coding:?}: {}", bomb.len());
            let mut d = Decoder::new(coding, 1 << 20);
            let mut out = 0;
            let err = bomb
                .chunks(4096)
                .find_map(|c| match d.push(c) {
                    Ok(b) => {
                        out += b.len();
                        None
                    }
                    Err(e) => Some(e),
                })
                .unwrap();
            assert_eq!(err, DecodeError::TooLarge(1 << 20));
            assert!(out <= 1 << 20);

            // the limit is inclusive
            let small = encoded(coding, &zeros[..1000]);
            assert_eq!(decode(coding, &small, 1000).unwrap().len(), 1000);
            assert_eq!(decode(coding, &small, 999), Err(DecodeError::TooLarge(999)));
        }
    }

    #[test]
    fn each_push_is_flushed() {
        let page = page();
        let mut rng = Rng(7);
        let mut e = GzipEncoder::new(6);
        let mut client = flate2::write::GzDecoder::new(Vec::new());
        let mut sent = Vec::new();
        let mut rest = page.as_slice();
        let mut pos = 0;
        while !rest.is_empty() {
            let n = [1, 1 + rng.below(50), 1 + rng.below(30_000)][rng.below(3)].min(rest.len());
            let chunk = e.push(&rest[..n]).unwrap();
            assert!(!chunk.is_empty());
            client.write_all(&chunk).unwrap();
            client.flush().unwrap();
            sent.extend_from_slice(&chunk);
            pos += n;
            rest = &rest[n..];
            assert_eq!(client.get_ref().as_slice(), &page[..pos]);
        }
        assert!(e.push(b"").unwrap().is_empty());
        sent.extend_from_slice(&e.finish().unwrap());

        let mut whole = Vec::new();
        flate2::read::GzDecoder::new(sent.as_slice())
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, page);
        assert_eq!(decode(Coding::Gzip, &sent, page.len()).unwrap(), page);
    }

    #[test]
    fn an_empty_encoded_stream_is_valid_gzip() {
        let sent = GzipEncoder::new(1).finish().unwrap();
        assert_eq!(decode(Coding::Gzip, &sent, 0).unwrap(), b"");
    }

    fn headers(name: http::header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_encoding() {
        let of = |values: &[&str]| coding_of(&headers(CONTENT_ENCODING, values));
        assert_eq!(of(&[]), Ok(None));
        assert_eq!(of(&["identity"]), Ok(None));
        assert_eq!(of(&[""]), Ok(None));
        assert_eq!(of(&["gzip"]), Ok(Some(Coding::Gzip)));
        assert_eq!(of(&["X-Gzip"]), Ok(Some(Coding::Gzip)));
        assert_eq!(of(&[" BR "]), Ok(Some(Coding::Br)));
        assert_eq!(of(&["identity, br"]), Ok(Some(Coding::Br)));
        assert_eq!(of(&["zstd"]), Err(Unsupported));
        assert_eq!(of(&["deflate"]), Err(Unsupported));
        assert_eq!(of(&["gzip, br"]), Err(Unsupported));
        assert_eq!(of(&["gzip", "gzip"]), Err(Unsupported));
    }

    #[test]
    fn accept_encoding() {
        let takes = |values: &[&str]| accepts_gzip(&headers(ACCEPT_ENCODING, values));
        assert!(takes(&["gzip"]));
        assert!(takes(&["GZIP;q=0.5"]));
        assert!(!takes(&["gzip;q=0"]));
        assert!(!takes(&["gzip; Q=0.000"]));
        assert!(!takes(&["br"]));
        assert!(takes(&["*"]));
        assert!(!takes(&["*;q=0"]));
        assert!(!takes(&["identity"]));
        assert!(takes(&["gzip, deflate, br, zstd"]));
        assert!(!takes(&["br;q=1.0, gzip;q=0"]));
        assert!(!takes(&["gzip;q=0, *"]));
        assert!(takes(&["x-gzip"]));
        assert!(takes(&["br", "deflate, gzip;q=0.1"]));
        assert!(!takes(&[]));
    }
}
