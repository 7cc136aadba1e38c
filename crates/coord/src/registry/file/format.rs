//! The file registry store's on-disk formats, pure (bytes in, maps out):
//! the snapshot (`registry.bin`) and the log (`registry.log`).
//!
//! Snapshot, little-endian: magic `AGORAREG`, format `u32`, then
//! - format 1 (written by earlier releases, read so that an upgraded master
//!   loads its registry): entry count `u32`, the entries, and a 64-bit
//!   FNV-1a checksum of everything before it;
//! - format 2: generation `u64` (>= 1), entry count `u32`, the entries, and
//!   the CRC-32 (`u32`) of everything before it.
//!
//! An entry is key length `u16`, key, version `u64`, value length `u32`,
//! value.
//!
//! Log: a 24-byte header (magic `AGORALOG`, format `u32` = 1, the
//! generation `u64` of the snapshot it continues, CRC-32 of those 20 bytes),
//! then frames: length `u32`, the length's complement `u32` (so a damaged
//! length is told apart from a frame cut short), CRC-32 of the payload
//! `u32`, payload. A payload is kind `u8` (1 put, 2 delete), key length
//! `u16`, key, version `u64`, and for a put the value (the rest).

use crate::registry::memory::Map;
use crate::registry::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Version, validate_key};

const SNAPSHOT_MAGIC: &[u8; 8] = b"AGORAREG";
const SNAPSHOT_V1: u32 = 1;
const SNAPSHOT_V2: u32 = 2;
const LOG_MAGIC: &[u8; 8] = b"AGORALOG";
const LOG_FORMAT: u32 = 1;
/// The log header's size.
pub(super) const LOG_HEADER_BYTES: usize = 24;
/// Length, its complement, checksum.
const FRAME_HEADER_BYTES: usize = 12;
const PUT: u8 = 1;
const DELETE: u8 = 2;
/// Kind, key length, a one-byte key, version.
const MIN_PAYLOAD: usize = 1 + 2 + 1 + 8;
const MAX_PAYLOAD: usize = 1 + 2 + MAX_KEY_BYTES + 8 + MAX_VALUE_BYTES;

/// A decoded snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// 0 for a format-1 snapshot (which no log continues), else >= 1.
    pub(super) generation: u64,
    pub(super) map: Map,
}

/// The snapshot of `map` at `generation` (>= 1), in format 2.
pub(super) fn encode_snapshot(generation: u64, map: &Map) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + map.values().map(|(_, v)| v.len() + 64).sum::<usize>());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_V2.to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    encode_entries(map, &mut out);
    let sum = crc32fast::hash(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The format-1 snapshot of `map`, as earlier releases wrote it (tests make
/// old registries with it).
#[cfg(test)]
pub(super) fn encode_snapshot_v1(map: &Map) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_V1.to_le_bytes());
    encode_entries(map, &mut out);
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn encode_entries(map: &Map, out: &mut Vec<u8>) {
    // Counts and lengths fit: keys <= 200 bytes, values <= 512 KiB, and a
    // map of more than u32::MAX entries cannot be built in memory here.
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (key, (version, value)) in map {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&version.0.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
}

/// Decodes a snapshot of either format; any damage is an error.
pub(super) fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < SNAPSHOT_MAGIC.len() + 4 {
        return Err(format!("file of {} bytes is too short", bytes.len()));
    }
    if &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err("not an agora registry file (bad magic)".to_owned());
    }
    let mut reader = Reader {
        bytes: &bytes[SNAPSHOT_MAGIC.len()..],
    };
    let format = reader.u32()?;
    let body = match format {
        SNAPSHOT_V1 => {
            let (body, sum) = split_trailer::<8>(bytes)?;
            if fnv1a(body) != u64::from_le_bytes(sum) {
                return Err("checksum mismatch (torn or damaged file)".to_owned());
            }
            body
        }
        SNAPSHOT_V2 => {
            let (body, sum) = split_trailer::<4>(bytes)?;
            if crc32fast::hash(body) != u32::from_le_bytes(sum) {
                return Err("checksum mismatch (torn or damaged file)".to_owned());
            }
            body
        }
        other => return Err(format!("unsupported format version {other}")),
    };
    let mut reader = Reader {
        bytes: body
            .get(SNAPSHOT_MAGIC.len() + 4..)
            .ok_or("file too short for its checksum")?,
    };
    let generation = if format == SNAPSHOT_V2 {
        let generation = reader.u64()?;
        if generation == 0 {
            return Err("generation 0 in a format-2 snapshot".to_owned());
        }
        generation
    } else {
        0
    };
    let count = reader.u32()?;
    let mut map = Map::new();
    for _ in 0..count {
        let key_len = usize::from(reader.u16()?);
        let key = key_from(reader.take(key_len)?)?;
        let version = Version(reader.u64()?);
        let value_len = reader.u32()? as usize;
        if value_len > MAX_VALUE_BYTES {
            return Err(format!("value of {key:?} is {value_len} bytes"));
        }
        let value = reader.take(value_len)?.to_vec();
        if map.insert(key.clone(), (version, value)).is_some() {
            return Err(format!("duplicate key {key:?}"));
        }
    }
    if !reader.bytes.is_empty() {
        return Err(format!("{} trailing bytes", reader.bytes.len()));
    }
    Ok(Snapshot { generation, map })
}

