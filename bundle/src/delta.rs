//! Delta pulls: with an earlier version of a wafer on disk, fetch only the frames of the new
//! `disk.img.zst` whose content the old image does not hold, rebuild the others locally, and pass
//! the whole result through a [`StreamSink`], which checks it against the signed manifest
//! (docs/bundle.md, "Delta pulls").
//!
//! The pieces, transport-independent:
//!
//! * [`RangeFetch`]: "write bytes `offset..offset+len` of the layer blob" (HTTP `Range` on a
//!   registry blob; [`FileRange`] for a file, e.g. an OCI layout's blob);
//! * [`read_remote_table`]: the seek table from one small fetch of the layer's tail, checked
//!   against the frame count and size of the signed manifest;
//! * [`BlockIndex`]: what the pusher publishes beside the layer (untrusted, an optimisation
//!   only): a truncated sha256 per 4 KiB block of the image (zero blocks marked) and each
//!   frame's compressed sha256;
//! * [`plan`]: hashes the old image's blocks and decides, per new frame, whether every one of
//!   its blocks is available locally (at any offset) or the frame must be fetched; fetched
//!   frames are coalesced into ranges;
//! * [`assemble`]: fetches the ranges, rebuilds the local frames and recompresses them with the
//!   manifest's level (the same parameters as the builder), keeps a rebuilt frame only when its
//!   sha256 is the index's (otherwise fetches it), and writes every byte, in order, into the
//!   sink. A lying index or a remote sending wrong bytes can waste bandwidth or fail the pull
//!   with a typed error; it cannot produce a disk the sink accepts unless it is the signed one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rootfs::zseek::{self, FrameEntry, SeekTable, MAX_FRAME_SIZE};
use sha2::{Digest, Sha256};

use crate::digest::BLOCK_SIZE;
use crate::disk::{Disk, DiskError};
use crate::stream::{Expected, StreamError, StreamSink, MAX_STREAM_FRAMES};

/// An error of a [`RangeFetch`] implementation (the transport's own error, boxed).
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Fetches byte ranges of the disk layer blob.
pub trait RangeFetch {
    /// Writes exactly the bytes `offset..offset + len` of the blob to `out` (for HTTP: a
    /// `Range: bytes=offset-(offset+len-1)` request, the body copied to `out`). An error from
    /// `out` must end the call with an error.
    fn fetch(&mut self, offset: u64, len: u64, out: &mut dyn Write) -> Result<(), FetchError>;
}

/// Largest block index accepted, decompressed (64 MiB: images up to 32 GiB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// First bytes of a block index (before zstd compression).
pub const INDEX_MAGIC: &[u8; 8] = b"wafer-bi";
/// Block index format version.
pub const INDEX_VERSION: u32 = 1;
/// OCI media type of the block index object (docs/bundle.md).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.wafer.block-index.v1+zstd";
/// Consecutive local frames rebuilt in parallel.
const BATCH: usize = 16;
const HEADER: usize = 60;
const FRAME_ENTRY: usize = 40;

/// Why a delta pull (or the tail read) failed.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The transport failed.
    #[error("fetching bytes {offset}..{} of the disk layer: {source}", offset + len)]
    Fetch {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// The transport's error.
        source: FetchError,
    },
    /// The remote sent fewer or more bytes than asked for.
    #[error("fetching bytes {offset}..{} of the disk layer: the remote sent {got} bytes{}", offset + len, if *got > *len { " or more" } else { "" })]
    WrongLength {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Bytes received.
        got: u64,
    },
    /// The seek table at the layer's tail is invalid or disagrees with the signed manifest.
    #[error("disk layer seek table (from its last {fetched} bytes): {what}")]
    Tail {
        /// Bytes of the tail fetched.
        fetched: u64,
        /// What is wrong.
        what: String,
    },
    /// The block index does not parse.
    #[error("block index: {0}")]
    Index(String),
    /// The earlier version's disk cannot be read.
    #[error("the earlier version: {0}")]
    Old(#[from] DiskError),
    /// The earlier version's disk cannot be used (frames not aligned to 4 KiB blocks, damaged).
    #[error("the earlier version {path}: {what}")]
    OldUnusable {
        /// Its disk.
        path: PathBuf,
        /// Why.
        what: String,
    },
    /// The sink refused the bytes (the disk is not the signed one, I/O on the partial file).
    #[error(transparent)]
    Stream(#[from] StreamError),
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// A [`RangeFetch`] over a local file (an OCI layout's blob, tests), counting what it serves.
#[derive(Debug)]
pub struct FileRange {
    file: File,
    path: PathBuf,
    len: u64,
    fetched: u64,
    requests: u64,
}

impl FileRange {
    /// Opens `path`.
    pub fn open(path: &Path) -> io::Result<FileRange> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileRange {
            file,
            path: path.to_path_buf(),
            len,
            fetched: 0,
            requests: 0,
        })
    }

    /// Bytes served so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl RangeFetch for FileRange {
    fn fetch(&mut self, offset: u64, len: u64, out: &mut dyn Write) -> Result<(), FetchError> {
        self.requests += 1;
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| {
                format!(
                    "{}: range {offset}+{len} past the end ({} bytes)",
                    self.path.display(),
                    self.len
                )
            })?;
        let mut buf = vec![0u8; (1usize << 20).min(len as usize)];
        let mut at = offset;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            self.fetched += n as u64;
            at += n as u64;
        }
        Ok(())
    }
}

