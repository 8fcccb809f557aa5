//! NDJSON framing with the size cap enforced before parsing.
//!
//! A frame is the bytes up to (not including) a `\n`. The decoder never holds more than
//! `max + 1` bytes of one frame: as soon as a line grows past the cap it reports
//! [`FrameError::TooLong`] and discards the rest of that line as it arrives, so a peer cannot make
//! the runtime buffer an unbounded line. A trailing `\r` is tolerated (some writers use CRLF).

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The line is longer than the cap (its remaining bytes are discarded).
    #[error("frame longer than {max} bytes")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// The line is not UTF-8.
    #[error("frame is not UTF-8")]
    NotUtf8,
}

/// One decoded item.
pub type Frame = Result<String, FrameError>;

/// Incremental line splitter with a per-frame cap.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    /// True while discarding the tail of an over-long line.
    discarding: bool,
}

impl FrameDecoder {
    /// A decoder accepting frames of at most `max` bytes (without the newline).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buf: Vec::new(),
            discarding: false,
        }
    }

    /// Bytes of an incomplete frame currently held (0 when between frames).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// True when a frame has started but its newline has not arrived (or an over-long line is
    /// being discarded).
    pub fn in_frame(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }

    /// Feed bytes; complete frames (and errors) are appended to `out` in order. Empty lines are
    /// skipped.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if self.buf.len() + chunk.len() > self.max + usize::from(!complete) {
                // `+1` while incomplete leaves room for a `\r` before the newline; the frame is
                // reported as soon as it cannot fit, not when its newline finally arrives.
                // (The `\r` may have come in an earlier read, the newline alone in this one.)
                let last = chunk.last().or(self.buf.last());
                let with_cr = complete && last == Some(&b'\r');
                if !(with_cr && self.buf.len() + chunk.len() - 1 <= self.max) {
                    self.buf.clear();
                    self.discarding = !complete;
                    out.push(Err(FrameError::TooLong { max: self.max }));
                    continue;
                }
            }
            self.buf.extend_from_slice(chunk);
            if complete {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(String::from_utf8(line).map_err(|_| FrameError::NotUtf8));
            }
        }
    }

    /// The input ended: a last frame without its newline (`printf '{…}' | …`, an agent that
    /// shuts down its writing side right after its last request) is complete too; the tail of
    /// an over-long line is forgotten.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if std::mem::take(&mut self.discarding) {
            return;
        }
        if !self.buf.is_empty() {
            self.feed(b"\n", out);
        }
    }
}

/// Encode one message as a frame (compact JSON + `\n`).
pub fn encode(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, parts: &[&[u8]]) -> Vec<Frame> {
        let mut d = FrameDecoder::new(max);
        let mut out = Vec::new();
        for p in parts {
            d.feed(p, &mut out);
        }
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let f = run(100, &[b"{\"a\"", b":1}\n{\"b\":2}\n\n{\"c\"", b":3}\r\n"]);
        assert_eq!(
            f,
            vec![
                Ok("{\"a\":1}".into()),
                Ok("{\"b\":2}".into()),
                Ok("{\"c\":3}".into())
            ]
        );
    }

    #[test]
    fn too_long_is_reported_before_the_newline_and_the_tail_discarded() {
        let mut d = FrameDecoder::new(8);
        let mut out = Vec::new();
        d.feed(b"0123456789", &mut out);
        assert_eq!(out, vec![Err(FrameError::TooLong { max: 8 })]);
        assert!(d.pending() == 0 && d.in_frame());
        d.feed(b"more and more", &mut out);
        assert_eq!(out.len(), 1, "the tail is discarded, not buffered");
        d.feed(b"end\nok\n", &mut out);
        assert_eq!(out[1], Ok("ok".into()));
        assert!(!d.in_frame());
    }

    #[test]
    fn the_end_of_input_completes_a_last_frame_without_its_newline() {
        let mut d = FrameDecoder::new(8);
        let mut out = Vec::new();
        d.feed(b"a\nbc", &mut out);
        d.finish(&mut out);
        assert_eq!(out, vec![Ok("a".into()), Ok("bc".into())]);
        assert!(!d.in_frame());
        // An over-long tail stays forgotten; nothing is made of it.
        let mut d = FrameDecoder::new(2);
        let mut out = Vec::new();
        d.feed(b"toolong", &mut out);
        d.finish(&mut out);
        assert_eq!(out, vec![Err(FrameError::TooLong { max: 2 })]);
        assert!(!d.in_frame());
        d.finish(&mut out);
        assert_eq!(out.len(), 1, "nothing more at a second end");
    }

    #[test]
    fn exactly_max_is_accepted() {
        assert_eq!(run(3, &[b"abc\n"]), vec![Ok("abc".into())]);
        assert_eq!(run(3, &[b"abc\r\n"]), vec![Ok("abc".into())]);
        assert_eq!(run(3, &[b"ab", b"c", b"\n"]), vec![Ok("abc".into())]);
        assert_eq!(run(3, &[b"abc\r", b"\n"]), vec![Ok("abc".into())]);
        assert_eq!(run(3, &[b"ab", b"c\r", b"\n"]), vec![Ok("abc".into())]);
        assert_eq!(
            run(3, &[b"abcd", b"\n"]),
            vec![Err(FrameError::TooLong { max: 3 })]
        );
        assert_eq!(
            run(3, &[b"abcd\n"]),
            vec![Err(FrameError::TooLong { max: 3 })]
        );
    }

    #[test]
    fn not_utf8_is_an_error() {
        assert_eq!(run(10, &[b"\xff\xfe\n"]), vec![Err(FrameError::NotUtf8)]);
    }

    proptest::proptest! {
        #[test]
        fn never_buffers_more_than_the_cap(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), cut in 1usize..50) {
            let mut d = FrameDecoder::new(64);
            let mut out = Vec::new();
            for c in data.chunks(cut) {
                d.feed(c, &mut out);
                proptest::prop_assert!(d.pending() <= 65);
            }
            for f in out.iter().flatten() {
                proptest::prop_assert!(f.len() <= 64 && !f.contains('\n'));
            }
        }
    }
}