fn split_trailer<const N: usize>(bytes: &[u8]) -> Result<(&[u8], [u8; N]), String> {
    let body_len = bytes
        .len()
        .checked_sub(N)
        .ok_or_else(|| format!("file of {} bytes is too short", bytes.len()))?;
    let (body, trailer) = bytes.split_at(body_len);
    let mut sum = [0; N];
    sum.copy_from_slice(trailer);
    Ok((body, sum))
}

fn key_from(bytes: &[u8]) -> Result<String, String> {
    let key = std::str::from_utf8(bytes)
        .map_err(|_| "key is not utf-8".to_owned())?
        .to_owned();
    validate_key(&key).map_err(|error| error.to_string())?;
    Ok(key)
}

/// The log header for `generation` (>= 1).
pub(super) fn encode_log_header(generation: u64) -> [u8; LOG_HEADER_BYTES] {
    let mut out = [0; LOG_HEADER_BYTES];
    out[..8].copy_from_slice(LOG_MAGIC);
    out[8..12].copy_from_slice(&LOG_FORMAT.to_le_bytes());
    out[12..20].copy_from_slice(&generation.to_le_bytes());
    let sum = crc32fast::hash(&out[..20]);
    out[20..].copy_from_slice(&sum.to_le_bytes());
    out
}

/// The generation a log continues. The header is written whole before the
/// log is renamed into place, so any fault in it is damage, not a tear.
pub(super) fn decode_log_header(bytes: &[u8]) -> Result<u64, String> {
    let Some(header) = bytes.get(..LOG_HEADER_BYTES) else {
        return Err(format!("log of {} bytes has no whole header", bytes.len()));
    };
    if &header[..8] != LOG_MAGIC {
        return Err("not an agora registry log (bad magic)".to_owned());
    }
    let mut reader = Reader {
        bytes: &header[8..],
    };
    let format = reader.u32()?;
    let generation = reader.u64()?;
    let sum = reader.u32()?;
    if crc32fast::hash(&header[..20]) != sum {
        return Err("log header checksum mismatch".to_owned());
    }
    if format != LOG_FORMAT {
        return Err(format!("unsupported log format version {format}"));
    }
    if generation == 0 {
        return Err("log of generation 0".to_owned());
    }
    Ok(generation)
}

/// One change in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    /// `key` now holds `value` at `version`.
    Put {
        key: String,
        version: Version,
        value: Vec<u8>,
    },
    /// `key`, which was at `version`, is gone.
    Delete { key: String, version: Version },
}

/// Appends the frame of a put to `out`.
pub(super) fn encode_put(key: &str, version: Version, value: &[u8], out: &mut Vec<u8>) {
    encode_frame(PUT, key, version, value, out);
}

/// Appends the frame of a delete (a tombstone) to `out`.
pub(super) fn encode_delete(key: &str, version: Version, out: &mut Vec<u8>) {
    encode_frame(DELETE, key, version, &[], out);
}

fn encode_frame(kind: u8, key: &str, version: Version, value: &[u8], out: &mut Vec<u8>) {
    let len = 1 + 2 + key.len() + 8 + value.len();
    // Fits: MAX_PAYLOAD is far below u32::MAX (callers validated the sizes).
    let len32 = len as u32;
    let start = out.len();
    out.reserve(FRAME_HEADER_BYTES + len);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&(!len32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let payload = out.len();
    out.push(kind);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&version.0.to_le_bytes());
    out.extend_from_slice(value);
    let sum = crc32fast::hash(&out[payload..]);
    out[start + 8..start + 12].copy_from_slice(&sum.to_le_bytes());
}

/// Bytes a put of `key` and `value` takes in the log: what a live entry
/// costs, for deciding when the log has outgrown what it holds.
pub(super) fn put_frame_len(key: &str, value: &[u8]) -> u64 {
    (FRAME_HEADER_BYTES + 1 + 2 + key.len() + 8 + value.len()) as u64
}