/// Passes at most `left` bytes to `out`, counting them.
struct Exact<'a> {
    out: &'a mut dyn Write,
    left: u64,
    got: u64,
}

impl Write for Exact<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.got += buf.len() as u64;
            return Err(io::Error::other(
                "the remote sent more bytes than asked for",
            ));
        }
        self.out.write_all(buf)?;
        self.left -= buf.len() as u64;
        self.got += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Fetches exactly `len` bytes at `offset` into `out`.
fn fetch_exact(
    fetch: &mut dyn RangeFetch,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
) -> Result<(), DeltaError> {
    let mut ex = Exact {
        out,
        left: len,
        got: 0,
    };
    let r = fetch.fetch(offset, len, &mut ex);
    match r {
        Err(source) if ex.got <= len => Err(DeltaError::Fetch {
            offset,
            len,
            source,
        }),
        _ if ex.got != len => Err(DeltaError::WrongLength {
            offset,
            len,
            got: ex.got,
        }),
        r => r.map_err(|source| DeltaError::Fetch {
            offset,
            len,
            source,
        }),
    }
}

/// Fetches a range into the sink; the sink's own refusal comes back typed.
fn fetch_to_sink(
    fetch: &mut dyn RangeFetch,
    offset: u64,
    len: u64,
    sink: &mut StreamSink,
) -> Result<(), DeltaError> {
    let r = fetch_exact(fetch, offset, len, sink);
    if let Some(e) = sink.take_error() {
        return Err(DeltaError::Stream(e));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// The seek table from the tail

/// The new layer's seek table, read from its tail.
#[derive(Debug, Clone)]
pub struct RemoteTable {
    /// The layer's size (`compressed.size` of the signed manifest).
    pub layer_size: u64,
    /// The seek table.
    pub table: SeekTable,
    /// The tail bytes fetched (they end the file; the seek table frame is at their end).
    tail: Vec<u8>,
}

impl RemoteTable {
    /// Bytes fetched to read the table.
    pub fn tail_bytes(&self) -> u64 {
        self.tail.len() as u64
    }
}

/// Fetches the seek table from the last bytes of the layer (one request) and checks it against
/// the signed manifest: `compressed.size` is the layer's size whatever the registry's manifest
/// says, the table must declare `compressed.frames` frames and `image.size` bytes.
pub fn read_remote_table(
    fetch: &mut dyn RangeFetch,
    expected: &Expected,
) -> Result<RemoteTable, DeltaError> {
    let layer = expected.compressed_size;
    if expected.frames > MAX_STREAM_FRAMES {
        return Err(DeltaError::Tail {
            fetched: 0,
            what: format!(
                "{} frames is more than {MAX_STREAM_FRAMES}",
                expected.frames
            ),
        });
    }
    // The table as the builder writes it: checksums on, 12 bytes per frame.
    let want = (8 + expected.frames * 12 + zseek::FOOTER_SIZE).min(layer);
    let mut tail = Vec::with_capacity(want as usize);
    fetch_exact(fetch, layer - want, want, &mut tail)?;
    let table = parse_tail(layer, &tail, expected.frames)?;
    if table.decompressed_size() != expected.image_size {
        return Err(DeltaError::Tail {
            fetched: want,
            what: format!(
                "declares {} decompressed bytes, the signed wafer.json image.size {}",
                table.decompressed_size(),
                expected.image_size
            ),
        });
    }
    Ok(RemoteTable {
        layer_size: layer,
        table,
        tail,
    })
}

/// Parses the seek table from `tail`, the last bytes of a `layer_size`-byte seekable zstd file,
/// which must hold `expected_frames` frames (checked from the footer before anything is
/// allocated). The table must lie entirely inside `tail`.
pub fn parse_tail(
    layer_size: u64,
    tail: &[u8],
    expected_frames: u64,
) -> Result<SeekTable, DeltaError> {
    let fetched = tail.len() as u64;
    let bad = |what: String| DeltaError::Tail { fetched, what };
    if fetched > layer_size {
        return Err(bad(format!(
            "{fetched} tail bytes but the layer has {layer_size}"
        )));
    }
    let f = tail
        .len()
        .checked_sub(zseek::FOOTER_SIZE as usize)
        .and_then(|s| tail.get(s..))
        .ok_or_else(|| bad("too short for a seek table footer".into()))?;
    let nframes = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
    if u64::from(nframes) != expected_frames {
        return Err(bad(format!(
            "{nframes} frames, the signed wafer.json says {expected_frames}"
        )));
    }
    let entry = if f[4] & 0x80 != 0 { 12u64 } else { 8 };
    let table_frame = 8 + u64::from(nframes) * entry + zseek::FOOTER_SIZE;
    if table_frame > fetched {
        return Err(bad(format!(
            "the table needs {table_frame} bytes, more than the tail fetched"
        )));
    }
    let mut r = TailReader {
        len: layer_size,
        start: layer_size - fetched,
        tail,
        pos: 0,
    };
    SeekTable::read_from(&mut r).map_err(|e| bad(e.to_string()))
}

/// A file of `len` bytes of which only the tail (from `start`) is known.
struct TailReader<'a> {
    len: u64,
    start: u64,
    tail: &'a [u8],
    pos: u64,
}

impl Read for TailReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.start {
            return Err(io::Error::other("read before the fetched tail"));
        }
        let at = (self.pos - self.start) as usize;
        let avail = self.tail.get(at..).unwrap_or(&[]);
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for TailReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

// ---------------------------------------------------------------------------------------------
// The block index

/// One frame of the indexed layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFrame {
    /// Compressed bytes.
    pub compressed_size: u32,
    /// Decompressed bytes.
    pub decompressed_size: u32,
    /// sha256 of the compressed frame.
    pub sha256: [u8; 32],
}

