//! What the static handler keeps in memory so a request for a web asset costs about what it costs
//! nginx: small files with their metadata (validated by one `stat` per request, never a blocking
//! thread), and each compressible file compressed once per version (brotli and gzip), never per
//! request. Both caches are bounded by bytes and forget the least recently used entry first.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::HeaderValue;
use prometheus::{IntCounterVec, Opts, Registry};

/// Files up to this size are kept in memory whole; larger ones are streamed from disk.
pub const SMALL_FILE_MAX: u64 = 1024 * 1024;
/// All cached files (and their precompressed siblings) together.
pub const FILE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// All compressed variants together.
pub const COMPRESSED_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Compressible files up to this size are compressed once and kept; larger ones (rare in a web
/// build) are left to the generic compression layer, as before.
pub const COMPRESS_SOURCE_MAX: u64 = 4 * 1024 * 1024;
/// Brotli 9 with a 4 MiB window: most of quality 11's gain at a fraction of its time, and it
/// runs once per file version.
const BROTLI_QUALITY: u32 = 9;
const BROTLI_WINDOW: u32 = 22;
const GZIP_LEVEL: u32 = 9;
/// Fixed cost counted for an entry besides its bytes (paths, headers, map slots).
const ENTRY_OVERHEAD: usize = 512;

/// The identity of a file's current version: a rewrite, a rename over it or a re-pointed
/// symlink changes at least one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    pub fn size(&self) -> u64 {
        self.len
    }
}

/// The encodings we produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Br,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::Br, Encoding::Gzip];

    /// The `Content-Encoding` / `Accept-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    pub fn from_token(token: &str) -> Option<Self> {
        match token {
            "br" => Some(Encoding::Br),
            "gzip" => Some(Encoding::Gzip),
            _ => None,
        }
    }

    /// The file name suffix of a precompressed sibling.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// A file as the handler serves it: where it really is, its version, the headers that only
/// depend on the file, and its bytes when it is small.
#[derive(Debug)]
pub struct CachedFile {
    /// The canonical path, inside the root.
    pub real: PathBuf,
    pub id: FileId,
    pub modified: Option<SystemTime>,
    pub content_type: HeaderValue,
    pub compressible: bool,
    pub body: Option<Bytes>,
    /// Precompressed siblings (`.br`, `.gz`) inside the root; empty for incompressible types.
    pub siblings: Vec<Sibling>,
    /// When the path was last resolved in full (symlinks, siblings); see [`REVERIFY_AFTER`].
    pub verified: Instant,
}

/// A precompressed variant found next to the file.
#[derive(Debug)]
pub struct Sibling {
    pub encoding: Encoding,
    pub real: PathBuf,
    pub id: FileId,
    pub modified: Option<SystemTime>,
    pub body: Option<Bytes>,
}

/// Between two full resolutions, one `stat` of the requested path tells whether the cached entry
/// is still the file there (content, renames and symlink changes are seen at once). Siblings
/// that appear or go away later are noticed within this time.
pub const REVERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl CachedFile {
    fn weight(&self) -> usize {
        let bytes = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        ENTRY_OVERHEAD
            + self.real.as_os_str().len()
            + bytes(&self.body)
            + self
                .siblings
                .iter()
                .map(|s| ENTRY_OVERHEAD + s.real.as_os_str().len() + bytes(&s.body))
                .sum::<usize>()
    }

    pub fn sibling(&self, encoding: Encoding) -> Option<&Sibling> {
        self.siblings.iter().find(|s| s.encoding == encoding)
    }
}

/// A map bounded by the total weight (bytes) of its values, evicting the least recently used.
pub struct ByteLru<K, V> {
    items: HashMap<K, Slot<V>>,
    /// Use order: tick → key; the first is the least recently used.
    order: BTreeMap<u64, K>,
    tick: u64,
    used: usize,
    budget: usize,
}

