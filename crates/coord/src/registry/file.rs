//! The file registry store: the whole map in one file under a directory,
//! replaced atomically on every write.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Mutex;

use super::memory::{Map, apply_delete, apply_put, entries};
use super::{MAX_VALUE_BYTES, RegistryEntry, RegistryError, RegistryStore, Version, validate_key};

/// Name of the registry file inside the store's directory.
pub const REGISTRY_FILE: &str = "registry.bin";
/// Name of the temporary file a write goes through (ignored when loading).
const TEMP_FILE: &str = "registry.bin.tmp";
const MAGIC: &[u8; 8] = b"AGORAREG";
const FORMAT_VERSION: u32 = 1;

/// A registry kept in `<dir>/registry.bin`, for masters without ZooKeeper.
///
/// Every write replaces the whole file atomically (write a temporary file,
/// fsync it, rename it over the old one, fsync the directory), so a crash
/// leaves either the old or the new registry, never a mix; a leftover
/// temporary file is ignored and overwritten. The file ends with a checksum:
/// a damaged file is reported as [`RegistryError::Corrupt`], never
/// silently read as empty. A missing file is an empty registry.
///
/// One process at a time may use a directory; writes within the process are
/// serialized.
#[derive(Debug, Clone)]
pub struct FileRegistryStore {
    dir: PathBuf,
    /// The entries as last read or written; `None` until first needed.
    cache: Arc<Mutex<Option<Map>>>,
}

impl FileRegistryStore {
    /// A store in `dir`; nothing is read or created until first used (the
    /// directory is created by the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The registry file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(REGISTRY_FILE)
    }

    async fn read(&self) -> Result<Map, RegistryError> {
        let path = self.path();
        blocking(move || read_file(&path)).await
    }

    /// Applies `change` to the current map and, if it says it changed
    /// something, persists the result; the cache changes only once the new
    /// file is durable.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut Map) -> Result<(T, bool), RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut cache = self.cache.lock().await;
        let mut map = match cache.as_ref() {
            Some(map) => map.clone(),
            None => self.read().await?,
        };
        let (result, changed) = change(&mut map)?;
        if !changed {
            *cache = Some(map);
            return Ok(result);
        }
        let bytes = encode(&map);
        let dir = self.dir.clone();
        blocking(move || write_atomically(&dir, &bytes)).await?;
        *cache = Some(map);
        Ok(result)
    }
}

impl RegistryStore for FileRegistryStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<RegistryEntry>, RegistryError>> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            let map = self.read().await?;
            let result = entries(&map);
            *cache = Some(map);
            Ok(result)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<Version, RegistryError>> {
        Box::pin(self.update(move |map| Ok((apply_put(map, key, value, expected)?, true))))
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(self.update(move |map| {
            let existed = apply_delete(map, key, expected)?;
            Ok(((), existed))
        }))
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| RegistryError::Unavailable {
            reason: format!("registry file task failed: {error}"),
        })?
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_file(path: &Path) -> Result<Map, RegistryError> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes).map_err(|reason| RegistryError::Corrupt {
            location: path.display().to_string(),
            reason,
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Map::new()),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let temp = dir.join(TEMP_FILE);
    let target = dir.join(REGISTRY_FILE);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(io_error(&temp))?;
    file.write_all(bytes).map_err(io_error(&temp))?;
    file.sync_all().map_err(io_error(&temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(io_error(&target))?;
    // Make the rename itself durable.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// 64-bit FNV-1a, enough to detect torn or damaged files.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Layout (little-endian): magic, format version u32, entry count u32, then
/// per entry key length u16, key, version u64, value length u32, value;
/// then the checksum u64 of everything before it.
fn encode(map: &Map) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
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
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<Map, String> {
    let body_len = bytes
        .len()
        .checked_sub(8)
        .ok_or_else(|| format!("file of {} bytes is too short", bytes.len()))?;
    let (body, sum) = bytes.split_at(body_len);
    let mut reader = Reader { bytes: body };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("not an agora registry file (bad magic)".to_owned());
    }
    let stored = u64::from_le_bytes(sum.try_into().map_err(|_| "truncated checksum")?);
    if checksum(body) != stored {
        return Err("checksum mismatch (torn or damaged file)".to_owned());
    }
    let format = reader.u32()?;
    if format != FORMAT_VERSION {
        return Err(format!("unsupported format version {format}"));
    }
    let count = reader.u32()?;
    let mut map = Map::new();
    for _ in 0..count {
        let key_len = usize::from(reader.u16()?);
        let key = std::str::from_utf8(reader.take(key_len)?)
            .map_err(|_| "key is not utf-8".to_owned())?
            .to_owned();
        validate_key(&key).map_err(|error| error.to_string())?;
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
    Ok(map)
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
    use super::*;

    #[tokio::test]
    async fn file_store_follows_the_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileRegistryStore::new(dir.path().join("reg"));
        crate::registry::contract::check_registry_store(&store).await;
        // A second store on the same directory sees the same entries.
        let again = FileRegistryStore::new(dir.path().join("reg"));
        assert_eq!(
            again.load().await.expect("load"),
            store.load().await.expect("load")
        );
    }

    #[tokio::test]
    async fn missing_file_is_empty_and_leftover_temp_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileRegistryStore::new(dir.path());
        assert!(store.load().await.expect("empty").is_empty());
        store.put("a", b"1".to_vec(), None).await.expect("put");

        // A crash between writing the temp file and renaming it.
        fs::write(dir.path().join(TEMP_FILE), b"half-written garbage").expect("write temp");
        let reopened = FileRegistryStore::new(dir.path());
        let loaded = reopened.load().await.expect("load ignores the temp file");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].value, b"1");
        // The next write overwrites the leftover.
        reopened
            .put("a", b"2".to_vec(), Some(Version(0)))
            .await
            .expect("put");
        assert!(!dir.path().join(TEMP_FILE).exists());
        let loaded = FileRegistryStore::new(dir.path())
            .load()
            .await
            .expect("load");
        assert_eq!(loaded[0].value, b"2");
    }

    #[tokio::test]
    async fn corrupt_files_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileRegistryStore::new(dir.path());
        store.put("a", b"value".to_vec(), None).await.expect("put");
        let good = fs::read(store.path()).expect("read");

        let mut flipped = good.clone();
        flipped[20] ^= 0xff;
        let cases: [(&str, Vec<u8>); 4] = [
            ("empty", Vec::new()),
            ("truncated", good[..good.len() - 3].to_vec()),
            ("flipped", flipped),
            ("foreign", b"{\"json\": true, \"not\": \"ours\"}".to_vec()),
        ];
        for (name, bytes) in cases {
            fs::write(store.path(), &bytes).expect("write");
            let fresh = FileRegistryStore::new(dir.path());
            match fresh.load().await {
                Err(RegistryError::Corrupt { location, reason }) => {
                    assert!(location.ends_with(REGISTRY_FILE), "{name}: {location}");
                    assert!(!reason.is_empty(), "{name}");
                }
                other => panic!("{name}: expected corrupt, got {other:?}"),
            }
            // Writes refuse to build on a corrupt file too.
            assert!(
                matches!(
                    fresh.put("b", Vec::new(), None).await,
                    Err(RegistryError::Corrupt { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn encoding_round_trips() {
        let mut map = Map::new();
        map.insert("a".into(), (Version(3), vec![1, 2, 3]));
        map.insert("b:c".into(), (Version(0), Vec::new()));
        assert_eq!(decode(&encode(&map)), Ok(map));
    }
}