/// The block index of a layer (docs/bundle.md, "Delta pulls"): untrusted, an optimisation only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIndex {
    /// sha256 of the whole layer it describes (`compressed.sha256`).
    pub layer_sha256: [u8; 32],
    /// Decompressed image size.
    pub image_size: u64,
    /// The frames, in order.
    pub frames: Vec<IndexFrame>,
    /// One key per 4 KiB block of the image ([`block_key`]): 0 for an all-zero block.
    pub blocks: Vec<u64>,
}

/// The key of a block: 0 if it is all zeros, else the first 8 bytes of its sha256 (little
/// endian), 1 if those happen to be 0.
pub fn block_key(block: &[u8]) -> u64 {
    if zseek::is_all_zero(block) {
        return 0;
    }
    let d: [u8; 32] = Sha256::digest(block).into();
    key_of(&d)
}

fn key_of(d: &[u8; 32]) -> u64 {
    let k = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    k.max(1)
}

/// Keys of the blocks of one frame's data (which starts on a block boundary); multi-buffer
/// sha256 for the whole blocks.
fn frame_keys(data: &[u8]) -> Vec<u64> {
    let whole = data.len() / BLOCK_SIZE;
    let mut keys = vec![0u64; data.len().div_ceil(BLOCK_SIZE)];
    let nonzero: Vec<usize> = (0..whole)
        .filter(|i| !zseek::is_all_zero(&data[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]))
        .collect();
    let bodies: Vec<&[u8]> = nonzero
        .iter()
        .map(|i| &data[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE])
        .collect();
    let mut out = vec![[0u8; 32]; bodies.len()];
    tape_sha256::hash_many(&bodies, &mut out);
    for (i, d) in nonzero.iter().zip(&out) {
        keys[*i] = key_of(d);
    }
    if whole < keys.len() {
        keys[whole] = block_key(&data[whole * BLOCK_SIZE..]);
    }
    keys
}

/// Checks that every frame starts on a 4 KiB block boundary.
fn check_aligned(table: &SeekTable) -> Result<(), String> {
    match table
        .frames
        .iter()
        .position(|f| f.decompressed_offset % BLOCK_SIZE as u64 != 0)
    {
        Some(i) => Err(format!(
            "frame {i} starts at decompressed offset {}, not a multiple of {BLOCK_SIZE}",
            table.frames[i].decompressed_offset
        )),
        None => Ok(()),
    }
}

