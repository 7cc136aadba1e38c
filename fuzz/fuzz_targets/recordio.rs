//! `recordio::Decoder` fed a stream in arbitrary chunks.
//!
//! Input: a limit byte, a split byte, then the stream. Invariants: the records do not depend
//! on how the stream is chunked (byte by byte, in chunks of the split size, or whole), none
//! is empty or over the limit, once it fails the decoder keeps failing, and framing the
//! records again gives a stream that decodes to the same records.
#![no_main]

use agora_mesos_http::recordio::{self, Decoder};
use libfuzzer_sys::fuzz_target;

/// All records of `stream` pushed in chunks of `size`, and the error if one came.
fn decode(
    stream: &[u8],
    size: usize,
    max: usize,
) -> (Vec<Vec<u8>>, Option<recordio::RecordIoError>, bool) {
    let mut decoder = Decoder::new(max);
    let mut records = Vec::new();
    for chunk in stream.chunks(size.max(1)) {
        match decoder.push(chunk) {
            Ok(got) => records.extend(got.into_iter().map(|b| b.to_vec())),
            Err(e) => {
                // A failed decoder stays failed, with the same error.
                assert_eq!(decoder.push(b"1\nx"), Err(e.clone()), "decoder recovered");
                return (records, Some(e), false);
            }
        }
    }
    let idle = decoder.is_idle();
    (records, None, idle)
}

fuzz_target!(|data: &[u8]| {
    let [limit, split, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*limit) * 4 + 1;
    let (whole, whole_err, whole_idle) = decode(stream, stream.len(), max);
    for record in &whole {
        assert!(
            !record.is_empty() && record.len() <= max,
            "record of {} bytes",
            record.len()
        );
    }
    for size in [1, usize::from(*split)] {
        let (records, err, idle) = decode(stream, size, max);
        // Records completed in the chunk that failed are dropped with it: compare a prefix.
        match (&whole_err, &err) {
            (None, None) => {
                assert_eq!(whole, records, "chunking by {size} changed the records");
                assert_eq!(whole_idle, idle);
            }
            (Some(a), Some(b)) => {
                assert_eq!(a, b, "chunking by {size} changed the error");
                let n = whole.len().min(records.len());
                assert_eq!(whole[..n], records[..n]);
            }
            _ => panic!("chunking by {size} changed success: {whole_err:?} vs {err:?}"),
        }
    }
    if whole_err.is_none() {
        // Framing the records again gives a stream that decodes to the same records.
        let framed: Vec<u8> = whole
            .iter()
            .flat_map(|r| recordio::frame(r).to_vec())
            .collect();
        let (again, err, idle) = decode(&framed, framed.len(), max);
        assert!(
            err.is_none() && idle,
            "re-framed records do not decode: {err:?}"
        );
        assert_eq!(whole, again, "re-framed records decode differently");
    }
});
