//! RecordIO, the framing of Mesos' streams: each record is its length in bytes as ASCII
//! decimal digits, a line feed, then that many bytes (`20\n{"type":"HEARTBEAT"}`).

use bytes::{BufMut, Bytes, BytesMut};

/// The most digits a length header may have: enough for any `u64`.
pub const MAX_HEADER_DIGITS: usize = 20;

/// Frames one record: `<decimal length>\n<bytes>`.
///
/// Mesos never sends an empty record and [`Decoder`] refuses one, so callers frame only
/// non-empty records (a JSON body is never empty; an all-default protobuf message is).
pub fn frame(record: &[u8]) -> Bytes {
    let header = record.len().to_string();
    let mut out = BytesMut::with_capacity(header.len() + 1 + record.len());
    out.put_slice(header.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(record);
    out.freeze()
}

/// Why a stream is not valid RecordIO. The stream cannot be resynchronised after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// The length header runs past [`MAX_HEADER_DIGITS`] digits.
    #[error("record length header has more than {MAX_HEADER_DIGITS} digits")]
    HeaderTooLong,
    /// A line feed where the length header should start.
    #[error("record length header has no digits")]
    EmptyHeader,
    /// A byte in the length header that is neither a digit nor the line feed ending it.
    #[error("record length header has a byte that is not a decimal digit: {0:#04x}")]
    InvalidHeaderByte(u8),
    /// A record of length zero, which Mesos never sends.
    #[error("record length is zero")]
    ZeroLength,
    /// A length over the decoder's limit (or over `u64`).
    #[error("record of {length} bytes or more is larger than the limit of {max} bytes")]
    TooLarge {
        /// The length read so far when the limit was crossed.
        length: u64,
        /// The decoder's limit.
        max: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the length header: its value and digit count so far.
    Header { length: u64, digits: usize },
    /// Reading a record's bytes: how many are still to come (the rest are in `body`).
    Body { remaining: usize },
    /// The stream was invalid; every later push returns this error.
    Failed(RecordIoErrorKind),
}

/// [`RecordIoError`] without data too big for a `Copy` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordIoErrorKind {
    HeaderTooLong,
    EmptyHeader,
    InvalidHeaderByte(u8),
    ZeroLength,
    TooLarge(u64),
}

/// Incremental RecordIO decoder: feed it the chunks of a stream as they arrive (a record
/// may be split anywhere, several may share a chunk) and take whole records out.
///
/// Memory is bounded by `max_record`: a length over it is refused as soon as it is read, and
/// a record's buffer grows only as its bytes arrive, never to a length announced in advance.
#[derive(Debug)]
pub struct Decoder {
    max_record: usize,
    state: State,
    /// The bytes so far of a record split across chunks.
    body: BytesMut,
}