impl BlockIndex {
    /// Computes the index of a bundle's disk in one parallel pass (what the pusher publishes).
    pub fn compute(disk: &Disk) -> Result<BlockIndex, DeltaError> {
        let table = disk.table();
        check_aligned(table).map_err(|what| DeltaError::OldUnusable {
            path: disk.path().to_path_buf(),
            what,
        })?;
        let n = table.frames.len();
        let mut blocks = Vec::with_capacity(disk.size().div_ceil(BLOCK_SIZE as u64) as usize);
        let mut frame_sha = Vec::with_capacity(n);
        let mut layer = Sha256::new();
        let mut src = disk.compressed_stream();
        zseek::for_each_frame(
            &mut src,
            table,
            0,
            |_, _, data| frame_keys(data),
            |_, _, _, keys| {
                blocks.extend(keys);
                Ok(())
            },
            |c| {
                layer.update(c);
                if frame_sha.len() < n {
                    frame_sha.push(<[u8; 32]>::from(Sha256::digest(c)));
                }
            },
        )
        .map_err(|source| DiskError::Zseek {
            path: disk.path().to_path_buf(),
            source,
        })?;
        let frames = table
            .frames
            .iter()
            .zip(frame_sha)
            .map(|(f, sha256)| IndexFrame {
                compressed_size: f.compressed_size,
                decompressed_size: f.decompressed_size,
                sha256,
            })
            .collect();
        Ok(BlockIndex {
            layer_sha256: layer.finalize().into(),
            image_size: disk.size(),
            frames,
            blocks,
        })
    }