/// What a log holds after its header.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frames {
    pub(super) records: Vec<Record>,
    /// Bytes of the whole log (header included) up to the end of its last
    /// whole frame.
    pub(super) whole_len: usize,
    /// Bytes after that: a torn last append, to be cut away.
    pub(super) torn_bytes: usize,
}

/// Decodes the frames of a whole log (header included; see
/// [`decode_log_header`]).
///
/// A crash can tear only the last appends, which nobody was told were
/// durable: a frame cut short, or damaged, with no whole frame after it, is
/// a torn tail and ends the log. A damaged frame with a whole frame anywhere
/// after it is corruption: dropping it and the rest would silently lose
/// writes that were acknowledged.
pub(super) fn decode_frames(bytes: &[u8]) -> Result<Frames, String> {
    let mut records = Vec::new();
    let mut pos = LOG_HEADER_BYTES.min(bytes.len());
    while pos < bytes.len() {
        match whole_frame(bytes, pos) {
            Some((payload, end)) => {
                let record =
                    decode_payload(payload).map_err(|e| format!("record at byte {pos}: {e}"))?;
                records.push(record);
                pos = end;
            }
            None => {
                if let Some(next) =
                    (pos + 1..bytes.len()).find(|&p| whole_frame(bytes, p).is_some())
                {
                    return Err(format!(
                        "record at byte {pos} is damaged and a whole record follows at byte {next}"
                    ));
                }
                return Ok(Frames {
                    records,
                    whole_len: pos,
                    torn_bytes: bytes.len() - pos,
                });
            }
        }
    }
    Ok(Frames {
        records,
        whole_len: pos,
        torn_bytes: 0,
    })
}

/// The payload of the whole, undamaged frame starting at `pos` and where it
/// ends, or `None`.
fn whole_frame(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER_BYTES)?)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, check, sum) = (word(0), word(4), word(8));
    if check != !len {
        return None;
    }
    let len = len as usize;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let start = pos + FRAME_HEADER_BYTES;
    let payload = bytes.get(start..start + len)?;
    (crc32fast::hash(payload) == sum).then_some((payload, start + len))
}

fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    let mut reader = Reader { bytes: payload };
    let kind = reader.array::<1>()?[0];
    let key_len = usize::from(reader.u16()?);
    let key = key_from(reader.take(key_len)?)?;
    let version = Version(reader.u64()?);
    match kind {
        PUT => Ok(Record::Put {
            key,
            version,
            value: reader.bytes.to_vec(),
        }),
        DELETE if reader.bytes.is_empty() => Ok(Record::Delete { key, version }),
        DELETE => Err(format!("{} bytes after a delete", reader.bytes.len())),
        other => Err(format!("unknown record kind {other}")),
    }
}

/// Applies a logged change to `map`. Every record was appended after its
/// compare-and-set was checked against the map it now replays onto, so a
/// version that does not follow is damage.
pub(super) fn apply(map: &mut Map, record: Record) -> Result<(), String> {
    match record {
        Record::Put {
            key,
            version,
            value,
        } => {
            let next = match map.get(&key) {
                None => Some(0),
                Some((current, _)) => current.0.checked_add(1),
            };
            if next != Some(version.0) {
                return Err(format!(
                    "put of {key:?} at version {version} does not follow {:?}",
                    map.get(&key).map(|(v, _)| v.0)
                ));
            }
            map.insert(key, (version, value));
        }
        Record::Delete { key, version } => match map.get(&key) {
            Some((current, _)) if *current == version => {
                map.remove(&key);
            }
            other => {
                return Err(format!(
                    "delete of {key:?} at version {version} but it is at {:?}",
                    other.map(|(v, _)| v.0)
                ));
            }
        },
    }
    Ok(())
}