impl Decoder {
    /// A decoder that refuses records longer than `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Decoder {
            max_record,
            state: State::Header {
                length: 0,
                digits: 0,
            },
            body: BytesMut::new(),
        }
    }

    /// Feeds the next chunk of the stream; returns the records it completed, in order.
    ///
    /// After an error the stream is unusable: this and every later call return it (the
    /// records completed earlier in the failing chunk are dropped with the stream).
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<Bytes>, RecordIoError> {
        let mut records = Vec::new();
        loop {
            match self.state {
                State::Failed(kind) => return Err(self.error(kind)),
                _ if chunk.is_empty() => return Ok(records),
                State::Header { length, digits } => {
                    let Some((&byte, rest)) = chunk.split_first() else {
                        return Ok(records);
                    };
                    chunk = rest;
                    self.state = match self.header_byte(length, digits, byte) {
                        Err(kind) => State::Failed(kind),
                        Ok(None) => State::Header {
                            length: length * 10 + u64::from(byte - b'0'),
                            digits: digits + 1,
                        },
                        Ok(Some(length)) if self.body.is_empty() && chunk.len() >= length => {
                            // The whole record is in this chunk: one copy, no buffering.
                            let (record, rest) = chunk.split_at(length);
                            records.push(Bytes::copy_from_slice(record));
                            chunk = rest;
                            State::Header {
                                length: 0,
                                digits: 0,
                            }
                        }
                        Ok(Some(length)) => State::Body { remaining: length },
                    };
                }
                State::Body { remaining } => {
                    let (part, rest) = chunk.split_at(remaining.min(chunk.len()));
                    chunk = rest;
                    self.body.extend_from_slice(part);
                    let remaining = remaining - part.len();
                    self.state = if remaining == 0 {
                        records.push(self.body.split().freeze());
                        State::Header {
                            length: 0,
                            digits: 0,
                        }
                    } else {
                        State::Body { remaining }
                    };
                }
            }
        }
    }

    /// Whether no partial record is buffered: the stream may end here cleanly.
    pub fn is_idle(&self) -> bool {
        self.state
            == State::Header {
                length: 0,
                digits: 0,
            }
    }

    /// One header byte after `digits` digits worth `length`: `Ok(None)` for a digit (the
    /// caller accumulates it; this checks it fits), `Ok(Some(len))` for the line feed ending
    /// a valid header.
    fn header_byte(
        &self,
        length: u64,
        digits: usize,
        byte: u8,
    ) -> Result<Option<usize>, RecordIoErrorKind> {
        match byte {
            b'0'..=b'9' => {
                if digits == MAX_HEADER_DIGITS {
                    return Err(RecordIoErrorKind::HeaderTooLong);
                }
                let next = length
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(u64::from(byte - b'0')));
                match next {
                    Some(next) if usize::try_from(next).is_ok_and(|n| n <= self.max_record) => {
                        Ok(None)
                    }
                    Some(next) => Err(RecordIoErrorKind::TooLarge(next)),
                    None => Err(RecordIoErrorKind::TooLarge(u64::MAX)),
                }
            }
            b'\n' if digits == 0 => Err(RecordIoErrorKind::EmptyHeader),
            b'\n' if length == 0 => Err(RecordIoErrorKind::ZeroLength),
            // Checked against `max_record` digit by digit, so it fits.
            b'\n' => Ok(Some(usize::try_from(length).unwrap_or(usize::MAX))),
            other => Err(RecordIoErrorKind::InvalidHeaderByte(other)),
        }
    }

    fn error(&self, kind: RecordIoErrorKind) -> RecordIoError {
        match kind {
            RecordIoErrorKind::HeaderTooLong => RecordIoError::HeaderTooLong,
            RecordIoErrorKind::EmptyHeader => RecordIoError::EmptyHeader,
            RecordIoErrorKind::InvalidHeaderByte(b) => RecordIoError::InvalidHeaderByte(b),
            RecordIoErrorKind::ZeroLength => RecordIoError::ZeroLength,
            RecordIoErrorKind::TooLarge(length) => RecordIoError::TooLarge {
                length,
                max: self.max_record,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(decoder: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<Bytes>, RecordIoError> {
        let mut records = Vec::new();
        for chunk in chunks {
            records.extend(decoder.push(chunk)?);
        }
        Ok(records)
    }

    #[test]
    fn frames_as_mesos_does() {
        assert_eq!(
            frame(br#"{"type":"HEARTBEAT"}"#),
            Bytes::from_static(b"20\n{\"type\":\"HEARTBEAT\"}")
        );
        assert_eq!(frame(b"x"), Bytes::from_static(b"1\nx"));
    }

    #[test]
    fn several_records_in_one_chunk_and_one_record_in_many() {
        let mut decoder = Decoder::new(100);
        assert!(decoder.is_idle());
        let records = decoder.push(b"3\nabc2\nde1").unwrap();
        assert_eq!(
            records,
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]
        );
        assert!(!decoder.is_idle(), "a header is half read");
        assert_eq!(decoder.push(b"0").unwrap(), Vec::<Bytes>::new());
        assert_eq!(decoder.push(b"\n0123").unwrap(), Vec::<Bytes>::new());
        assert!(!decoder.is_idle(), "a body is half read");
        assert_eq!(decoder.push(b"").unwrap(), Vec::<Bytes>::new());
        assert_eq!(decoder.push(b"45678").unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            decoder.push(b"9").unwrap(),
            vec![Bytes::from_static(b"0123456789")]
        );
        assert!(decoder.is_idle());
    }

    #[test]
    fn leading_zeros_and_the_largest_allowed_record() {
        let mut decoder = Decoder::new(4);
        assert_eq!(
            decoder.push(b"004\nabcd").unwrap(),
            vec![Bytes::from_static(b"abcd")]
        );
        assert_eq!(
            decoder.push(b"00000000000000000004\nwxyz").unwrap(),
            vec![Bytes::from_static(b"wxyz")]
        );
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], RecordIoError)] = &[
            (b"\nabc", RecordIoError::EmptyHeader),
            (b"0\n", RecordIoError::ZeroLength),
            (b"000\n", RecordIoError::ZeroLength),
            (b"000000000000000000001\nx", RecordIoError::HeaderTooLong),
            (b"12a\n", RecordIoError::InvalidHeaderByte(b'a')),
            (b"-1\n", RecordIoError::InvalidHeaderByte(b'-')),
            (b" 1\n", RecordIoError::InvalidHeaderByte(b' ')),
            (b"1\r\nx", RecordIoError::InvalidHeaderByte(b'\r')),
            (
                b"1001\n",
                RecordIoError::TooLarge {
                    length: 1001,
                    max: 1000,
                },
            ),
            (
                b"99999999999999999999\n",
                RecordIoError::TooLarge {
                    length: 1001,
                    max: 1000,
                },
            ),
            (b"3\nabc\n", RecordIoError::EmptyHeader),
        ];
        for (input, expected) in cases {
            let got = Decoder::new(1000).push(input);
            match (expected, got) {
                // Refused at the first digit that crosses the limit.
                (RecordIoError::TooLarge { .. }, Err(RecordIoError::TooLarge { length, max })) => {
                    assert_eq!(max, 1000);
                    assert!(length > 1000, "{input:?}: {length}");
                }
                (expected, got) => assert_eq!(got, Err(expected.clone()), "{input:?}"),
            }
        }
    }

    #[test]
    fn a_length_over_the_limit_fails_before_its_line_feed() {
        let mut decoder = Decoder::new(1 << 20);
        assert!(decoder.push(b"1048576").is_ok());
        assert!(matches!(
            decoder.push(b"0"),
            Err(RecordIoError::TooLarge { .. })
        ));
        let mut decoder = Decoder::new(usize::MAX);
        assert_eq!(
            decoder.push(b"18446744073709551616\n"),
            Err(RecordIoError::TooLarge {
                length: u64::MAX,
                max: usize::MAX
            })
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = Decoder::new(10);
        assert_eq!(
            decoder.push(b"x"),
            Err(RecordIoError::InvalidHeaderByte(b'x'))
        );
        assert_eq!(
            decoder.push(b"1\na"),
            Err(RecordIoError::InvalidHeaderByte(b'x'))
        );
        assert_eq!(
            decoder.push(b""),
            Err(RecordIoError::InvalidHeaderByte(b'x'))
        );
        assert!(!decoder.is_idle());
    }

    /// Splits `bytes` at the given fractions of its length.
    fn split_at_points(bytes: &[u8], points: &[prop::sample::Index]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[start..cut].to_vec());
            start = cut;
        }
        chunks
    }

    proptest! {
        #[test]
        fn framed_records_split_anywhere_come_back(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let stream: Vec<u8> = records.iter().flat_map(|r| frame(r)).collect();
            let chunks = split_at_points(&stream, &points);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let mut decoder = Decoder::new(300);
            let decoded = decode_all(&mut decoder, &chunks).unwrap();
            prop_assert_eq!(decoded, records.iter().map(|r| Bytes::copy_from_slice(r)).collect::<Vec<_>>());
            prop_assert!(decoder.is_idle());
        }

        #[test]
        fn garbage_never_panics_nor_yields_a_record_over_the_limit(
            stream in prop::collection::vec(
                prop_oneof![3 => any::<u8>(), 2 => b'0'..=b'9', 1 => Just(b'\n')],
                0..400,
            ),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            max in 1usize..64,
        ) {
            let mut decoder = Decoder::new(max);
            for chunk in split_at_points(&stream, &points) {
                match decoder.push(&chunk) {
                    Ok(records) => for record in records {
                        prop_assert!(!record.is_empty() && record.len() <= max);
                    },
                    Err(error) => {
                        prop_assert_eq!(decoder.push(b"1\nx"), Err(error));
                        break;
                    }
                }
            }
        }

        #[test]
        fn chunking_does_not_change_the_result(
            stream in prop::collection::vec(
                prop_oneof![2 => any::<u8>(), 3 => b'0'..=b'5', 1 => Just(b'\n')],
                0..200,
            ),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let whole = Decoder::new(32).push(&stream);
            let chunks = split_at_points(&stream, &points);
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let pieces = decode_all(&mut Decoder::new(32), &chunks);
            prop_assert_eq!(whole, pieces);
        }
    }
}