    /// The index as published: the layout of docs/bundle.md, compressed as one zstd frame.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DeltaError> {
        let mut raw =
            Vec::with_capacity(HEADER + self.frames.len() * FRAME_ENTRY + self.blocks.len() * 8);
        raw.extend_from_slice(INDEX_MAGIC);
        raw.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        raw.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        raw.extend_from_slice(&self.layer_sha256);
        raw.extend_from_slice(&self.image_size.to_le_bytes());
        let n = u32::try_from(self.frames.len())
            .map_err(|_| DeltaError::Index("too many frames".into()))?;
        raw.extend_from_slice(&n.to_le_bytes());
        for f in &self.frames {
            raw.extend_from_slice(&f.compressed_size.to_le_bytes());
            raw.extend_from_slice(&f.decompressed_size.to_le_bytes());
            raw.extend_from_slice(&f.sha256);
        }
        for b in &self.blocks {
            raw.extend_from_slice(&b.to_le_bytes());
        }
        if raw.len() as u64 > MAX_INDEX_BYTES {
            return Err(DeltaError::Index(format!(
                "{} bytes, more than the {MAX_INDEX_BYTES} a reader accepts",
                raw.len()
            )));
        }
        let mut z = zstd::bulk::Compressor::new(3).map_err(|e| DeltaError::Index(e.to_string()))?;
        z.include_contentsize(true)
            .and_then(|_| z.include_checksum(true))
            .map_err(|e| DeltaError::Index(e.to_string()))?;
        z.compress(&raw)
            .map_err(|e| DeltaError::Index(e.to_string()))
    }

    /// Parses a published index (untrusted bytes): one zstd frame declaring its size (at most
    /// [`MAX_INDEX_BYTES`]), then the layout of docs/bundle.md with consistent counts.
    pub fn parse(bytes: &[u8]) -> Result<BlockIndex, DeltaError> {
        let bad = |s: String| DeltaError::Index(s);
        match zstd::zstd_safe::find_frame_compressed_size(bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => {
                return Err(bad(format!(
                    "{} bytes after the zstd frame",
                    bytes.len() - n
                )))
            }
            Err(c) => {
                return Err(bad(format!(
                    "not a zstd frame: {}",
                    zstd::zstd_safe::get_error_name(c)
                )))
            }
        }
        let size = match zstd::zstd_safe::get_frame_content_size(bytes) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(bad("the zstd frame does not declare its size".into())),
            Err(_) => return Err(bad("the zstd frame header is invalid".into())),
        };
        if size > MAX_INDEX_BYTES {
            return Err(bad(format!(
                "declares {size} bytes, more than {MAX_INDEX_BYTES}"
            )));
        }
        let raw = zstd::bulk::decompress(bytes, size as usize)
            .map_err(|e| bad(format!("decompression failed: {e}")))?;
        if raw.len() as u64 != size {
            return Err(bad(format!(
                "decompressed to {} bytes, the frame declares {size}",
                raw.len()
            )));
        }
        BlockIndex::parse_raw(&raw)
    }

    fn parse_raw(raw: &[u8]) -> Result<BlockIndex, DeltaError> {
        let bad = |s: String| DeltaError::Index(s);
        if raw.len() < HEADER || &raw[..8] != INDEX_MAGIC {
            return Err(bad("not a wafer block index (magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let version = u32_at(8);
        if version != INDEX_VERSION {
            return Err(bad(format!(
                "version {version}, this wafer reads {INDEX_VERSION}"
            )));
        }
        let bs = u32_at(12);
        if bs as usize != BLOCK_SIZE {
            return Err(bad(format!("block size {bs}, not {BLOCK_SIZE}")));
        }
        let mut layer_sha256 = [0u8; 32];
        layer_sha256.copy_from_slice(&raw[16..48]);
        let mut sz = [0u8; 8];
        sz.copy_from_slice(&raw[48..56]);
        let image_size = u64::from_le_bytes(sz);
        let nframes = u32_at(56) as u64;
        let nblocks = image_size.div_ceil(BLOCK_SIZE as u64);
        let want = nframes
            .checked_mul(FRAME_ENTRY as u64)
            .and_then(|f| nblocks.checked_mul(8).and_then(|b| b.checked_add(f)))
            .and_then(|x| x.checked_add(HEADER as u64));
        if want != Some(raw.len() as u64) {
            return Err(bad(format!(
                "{} bytes, but {nframes} frames and an image of {image_size} bytes need {}",
                raw.len(),
                want.map_or("more".to_string(), |w| w.to_string())
            )));
        }
        let mut frames = Vec::with_capacity(nframes as usize);
        let mut total = 0u64;
        for i in 0..nframes as usize {
            let o = HEADER + i * FRAME_ENTRY;
            let csize = u32_at(o);
            let dsize = u32_at(o + 4);
            if csize == 0 || dsize > MAX_FRAME_SIZE {
                return Err(bad(format!(
                    "frame {i}: compressed size {csize}, decompressed size {dsize}"
                )));
            }
            if total % BLOCK_SIZE as u64 != 0 {
                return Err(bad(format!("frame {i} does not start on a 4 KiB block")));
            }
            let mut sha256 = [0u8; 32];
            sha256.copy_from_slice(&raw[o + 8..o + 40]);
            frames.push(IndexFrame {
                compressed_size: csize,
                decompressed_size: dsize,
                sha256,
            });
            total += u64::from(dsize);
        }
        if total != image_size {
            return Err(bad(format!(
                "frames hold {total} bytes, the index says the image has {image_size}"
            )));
        }
        let start = HEADER + nframes as usize * FRAME_ENTRY;
        let blocks = raw[start..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(BlockIndex {
            layer_sha256,
            image_size,
            frames,
            blocks,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Planning

/// Where a block of a locally rebuilt frame comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Zeros.
    Zero,
    /// The old image at this byte offset.
    Old(u64),
}

/// What to do with one frame of the new layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePlan {
    /// Fetch it.
    Fetch,
    /// Rebuild it from these blocks and recompress it.
    Local(Vec<Source>),
}

/// A byte range of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// What a delta pull will fetch and rebuild.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One entry per frame of the new layer.
    pub frames: Vec<FramePlan>,
    /// The frames to fetch, adjacent ones coalesced.
    pub ranges: Vec<Range>,
    /// Bytes of `ranges` (the tail already fetched is [`RemoteTable::tail_bytes`]).
    pub bytes_to_fetch: u64,
    /// Why the index was not used, when it was not (everything is then fetched).
    pub index_ignored: Option<String>,
    remote: RemoteTable,
    frame_sha: Vec<[u8; 32]>,
    level: i32,
}

impl Plan {
    /// Fetch everything (no earlier version, or no usable index).
    pub fn full(remote: &RemoteTable, expected: &Expected, why: Option<String>) -> Plan {
        let n = remote.table.frames.len();
        let frames = vec![FramePlan::Fetch; n];
        let ranges = coalesce(&remote.table, &frames);
        Plan {
            bytes_to_fetch: ranges.iter().map(|r| r.len).sum(),
            frames,
            ranges,
            index_ignored: why,
            remote: remote.clone(),
            frame_sha: Vec::new(),
            level: expected.level,
        }
    }

    /// Frames rebuilt locally.
    pub fn local_frames(&self) -> usize {
        self.frames
            .iter()
            .filter(|f| matches!(f, FramePlan::Local(_)))
            .count()
    }

    /// The new layer's size.
    pub fn layer_size(&self) -> u64 {
        self.remote.layer_size
    }
}

fn coalesce(table: &SeekTable, frames: &[FramePlan]) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for (e, p) in table.frames.iter().zip(frames) {
        if *p != FramePlan::Fetch {
            continue;
        }
        match out.last_mut() {
            Some(r) if r.offset + r.len == e.compressed_offset => {
                r.len += u64::from(e.compressed_size)
            }
            _ => out.push(Range {
                offset: e.compressed_offset,
                len: u64::from(e.compressed_size),
            }),
        }
    }
    out
}

/// Why `index` cannot describe the layer of `remote` and `expected`, if it cannot.
fn index_disagrees(
    index: &BlockIndex,
    remote: &RemoteTable,
    expected: &Expected,
) -> Option<String> {
    if index.layer_sha256 != expected.compressed_sha256 {
        return Some(
            "it describes another layer (its layer sha256 is not compressed.sha256)".into(),
        );
    }
    if index.image_size != expected.image_size {
        return Some(format!(
            "image size {} is not image.size {}",
            index.image_size, expected.image_size
        ));
    }
    if index.frames.len() != remote.table.frames.len() {
        return Some(format!(
            "{} frames, the layer has {}",
            index.frames.len(),
            remote.table.frames.len()
        ));
    }
    for (i, (f, e)) in index.frames.iter().zip(&remote.table.frames).enumerate() {
        if f.compressed_size != e.compressed_size || f.decompressed_size != e.decompressed_size {
            return Some(format!(
                "frame {i}'s sizes differ from the layer's seek table"
            ));
        }
    }
    if index.blocks.len() as u64 != expected.image_size.div_ceil(BLOCK_SIZE as u64) {
        return Some("block count does not match the image size".into());
    }
    None
}

/// The old image's blocks: (key, offset), sorted by key, one offset per key.
fn old_blocks(old: &Disk) -> Result<Vec<(u64, u64)>, DeltaError> {
    let table = old.table();
    check_aligned(table).map_err(|what| DeltaError::OldUnusable {
        path: old.path().to_path_buf(),
        what,
    })?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut src = old.compressed_stream();
    zseek::for_each_frame(
        &mut src,
        table,
        0,
        |_, _, data| frame_keys(data),
        |_, off, _, keys| {
            out.extend(
                keys.into_iter()
                    .enumerate()
                    .filter(|(_, k)| *k != 0)
                    .map(|(i, k)| (k, off + (i * BLOCK_SIZE) as u64)),
            );
            Ok(())
        },
        |_| {},
    )
    .map_err(|source| DiskError::Zseek {
        path: old.path().to_path_buf(),
        source,
    })?;
    out.par_sort_unstable();
    out.dedup_by_key(|e| e.0);
    Ok(out)
}

/// Plans a delta pull of the layer `remote` (whose signed values are `expected`) from the
/// earlier version `old`, with the pusher's `index`. An index that does not describe this layer
/// gives a plan fetching everything ([`Plan::index_ignored`] says why); an old disk that cannot
/// be read is an error (the caller may then use [`Plan::full`]).
pub fn plan(
    old: &Disk,
    index: &BlockIndex,
    remote: &RemoteTable,
    expected: &Expected,
) -> Result<Plan, DeltaError> {
    if let Some(why) = index_disagrees(index, remote, expected) {
        tracing::info!(%why, "block index ignored");
        return Ok(Plan::full(remote, expected, Some(why)));
    }
    let old_keys = old_blocks(old)?;
    let mut frames = Vec::with_capacity(index.frames.len());
    for e in &remote.table.frames {
        let first = (e.decompressed_offset / BLOCK_SIZE as u64) as usize;
        let count = (e.decompressed_size as usize).div_ceil(BLOCK_SIZE);
        let keys = index.blocks.get(first..first + count).unwrap_or(&[]);
        let mut sources = Vec::with_capacity(count);
        for k in keys {
            if *k == 0 {
                sources.push(Source::Zero);
            } else if let Ok(i) = old_keys.binary_search_by_key(k, |e| e.0) {
                sources.push(Source::Old(old_keys[i].1));
            } else {
                break;
            }
        }
        frames.push(if sources.len() == count && keys.len() == count {
            FramePlan::Local(sources)
        } else {
            FramePlan::Fetch
        });
    }
    let ranges = coalesce(&remote.table, &frames);
    Ok(Plan {
        bytes_to_fetch: ranges.iter().map(|r| r.len).sum(),
        frames,
        ranges,
        index_ignored: None,
        remote: remote.clone(),
        frame_sha: index.frames.iter().map(|f| f.sha256).collect(),
        level: expected.level,
    })
}

// ---------------------------------------------------------------------------------------------
// Assembling

/// What a delta pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The layer's size.
    pub layer_size: u64,
    /// Bytes fetched by [`assemble`] (frames; the tail read before is not counted here).
    pub bytes_fetched: u64,
    /// Range requests made by [`assemble`].
    pub requests: u64,
    /// Frames rebuilt locally and kept.
    pub frames_local: usize,
    /// Frames fetched as planned.
    pub frames_fetched: usize,
    /// Frames planned as local whose rebuild did not match the index (then fetched).
    pub frames_refetched: usize,
}

/// Writes the bytes of the layer from `offset` into the sink, skipping what it already holds.
fn emit(sink: &mut StreamSink, offset: u64, bytes: &[u8]) -> Result<(), DeltaError> {
    let pos = sink.position();
    let end = offset + bytes.len() as u64;
    if end <= pos {
        return Ok(());
    }
    let skip = pos.saturating_sub(offset) as usize;
    sink.push(&bytes[skip..])?;
    Ok(())
}

/// Fetches `offset..offset+len` into the sink, skipping what it already holds.
fn fetch_range(
    fetch: &mut dyn RangeFetch,
    offset: u64,
    len: u64,
    sink: &mut StreamSink,
    report: &mut Report,
) -> Result<(), DeltaError> {
    let pos = sink.position();
    let end = offset + len;
    if end <= pos {
        return Ok(());
    }
    let from = offset.max(pos);
    fetch_to_sink(fetch, from, end - from, sink)?;
    report.bytes_fetched += end - from;
    report.requests += 1;
    Ok(())
}

/// A few decompressed frames of the old image (per rebuild task).
struct OldFrames<'a> {
    disk: &'a Disk,
    cache: Vec<(usize, Vec<u8>)>,
}

impl OldFrames<'_> {
    fn block(&mut self, offset: u64, len: usize) -> Option<&[u8]> {
        let table = self.disk.table();
        let i = table.frame_at(offset)?;
        if !self.cache.iter().any(|(j, _)| *j == i) {
            let e: FrameEntry = table.frames[i];
            let mut raw = vec![0u8; e.compressed_size as usize];
            self.disk
                .read_compressed_at(e.compressed_offset, &mut raw)
                .ok()?;
            let data = zseek::decompress_frame(i, &e, &raw).ok()?;
            if self.cache.len() >= 4 {
                self.cache.remove(0);
            }
            self.cache.push((i, data));
        }
        let (_, data) = self.cache.iter().find(|(j, _)| *j == i)?;
        let at = (offset - table.frames[i].decompressed_offset) as usize;
        data.get(at..at + len)
    }
}

