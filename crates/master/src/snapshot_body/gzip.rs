//! A rope's gzip, made from what changed since the last one.
//!
//! `/state` at 100,000 tasks is 35 MB of JSON that compresses about 20
//! times, and Mesos answers it in gzip to every client that asks (browsers
//! and most HTTP libraries do). Compressing the whole body per poll would
//! cost more than sending it; but a body is a [`Rope`] whose pieces are
//! kept from one body to the next (a list chunk's JSON stays the same
//! `Bytes` while the chunk is unchanged), so each piece is compressed on
//! its own and its compressed form kept with it, by the piece's identity.
//!
//! Each piece becomes a *segment*: a raw deflate stream of the piece alone
//! (no back-references outside it), ended by a sync flush, which leaves it
//! byte-aligned and not final. Deflate blocks may follow each other
//! freely, so the segments of a body's pieces in order are one valid
//! deflate stream of the whole body once an empty final block ends them.
//! The gzip member is that stream between a header and a trailer holding
//! the body's CRC-32 (combined from the segments' own) and its length.
//!
//! In a body of [`STORE_SHORT_FROM`] bytes or more, a piece under
//! [`STORED_BELOW`] bytes (a bit of the body between two lists: a
//! framework's own fields) is a *stored* block instead: its bytes as they
//! are, behind a 5-byte header. Compressing it would save a few hundred
//! bytes, but a deflate stream that must not look back starts by clearing
//! a 128 KiB table, which costs as much as compressing a few kilobytes; a
//! body of a hundred frameworks has hundreds of such bits, and they change
//! with every body. A small body is all such bits, and is compressed whole
//! piece by piece: the clearing costs little there, and a gzip no smaller
//! than the JSON would be no use.
//!
//! In such a body, a long piece that no earlier gzip held is stored too,
//! as long as the body's stored new pieces stay within a [`STORED_SHARE`]th
//! of its length, and compressed the next time it is sent. While a
//! framework places tasks, the chunks that change in one body mostly
//! change again in the next (a task's launch, STARTING and RUNNING come
//! within a few hundred milliseconds): compressing every version was a
//! third of what a body cost the master, and a poller that comes ten times
//! a second gets those bytes once uncompressed instead. A chunk is
//! compressed once it holds still, and at most a sixteenth of a body is
//! sent as it is.
//!
//! *Invariant:* a segment is used only for the very bytes it was made from:
//! the cache is keyed by the piece's address and length, and holds the
//! piece (immutable `Bytes`) so that the address is not reused while the
//! entry lives.

mod crc;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use self::crc::{BodyCrc, PieceCrc};
use crate::by_address::{self, AddressMap};
use crate::snapshot::state_body::Rope;

/// A gzip member's header: deflate, no flags, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final block (fixed Huffman codes: the final bit, the block
/// type, the end-of-block code), which ends the deflate stream.
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];

/// Pieces shorter than this are stored, not compressed (see the module
/// docs); below `u16::MAX`, so one stored block holds any of them.
const STORED_BELOW: usize = 1024;

/// Bodies from this size on store their short pieces (see the module docs).
const STORE_SHORT_FROM: usize = 1 << 20;

/// A body stores at most this share of its length in new pieces (see the
/// module docs): one sixteenth.
const STORED_SHARE: usize = 16;

/// One piece compressed alone (or stored), and its CRC-32 with the factor
/// that shifts a CRC past it ([`crc`]).
#[derive(Clone)]
struct Segment {
    /// Its deflate blocks; for a piece stored in one block, the block's
    /// header, the piece itself following it in `stored`.
    deflate: Bytes,
    /// The piece itself, when it is one stored block: sent as it is, not
    /// copied behind its header.
    stored: Option<Bytes>,
    crc: PieceCrc,
    /// Stored only because the piece was new: compressed if it is sent
    /// again.
    provisional: bool,
}

/// The segments of the last gzip's pieces, by the piece's address and
/// length; each entry holds its piece.
#[derive(Default)]
pub struct Segments {
    by_piece: AddressMap<(usize, usize), (Bytes, Segment)>,
}

#[cfg(test)]
impl Segments {
    /// How many it holds.
    fn len(&self) -> usize {
        self.by_piece.len()
    }
}

/// `rope`'s gzip, as a rope: pieces whose segments `segments` holds are not
/// compressed again (unless they were stored for being new), and afterwards
/// it holds this rope's only. Returns how many segments were made (stored
/// or compressed), beside the gzip.
pub fn gzip(rope: &Rope, segments: &mut Segments) -> std::io::Result<(Rope, usize)> {
    let mut compress = Compress::new(Compression::fast(), false);
    let store_short = rope.len() >= STORE_SHORT_FROM;
    let mut stored_room = if store_short {
        rope.len() / STORED_SHARE
    } else {
        0
    };
    let mut kept = Segments {
        by_piece: by_address::with_room(rope.pieces().len()),
    };
    let mut pieces = Vec::with_capacity(rope.pieces().len() + 2);
    let mut crc = BodyCrc::default();
    let mut made = 0;
    pieces.push(Bytes::from_static(&HEADER));
    for piece in rope.pieces() {
        let key = (piece.as_ptr() as usize, piece.len());
        let segment = match kept.by_piece.get(&key) {
            Some((_, segment)) => segment.clone(),
            None => {
                let segment = match segments.by_piece.remove(&key) {
                    Some((_, segment)) if !segment.provisional => segment,
                    // Sent again: it holds still, compressed now (being
                    // long, never a short piece to store).
                    Some((_, stored)) => {
                        made += 1;
                        Segment::compressed(&mut compress, piece, stored.crc)?
                    }
                    None => {
                        made += 1;
                        new_segment(&mut compress, piece, store_short, &mut stored_room)?
                    }
                };
                kept.by_piece.insert(key, (piece.clone(), segment.clone()));
                segment
            }
        };
        crc.append(&segment.crc);
        pieces.push(segment.deflate);
        if let Some(piece) = segment.stored {
            pieces.push(piece);
        }
    }
    let mut end = Vec::with_capacity(LAST_BLOCK.len() + 8);
    end.extend_from_slice(&LAST_BLOCK);
    end.extend_from_slice(&crc.value().to_le_bytes());
    // ISIZE: the length modulo 2^32, as gzip defines it.
    end.extend_from_slice(&(rope.len() as u32).to_le_bytes());
    pieces.push(Bytes::from(end));
    *segments = kept;
    Ok((Rope::from(pieces), made))
}

