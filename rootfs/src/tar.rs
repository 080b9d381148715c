//! Read a tar archive into a [`Tree`] without extracting anything to the host.
//!
//! Supported: plain archives and gzip, xz, bzip2 and zstd compressed ones (detected by magic
//! bytes, never by extension); the ustar format (POSIX.1-1988, `pax` spec "ustar Interchange
//! Format"), the GNU format (long names `L`, long link names `K`, old-GNU sparse files `S` with
//! extension headers) and the pax format (POSIX.1-2001 "pax Interchange Format": `path`,
//! `linkpath`, `size`, `uid`, `gid`, `mtime`/`atime`/`ctime` with fractions, `SCHILY.xattr.*`,
//! `LIBARCHIVE.xattr.*`, `RHT.security.selinux`, `SCHILY.devmajor/devminor`, and the GNU sparse
//! formats 0.0, 0.1 and 1.0 from the GNU tar manual, "Storing Sparse Files").
//!
//! File contents are *referenced*: for an uncompressed archive each regular file's extents point
//! into the archive itself; a compressed archive is decompressed once into an anonymous spool file
//! and the extents point into that. The spool is bounded ([`TarOptions::spool_budget`]: by default
//! 100 times the compressed size, at least 256 MiB), so a compression bomb is refused, not spooled.
//!
//! We parse headers ourselves rather than with the `tar` crate: we need the exact byte offset of
//! every member's data (including inside old-GNU and pax 1.0 sparse members, whose maps the `tar`
//! crate consumes internally), every pax record in order (format 0.0 sparse maps are repeated
//! keys), and hard caps on every length before anything is allocated.
//!
//! Hostile input gives a [`TarError`] naming the entry and the byte offset; memory use is bounded
//! by [`TarOptions::max_header_bytes`] per extended header plus the tree itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;

use crate::content::{Content, ContentError, Extent, FileSource, ReadAt, Source};
use crate::tree::{
    display_path, normalize, Device, Metadata, Node, NodeKind, PathError, Timestamp, Tree,
};

/// Size of a tar block.
pub const BLOCK: u64 = 512;

/// Default cap on the data of one extended header (pax `x`/`g`, GNU `L`/`K`) and on a pax 1.0 sparse map.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 1 << 20;

/// How a tar stream is compressed, as told by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (RFC 1952): `1f 8b`.
    Gzip,
    /// xz: `fd 37 7a 58 5a 00`.
    Xz,
    /// bzip2: `BZh`.
    Bzip2,
    /// zstd (RFC 8878): `28 b5 2f fd`.
    Zstd,
}

impl Compression {
    /// The compression whose magic starts `head`, or [`Compression::None`].
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Whether `block` (the first 512 bytes of a file) looks like a tar header: ustar/GNU magic at
/// 257, or (old v7 archives) a valid header checksum.
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < BLOCK as usize {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    match parse_octal(&block[148..156]) {
        Some(stored) => {
            let (u, s) = checksums(block);
            block.iter().any(|&b| b != 0) && (stored == u || stored as i64 == s)
        }
        None => false,
    }
}

/// Default spool budget, as a multiple of the compressed archive's size: real root filesystem
/// tarballs expand 3 to 10 times; a compression bomb expands thousands of times.
pub const DEFAULT_SPOOL_RATIO: u64 = 100;

/// Default spool budget floor: small archives may always expand to this many bytes.
pub const DEFAULT_SPOOL_FLOOR: u64 = 256 << 20;

/// Options for reading archives.
#[derive(Clone, Debug)]
pub struct TarOptions {
    /// Where compressed archives are spooled (an anonymous file); default [`std::env::temp_dir`].
    pub spool_dir: Option<PathBuf>,
    /// Cap on one extended header's data (pax records, GNU long names, pax 1.0 sparse maps).
    pub max_header_bytes: u64,
    /// Explicit cap on the decompressed (spooled) size of a compressed archive. `None`: the
    /// budget is [`TarOptions::spool_ratio`] times the compressed size, at least
    /// [`TarOptions::spool_floor`].
    pub max_decompressed_bytes: Option<u64>,
    /// Spool budget as a multiple of the compressed size when no explicit cap is set; default
    /// [`DEFAULT_SPOOL_RATIO`].
    pub spool_ratio: u64,
    /// Spool budget floor when no explicit cap is set; default [`DEFAULT_SPOOL_FLOOR`].
    pub spool_floor: u64,
}

impl Default for TarOptions {
    fn default() -> Self {
        TarOptions {
            spool_dir: None,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_decompressed_bytes: None,
            spool_ratio: DEFAULT_SPOOL_RATIO,
            spool_floor: DEFAULT_SPOOL_FLOOR,
        }
    }
}

impl TarOptions {
    /// The most bytes a compressed archive of `compressed` bytes may spool.
    pub fn spool_budget(&self, compressed: u64) -> u64 {
        match self.max_decompressed_bytes {
            Some(cap) => cap,
            None => compressed
                .saturating_mul(self.spool_ratio)
                .max(self.spool_floor),
        }
    }
}

/// Errors reading a tar archive. Offsets are byte offsets in the (decompressed) archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The archive file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The archive (or spool directory).
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// Decompressing failed (corrupt stream) or exceeded the cap.
    #[error("{path}: {compression:?} decompression failed after {at} bytes: {what}")]
    Decompress {
        /// The archive.
        path: String,
        /// The detected compression.
        compression: Compression,
        /// Decompressed bytes produced before the failure.
        at: u64,
        /// What went wrong.
        what: String,
    },
    /// The archive ends in the middle of a header or a member's data.
    #[error("truncated archive at offset {offset} ({entry}): {what}")]
    Truncated {
        /// Where the missing bytes should be.
        offset: u64,
        /// The entry being read (or `-`).
        entry: String,
        /// What was being read.
        what: &'static str,
    },
    /// A header's checksum does not match.
    #[error("bad header checksum at offset {offset}: stored {stored}, computed {computed}")]
    BadChecksum {
        /// Header offset.
        offset: u64,
        /// The checksum field.
        stored: u64,
        /// The sum of the header bytes.
        computed: u64,
    },
    /// A header field cannot be parsed or is out of range.
    #[error("entry {entry:?} at offset {offset}: field {field}: {what}")]
    BadField {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// Field name (`size`, `mode`, `pax path`, ...).
        field: &'static str,
        /// What is wrong.
        what: String,
    },
    /// A length is larger than the archive or a cap.
    #[error("entry {entry:?} at offset {offset}: {what}: {size} bytes exceeds {limit}")]
    TooLarge {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// What is too large.
        what: &'static str,
        /// The claimed size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A pax record is malformed.
    #[error("pax header at offset {offset}: record at byte {at}: {what}")]
    Pax {
        /// Header offset.
        offset: u64,
        /// Byte position of the record in the header data.
        at: usize,
        /// What is wrong.
        what: String,
    },
    /// A sparse map is malformed.
    #[error("entry {entry:?} at offset {offset}: sparse map: {what}")]
    Sparse {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// What is wrong.
        what: String,
    },
    /// The entry's path is unsafe or does not fit the tree.
    #[error("entry {entry:?} at offset {offset}: {source}")]
    Path {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// Why.
        source: PathError,
    },
    /// A hard link names a path not (yet) in the archive.
    #[error(
        "entry {entry:?} at offset {offset}: hard link target {target:?} is not an earlier entry"
    )]
    MissingLinkTarget {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// The link target.
        target: String,
    },
    /// The content map is inconsistent.
    #[error("entry {entry:?} at offset {offset}: {source}")]
    Content {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// Why.
        source: ContentError,
    },
    /// A feature we refuse (multi-volume members).
    #[error("entry {entry:?} at offset {offset}: unsupported: {what}")]
    Unsupported {
        /// Header offset.
        offset: u64,
        /// Entry name.
        entry: String,
        /// What.
        what: String,
    },
}