/// 64-bit FNV-1a: format 1's checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("truncated entry".to_owned());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9:._-]{0,11}"
    }

    fn map() -> impl Strategy<Value = Map> {
        prop::collection::btree_map(
            key(),
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..64)),
            0..8,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, (v, b))| (k, (Version(v), b)))
                .collect()
        })
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                key(),
                any::<u64>(),
                prop::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(key, v, value)| Record::Put {
                    key,
                    version: Version(v),
                    value
                }),
            (key(), any::<u64>()).prop_map(|(key, v)| Record::Delete {
                key,
                version: Version(v)
            }),
        ]
    }

    fn encode_log(generation: u64, records: &[Record]) -> Vec<u8> {
        let mut out = encode_log_header(generation).to_vec();
        for record in records {
            match record {
                Record::Put {
                    key,
                    version,
                    value,
                } => encode_put(key, *version, value, &mut out),
                Record::Delete { key, version } => encode_delete(key, *version, &mut out),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(generation in 1..u64::MAX, map in map()) {
            let decoded = decode_snapshot(&encode_snapshot(generation, &map)).expect("decodes");
            prop_assert_eq!(decoded, Snapshot { generation, map: map.clone() });
            let old = decode_snapshot(&encode_snapshot_v1(&map)).expect("decodes");
            prop_assert_eq!(old, Snapshot { generation: 0, map });
        }

        #[test]
        fn damaged_snapshots_are_errors(map in map(), flip in any::<prop::sample::Index>(), bit in 0..8u8) {
            let mut bytes = encode_snapshot(3, &map);
            let at = flip.index(bytes.len());
            bytes[at] ^= 1 << bit;
            prop_assert!(decode_snapshot(&bytes).is_err());
            // So is every cut.
            let cut = flip.index(bytes.len());
            prop_assert!(decode_snapshot(&encode_snapshot(3, &map)[..cut]).is_err());
        }

        #[test]
        fn any_bytes_after_the_header_decode_or_fail_without_panicking(
            version in 1..3u32,
            rest in prop::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut bytes = SNAPSHOT_MAGIC.to_vec();
            bytes.extend_from_slice(&version.to_le_bytes());
            bytes.extend_from_slice(&rest);
            let _ = decode_snapshot(&bytes);
            // Shorter than the header and its checksum: an error.
            prop_assert!(decode_snapshot(&bytes[..bytes.len().min(13)]).is_err());
        }

        #[test]
        fn logs_round_trip(generation in 1..u64::MAX, records in prop::collection::vec(record(), 0..12)) {
            let bytes = encode_log(generation, &records);
            prop_assert_eq!(decode_log_header(&bytes), Ok(generation));
            let frames = decode_frames(&bytes).expect("decodes");
            prop_assert_eq!(frames, Frames { records, whole_len: bytes.len(), torn_bytes: 0 });
        }

        /// A log cut anywhere after its header (a crash mid-append) reads as
        /// the records before the cut, never as an error.
        #[test]
        fn a_cut_log_is_a_prefix(records in prop::collection::vec(record(), 1..12), cut in any::<prop::sample::Index>()) {
            let bytes = encode_log(1, &records);
            let cut = LOG_HEADER_BYTES + cut.index(bytes.len() - LOG_HEADER_BYTES + 1);
            let frames = decode_frames(&bytes[..cut]).expect("a torn tail is not an error");
            prop_assert!(records.starts_with(&frames.records));
            prop_assert_eq!(frames.whole_len + frames.torn_bytes, cut);
            let whole = encode_log(1, &frames.records);
            prop_assert_eq!(whole.len(), frames.whole_len);
        }

        /// Damage to any frame but the last, with whole frames after it, is
        /// an error, never a shorter log.
        #[test]
        fn damage_before_the_last_record_is_an_error(
            records in prop::collection::vec(record(), 2..8),
            at in any::<prop::sample::Index>(),
            bit in 0..8u8,
        ) {
            let bytes = encode_log(1, &records);
            let last_start = encode_log(1, &records[..records.len() - 1]).len();
            let mut damaged = bytes.clone();
            let pos = LOG_HEADER_BYTES + at.index(last_start - LOG_HEADER_BYTES);
            damaged[pos] ^= 1 << bit;
            prop_assert!(decode_frames(&damaged).is_err());
        }
    }

    #[test]
    fn versions_must_follow() {
        let mut map = Map::new();
        let put = |v| Record::Put {
            key: "a".into(),
            version: Version(v),
            value: vec![],
        };
        assert!(apply(&mut map, put(1)).is_err(), "a new key starts at 0");
        apply(&mut map, put(0)).expect("create");
        assert!(apply(&mut map, put(0)).is_err());
        apply(&mut map, put(1)).expect("update");
        let delete = |v| Record::Delete {
            key: "a".into(),
            version: Version(v),
        };
        assert!(apply(&mut map, delete(0)).is_err());
        apply(&mut map, delete(1)).expect("delete");
        assert!(apply(&mut map, delete(1)).is_err(), "already gone");
        map.insert("b".into(), (Version(u64::MAX), vec![]));
        assert!(
            apply(
                &mut map,
                Record::Put {
                    key: "b".into(),
                    version: Version(0),
                    value: vec![]
                }
            )
            .is_err(),
            "no overflow"
        );
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let records = vec![Record::Delete {
            key: "a".into(),
            version: Version(0),
        }];
        let mut bytes = encode_log(1, &records);
        let whole = bytes.len();
        bytes.extend_from_slice(&[0; 4096]);
        let frames = decode_frames(&bytes).expect("torn");
        assert_eq!(frames.records, records);
        assert_eq!((frames.whole_len, frames.torn_bytes), (whole, 4096));
    }
}
