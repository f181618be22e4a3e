//! Server-sent events (`text/event-stream`) as MPP's session streaming uses them: a stream is cut into whole
//! events ([`Events`]), each read for its name and data ([`Event`]). A paid stream carries the API's own events
//! and the payment's: `payment-need-voucher` (the payer must sign more for the stream to go on),
//! `payment-receipt` (what the stream was charged) and `payment-error`.

/// The event a paused stream sends when the payer must sign more.
pub const NEED_VOUCHER: &str = "payment-need-voucher";
/// The event that closes a paid stream with its receipt (JSON).
pub const RECEIPT: &str = "payment-receipt";
/// The event that says why a paid stream ended early (an RFC 9457 problem, JSON).
pub const ERROR: &str = "payment-error";

/// Whole events cut from a stream's bytes as they arrive, each with its blank line. A stream may be cut
/// anywhere; an event is handed out only once it is complete. What is pending is bounded by the caller's
/// chunks: an event longer than `max_event` is dropped whole.
#[derive(Debug)]
pub struct Events {
    pending: Vec<u8>,
    max_event: usize,
}

impl Events {
    pub fn new(max_event: usize) -> Events {
        Events { pending: Vec::new(), max_event }
    }

    /// The events `chunk` completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut complete = Vec::new();
        while let Some(end) = event_end(&self.pending) {
            let rest = self.pending.split_off(end);
            complete.push(std::mem::replace(&mut self.pending, rest));
        }
        if self.pending.len() > self.max_event {
            self.pending.clear();
        }
        complete
    }
}

/// Where the first event of `bytes` ends (after its blank line), if it is complete.
pub fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One event, read: its name (`message` when it names none) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Event {
    /// Reads one whole event; `None` when it carries no data (a comment, a keep-alive).
    pub fn read(event: &[u8]) -> Option<Event> {
        let text = std::str::from_utf8(event).ok()?;
        let mut name = None;
        let mut data: Vec<&str> = Vec::new();
        for line in text.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
        if data.is_empty() {
            return None;
        }
        Some(Event { name: name.unwrap_or("message").to_owned(), data: data.join("\n") })
    }

    /// The event as it goes on the wire.
    pub fn format(name: &str, data: &str) -> String {
        let mut out = format!("event: {name}\n");
        for line in data.lines() {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_cut_anywhere_gives_its_whole_events_in_order() {
        let mut events = Events::new(1024);
        assert!(events.push(b"data: a").is_empty());
        assert_eq!(events.push(b"\n\ndata: b\n\nda"), [b"data: a\n\n".to_vec(), b"data: b\n\n".to_vec()]);
        assert_eq!(events.push(b"ta: c\r\n\r\n"), [b"data: c\r\n\r\n".to_vec()]);
        let mut small = Events::new(4);
        assert!(small.push(b"data: too long").is_empty());
        assert_eq!(small.push(b"data: x\n\n"), [b"data: x\n\n".to_vec()], "an oversized partial event is dropped");
    }

    #[test]
    fn events_are_read_for_their_name_and_data() {
        let need = Event::format(NEED_VOUCHER, r#"{"requiredCumulative":"10"}"#);
        assert_eq!(need, "event: payment-need-voucher\ndata: {\"requiredCumulative\":\"10\"}\n\n");
        let read = Event::read(need.as_bytes()).unwrap();
        assert_eq!((read.name.as_str(), read.data.as_str()), (NEED_VOUCHER, r#"{"requiredCumulative":"10"}"#));
        assert_eq!(Event::read(b"data: a\ndata:b\n\n").unwrap(), Event { name: "message".into(), data: "a\nb".into() });
        assert_eq!(Event::read(b": keep-alive\n\n"), None);
        assert_eq!(Event::read(&[0xff, b'\n', b'\n']), None);
    }
}
