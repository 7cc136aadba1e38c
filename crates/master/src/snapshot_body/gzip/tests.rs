use std::collections::HashSet;

use bytes::Bytes;
use proptest::prelude::*;

use super::{STORE_SHORT_FROM, STORED_BELOW, STORED_SHARE, Segments, gzip};
use crate::snapshot::state_body::Rope;

/// The gzip rope decoded (the CRC-32 and length in its trailer checked).
fn gunzip(gz: &Rope) -> Vec<u8> {
    super::gunzip(&gz.to_vec())
}

fn keys(rope: &Rope) -> HashSet<(usize, usize)> {
    rope.pieces()
        .iter()
        .map(|p| (p.as_ptr() as usize, p.len()))
        .collect()
}

/// Some JSON-like bytes (compressible) and some that are not.
fn piece() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        (0u32..5000, 1usize..200).prop_map(|(seed, n)| {
            let row = format!(r#"{{"id":"t-{seed}","state":"TASK_RUNNING","cpus":0.1}},"#);
            Bytes::from(row.repeat(n))
        }),
        proptest::collection::vec(any::<u8>(), 1..4096).prop_map(Bytes::from),
    ]
}

proptest! {
    /// Two bodies in a row, the second sharing some of the first's pieces
    /// (as unchanged chunks are shared): both decode to their bytes, and
    /// the second compresses exactly the pieces the first did not hold.
    #[test]
    fn successive_gzips_decode_and_compress_only_new_pieces(
        pool in proptest::collection::vec(piece(), 1..12),
        first in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        second in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        fresh in proptest::collection::vec(piece(), 0..4),
    ) {
        let pick = |picks: &[prop::sample::Index]| -> Vec<Bytes> {
            picks.iter().map(|i| pool[i.index(pool.len())].clone()).collect()
        };
        let one = Rope::from(pick(&first));
        let mut two_pieces = pick(&second);
        two_pieces.extend(fresh.iter().cloned());
        let two = Rope::from(two_pieces);

        let mut segments = Segments::default();
        let (gz_one, made_one) = gzip(&one, &mut segments).expect("compressed");
        prop_assert_eq!(gunzip(&gz_one), one.to_vec());
        prop_assert_eq!(made_one, keys(&one).len());
        prop_assert_eq!(segments.len(), keys(&one).len());

        let (gz_two, made_two) = gzip(&two, &mut segments).expect("compressed");
        prop_assert_eq!(gunzip(&gz_two), two.to_vec());
        prop_assert_eq!(made_two, keys(&two).difference(&keys(&one)).count());
        prop_assert_eq!(segments.len(), keys(&two).len());
    }
}

#[test]
fn an_empty_rope_is_an_empty_gzip() {
    let (gz, made) = gzip(&Rope::default(), &mut Segments::default()).expect("compressed");
    assert_eq!(made, 0);
    assert_eq!(gunzip(&gz), b"");
}

#[test]
fn the_same_bytes_elsewhere_are_compressed_again() {
    // Identity, not content: a piece's segment is found by where its
    // bytes are, which cannot change while the cache holds them.
    let text = Bytes::from_static(b"[{\"id\":\"a\"},{\"id\":\"b\"}]");
    let copy = Bytes::copy_from_slice(&text);
    let mut segments = Segments::default();
    gzip(&Rope::from(vec![text.clone()]), &mut segments).expect("compressed");
    let (gz, made) = gzip(&Rope::from(vec![copy]), &mut segments).expect("compressed");
    assert_eq!(made, 1);
    assert_eq!(gunzip(&gz), &text[..]);
}

#[test]
fn a_large_incompressible_piece_grows_its_output() {
    // Pseudo-random bytes deflate to slightly more than their length, far
    // beyond the first guess at the output's size.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let rope = Rope::from(vec![Bytes::from_static(b"{\"x\":\""), Bytes::from(noise)]);
    let (gz, _) = gzip(&rope, &mut Segments::default()).expect("compressed");
    assert_eq!(gunzip(&gz), rope.to_vec());
}