struct Slot<V> {
    value: V,
    weight: usize,
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> ByteLru<K, V> {
    pub fn new(budget: usize) -> Self {
        ByteLru {
            items: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            used: 0,
            budget,
        }
    }

    pub fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let slot = self.items.get_mut(key)?;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.tick += 1;
            slot.tick = self.tick;
            self.order.insert(self.tick, k);
        }
        Some(slot.value.clone())
    }

    /// Keep `value`, evicting as needed; a value heavier than the whole budget is not kept.
    pub fn insert(&mut self, key: K, value: V, weight: usize) -> bool {
        self.remove(&key);
        if weight > self.budget {
            return false;
        }
        while self.used + weight > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.items.remove(&oldest) {
                self.used -= slot.weight;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.items.insert(
            key,
            Slot {
                value,
                weight,
                tick: self.tick,
            },
        );
        self.used += weight;
        true
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(slot) = self.items.remove(key) {
            self.order.remove(&slot.tick);
            self.used -= slot.weight;
        }
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

type CompressedKey = (PathBuf, FileId, Encoding);
/// A compression under way, awaited by every request that wants its result.
type Pending = Shared<BoxFuture<'static, Option<Bytes>>>;

/// The static handler's memory: files by requested path, compressed variants by file version.
pub struct StaticCache {
    files: Mutex<ByteLru<PathBuf, Arc<CachedFile>>>,
    compressed: Arc<Mutex<ByteLru<CompressedKey, Bytes>>>,
    /// Compressions under way, so concurrent first requests wait for one instead of each
    /// compressing.
    inflight: Arc<Mutex<HashMap<CompressedKey, Pending>>>,
    compressions: IntCounterVec,
}

impl std::fmt::Debug for StaticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticCache")
    }
}

/// A poisoned lock only means another request panicked while holding it; the map is still valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StaticCache {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        Self::with_budgets(registry, FILE_CACHE_BYTES, COMPRESSED_CACHE_BYTES)
    }

    pub fn with_budgets(
        registry: &Registry,
        file_bytes: usize,
        compressed_bytes: usize,
    ) -> anyhow::Result<Self> {
        let compressions = IntCounterVec::new(
            Opts::new(
                "ef_static_compressions_total",
                "Static files compressed by the server, by encoding (once per file version; \
                 a steady rise means the compressed cache is too small or files keep changing)",
            ),
            &["encoding"],
        )?;
        registry.register(Box::new(compressions.clone()))?;
        for e in Encoding::ALL {
            compressions.with_label_values(&[e.token()]);
        }
        Ok(StaticCache {
            files: Mutex::new(ByteLru::new(file_bytes)),
            compressed: Arc::new(Mutex::new(ByteLru::new(compressed_bytes))),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            compressions,
        })
    }

    /// The cached entry for `requested`, if one is kept and still the file there (one `stat`).
    pub fn current(&self, requested: &Path) -> Option<Arc<CachedFile>> {
        let entry = lock(&self.files).get(requested)?;
        let fresh = entry.verified.elapsed() < REVERIFY_AFTER
            && std::fs::metadata(requested).is_ok_and(|m| FileId::of(&m) == entry.id);
        if fresh { Some(entry) } else { None }
    }

    /// The entry last kept for `requested`, fresh or not (its bytes may be reused after a
    /// resolution finds the same version).
    pub fn previous(&self, requested: &Path) -> Option<Arc<CachedFile>> {
        lock(&self.files).get(requested)
    }

    pub fn keep(&self, requested: PathBuf, file: Arc<CachedFile>) {
        let weight = file.weight();
        lock(&self.files).insert(requested, file, weight);
    }

    pub fn forget(&self, requested: &Path) {
        lock(&self.files).remove(requested);
    }

    /// `file` compressed with `encoding`: from the cache, or compressed now on a blocking thread,
    /// once however many requests ask at the same time, and kept even if every one of them goes
    /// away before it is done (the compression is a task of its own). `None` if the file could
    /// not be read as the version `file` describes (it changed; the next request sees the new one).
    pub async fn compressed(&self, file: &Arc<CachedFile>, encoding: Encoding) -> Option<Bytes> {
        let key = (file.real.clone(), file.id, encoding);
        if let Some(bytes) = lock(&self.compressed).get(&key) {
            return Some(bytes);
        }
        let pending = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = self.spawn_compression(file.clone(), key.clone());
                    inflight.insert(key, p.clone());
                    p
                }
            }
        };
        pending.await
    }

    /// Compress, keep the result, and leave the in-flight table.
    fn spawn_compression(&self, file: Arc<CachedFile>, key: CompressedKey) -> Pending {
        let encoding = key.2;
        let counter = self.compressions.with_label_values(&[encoding.token()]);
        let (compressed, inflight) = (self.compressed.clone(), self.inflight.clone());
        let task = tokio::spawn(async move {
            let source = file.clone();
            let done = tokio::task::spawn_blocking(move || {
                let out = compress_file(&source, encoding);
                if out.is_ok() {
                    counter.inc();
                }
                out
            })
            .await;
            let result = match done {
                Ok(Ok(bytes)) => Some(bytes),
                Ok(Err(e)) => {
                    tracing::warn!(path = %file.real.display(), error = %e,
                        "could not compress a static file; serving it uncompressed");
                    None
                }
                Err(e) => {
                    tracing::warn!(path = %file.real.display(), error = %e,
                        "compressing a static file failed; serving it uncompressed");
                    None
                }
            };
            if let Some(bytes) = &result {
                let weight = bytes.len() + ENTRY_OVERHEAD;
                lock(&compressed).insert(key.clone(), bytes.clone(), weight);
            }
            lock(&inflight).remove(&key);
            result
        });
        task.map(|joined| joined.ok().flatten()).boxed().shared()
    }

    /// Bytes held by the file cache and the compressed cache.
    pub fn used(&self) -> (usize, usize) {
        (lock(&self.files).used(), lock(&self.compressed).used())
    }
}