/// Statistics about a read archive.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TarStats {
    /// Members (excluding extended headers) read.
    pub entries: u64,
    /// Size of the uncompressed archive.
    pub archive_bytes: u64,
    /// What the reader accepted but a reviewer must know (no end-of-archive blocks: possibly
    /// truncated; entries of unknown type read as regular files), at most 1000.
    pub warnings: Vec<String>,
}

/// A positional source over an open anonymous file (the decompression spool).
#[derive(Debug)]
pub struct SpoolFile {
    file: File,
    len: u64,
}

impl SpoolFile {
    /// Wrap an open file of `len` bytes.
    pub fn new(file: File, len: u64) -> Self {
        SpoolFile { file, len }
    }
}

impl ReadAt for SpoolFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let max = (self.len - offset).min(buf.len() as u64) as usize;
        FileExt::read_at(&self.file, &mut buf[..max], offset)
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn as_file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

/// Open the archive at `path`: detect its compression, decompress into a spool if needed, and
/// return a positional source over the uncompressed tar bytes.
pub fn open_archive(
    path: &Path,
    opts: &TarOptions,
) -> Result<(Arc<dyn ReadAt>, Compression), TarError> {
    let shown = || path.display().to_string();
    let io_err = |source| TarError::Io {
        path: shown(),
        source,
    };
    let src = FileSource::open(path).map_err(io_err)?;
    let mut head = [0u8; 6];
    let n = src.read_at(0, &mut head).map_err(io_err)?;
    let compression = Compression::detect(&head[..n]);
    if compression == Compression::None {
        return Ok((Arc::new(src), compression));
    }
    // The same open file (reads through `FileSource` are positional, so its offset is still 0):
    // the path is not opened twice, so nothing can be swapped in between.
    let file = src.file().try_clone().map_err(io_err)?;
    let compressed = src.len();
    let input = io::BufReader::with_capacity(1 << 16, file);
    let mut dec: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(io_err)?)
        }
        Compression::None => return Ok((Arc::new(src), compression)),
    };
    let dir = opts.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let spool = tempfile::tempfile_in(&dir).map_err(|source| TarError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out = BufWriter::with_capacity(1 << 16, &spool);
    let cap = opts.spool_budget(compressed);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(TarError::Decompress {
                    path: shown(),
                    compression,
                    at: total,
                    what: e.to_string(),
                });
            }
        };
        total += n as u64;
        if total > cap {
            return Err(TarError::Decompress {
                path: shown(),
                compression,
                at: total,
                what: format!(
                    "the decompressed archive exceeds the spool budget of {cap} bytes \
                     ({compressed} compressed bytes; raise it with --max-spool)"
                ),
            });
        }
        out.write_all(&buf[..n]).map_err(|source| TarError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    out.flush().map_err(|source| TarError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    drop(out);
    tracing::debug!(archive = %path.display(), ?compression, bytes = total, "spooled decompressed archive");
    Ok((Arc::new(SpoolFile::new(spool, total)), compression))
}

/// Read the archive at `path` (any supported compression) into a tree.
pub fn read_tar_file(path: &Path, opts: &TarOptions) -> Result<(Tree, TarStats), TarError> {
    let (src, _) = open_archive(path, opts)?;
    read_tar(src, opts)
}

/// Read an uncompressed tar archive from `src` into a tree whose regular files reference `src`.
pub fn read_tar(src: Arc<dyn ReadAt>, opts: &TarOptions) -> Result<(Tree, TarStats), TarError> {
    let mut r = TarReader {
        src: src.clone(),
        len: src.len(),
        buf: vec![0u8; 32 * 1024],
        buf_off: 0,
        buf_len: 0,
        opts: opts.clone(),
        tree: Tree::default(),
        global: Vec::new(),
        current_pax: Vec::new(),
        stats: TarStats {
            entries: 0,
            archive_bytes: src.len(),
            warnings: Vec::new(),
        },
    };
    r.run()?;
    Ok((r.tree, r.stats))
}

// ---------------------------------------------------------------------------------------------
// Header field parsing (ustar layout: POSIX pax spec, "ustar Interchange Format"; GNU additions:
// GNU tar manual, "Basic Tar Format").

/// Unsigned and signed sums of a header with its checksum field read as spaces. Plain loops over
/// the two halves (not a per-byte range test): this runs once per member, a million times for
/// a million-entry archive.
fn checksums(block: &[u8]) -> (u64, i64) {
    let block = &block[..block.len().min(BLOCK as usize)];
    let (head, rest) = block.split_at(block.len().min(148));
    let tail = rest.get(8..).unwrap_or(&[]);
    let mut u = 8 * u64::from(b' ');
    let mut s = 8 * i64::from(b' ');
    for part in [head, tail] {
        for &b in part {
            u += u64::from(b);
            s += i64::from(b as i8);
        }
    }
    (u, s)
}

/// Octal field: leading spaces, digits, terminated by space or NUL. Empty -> 0.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let mut v: u64 = 0;
    for &b in &field[start..] {
        match b {
            b'0'..=b'7' => v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?,
            b' ' | 0 => break,
            _ => return None,
        }
    }
    Some(v)
}

