//! Server-sent events: bytes in, `data:` payloads out.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::{AttemptError, body};

/// Incremental SSE decoder: feed bytes, take complete events' data.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event's `data` (lines joined by `\n`), skipping events without
    /// data (comments, keep-alives). `None` until a blank line ends an event.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            let end = find_event_end(&self.buffer)?;
            let raw: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
            let text = String::from_utf8_lossy(&raw[..end.0]);
            let mut data: Option<String> = None;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(value) = line.strip_prefix("data:") {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    }
                }
            }
            if data.is_some() {
                return data;
            }
        }
    }

    /// Bytes of an unfinished event left when the body ended.
    pub fn has_partial(&self) -> bool {
        self.buffer.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// Position and length of the first blank-line separator.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\n' && buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
            return Some((i, 3));
        }
        i += 1;
    }
    None
}

/// The `data` payloads of an SSE body, with the idle timeout between chunks. Ends when the
/// body ends; a body that ends inside an event is an error (a truncated stream).
pub fn data_stream<S>(
    bytes: S,
    idle: Duration,
    who: String,
) -> impl Stream<Item = Result<String, AttemptError>> + Send
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin + Send + 'static,
{
    futures_util::stream::unfold(
        (bytes, Decoder::default(), false),
        move |(mut bytes, mut decoder, done)| {
            let who = who.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(data) = decoder.next_data() {
                        return Some((Ok(data), (bytes, decoder, false)));
                    }
                    match body::next_chunk(&mut bytes, idle, &who).await {
                        Ok(Some(chunk)) => decoder.push(&chunk),
                        Ok(None) if decoder.has_partial() => {
                            let e = body::malformed(&who, "the stream ended inside an event");
                            return Some((Err(e), (bytes, decoder, true)));
                        }
                        Ok(None) => return None,
                        Err(e) => return Some((Err(e), (bytes, decoder, true))),
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_pushes_and_line_endings() {
        let mut d = Decoder::default();
        d.push(b"data: {\"a\":1}\n");
        assert_eq!(d.next_data(), None);
        d.push(b"\n: keep-alive\n\nevent: x\r\ndata: b\r\ndata: c\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(d.next_data().as_deref(), Some("{\"a\":1}"));
        assert_eq!(d.next_data().as_deref(), Some("b\nc"));
        assert_eq!(d.next_data().as_deref(), Some("[DONE]"));
        assert_eq!(d.next_data(), None);
        assert!(!d.has_partial());
        d.push(b"data: half");
        assert!(d.has_partial());
    }

    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<String> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(at, bytes.len());
            d.push(&bytes[at..cut]);
            at = cut;
            while let Some(data) = d.next_data() {
                out.push(data);
            }
        }
        out
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: the decoder never panics, and how the bytes were cut
        /// never changes what it decodes.
        #[test]
        fn any_bytes_cut_anywhere_decode_the_same(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            cuts in proptest::collection::vec(0usize..512, 0..16),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            proptest::prop_assert_eq!(decode_in_pieces(&bytes, &cuts), decode_in_pieces(&bytes, &[]));
        }
    }
}
