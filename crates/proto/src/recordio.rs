//! RecordIO, the framing of every Mesos v1 event stream: each record is its
//! length in decimal ASCII, a `\n`, then exactly that many bytes, with
//! nothing in between records. This module writes records and incrementally
//! reads them back from arbitrarily split input; it knows nothing about HTTP
//! chunking (which is irrelevant to the framing) or about what the payload
//! encodes.

use bytes::{Buf as _, Bytes, BytesMut};

/// Digits in the longest valid prefix: `u64::MAX` has 20.
const MAX_PREFIX_DIGITS: usize = 20;

/// Frames one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(record.len() + MAX_PREFIX_DIGITS + 1);
    encode_into(&mut buf, record);
    buf
}

/// Appends one framed record to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, record: &[u8]) {
    buf.extend_from_slice(record.len().to_string().as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(record);
}

/// Why a stream is not valid RecordIO. Once a [`Decoder`] reports one it
/// keeps reporting it: there is no way to find the next record boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// A byte other than an ASCII digit before the `\n`.
    #[error("invalid byte 0x{byte:02x} in a RecordIO length prefix")]
    NonDigit { byte: u8 },
    /// A `\n` with no digits before it.
    #[error("empty RecordIO length prefix")]
    EmptyPrefix,
    /// A zero length, which Mesos never sends.
    #[error("zero-length RecordIO record")]
    ZeroLength,
    /// More digits than any 64-bit length has, without a `\n`.
    #[error("RecordIO length prefix longer than {MAX_PREFIX_DIGITS} digits")]
    PrefixTooLong,
    /// The length does not fit in 64 bits.
    #[error("RecordIO length prefix overflows 64 bits")]
    Overflow,
    /// The record is longer than this decoder accepts.
    #[error("RecordIO record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
}

/// Incremental RecordIO reader: feed it bytes as they arrive, then take
/// complete records until it asks for more.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_record_len: usize,
    /// The length of the record being read once its prefix is complete; the
    /// prefix has then already been removed from `buf`.
    pending: Option<usize>,
    failed: Option<RecordIoError>,
}

impl Decoder {
    /// A decoder that refuses records longer than `max_record_len` bytes.
    pub fn new(max_record_len: usize) -> Decoder {
        Decoder { buf: BytesMut::new(), max_record_len, pending: None, failed: None }
    }

    /// Appends received bytes. Input after an error is discarded.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes received but not yet returned as records.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the stream ends cleanly here, between two records.
    pub fn is_at_boundary(&self) -> bool {
        self.failed.is_none() && self.pending.is_none() && self.buf.is_empty()
    }