#[test]
fn a_body_of_repeated_rows_compresses_well() {
    let row =
        Bytes::from(r#"{"id":"t-1","state":"TASK_RUNNING","resources":{"cpus":0.1}},"#.repeat(64));
    let rope = Rope::from(vec![row.clone(), row.clone(), row]);
    let (gz, made) = gzip(&rope, &mut Segments::default()).expect("compressed");
    assert_eq!(made, 1, "one piece, shared three times, compressed once");
    assert!(gz.len() * 10 < rope.len(), "{} of {}", gz.len(), rope.len());
    assert_eq!(gunzip(&gz), rope.to_vec());
}

#[test]
fn a_big_body_stores_its_short_pieces_and_compresses_its_long_ones() {
    let short = Bytes::from("x".repeat(STORED_BELOW - 1));
    let long = Bytes::from("x".repeat(STORE_SHORT_FROM));
    let rope = Rope::from(vec![short.clone(), long, short.clone(), short]);
    let (gz, made) = gzip(&rope, &mut Segments::default()).expect("compressed");
    assert_eq!(made, 2);
    // Header, stored, compressed, stored twice (one segment, shared), end.
    let sizes: Vec<usize> = gz.pieces().iter().map(Bytes::len).collect();
    assert_eq!(sizes[1], STORED_BELOW - 1 + 5, "{sizes:?}");
    assert!(sizes[2] < STORE_SHORT_FROM / 100, "{sizes:?}");
    assert_eq!(sizes[3], sizes[1], "{sizes:?}");
    assert_eq!(gunzip(&gz), rope.to_vec());
}

#[test]
fn a_small_body_of_short_pieces_is_compressed() {
    // A small cluster's `/state`: a few short bits between its lists.
    let row = r#"{"id":"a","hostname":"h","resources":{"cpus":1.0}},"#;
    let rope = Rope::from(vec![
        Bytes::from(format!(r#"{{"agents":[{}"#, row.repeat(8))),
        Bytes::from(row.repeat(8)),
        Bytes::from_static(b"]}"),
    ]);
    assert!(rope.len() < STORE_SHORT_FROM);
    let (gz, made) = gzip(&rope, &mut Segments::default()).expect("compressed");
    assert_eq!(made, 3);
    assert!(gz.len() * 2 < rope.len(), "{} of {}", gz.len(), rope.len());
    assert_eq!(gunzip(&gz), rope.to_vec());
}

/// JSON-like rows, `n` of them, each naming `tag`: compressible.
fn rows(tag: &str, n: usize) -> Bytes {
    Bytes::from(format!(r#"{{"id":"{tag}","state":"TASK_RUNNING","cpus":0.1}},"#).repeat(n))
}

#[test]
fn a_big_bodys_new_chunks_are_stored_once_then_compressed_when_sent_again() {
    // A placement's body: most chunks as the last body had them, a few
    // new ones (tasks whose state changed since).
    let unchanged: Vec<Bytes> = (0..60).map(|i| rows(&format!("u{i}"), 700)).collect();
    let first = Rope::from(unchanged.clone());
    assert!(first.len() >= STORE_SHORT_FROM);
    let mut segments = Segments::default();
    let (gz, made) = gzip(&first, &mut segments).expect("compressed");
    assert_eq!(gunzip(&gz), first.to_vec());
    assert_eq!(made, unchanged.len());
    // All new: its stored share is compressed when it is sent again.
    let (gz, made) = gzip(&first, &mut segments).expect("compressed");
    assert!(made > 0, "the stored share compressed");
    assert_eq!(gunzip(&gz), first.to_vec());
    let first_size = gz.len();
    let (_, made) = gzip(&first, &mut segments).expect("compressed");
    assert_eq!(made, 0, "settled");

    // Two new chunks, one of them longer than a stored block holds.
    let new = [rows("n1", 700), rows("n2", 1_600)];
    assert!(new[1].len() > usize::from(u16::MAX));
    let mut pieces = unchanged.clone();
    pieces.splice(10..12, new.iter().cloned());
    let second = Rope::from(pieces.clone());
    let (gz, made) = gzip(&second, &mut segments).expect("compressed");
    assert_eq!(gunzip(&gz), second.to_vec(), "stored blocks decode");
    assert_eq!(made, 2, "the new chunks only");
    let sizes: Vec<usize> = gz.pieces().iter().map(Bytes::len).collect();
    // Stored: a 5-byte header per block of up to 64 KiB; a piece that one
    // block holds follows its header as it is, uncopied.
    assert_eq!(sizes[11], 5, "{sizes:?}");
    assert!(gz.pieces()[12].as_ptr() == new[0].as_ptr(), "{sizes:?}");
    assert_eq!(sizes[12], new[0].len(), "{sizes:?}");
    assert_eq!(sizes[13], new[1].len() + 5 * 2, "{sizes:?}");

    // Sent again unchanged: compressed now, once.
    let (gz, made) = gzip(&second, &mut segments).expect("compressed");
    assert_eq!(gunzip(&gz), second.to_vec());
    assert_eq!(made, 2, "the stored ones, compressed");
    // One piece each again, the stored header gone.
    assert_eq!(gz.pieces().len(), second.pieces().len() + 2);
    let sizes: Vec<usize> = gz.pieces().iter().map(Bytes::len).collect();
    assert!(sizes[11] * 20 < new[0].len(), "{sizes:?}");
    assert!(sizes[12] * 20 < new[1].len(), "{sizes:?}");
    assert!(
        gz.len() < first_size + first_size / 10,
        "{} against {first_size}",
        gz.len()
    );
    let (_, made) = gzip(&second, &mut segments).expect("compressed");
    assert_eq!(made, 0, "nothing left to compress");
}

#[test]
fn a_big_body_stores_new_chunks_up_to_its_share_and_compresses_the_rest() {
    // The first body of a master (or after a long quiet): every chunk new.
    // At most a sixteenth of it goes out uncompressed.
    let pieces: Vec<Bytes> = (0..64).map(|i| rows(&format!("c{i}"), 400)).collect();
    let rope = Rope::from(pieces);
    assert!(rope.len() >= STORE_SHORT_FROM);
    let (gz, made) = gzip(&rope, &mut Segments::default()).expect("compressed");
    assert_eq!(gunzip(&gz), rope.to_vec());
    assert_eq!(made, 64);
    // A stored chunk goes out as the very piece, behind its block header.
    let originals: HashSet<(usize, usize)> = keys(&rope);
    let stored: usize = gz
        .pieces()
        .iter()
        .filter(|p| originals.contains(&(p.as_ptr() as usize, p.len())))
        .map(Bytes::len)
        .sum();
    assert!(stored > 0, "some stored, uncopied");
    assert!(
        stored <= rope.len() / STORED_SHARE,
        "{stored} of {}",
        rope.len()
    );
    assert!(gz.len() < rope.len() / 8, "{} of {}", gz.len(), rope.len());
}