/// Rebuilds frame `i` from its sources and recompresses it; `None` if a block cannot be read
/// or the result is not the frame the index announced.
fn rebuild(plan: &Plan, old: &Disk, i: usize, sources: &[Source]) -> Option<Vec<u8>> {
    let e = &plan.remote.table.frames[i];
    let want = plan.frame_sha.get(i)?;
    // Most frames are an old frame unchanged: its compressed bytes, when their sha256 is the
    // index's, are the frame (no decompression, no recompression).
    let first_old = sources.iter().enumerate().find_map(|(b, s)| match s {
        Source::Old(o) => Some((b, *o)),
        Source::Zero => None,
    });
    if let Some((b, o)) = first_old {
        let t = old.table();
        if let Some(k) = t.frame_at(o) {
            let c = t.frames[k];
            if c.compressed_size == e.compressed_size
                && c.decompressed_size == e.decompressed_size
                && c.decompressed_offset + (b * BLOCK_SIZE) as u64 == o
            {
                let mut raw = vec![0u8; c.compressed_size as usize];
                if old
                    .read_compressed_at(c.compressed_offset, &mut raw)
                    .is_ok()
                    && <[u8; 32]>::from(Sha256::digest(&raw)) == *want
                {
                    return Some(raw);
                }
            }
        }
    }
    let size = e.decompressed_size as usize;
    let mut data = vec![0u8; size];
    let mut cache = OldFrames {
        disk: old,
        cache: Vec::new(),
    };
    for (b, s) in sources.iter().enumerate() {
        let start = b * BLOCK_SIZE;
        let end = (start + BLOCK_SIZE).min(size);
        if let Source::Old(off) = s {
            let src = cache.block(*off, end - start)?;
            data[start..end].copy_from_slice(src);
        }
    }
    let (frame, _) = zseek::compress_one_frame(plan.level, &data).ok()?;
    let sha: [u8; 32] = Sha256::digest(&frame).into();
    (frame.len() == e.compressed_size as usize && sha == *want).then_some(frame)
}