    /// The next complete record, `Ok(None)` when more input is needed, or the
    /// error that made the stream unreadable.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, RecordIoError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let len = match self.pending {
            Some(len) => len,
            None => match self.read_prefix() {
                Ok(Some(len)) => len,
                Ok(None) => return Ok(None),
                Err(err) => {
                    self.failed = Some(err.clone());
                    self.buf = BytesMut::new();
                    return Err(err);
                }
            },
        };
        if self.buf.len() < len {
            self.pending = Some(len);
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Parses and consumes a complete length prefix, checking every byte as
    /// soon as it has arrived so that garbage fails fast.
    fn read_prefix(&mut self) -> Result<Option<usize>, RecordIoError> {
        let mut len: u64 = 0;
        for (i, &byte) in self.buf.iter().enumerate() {
            if byte == b'\n' {
                if i == 0 {
                    return Err(RecordIoError::EmptyPrefix);
                }
                if len == 0 {
                    return Err(RecordIoError::ZeroLength);
                }
                let too_large = RecordIoError::TooLarge { len, max: self.max_record_len };
                let len = usize::try_from(len).map_err(|_| too_large.clone())?;
                if len > self.max_record_len {
                    return Err(too_large);
                }
                self.buf.advance(i + 1);
                return Ok(Some(len));
            }
            if i >= MAX_PREFIX_DIGITS {
                return Err(RecordIoError::PrefixTooLong);
            }
            if !byte.is_ascii_digit() {
                return Err(RecordIoError::NonDigit { byte });
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(u64::from(byte - b'0')))
                .ok_or(RecordIoError::Overflow)?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` in order and collects every record, stopping at the
    /// first error.
    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> Result<Vec<Bytes>, RecordIoError> {
        let mut decoder = Decoder::new(max);
        let mut records = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk);
            while let Some(record) = decoder.next_record()? {
                records.push(record);
            }
        }
        Ok(records)
    }

    #[test]
    fn encodes_like_mesos() {
        assert_eq!(encode(br#"{"type":"HEARTBEAT"}"#), b"20\n{\"type\":\"HEARTBEAT\"}");
        let mut buf = Vec::new();
        encode_into(&mut buf, b"a");
        encode_into(&mut buf, b"0123456789");
        assert_eq!(buf, b"1\na10\n0123456789");
    }

    #[test]
    fn decodes_byte_by_byte() {
        let stream = [encode(b"hello"), encode(b"x"), encode(&[b'\n'; 12])].concat();
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let records = decode_chunks(1024, &chunks).expect("valid stream");
        assert_eq!(records, [&b"hello"[..], b"x", &[b'\n'; 12]]);
    }

    #[test]
    fn needs_more_data_and_boundaries() {
        let mut decoder = Decoder::new(100);
        assert!(decoder.is_at_boundary());
        assert_eq!(decoder.next_record(), Ok(None));
        decoder.feed(b"5");
        assert_eq!(decoder.next_record(), Ok(None));
        decoder.feed(b"\nabc");
        assert_eq!(decoder.next_record(), Ok(None));
        assert!(!decoder.is_at_boundary());
        assert_eq!(decoder.buffered_len(), 3);
        decoder.feed(b"de3\n");
        assert_eq!(decoder.next_record(), Ok(Some(Bytes::from_static(b"abcde"))));
        assert_eq!(decoder.next_record(), Ok(None));
        decoder.feed(b"xyz");
        assert_eq!(decoder.next_record(), Ok(Some(Bytes::from_static(b"xyz"))));
        assert!(decoder.is_at_boundary());
    }

    #[test]
    fn malformed_prefixes_are_errors() {
        let table: [(&[u8], RecordIoError); 11] = [
            (b"\n", RecordIoError::EmptyPrefix),
            (b"0\n", RecordIoError::ZeroLength),
            (b"000\nabc", RecordIoError::ZeroLength),
            (b"12a\n", RecordIoError::NonDigit { byte: b'a' }),
            (b"-1\n", RecordIoError::NonDigit { byte: b'-' }),
            (b" 5\nhello", RecordIoError::NonDigit { byte: b' ' }),
            (b"5\r\nhello", RecordIoError::NonDigit { byte: b'\r' }),
            (b"101\n", RecordIoError::TooLarge { len: 101, max: 100 }),
            (b"000000000000000000001", RecordIoError::PrefixTooLong),
            (b"99999999999999999999\n", RecordIoError::Overflow),
            (b"18446744073709551615\n", RecordIoError::TooLarge { len: u64::MAX, max: 100 }),
        ];
        for (input, expected) in table {
            assert_eq!(decode_chunks(100, &[input]), Err(expected), "{input:?}");
        }
        // A prefix of exactly 20 digits is fine while it is still arriving.
        let mut decoder = Decoder::new(100);
        decoder.feed(b"00000000000000000005");
        assert_eq!(decoder.next_record(), Ok(None));
        decoder.feed(b"\nhello");
        assert_eq!(decoder.next_record(), Ok(Some(Bytes::from_static(b"hello"))));
        // A bad byte fails before the newline arrives.
        let mut decoder = Decoder::new(100);
        decoder.feed(b"1x");
        assert_eq!(decoder.next_record(), Err(RecordIoError::NonDigit { byte: b'x' }));
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = Decoder::new(100);
        decoder.feed(b"1\na\n");
        assert_eq!(decoder.next_record(), Ok(Some(Bytes::from_static(b"a"))));
        assert_eq!(decoder.next_record(), Err(RecordIoError::EmptyPrefix));
        decoder.feed(b"1\nb");
        assert_eq!(decoder.next_record(), Err(RecordIoError::EmptyPrefix));
        assert_eq!(decoder.buffered_len(), 0);
        assert!(!decoder.is_at_boundary());
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            RecordIoError::NonDigit { byte: b'a' }.to_string(),
            "invalid byte 0x61 in a RecordIO length prefix"
        );
        assert_eq!(
            RecordIoError::TooLarge { len: 9, max: 8 }.to_string(),
            "RecordIO record of 9 bytes exceeds the limit of 8 bytes"
        );
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same_records(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..16),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut stream = Vec::new();
            for record in &records {
                encode_into(&mut stream, record);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let decoded = decode_chunks(64, &chunks).expect("valid stream");
            prop_assert_eq!(decoded.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), records);
        }

        #[test]
        fn garbage_never_panics(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 0..16),
            max in 0usize..64,
        ) {
            let mut decoder = Decoder::new(max);
            for chunk in &chunks {
                decoder.feed(chunk);
                for _ in 0..4 {
                    match decoder.next_record() {
                        Ok(Some(record)) => prop_assert!(!record.is_empty() && record.len() <= max),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }

        #[test]
        fn digit_heavy_garbage_never_panics(input in "[0-9\n]{0,64}") {
            let _ = decode_chunks(16, &[input.as_bytes()]);
        }
    }
}
