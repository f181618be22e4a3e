//! hyper answers an HTTP/1.1 request head it cannot parse (bad bytes, conflicting framing headers, a head over
//! the size limit, a URI too long) by itself, before any service sees the request: an empty `400`, `431` or
//! `414` and a closed connection. Every other refusal of paygate is an RFC 9457 problem with a request id, so
//! this wrapper around a connection's IO recognizes those automatic answers as they are written and writes a
//! problem in their place.
//!
//! Recognizing them is exact because the server gives every response a service produces an `x-request-id`
//! header (`server.rs`): an HTTP/1.1 head with status 400, 414 or 431 that starts a write and carries no
//! `x-request-id` can only be hyper's own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::rt::{Read, ReadBufCursor, Write};
use paygate_core::reject::{RejectKind, Rejection};

use crate::request_id::{REQUEST_ID, RequestIds};

/// A connection's IO whose automatic head refusals become problem bodies.
#[derive(Debug)]
pub(crate) struct HeadRefusals<IO> {
    inner: IO,
    ids: &'static RequestIds,
    /// The problem being written in place of hyper's answer, and how much of it is written.
    replacing: Option<Replacement>,
}

#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's own answer, reported as written once the replacement is.
    replaced: usize,
}

impl<IO> HeadRefusals<IO> {
    pub(crate) fn new(inner: IO, ids: &'static RequestIds) -> Self {
        HeadRefusals { inner, ids, replacing: None }
    }
}

/// The rejection that stands for hyper's automatic answer `head`, when `buf` starts with one.
fn automatic_refusal(buf: &[u8]) -> Option<(Rejection, usize)> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_len]).ok()?;
    let marker = format!("\r\n{REQUEST_ID}:");
    if head.to_ascii_lowercase().contains(&marker) {
        return None;
    }
    let rejection = match rest.get(..4)? {
        b"400 " => Rejection::new(
            RejectKind::MalformedRequest,
            "malformed_request",
            "the request is not valid HTTP/1.1 (its request line, a header or its framing headers)",
        ),
        b"414 " => Rejection::new(RejectKind::UriTooLong, "uri_too_long", "the request target is too long"),
        b"431 " => Rejection::new(
            RejectKind::HeaderTooLarge,
            "headers_too_large",
            "the request head (request line and headers) is over the server's limit (server.max_header_bytes)",
        ),
        _ => return None,
    };
    Some((rejection, head_len))
}

/// The bytes of a problem response that closes the connection.
fn problem_bytes(rejection: &Rejection, request_id: &str) -> Vec<u8> {
    let body = rejection.to_problem().with_extension("requestId", request_id).to_json();
    let status = rejection.kind.status();
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {}\r\ncache-control: no-store\r\n{REQUEST_ID}: {request_id}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        paygate_proto::problem::CONTENT_TYPE,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

impl<IO: Write + Unpin> HeadRefusals<IO> {
    /// Starts replacing `buf` when it begins with an automatic refusal; `None` when it does not.
    fn start_replacing(&mut self, buf: &[u8]) -> Option<()> {
        let (rejection, _) = automatic_refusal(buf)?;
        let request_id = self.ids.next();
        tracing::info!(request_id = %request_id, status = rejection.kind.status(), reason = rejection.reason, "refused a request head");
        self.replacing =
            Some(Replacement { bytes: problem_bytes(&rejection, &request_id), written: 0, replaced: buf.len() });
        Some(())
    }

    /// Writes what is left of the replacement; the length of hyper's answer once all is written.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(replacement) = self.replacing.as_mut() else { return Poll::Ready(Ok(0)) };
        while replacement.written < replacement.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &replacement.bytes[replacement.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.written += n;
        }
        let replaced = replacement.replaced;
        self.replacing = None;
        Poll::Ready(Ok(replaced))
    }
}

impl<IO: Read + Unpin> Read for HeadRefusals<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: Write + Unpin> Write for HeadRefusals<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_some() || this.start_replacing(buf).is_some() {
            return this.poll_replacement(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper writes a head as one slice: look at the first one that is not empty.
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if this.replacing.is_some() || this.start_replacing(first).is_some() {
            return this.poll_replacement(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heads_without_a_request_id_are_hypers_own() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (rejection, len) = automatic_refusal(hyper).expect("hyper's answer");
        assert_eq!((rejection.kind.status(), len), (431, hyper.len()));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nX-Request-Id: req_1\r\n\r\n";
        assert!(automatic_refusal(ours).is_none());
        assert!(automatic_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(automatic_refusal(b"HTTP/1.1 400 Bad Request\r\ncontent-").is_none(), "an unfinished head");
        assert_eq!(automatic_refusal(b"HTTP/1.1 414 URI Too Long\r\n\r\n").unwrap().0.kind, RejectKind::UriTooLong);
    }

    #[test]
    fn the_problem_closes_the_connection_and_names_its_request() {
        let rejection = Rejection::new(RejectKind::MalformedRequest, "malformed_request", "bad");
        let text = String::from_utf8(problem_bytes(&rejection, "req_7")).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("connection: close") && head.contains("x-request-id: req_7"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((json["reason"].as_str(), json["requestId"].as_str()), (Some("malformed_request"), Some("req_7")));
    }
}