/// Carries out `plan`: fetches its ranges with `fetch`, rebuilds its local frames from `old`,
/// and writes the whole layer, in order, into `sink` (from [`StreamSink::position`] on: a
/// resumed sink skips what it holds). The caller then calls [`StreamSink::finish`], which is
/// what decides whether the result is the signed disk.
pub fn assemble(
    plan: &Plan,
    old: Option<&Disk>,
    fetch: &mut dyn RangeFetch,
    sink: &mut StreamSink,
) -> Result<Report, DeltaError> {
    let table = &plan.remote.table;
    let mut report = Report {
        layer_size: plan.remote.layer_size,
        ..Report::default()
    };
    let n = table.frames.len();
    let mut i = 0;
    while i < n {
        let e = &table.frames[i];
        let frame_end = e.compressed_offset + u64::from(e.compressed_size);
        let local = matches!(plan.frames[i], FramePlan::Local(_)) && old.is_some();
        if frame_end <= sink.position() {
            i += 1;
            continue;
        }
        if !local {
            // A run of frames to fetch: one request.
            let mut j = i;
            while j < n && !(matches!(plan.frames[j], FramePlan::Local(_)) && old.is_some()) {
                j += 1;
            }
            let last = &table.frames[j - 1];
            let end = last.compressed_offset + u64::from(last.compressed_size);
            fetch_range(
                fetch,
                e.compressed_offset,
                end - e.compressed_offset,
                sink,
                &mut report,
            )?;
            report.frames_fetched += j - i;
            i = j;
            continue;
        }
        // A batch of local frames, rebuilt in parallel, written in order.
        let Some(old) = old else { break };
        let mut j = i;
        while j < n && j - i < BATCH && matches!(plan.frames[j], FramePlan::Local(_)) {
            j += 1;
        }
        let rebuilt: Vec<Option<Vec<u8>>> = (i..j)
            .into_par_iter()
            .map(|k| match &plan.frames[k] {
                FramePlan::Local(s) => rebuild(plan, old, k, s),
                FramePlan::Fetch => None,
            })
            .collect();
        for (k, r) in (i..j).zip(rebuilt) {
            let f = &table.frames[k];
            match r {
                Some(bytes) => {
                    emit(sink, f.compressed_offset, &bytes)?;
                    report.frames_local += 1;
                }
                None => {
                    fetch_range(
                        fetch,
                        f.compressed_offset,
                        u64::from(f.compressed_size),
                        sink,
                        &mut report,
                    )?;
                    report.frames_refetched += 1;
                }
            }
        }
        i = j;
    }
    // The seek table frame: its bytes came with the tail.
    let table_start = table.compressed_frames_size();
    let tail_start = plan.remote.layer_size - plan.remote.tail.len() as u64;
    let skip = (table_start - tail_start) as usize;
    emit(sink, table_start, &plan.remote.tail[skip..])?;
    Ok(report)
}