/// A piece no earlier gzip held, as deflate blocks of its own that end
/// byte-aligned: stored if it is short and `store_short`, or stored for now
/// while the body's `stored_room` holds it (taken from it), else compressed
/// and ended by a sync flush.
fn new_segment(
    compress: &mut Compress,
    piece: &Bytes,
    store_short: bool,
    stored_room: &mut usize,
) -> std::io::Result<Segment> {
    if store_short && piece.len() < STORED_BELOW {
        return Ok(Segment::stored(piece, false));
    }
    if store_short && piece.len() <= *stored_room {
        *stored_room -= piece.len();
        return Ok(Segment::stored_uncopied(piece, true));
    }
    Segment::compressed(compress, piece, PieceCrc::of(piece))
}

impl Segment {
    /// `piece` compressed; `crc` is its CRC-32.
    fn compressed(compress: &mut Compress, piece: &[u8], crc: PieceCrc) -> std::io::Result<Self> {
        Ok(Self {
            deflate: Bytes::from(compressed(compress, piece)?),
            stored: None,
            crc,
            provisional: false,
        })
    }

    /// `piece` as stored blocks, copied behind their headers.
    fn stored(piece: &[u8], provisional: bool) -> Self {
        Self {
            deflate: Bytes::from(stored(piece)),
            stored: None,
            crc: PieceCrc::of(piece),
            provisional,
        }
    }

    /// `piece` as stored blocks: when one block holds it, its header and
    /// the piece itself, uncopied (a placement's new chunks, a megabyte a
    /// body); else copied ([`Segment::stored`]).
    fn stored_uncopied(piece: &Bytes, provisional: bool) -> Self {
        let Ok(len) = u16::try_from(piece.len()) else {
            return Self::stored(piece, provisional);
        };
        Self {
            deflate: Bytes::from(block_header(len).to_vec()),
            stored: Some(piece.clone()),
            crc: PieceCrc::of(piece),
            provisional,
        }
    }
}

/// `piece` as stored blocks, none final, of at most `u16::MAX` bytes each
/// (an empty piece is one empty block). The stream is byte-aligned before
/// each (after the header, a segment or a stored block), so a block's three
/// header bits and their padding are one zero byte; `LEN` and its
/// complement follow, little-endian, then the bytes.
fn stored(piece: &[u8]) -> Vec<u8> {
    const MAX: usize = u16::MAX as usize;
    let blocks = piece.len().div_ceil(MAX).max(1);
    let mut out = Vec::with_capacity(piece.len() + 5 * blocks);
    let mut rest = piece;
    loop {
        let (block, after) = rest.split_at(rest.len().min(MAX));
        // At most `MAX` bytes: the conversion cannot fail.
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&block_header(len));
        out.extend_from_slice(block);
        rest = after;
        if rest.is_empty() {
            return out;
        }
    }
}

/// A stored block's header for `len` bytes, at a byte boundary: three
/// zero bits (not final, stored) and their padding, then `LEN` and its
/// complement, little-endian.
fn block_header(len: u16) -> [u8; 5] {
    let [lo, hi] = len.to_le_bytes();
    let [not_lo, not_hi] = (!len).to_le_bytes();
    [0, lo, hi, not_lo, not_hi]
}

/// `piece` as a raw deflate stream of its own, ended by a sync flush.
fn compressed(compress: &mut Compress, piece: &[u8]) -> std::io::Result<Vec<u8>> {
    compress.reset();
    let mut out = Vec::with_capacity(piece.len() / 8 + 64);
    // Each round either takes input or fills the room it was given, and
    // the room grows every round, so this ends; the flush is complete
    // once all input is in and the output did not fill its room.
    loop {
        let taken = usize::try_from(compress.total_in()).unwrap_or(piece.len());
        let rest = piece.get(taken..).unwrap_or_default();
        compress
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .map_err(std::io::Error::other)?;
        let all_in = usize::try_from(compress.total_in()).is_ok_and(|n| n == piece.len());
        if all_in && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    // Kept until the piece changes: without the room it was grown with.
    out.shrink_to_fit();
    Ok(out)
}

/// [`gzip`] as [`crate::authz_views::Viewer::send_rope`] takes it.
pub(crate) fn gzip_rope(rope: &Rope, segments: &mut Segments) -> std::io::Result<Rope> {
    gzip(rope, segments).map(|(gz, _)| gz)
}

/// `gz` decoded by flate2's reader, which checks the trailer's CRC-32 and
/// length: for the tests of whatever answers gzip.
#[cfg(test)]
pub(crate) fn gunzip(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("a valid gzip member");
    out
}

#[cfg(test)]
mod tests;