/// Read `file` (from memory when small) and compress it.
fn compress_file(file: &CachedFile, encoding: Encoding) -> io::Result<Bytes> {
    let source = match &file.body {
        Some(b) => b.clone(),
        None => read_version(&file.real, file.id)?,
    };
    compress(&source, encoding).map(Bytes::from)
}

/// The whole file at `path`, only if it is still version `id`.
pub fn read_version(path: &Path, id: FileId) -> io::Result<Bytes> {
    let mut f = std::fs::File::open(path)?;
    if FileId::of(&f.metadata()?) != id {
        return Err(io::Error::other("the file changed while being read"));
    }
    let mut buf = Vec::with_capacity(usize::try_from(id.size()).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    if buf.len() as u64 != id.size() {
        return Err(io::Error::other("the file changed while being read"));
    }
    Ok(Bytes::from(buf))
}

pub fn compress(data: &[u8], encoding: Encoding) -> io::Result<Vec<u8>> {
    match encoding {
        Encoding::Br => {
            let mut w = brotli::CompressorWriter::new(
                Vec::with_capacity(data.len() / 4),
                64 * 1024,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            );
            w.write_all(data)?;
            Ok(w.into_inner())
        }
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 3),
                flate2::Compression::new(GZIP_LEVEL),
            );
            e.write_all(data)?;
            e.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_respects_its_byte_budget_and_evicts_the_least_recent() {
        let mut lru: ByteLru<u32, u32> = ByteLru::new(1000);
        for k in 0..10 {
            assert!(lru.insert(k, k, 100));
        }
        assert_eq!(lru.used(), 1000);
        assert_eq!(lru.len(), 10);
        // 0 used recently: 1 is the oldest now.
        assert_eq!(lru.get(&0), Some(0));
        assert!(lru.insert(10, 10, 250));
        assert!(lru.used() <= 1000, "{}", lru.used());
        assert_eq!(lru.get(&0), Some(0));
        assert_eq!(lru.get(&1), None);
        assert_eq!(lru.get(&2), None);
        assert_eq!(lru.get(&3), None);
        assert_eq!(lru.get(&4), Some(4));
        // Too heavy for the whole budget: not kept, nothing evicted for it.
        let before = lru.len();
        assert!(!lru.insert(99, 99, 1001));
        assert_eq!(lru.len(), before);
        // Replacing a key counts its weight once.
        assert!(lru.insert(4, 44, 100));
        assert_eq!(lru.get(&4), Some(44));
        let sum: usize = lru.items.values().map(|s| s.weight).sum();
        assert_eq!(sum, lru.used());
        lru.remove(&4);
        assert_eq!(lru.get(&4), None);
        let sum: usize = lru.items.values().map(|s| s.weight).sum();
        assert_eq!(sum, lru.used());
        assert_eq!(lru.order.len(), lru.items.len());
    }

    #[test]
    fn many_files_stay_within_the_file_cache_budget() {
        let registry = Registry::new();
        let cache = StaticCache::with_budgets(&registry, 300_000, 10_000).unwrap();
        for i in 0..100 {
            let body = Bytes::from(vec![b'x'; 10_000]);
            let file = Arc::new(CachedFile {
                real: PathBuf::from(format!("/w/f{i}.txt")),
                id: FileId {
                    dev: 1,
                    ino: i,
                    len: 10_000,
                    mtime: 0,
                    mtime_nsec: 0,
                },
                modified: None,
                content_type: HeaderValue::from_static("text/plain"),
                compressible: true,
                body: Some(body),
                siblings: Vec::new(),
                verified: Instant::now(),
            });
            cache.keep(PathBuf::from(format!("/w/f{i}.txt")), file);
            assert!(cache.used().0 <= 300_000, "{:?}", cache.used());
        }
        assert!(cache.used().0 > 250_000, "{:?}", cache.used());
        // The newest is kept, the oldest is gone.
        assert!(cache.previous(Path::new("/w/f99.txt")).is_some());
        assert!(cache.previous(Path::new("/w/f0.txt")).is_none());
    }

    #[test]
    fn compression_round_trips() {
        let data = "console.log('hello');\n".repeat(1000);
        let br = compress(data.as_bytes(), Encoding::Br).unwrap();
        let mut out = Vec::new();
        brotli::Decompressor::new(br.as_slice(), 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data.as_bytes());
        assert!(br.len() < data.len() / 10);
        let gz = compress(data.as_bytes(), Encoding::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data.as_bytes());
    }

    #[tokio::test]
    async fn a_file_version_is_compressed_once() {
        let registry = Registry::new();
        let cache = StaticCache::new(&registry).unwrap();
        let data = Bytes::from("a{color:red}\n".repeat(500));
        let file = Arc::new(CachedFile {
            real: PathBuf::from("/w/a.css"),
            id: FileId {
                dev: 1,
                ino: 1,
                len: data.len() as u64,
                mtime: 0,
                mtime_nsec: 0,
            },
            modified: None,
            content_type: HeaderValue::from_static("text/css"),
            compressible: true,
            body: Some(data),
            siblings: Vec::new(),
            verified: Instant::now(),
        });
        let (a, b) = tokio::join!(
            cache.compressed(&file, Encoding::Br),
            cache.compressed(&file, Encoding::Br)
        );
        assert_eq!(a, b);
        assert!(cache.compressed(&file, Encoding::Br).await.is_some());
        assert!(cache.compressed(&file, Encoding::Gzip).await.is_some());
        let count = |e: &str| cache.compressions.with_label_values(&[e]).get();
        assert_eq!(count("br"), 1);
        assert_eq!(count("gzip"), 1);
        assert!(lock(&cache.inflight).is_empty());
    }
}