/// A whole pull, delta when it can: reads the seek table from the tail, plans against `old`
/// with `index` when both are given (falling back to fetching everything when the index is
/// unusable or the old disk unreadable), assembles into `sink` and finishes it.
pub fn pull(
    old: Option<&Disk>,
    index: Option<&[u8]>,
    fetch: &mut dyn RangeFetch,
    mut sink: StreamSink,
) -> Result<(crate::stream::StreamedDisk, PullSummary), DeltaError> {
    let expected = sink.expected().clone();
    let remote = read_remote_table(fetch, &expected)?;
    let plan = match (old, index) {
        (Some(old), Some(bytes)) => match BlockIndex::parse(bytes) {
            Ok(ix) => match plan(old, &ix, &remote, &expected) {
                Ok(p) => p,
                Err(e) => Plan::full(&remote, &expected, Some(e.to_string())),
            },
            Err(e) => Plan::full(&remote, &expected, Some(e.to_string())),
        },
        (None, _) => Plan::full(&remote, &expected, Some("no earlier version".into())),
        (Some(_), None) => Plan::full(&remote, &expected, Some("no block index".into())),
    };
    let report = assemble(&plan, old, fetch, &mut sink)?;
    let done = sink.finish()?;
    Ok((
        done,
        PullSummary {
            tail_bytes: remote.tail_bytes(),
            planned_bytes: plan.bytes_to_fetch,
            index_ignored: plan.index_ignored,
            report,
        },
    ))
}

/// What [`pull`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSummary {
    /// Bytes of the tail read for the seek table.
    pub tail_bytes: u64,
    /// Bytes the plan meant to fetch.
    pub planned_bytes: u64,
    /// Why the delta was not used, if it was not.
    pub index_ignored: Option<String>,
    /// What assembling did.
    pub report: Report,
}

impl PullSummary {
    /// All bytes fetched for the layer (tail included).
    pub fn total_fetched(&self) -> u64 {
        self.tail_bytes + self.report.bytes_fetched
    }
}
