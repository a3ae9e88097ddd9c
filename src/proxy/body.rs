//! The body of every response the proxy sends: tollgate's own (a few bytes it wrote), or the
//! upstream's, streamed as it arrives, optionally through the page rewrite (decode gzip/br,
//! insert the tracker, encode gzip).
//!
//! The body also carries the request's capture ([`Capture`]): it runs once, when the last byte has
//! been handed to the connection, or when the body is dropped first (the client went away), so
//! that the event has the response's real size and duration.

use super::inject::codec::{Decoder, GzipEncoder};
use super::inject::{Injector, Outcome};
use super::pool::{Pooled, ReqBody};
use super::turns::Turns;
use super::Capture;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

/// The error a response body can end with: the upstream's, mid-stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Body {
    inner: Inner,
    sent: u64,
    /// Held inline, not boxed: one allocation less per request.
    done: Option<Capture>,
    /// The connection's turns: told when this response has been sent, so that the wait for the
    /// next request's header starts.
    turns: Option<Rc<Turns>>,
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(Pooled<ReqBody>),
    Rewrite(Box<Rewrite>),
}

/// A page on its way through the tracker's insertion.
pub struct Rewrite {
    upstream: Pooled<ReqBody>,
    decoder: Option<Decoder>,
    injector: Option<Injector>,
    encoder: Option<GzipEncoder>,
    ended: bool,
    /// Told once how the insertion ended.
    on_outcome: Option<Box<dyn FnOnce(Outcome)>>,
}

impl Rewrite {
    pub fn new(
        upstream: Pooled<ReqBody>,
        decoder: Option<Decoder>,
        injector: Injector,
        encoder: Option<GzipEncoder>,
        on_outcome: Box<dyn FnOnce(Outcome)>,
    ) -> Rewrite {
        Rewrite {
            upstream,
            decoder,
            injector: Some(injector),
            encoder,
            ended: false,
            on_outcome: Some(on_outcome),
        }
    }

    /// Decoded, injected and encoded: what goes out for `input` (empty: nothing yet).
    fn step(&mut self, input: Option<Bytes>, end: bool) -> Result<Bytes, BoxError> {
        let mut chunk = match (&mut self.decoder, input) {
            (Some(d), Some(b)) => Some(d.push(&b)?),
            (_, b) => b,
        };
        if end {
            if let Some(d) = &mut self.decoder {
                d.finish()?;
            }
        }
        if chunk.as_ref().is_some_and(Bytes::is_empty) && !end {
            return Ok(Bytes::new());
        }
        if let Some(inj) = &mut self.injector {
            let before = inj.outcome();
            inj.filter(&mut chunk, end);
            if let (None, Some(outcome)) = (before, inj.outcome()) {
                if let Some(f) = self.on_outcome.take() {
                    f(outcome);
                }
            }
        }
        let plain = chunk.unwrap_or_default();
        Ok(match &mut self.encoder {
            Some(e) => {
                let mut out = if plain.is_empty() {
                    Bytes::new()
                } else {
                    e.push(&plain)?
                };
                if end {
                    if let Some(e) = self.encoder.take() {
                        let tail = e.finish()?;
                        out = if out.is_empty() {
                            tail
                        } else {
                            [out, tail].concat().into()
                        };
                    }
                }
                out
            }
            None => plain,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            let (input, end) = match ready!(hyper::body::Body::poll_frame(
                Pin::new(&mut self.upstream),
                cx
            )) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => (Some(data), false),
                    // Trailers of a rewritten page are dropped: they described other bytes.
                    Err(_) => continue,
                },
                Some(Err(e)) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => (None, true),
            };
            self.ended = end;
            match self.step(input, end) {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(out))),
                Err(e) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl Body {
    /// A body tollgate wrote itself.
    pub fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::new(Inner::Full((!b.is_empty()).then_some(b)))
    }

    pub fn empty() -> Body {
        Body::new(Inner::Full(None))
    }

    /// The upstream's body, byte for byte.
    pub fn upstream(b: Pooled<ReqBody>) -> Body {
        Body::new(Inner::Upstream(b))
    }

    /// The upstream's page with the tracker.
    pub fn rewrite(r: Rewrite) -> Body {
        Body::new(Inner::Rewrite(Box::new(r)))
    }

    /// The upstream's body, gzipped.
    pub fn gzip(upstream: Pooled<ReqBody>, encoder: GzipEncoder) -> Body {
        Body::new(Inner::Rewrite(Box::new(Rewrite {
            upstream,
            decoder: None,
            injector: None,
            encoder: Some(encoder),
            ended: false,
            on_outcome: None,
        })))
    }

    fn new(inner: Inner) -> Body {
        Body {
            inner,
            sent: 0,
            done: None,
            turns: None,
        }
    }

    /// Run the request's capture once this body has been sent or dropped.
    pub fn on_done(mut self, done: Capture) -> Body {
        self.done = Some(done);
        if self.ended() {
            // Nothing left to send: hyper may never poll an empty body.
            self.finish();
        }
        self
    }

    /// Tell the connection's `turns` once this body has been sent or dropped.
    pub fn on_sent(mut self, turns: Rc<Turns>) -> Body {
        if self.ended() {
            turns.sent();
        } else {
            self.turns = Some(turns);
        }
        self
    }

    fn ended(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => hyper::body::Body::is_end_stream(b),
            Inner::Rewrite(r) => r.ended,
        }
    }

    fn finish(&mut self) {
        if let Some(c) = self.done.take() {
            c.done(self.sent);
        }
        if let Some(t) = self.turns.take() {
            t.sent();
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(b) => hyper::body::Body::poll_frame(Pin::new(b), cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Inner::Rewrite(r) => r.poll(cx).map(|o| o.map(|r| r.map(Frame::data))),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.ended() {
                    this.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(b) => hyper::body::Body::size_hint(b),
            Inner::Rewrite(_) => SizeHint::default(),
        }
    }
}