/// Numeric field: octal, or GNU base-256 (high bit of the first byte set; 0xff = negative).
fn parse_numeric(field: &[u8]) -> Option<i128> {
    match field.first() {
        Some(&b) if b & 0x80 != 0 => {
            let negative = b == 0xff;
            let mut v: i128 = if negative { -1 } else { i128::from(b & 0x7f) };
            for &x in &field[1..] {
                v = v.checked_mul(256)?.checked_add(i128::from(x))?;
                if negative && v > 0 {
                    return None;
                }
            }
            if negative {
                // Two's complement: reconstruct the signed value.
                let bits = (field.len() * 8) as u32;
                if bits >= 127 {
                    return None;
                }
                let mut raw: i128 = 0;
                for &x in field {
                    raw = (raw << 8) | i128::from(x);
                }
                v = raw - (1i128 << bits);
            }
            Some(v)
        }
        _ => parse_octal(field).map(i128::from),
    }
}

fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(p) => &field[..p],
        None => field,
    }
}

/// A pax decimal time: `[-]SECONDS[.FRACTION]`.
fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let sec: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nsec == 0 {
            Some(Timestamp {
                sec: sec.checked_neg()?,
                nsec: 0,
            })
        } else {
            Some(Timestamp {
                sec: sec.checked_neg()?.checked_sub(1)?,
                nsec: 1_000_000_000 - nsec,
            })
        }
    } else {
        Some(Timestamp { sec, nsec })
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Decode `%XX` escapes (libarchive's url-encoding of xattr names).
fn url_decode(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hex = v.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(out)
}

/// One pax record: keyword and raw value bytes.
type PaxRecord = (Vec<u8>, Vec<u8>);

/// Parse pax records `"%d %s=%s\n"` (POSIX pax spec, "pax Extended Header").
fn parse_pax(data: &[u8], offset: u64) -> Result<Vec<PaxRecord>, TarError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let bad = |at: usize, what: &str| TarError::Pax {
        offset,
        at,
        what: what.to_string(),
    };
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or_else(|| bad(pos, "no length field"))?;
        let len =
            parse_decimal(&rest[..sp]).ok_or_else(|| bad(pos, "length is not a decimal number"))?;
        let len = usize::try_from(len).map_err(|_| bad(pos, "length too large"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad(
                pos,
                &format!(
                    "length {len} does not fit the {} remaining bytes",
                    rest.len()
                ),
            ));
        }
        let rec = &rest[sp + 1..len];
        let Some((&b'\n', body)) = rec.split_last() else {
            return Err(bad(pos, "record does not end with a newline"));
        };
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad(pos, "record has no '='"))?;
        if eq == 0 {
            return Err(bad(pos, "empty keyword"));
        }
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        pos += len;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

/// Extended-header state accumulated before a member's main header.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

struct TarReader {
    src: Arc<dyn ReadAt>,
    len: u64,
    buf: Vec<u8>,
    buf_off: u64,
    buf_len: usize,
    opts: TarOptions,
    tree: Tree,
    global: Vec<(Vec<u8>, Vec<u8>)>,
    /// The current member's local pax records in order (format 0.0 sparse maps repeat keys).
    current_pax: Vec<(Vec<u8>, Vec<u8>)>,
    stats: TarStats,
}

impl TarReader {
    /// Read `out.len()` bytes at `offset` through a small window cache.
    fn read_exact(
        &mut self,
        offset: u64,
        out: &mut [u8],
        entry: &str,
        what: &'static str,
    ) -> Result<(), TarError> {
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(TarError::Truncated {
                offset,
                entry: entry.to_string(),
                what,
            });
        }
        let in_window = offset >= self.buf_off
            && offset + out.len() as u64 <= self.buf_off + self.buf_len as u64;
        if !in_window {
            if out.len() > self.buf.len() {
                return self
                    .src
                    .read_exact_at(offset, out)
                    .map_err(|source| self.io_error(offset, entry, what, source));
            }
            let want = (self.len - offset).min(self.buf.len() as u64) as usize;
            let mut filled = 0;
            while filled < want {
                match self
                    .src
                    .read_at(offset + filled as u64, &mut self.buf[filled..want])
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.io_error(offset, entry, what, e)),
                }
            }
            self.buf_off = offset;
            self.buf_len = filled;
            if filled < out.len() {
                return Err(TarError::Truncated {
                    offset: offset + filled as u64,
                    entry: entry.to_string(),
                    what,
                });
            }
        }
        let start = (offset - self.buf_off) as usize;
        out.copy_from_slice(&self.buf[start..start + out.len()]);
        Ok(())
    }

    fn io_error(&self, offset: u64, entry: &str, what: &'static str, e: io::Error) -> TarError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TarError::Truncated {
                offset,
                entry: entry.to_string(),
                what,
            }
        } else {
            TarError::Io {
                path: format!("archive offset {offset} ({entry})"),
                source: e,
            }
        }
    }

    /// Read an extended header's data (capped) at `offset`.
    fn read_ext_data(
        &mut self,
        offset: u64,
        size: u64,
        hdr: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, TarError> {
        if size > self.opts.max_header_bytes {
            return Err(TarError::TooLarge {
                offset: hdr,
                entry: "-".into(),
                what,
                size,
                limit: self.opts.max_header_bytes,
            });
        }
        let mut v = vec![0u8; size as usize];
        self.read_exact(offset, &mut v, "-", what)?;
        Ok(v)
    }

    fn warn(&mut self, w: String) {
        if self.stats.warnings.len() < 1000 {
            self.stats.warnings.push(w);
        }
    }

    fn run(&mut self) -> Result<(), TarError> {
        let mut off = 0u64;
        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK as usize];
        loop {
            if off >= self.len {
                if off > 0 {
                    tracing::warn!(offset = off, "tar archive has no end-of-archive blocks");
                    self.warn(format!(
                        "no end-of-archive blocks after byte {off}: the archive may be truncated"
                    ));
                }
                if pending.long_name.is_some()
                    || pending.long_link.is_some()
                    || !pending.pax.is_empty()
                {
                    return Err(TarError::Truncated {
                        offset: off,
                        entry: "-".into(),
                        what: "header after extended header",
                    });
                }
                break;
            }
            self.read_exact(off, &mut block, "-", "header")?;
            if block.iter().all(|&b| b == 0) {
                // End of archive (two zero blocks; a lone one at the end is accepted too).
                if pending.long_name.is_some()
                    || pending.long_link.is_some()
                    || !pending.pax.is_empty()
                {
                    return Err(TarError::Truncated {
                        offset: off,
                        entry: "-".into(),
                        what: "header after extended header",
                    });
                }
                break;
            }
            let stored = parse_octal(&block[148..156]).ok_or_else(|| TarError::BadField {
                offset: off,
                entry: display_path(cstr(&block[..100])),
                field: "chksum",
                what: "not an octal number".into(),
            })?;
            let (u, s) = checksums(&block);
            if stored != u && stored as i64 != s {
                return Err(TarError::BadChecksum {
                    offset: off,
                    stored,
                    computed: u,
                });
            }
            let typeflag = block[156];
            let hdr_name = display_path(cstr(&block[..100]));
            let size_raw = parse_numeric(&block[124..136]).ok_or_else(|| TarError::BadField {
                offset: off,
                entry: hdr_name.clone(),
                field: "size",
                what: "not a number".into(),
            })?;
            let size = u64::try_from(size_raw).map_err(|_| TarError::BadField {
                offset: off,
                entry: hdr_name.clone(),
                field: "size",
                what: format!("negative size {size_raw}"),
            })?;
            let data_off = off + BLOCK;
            match typeflag {
                b'L' | b'K' | b'x' | b'g' => {
                    let what = match typeflag {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link name",
                        b'x' => "pax extended header",
                        _ => "pax global header",
                    };
                    let data = self.read_ext_data(data_off, size, off, what)?;
                    match typeflag {
                        b'L' => pending.long_name = Some(cstr(&data).to_vec()),
                        b'K' => pending.long_link = Some(cstr(&data).to_vec()),
                        b'x' => pending.pax.extend(parse_pax(&data, off)?),
                        _ => {
                            for (k, v) in parse_pax(&data, off)? {
                                self.global.retain(|(gk, _)| gk != &k);
                                if !v.is_empty() {
                                    self.global.push((k, v));
                                }
                            }
                        }
                    }
                    // Several extended headers in a row must not add up past the cap either.
                    let held = |v: &[(Vec<u8>, Vec<u8>)]| {
                        v.iter()
                            .map(|(k, v)| (k.len() + v.len()) as u64)
                            .sum::<u64>()
                    };
                    let total = held(&pending.pax) + held(&self.global);
                    if total > self.opts.max_header_bytes {
                        return Err(TarError::TooLarge {
                            offset: off,
                            entry: hdr_name.clone(),
                            what: "extended header records held at once",
                            size: total,
                            limit: self.opts.max_header_bytes,
                        });
                    }
                    off = next_header(data_off, size).ok_or_else(|| TarError::TooLarge {
                        offset: off,
                        entry: hdr_name.clone(),
                        what: "size",
                        size,
                        limit: self.len,
                    })?;
                }
                _ => {
                    let p = std::mem::take(&mut pending);
                    off = self.member(off, &block, size, p)?;
                    self.stats.entries += 1;
                }
            }
        }
        Ok(())
    }

    /// Handle one member whose main header is `block` at `off`; returns the next header offset.
    fn member(
        &mut self,
        off: u64,
        block: &[u8; 512],
        hdr_size: u64,
        p: Pending,
    ) -> Result<u64, TarError> {
        let typeflag = block[156];
        let magic = &block[257..265];
        let is_ustar = &magic[..6] == b"ustar\0";
        let is_gnu = magic == b"ustar  \0";

        // Effective pax records: globals first, then locals (later records win).
        let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in self.global.iter().chain(p.pax.iter()) {
            pax.insert(k.clone(), v.clone());
        }
        let pax_get = |k: &str| pax.get(k.as_bytes()).filter(|v| !v.is_empty());
        self.current_pax.clone_from(&p.pax);

        // Name: GNU.sparse.name > pax path > GNU long name > ustar prefix/name.
        let name: Vec<u8> = if let Some(n) = pax_get("GNU.sparse.name") {
            n.clone()
        } else if let Some(n) = pax_get("path") {
            n.clone()
        } else if let Some(n) = &p.long_name {
            n.clone()
        } else {
            let base = cstr(&block[..100]);
            let prefix = if is_ustar {
                cstr(&block[345..500])
            } else {
                &[][..]
            };
            if prefix.is_empty() {
                base.to_vec()
            } else {
                let mut v = prefix.to_vec();
                v.push(b'/');
                v.extend_from_slice(base);
                v
            }
        };
        let entry = display_path(&name);
        let link: Vec<u8> = if let Some(l) = pax_get("linkpath") {
            l.clone()
        } else if let Some(l) = &p.long_link {
            l.clone()
        } else {
            cstr(&block[157..257]).to_vec()
        };

        let field_err = |field: &'static str, what: String| TarError::BadField {
            offset: off,
            entry: entry.clone(),
            field,
            what,
        };
        let num = |range: std::ops::Range<usize>, field: &'static str| -> Result<i128, TarError> {
            parse_numeric(&block[range]).ok_or_else(|| field_err(field, "not a number".into()))
        };
        let pax_u32 = |k: &str, field: &'static str| -> Result<Option<u32>, TarError> {
            match pax_get(k) {
                None => Ok(None),
                Some(v) => parse_decimal(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        field_err(
                            field,
                            format!("{:?} is not a 32-bit decimal", display_path(v)),
                        )
                    }),
            }
        };
        let pax_time = |k: &str, field: &'static str| -> Result<Option<Timestamp>, TarError> {
            match pax_get(k) {
                None => Ok(None),
                Some(v) => parse_pax_time(v)
                    .map(Some)
                    .ok_or_else(|| field_err(field, format!("bad time {:?}", display_path(v)))),
            }
        };
        let to_u32 = |v: i128, field: &'static str| {
            u32::try_from(v).map_err(|_| field_err(field, format!("{v} out of range")))
        };

        let mode = num(100..108, "mode")?;
        let perm = (mode & 0o7777) as u16;
        let uid = match pax_u32("uid", "pax uid")? {
            Some(v) => v,
            None => to_u32(num(108..116, "uid")?, "uid")?,
        };
        let gid = match pax_u32("gid", "pax gid")? {
            Some(v) => v,
            None => to_u32(num(116..124, "gid")?, "gid")?,
        };
        let hdr_mtime = num(136..148, "mtime")?;
        let mtime = match pax_time("mtime", "pax mtime")? {
            Some(t) => t,
            None => Timestamp::from_secs(
                i64::try_from(hdr_mtime).map_err(|_| field_err("mtime", "out of range".into()))?,
            ),
        };
        let gnu_time = |range: std::ops::Range<usize>,
                        field: &'static str|
         -> Result<Option<Timestamp>, TarError> {
            if !is_gnu {
                return Ok(None);
            }
            let v = num(range, field)?;
            if v == 0 {
                return Ok(None);
            }
            Ok(Some(Timestamp::from_secs(
                i64::try_from(v).map_err(|_| field_err(field, "out of range".into()))?,
            )))
        };
        let atime = match pax_time("atime", "pax atime")? {
            Some(t) => t,
            None => gnu_time(345..357, "atime")?.unwrap_or(mtime),
        };
        let ctime = match pax_time("ctime", "pax ctime")? {
            Some(t) => t,
            None => gnu_time(357..369, "ctime")?.unwrap_or(mtime),
        };
        let crtime = pax_time("LIBARCHIVE.creationtime", "pax LIBARCHIVE.creationtime")?;

        let size = match pax_get("size") {
            Some(v) => parse_decimal(v).ok_or_else(|| {
                field_err(
                    "pax size",
                    format!("{:?} is not a decimal", display_path(v)),
                )
            })?,
            None => hdr_size,
        };
        let data_off = off + BLOCK;

        // Extended attributes.
        let mut xattrs = BTreeMap::new();
        for (k, v) in &pax {
            if let Some(n) = k.strip_prefix(b"SCHILY.xattr.") {
                xattrs.insert(n.to_vec(), v.clone());
            } else if k == b"RHT.security.selinux" {
                xattrs.insert(b"security.selinux".to_vec(), v.clone());
            }
        }
        for (k, v) in &pax {
            if let Some(n) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                let name = url_decode(n).ok_or_else(|| {
                    field_err("pax LIBARCHIVE.xattr", "bad %-encoding in name".into())
                })?;
                let value = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(v))
                    .map_err(|e| {
                        field_err("pax LIBARCHIVE.xattr", format!("bad base64 value: {e}"))
                    })?;
                xattrs.insert(name, value);
            }
        }
        let meta = Metadata {
            perm,
            uid,
            gid,
            atime,
            mtime,
            ctime,
            crtime,
            xattrs,
        };
        let dir_meta = Metadata::new(0o755, 0, 0, mtime);

        // Path safety: absolute paths are made relative, `..` must not climb out.
        let comps = normalize(&name).map_err(|source| TarError::Path {
            offset: off,
            entry: entry.clone(),
            source,
        })?;
        let is_root = comps.is_empty();
        let clean: Vec<u8> = comps.join(&b'/');

        let path_err = |source: PathError| TarError::Path {
            offset: off,
            entry: entry.clone(),
            source,
        };
        let dev = |major_k: &str, minor_k: &str| -> Result<Device, TarError> {
            let major = match pax_u32(major_k, "pax SCHILY.devmajor")? {
                Some(v) => v,
                None => to_u32(num(329..337, "devmajor")?, "devmajor")?,
            };
            let minor = match pax_u32(minor_k, "pax SCHILY.devminor")? {
                Some(v) => v,
                None => to_u32(num(337..345, "devminor")?, "devminor")?,
            };
            Ok(Device { major, minor })
        };

        // Where this member's data ends (the next header), checked against the archive.
        let mut skip = size;
        let archive_len = self.len;
        let next = |skip: u64| -> Result<u64, TarError> {
            let end = data_off.checked_add(skip).filter(|&e| e <= archive_len);
            if end.is_none() {
                return Err(TarError::TooLarge {
                    offset: off,
                    entry: entry.clone(),
                    what: "member data reaches past the end of the archive",
                    size: skip,
                    limit: archive_len.saturating_sub(data_off),
                });
            }
            next_header(data_off, skip).ok_or(TarError::Truncated {
                offset: data_off,
                entry: entry.clone(),
                what: "data",
            })
        };

        let kind: NodeKind = match typeflag {
            b'0' | 0 | b'7' if name.last() == Some(&b'/') && !is_ustar && !is_gnu => {
                NodeKind::empty_dir()
            }
            b'0' | 0 | b'7' | b'S' => {
                let (content, stored) =
                    self.regular(off, block, &entry, &pax, size, data_off, is_gnu)?;
                skip = stored;
                NodeKind::Regular(content)
            }
            b'1' => {
                let target = normalize(&link).map_err(|source| TarError::Path {
                    offset: off,
                    entry: entry.clone(),
                    source,
                })?;
                let target_path: Vec<u8> = target.join(&b'/');
                let tid = if target_path.is_empty() {
                    None
                } else {
                    self.tree.lookup(&target_path)
                };
                let Some(tid) = tid else {
                    return Err(TarError::MissingLinkTarget {
                        offset: off,
                        entry,
                        target: display_path(&link),
                    });
                };
                if is_root {
                    return Err(path_err(PathError::NoName {
                        path: entry.clone(),
                    }));
                }
                self.tree
                    .link_at(&clean, tid, &dir_meta)
                    .map_err(path_err)?;
                return next(skip);
            }
            b'2' => NodeKind::Symlink(link.clone()),
            b'3' => NodeKind::CharDevice(dev("SCHILY.devmajor", "SCHILY.devminor")?),
            b'4' => NodeKind::BlockDevice(dev("SCHILY.devmajor", "SCHILY.devminor")?),
            b'5' | b'D' => NodeKind::empty_dir(),
            b'6' => NodeKind::Fifo,
            b'V' => {
                tracing::debug!(offset = off, "skipping volume label");
                return next(skip);
            }
            b'M' => {
                return Err(TarError::Unsupported {
                    offset: off,
                    entry,
                    what: "multi-volume continuation member".into(),
                });
            }
            other => {
                // POSIX: an unknown type is read as a regular file.
                tracing::warn!(offset = off, entry = %entry, typeflag = other, "unknown tar entry type, reading as a regular file");
                self.warn(format!(
                    "{entry} (byte {off}): unknown entry type {:?}, read as a regular file",
                    char::from(other)
                ));
                let (content, stored) =
                    self.regular(off, block, &entry, &pax, size, data_off, false)?;
                skip = stored;
                NodeKind::Regular(content)
            }
        };
        let next_off = next(skip)?;
        if is_root {
            if matches!(kind, NodeKind::Directory(_)) {
                let root = self.tree.root();
                self.tree.node_mut(root).meta = meta;
                return Ok(next_off);
            }
            return Err(path_err(PathError::NoName {
                path: entry.clone(),
            }));
        }
        self.tree
            .insert(&clean, Node::new(kind, meta), &dir_meta)
            .map_err(path_err)?;
        Ok(next_off)
    }

    /// Build the content of a regular (possibly sparse) member; returns it and the number of data
    /// bytes the member occupies after its header(s).
    #[allow(clippy::too_many_arguments)]
    fn regular(
        &mut self,
        off: u64,
        block: &[u8; 512],
        entry: &str,
        pax: &BTreeMap<Vec<u8>, Vec<u8>>,
        size: u64,
        data_off: u64,
        is_gnu: bool,
    ) -> Result<(Content, u64), TarError> {
        let sparse_err = |what: String| TarError::Sparse {
            offset: off,
            entry: entry.to_string(),
            what,
        };
        let pax_get = |k: &str| pax.get(k.as_bytes()).filter(|v| !v.is_empty());
        let avail = self.len.saturating_sub(data_off);

        // Old GNU sparse ('S'): map in the header, continued in extension blocks.
        if block[156] == b'S' && is_gnu {
            let realsize = parse_numeric(&block[483..495])
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| sparse_err("bad realsize".into()))?;
            let mut map: Vec<(u64, u64)> = Vec::new();
            let read_entries =
                |bytes: &[u8], n: usize, map: &mut Vec<(u64, u64)>| -> Result<(), TarError> {
                    for i in 0..n {
                        let e = &bytes[i * 24..i * 24 + 24];
                        if e[0] == 0 {
                            break;
                        }
                        let o = parse_numeric(&e[..12]).and_then(|v| u64::try_from(v).ok());
                        let l = parse_numeric(&e[12..]).and_then(|v| u64::try_from(v).ok());
                        match (o, l) {
                            (Some(o), Some(l)) => map.push((o, l)),
                            _ => return Err(sparse_err(format!("bad map entry {}", map.len()))),
                        }
                    }
                    Ok(())
                };
            read_entries(&block[386..482], 4, &mut map)?;
            let mut extended = block[482] != 0;
            let mut ext_off = data_off;
            let mut ext = [0u8; 512];
            while extended {
                if map.len() > 1 << 22 {
                    return Err(sparse_err("too many map entries".into()));
                }
                self.read_exact(ext_off, &mut ext, entry, "sparse extension header")?;
                read_entries(&ext[..504], 21, &mut map)?;
                extended = ext[504] != 0;
                ext_off += BLOCK;
            }
            let data_start = ext_off;
            let content = self.sparse_content(off, entry, &map, realsize, data_start, size)?;
            return Ok((content, size + (data_start - data_off)));
        }

        let major = pax_get("GNU.sparse.major");
        let minor = pax_get("GNU.sparse.minor");
        let realsize_key = pax_get("GNU.sparse.realsize").or_else(|| pax_get("GNU.sparse.size"));
        if major.map(|v| v.as_slice()) == Some(b"1") {
            // Format 1.0: the map is at the start of the data, decimal numbers one per line,
            // padded to a block boundary.
            if minor.map(|v| v.as_slice()) != Some(b"0") {
                return Err(sparse_err(format!(
                    "unsupported GNU sparse version 1.{}",
                    minor.map(|v| display_path(v)).unwrap_or_default()
                )));
            }
            let realsize = realsize_key
                .and_then(|v| parse_decimal(v))
                .ok_or_else(|| sparse_err("missing or bad GNU.sparse.realsize".into()))?;
            if size > avail {
                return Err(TarError::TooLarge {
                    offset: off,
                    entry: entry.into(),
                    what: "member data",
                    size,
                    limit: avail,
                });
            }
            let mut pos = data_off;
            let limit_end = data_off + size.min(self.opts.max_header_bytes);
            let count = self.read_map_number(&mut pos, limit_end, entry, off)?;
            // Each map entry needs at least 4 bytes ("0\n0\n").
            if count > (limit_end - data_off) / 4 + 1 {
                return Err(sparse_err(format!(
                    "{count} map entries cannot fit in the map"
                )));
            }
            let mut map = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let o = self.read_map_number(&mut pos, limit_end, entry, off)?;
                let l = self.read_map_number(&mut pos, limit_end, entry, off)?;
                map.push((o, l));
            }
            let map_len = (pos - data_off).div_ceil(BLOCK) * BLOCK;
            if map_len > size {
                return Err(sparse_err("map is longer than the member data".into()));
            }
            let content = self.sparse_content(
                off,
                entry,
                &map,
                realsize,
                data_off + map_len,
                size - map_len,
            )?;
            return Ok((content, size));
        }
        if let Some(realsize) = realsize_key {
            // Formats 0.0 (repeated offset/numbytes records) and 0.1 (GNU.sparse.map).
            let realsize =
                parse_decimal(realsize).ok_or_else(|| sparse_err("bad GNU.sparse.size".into()))?;
            let mut map = Vec::new();
            if let Some(m) = pax_get("GNU.sparse.map") {
                let nums: Vec<&[u8]> = m.split(|&b| b == b',').collect();
                if nums.len() & 1 == 1 {
                    return Err(sparse_err(
                        "GNU.sparse.map has an odd number of values".into(),
                    ));
                }
                for pair in nums.chunks(2) {
                    let o = parse_decimal(pair[0])
                        .ok_or_else(|| sparse_err("bad offset in GNU.sparse.map".into()))?;
                    let l = parse_decimal(pair[1])
                        .ok_or_else(|| sparse_err("bad size in GNU.sparse.map".into()))?;
                    map.push((o, l));
                }
            } else {
                // 0.0 needs record order, which the merged map lost: re-read the raw records.
                let mut cur_off: Option<u64> = None;
                for (k, v) in self.current_pax.iter() {
                    match k.as_slice() {
                        b"GNU.sparse.offset" => {
                            cur_off = Some(
                                parse_decimal(v)
                                    .ok_or_else(|| sparse_err("bad GNU.sparse.offset".into()))?,
                            );
                        }
                        b"GNU.sparse.numbytes" => {
                            let o = cur_off.take().ok_or_else(|| {
                                sparse_err("GNU.sparse.numbytes without offset".into())
                            })?;
                            let l = parse_decimal(v)
                                .ok_or_else(|| sparse_err("bad GNU.sparse.numbytes".into()))?;
                            map.push((o, l));
                        }
                        _ => {}
                    }
                }
            }
            if let Some(n) = pax_get("GNU.sparse.numblocks").and_then(|v| parse_decimal(v)) {
                if n != map.len() as u64 {
                    return Err(sparse_err(format!(
                        "GNU.sparse.numblocks is {n} but the map has {} entries",
                        map.len()
                    )));
                }
            }
            let content = self.sparse_content(off, entry, &map, realsize, data_off, size)?;
            return Ok((content, size));
        }

        if size > avail {
            return Err(TarError::TooLarge {
                offset: off,
                entry: entry.into(),
                what: "member data",
                size,
                limit: avail,
            });
        }
        let extents = if size == 0 {
            Vec::new()
        } else {
            vec![Extent {
                logical: 0,
                physical: data_off,
                len: size,
            }]
        };
        let content = Content::from_extents(Source::Shared(self.src.clone()), size, extents)
            .map_err(|source| TarError::Content {
                offset: off,
                entry: entry.into(),
                source,
            })?;
        Ok((content, size))
    }

    fn read_map_number(
        &mut self,
        pos: &mut u64,
        limit_end: u64,
        entry: &str,
        off: u64,
    ) -> Result<u64, TarError> {
        let mut digits = Vec::with_capacity(20);
        let mut b = [0u8; 1];
        loop {
            if *pos >= limit_end {
                return Err(TarError::Sparse {
                    offset: off,
                    entry: entry.into(),
                    what: "map runs past its limit".into(),
                });
            }
            self.read_exact(*pos, &mut b, entry, "sparse map")?;
            *pos += 1;
            if b[0] == b'\n' {
                break;
            }
            if !b[0].is_ascii_digit() || digits.len() >= 20 {
                return Err(TarError::Sparse {
                    offset: off,
                    entry: entry.into(),
                    what: format!("bad map byte at offset {}", *pos - 1),
                });
            }
            digits.push(b[0]);
        }
        parse_decimal(&digits).ok_or_else(|| TarError::Sparse {
            offset: off,
            entry: entry.into(),
            what: "bad map number".into(),
        })
    }

    /// Turn a sparse map (chunks stored back to back from `data_start`) into a content.
    fn sparse_content(
        &self,
        off: u64,
        entry: &str,
        map: &[(u64, u64)],
        realsize: u64,
        data_start: u64,
        stored: u64,
    ) -> Result<Content, TarError> {
        let sparse_err = |what: String| TarError::Sparse {
            offset: off,
            entry: entry.to_string(),
            what,
        };
        let avail = self.len.saturating_sub(data_start);
        if stored > avail {
            return Err(TarError::TooLarge {
                offset: off,
                entry: entry.into(),
                what: "sparse member data",
                size: stored,
                limit: avail,
            });
        }
        let mut extents = Vec::with_capacity(map.len());
        let mut phys = 0u64;
        let mut end = 0u64;
        for (i, &(o, l)) in map.iter().enumerate() {
            let e = o
                .checked_add(l)
                .ok_or_else(|| sparse_err(format!("entry {i} overflows")))?;
            if e > realsize {
                return Err(sparse_err(format!(
                    "entry {i} ({o}+{l}) reaches past the file size {realsize}"
                )));
            }
            if o < end {
                return Err(sparse_err(format!(
                    "entry {i} at {o} overlaps or is out of order"
                )));
            }
            end = e;
            if l > 0 {
                let physical = data_start
                    .checked_add(phys)
                    .ok_or_else(|| sparse_err("stored size overflows".into()))?;
                extents.push(Extent {
                    logical: o,
                    physical,
                    len: l,
                });
            }
            phys = phys
                .checked_add(l)
                .ok_or_else(|| sparse_err("stored size overflows".into()))?;
        }
        if phys != stored {
            return Err(sparse_err(format!(
                "map holds {phys} bytes but the member stores {stored}"
            )));
        }
        Content::from_extents(Source::Shared(self.src.clone()), realsize, extents).map_err(
            |source| TarError::Content {
                offset: off,
                entry: entry.into(),
                source,
            },
        )
    }
}

fn next_header(data_off: u64, size: u64) -> Option<u64> {
    data_off.checked_add(size.checked_add(BLOCK - 1)? / BLOCK * BLOCK)
}
