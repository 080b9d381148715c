//! File contents referenced from their source, never copied into the tree.
//!
//! A regular file's bytes live somewhere else: a file on the host (directory reader), a range of a
//! tar archive, blocks of an ext image, or (for small files the builder generates) memory. A
//! [`Content`] records *where*: its logical size, a [`Source`] and a sorted list of [`Extent`]s
//! mapping logical byte ranges to source offsets. Gaps between extents are holes (read as zeros),
//! which is how sparse files are represented.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Positional reads from something with a length: an open file, an image inside a wafer, memory.
pub trait ReadAt: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; returns 0 at end of data.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Whether the length is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The open host file behind this source when offsets in the source are offsets in that
    /// file (and [`ReadAt::len`] bytes of it are readable): lets a writer copy ranges in the
    /// kernel (`copy_file_range`) instead of through memory. `None` (the default) for anything
    /// else: memory, decompressed or translated data.
    fn as_file(&self) -> Option<&File> {
        None
    }
    /// Read exactly `buf.len()` bytes at `offset` or fail with `UnexpectedEof`.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at offset {offset}"),
                ));
            }
            offset += n as u64;
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

/// An open host file used as a [`ReadAt`] source (an image or a tar archive).
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
    path: PathBuf,
}

/// Open `path` for reading only if it is a regular file: the open never blocks (`O_NONBLOCK`, so a
/// FIFO cannot hang the caller waiting for a writer), a final symlink is refused unless `follow`
/// (`O_NOFOLLOW`), and the type is checked on the open descriptor (`fstat`), so a FIFO, device,
/// socket or directory swapped in after an earlier `lstat` is refused too
/// ([`io::ErrorKind::InvalidInput`], naming the type found).
pub fn open_regular(path: &Path, follow: bool) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if !follow && e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symbolic link where a regular file was expected",
                )
            } else {
                e
            }
        })?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {what} where a regular file was expected"),
        ));
    }
    Ok(file)
}

impl FileSource {
    /// Open the regular file `path` (a final symlink is followed) for positional reads; anything
    /// else (FIFO, device, socket, directory) is refused without blocking ([`open_regular`]).
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        Self::open_with(path.into(), true)
    }

    /// Like [`FileSource::open`] but a final symlink is refused too: for files found by a
    /// directory walk, which must be read as the file the walk saw, never through a link.
    pub fn open_nofollow(path: impl Into<PathBuf>) -> io::Result<Self> {
        Self::open_with(path.into(), false)
    }

    fn open_with(path: PathBuf, follow: bool) -> io::Result<Self> {
        let file = open_regular(&path, follow)?;
        let len = file.metadata()?.len();
        Ok(FileSource { file, len, path })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
    /// The host path this source reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl ReadAt for FileSource {
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

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= <[u8]>::len(self) {
            return Ok(0);
        }
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

/// Where a regular file's bytes come from.
#[derive(Clone)]
pub enum Source {
    /// No bytes: the file is empty or entirely a hole.
    None,
    /// Bytes held in memory (small generated files: templates, passwd edits).
    Memory(Arc<[u8]>),
    /// A host file opened only when read (directory reader: keeps no descriptor per file).
    Path(Arc<PathBuf>),
    /// A shared open source: an ext image, a tar archive, a spooled decompressed stream.
    Shared(Arc<dyn ReadAt>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::None => write!(f, "None"),
            Source::Memory(m) => write!(f, "Memory({} bytes)", m.len()),
            Source::Path(p) => write!(f, "Path({})", p.display()),
            Source::Shared(s) => write!(f, "Shared({} bytes)", s.len()),
        }
    }
}

/// One mapped range: `len` bytes of the file starting at `logical` live at `physical` in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset in the source.
    pub physical: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A regular file's contents: logical size, source and extent map (gaps are holes).
#[derive(Clone, Debug)]
pub struct Content {
    size: u64,
    source: Source,
    extents: Vec<Extent>,
}

impl Default for Content {
    fn default() -> Self {
        Content::empty()
    }
}

impl Content {
    /// An empty file.
    pub fn empty() -> Self {
        Content {
            size: 0,
            source: Source::None,
            extents: Vec::new(),
        }
    }

    /// Contents held in memory.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes: Arc<[u8]> = bytes.into();
        let size = bytes.len() as u64;
        let extents = if size == 0 {
            Vec::new()
        } else {
            vec![Extent {
                logical: 0,
                physical: 0,
                len: size,
            }]
        };
        Content {
            size,
            source: Source::Memory(bytes),
            extents,
        }
    }

    /// A whole host file of `size` bytes, opened when read.
    pub fn from_path(path: impl Into<PathBuf>, size: u64) -> Self {
        let extents = if size == 0 {
            Vec::new()
        } else {
            vec![Extent {
                logical: 0,
                physical: 0,
                len: size,
            }]
        };
        Content {
            size,
            source: Source::Path(Arc::new(path.into())),
            extents,
        }
    }

    /// A file of logical `size` whose mapped ranges are `extents` in `source`.
    ///
    /// Extents are sorted by logical offset; overlapping or out-of-range extents are an error.
    pub fn from_extents(
        source: Source,
        size: u64,
        mut extents: Vec<Extent>,
    ) -> Result<Self, ContentError> {
        extents.retain(|e| e.len > 0);
        extents.sort_by_key(|e| e.logical);
        let mut end = 0u64;
        for e in &extents {
            if e.logical < end {
                return Err(ContentError::Overlap { logical: e.logical });
            }
            end = e.logical.checked_add(e.len).ok_or(ContentError::Overflow)?;
            if end > size {
                return Err(ContentError::BeyondSize { end, size });
            }
            e.physical
                .checked_add(e.len)
                .ok_or(ContentError::Overflow)?;
        }
        Ok(Content {
            size,
            source,
            extents,
        })
    }

    /// Logical size in bytes (including holes).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mapped ranges, sorted by logical offset; gaps are holes.
    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Where the bytes come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Bytes actually stored (size minus holes).
    pub fn stored_bytes(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }

    /// Whether the file has holes.
    pub fn is_sparse(&self) -> bool {
        self.stored_bytes() < self.size
    }

    /// Open a reader over the logical bytes (holes read as zeros).
    pub fn reader(&self) -> io::Result<ContentReader> {
        let src: Arc<dyn ReadAt> = match &self.source {
            Source::None => Arc::new(Vec::new()),
            Source::Memory(m) => Arc::new(m.to_vec()),
            Source::Path(p) => Arc::new(FileSource::open_nofollow(p.as_ref().clone())?),
            Source::Shared(s) => s.clone(),
        };
        Ok(ContentReader {
            content: self.clone(),
            src,
            pos: 0,
            ext_idx: 0,
        })
    }

    /// Read the whole file into memory, refusing files larger than `limit` bytes.
    pub fn read_to_vec(&self, limit: u64) -> io::Result<Vec<u8>> {
        if self.size > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "file of {} bytes exceeds the {} byte limit",
                    self.size, limit
                ),
            ));
        }
        let mut out = Vec::with_capacity(self.size as usize);
        io::Read::read_to_end(&mut self.reader()?, &mut out)?;
        Ok(out)
    }
}

/// Default for [`HashBudget::max_file_bytes`]: files larger than 4 GiB (logical size) are not hashed.
pub const DEFAULT_HASH_MAX_FILE: u64 = 4 << 30;

/// Default for [`HashBudget::new`]'s hole budget: at most 1 GiB of holes (zeros a sparse file
/// declares but does not store) is hashed over a whole image.
pub const DEFAULT_HASH_HOLES: u64 = 1 << 30;

/// Bounds on the work of hashing file contents, shared by every file of one image (and by the
/// threads hashing them).
///
/// Stored bytes are the honest input: they are in the archive or image, so hashing them costs
/// time proportional to its size. Holes are free to declare (a 20 KB tar can claim a hundred
/// 4 GiB sparse files, a corrupt `i_size` is a hole of any size) yet hashing them still costs CPU,
/// so the hole bytes hashed over the whole image come out of one budget. A file over a limit is
/// not hashed ([`HashError::NotHashed`]); the caller reports it.
#[derive(Debug)]
pub struct HashBudget {
    /// Files whose logical size exceeds this are not hashed.
    pub max_file_bytes: u64,
    holes_left: std::sync::atomic::AtomicU64,
    holes_total: u64,
}

impl Default for HashBudget {
    fn default() -> Self {
        HashBudget::new(DEFAULT_HASH_MAX_FILE, DEFAULT_HASH_HOLES)
    }
}

impl HashBudget {
    /// A budget hashing files up to `max_file_bytes` and at most `holes` hole bytes in total.
    pub fn new(max_file_bytes: u64, holes: u64) -> Self {
        HashBudget {
            max_file_bytes,
            holes_left: std::sync::atomic::AtomicU64::new(holes),
            holes_total: holes,
        }
    }

    /// Hole bytes still allowed.
    pub fn holes_left(&self) -> u64 {
        self.holes_left.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Check `content` against the budget before it is read whole, and take its hole bytes
    /// from the hole budget if it passes. Refused: a file larger than
    /// [`HashBudget::max_file_bytes`], a file whose extents map more bytes than its source holds
    /// (blocks mapped twice), and a sparse file whose holes exceed what is left of the hole budget.
    pub fn admit(&self, content: &Content) -> Result<(), HashError> {
        use std::sync::atomic::Ordering;
        if content.size > self.max_file_bytes {
            return Err(HashError::NotHashed(format!(
                "larger than the {} byte hashing limit",
                self.max_file_bytes
            )));
        }
        let stored = content.stored_bytes();
        if let Source::Shared(src) = &content.source {
            if stored > src.len() {
                return Err(HashError::NotHashed(format!(
                    "its extents map {stored} bytes but its source holds only {}",
                    src.len()
                )));
            }
        }
        let holes = content.size - stored.min(content.size);
        if holes == 0 {
            return Ok(());
        }
        self.holes_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(holes)
            })
            .map(|_| ())
            .map_err(|left| {
                HashError::NotHashed(format!(
                    "sparse: {holes} bytes of holes exceed what is left ({left} bytes) of the {} byte budget for hashing holes",
                    self.holes_total
                ))
            })
    }
}

/// Why a file's contents were not hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// A budget says no: the file is reported as not hashed, nothing was read.
    #[error("{0}")]
    NotHashed(String),
    /// Reading the contents failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

impl Content {
    /// sha256 of the logical contents (holes as zeros) within `budget`, reading through `buf`
    /// (any size; 256 KiB is a good one). What [`HashBudget::admit`] refuses is refused before
    /// any read.
    pub fn sha256(&self, budget: &HashBudget, buf: &mut [u8]) -> Result<[u8; 32], HashError> {
        use sha2::Digest;
        budget.admit(self)?;
        if buf.is_empty() {
            return Err(HashError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty hashing buffer",
            )));
        }
        let mut hasher = sha2::Sha256::new();
        let mut r = self.reader()?;
        loop {
            let n = match io::Read::read(&mut r, buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HashError::Io(e)),
            };
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().into())
    }
}

/// Errors building a [`Content`].
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Two extents cover the same logical bytes.
    #[error("extents overlap at logical offset {logical}")]
    Overlap {
        /// Where the overlap starts.
        logical: u64,
    },
    /// An extent reaches past the file's size.
    #[error("extent ends at {end}, beyond the file size {size}")]
    BeyondSize {
        /// End of the offending extent.
        end: u64,
        /// The file size.
        size: u64,
    },
    /// Offsets overflow 64 bits.
    #[error("extent offsets overflow")]
    Overflow,
}

/// Sequential reader over a [`Content`], filling holes with zeros.
pub struct ContentReader {
    content: Content,
    src: Arc<dyn ReadAt>,
    pos: u64,
    ext_idx: usize,
}

impl io::Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.content.size;
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let exts = &self.content.extents;
        while self.ext_idx < exts.len()
            && exts[self.ext_idx].logical + exts[self.ext_idx].len <= self.pos
        {
            self.ext_idx += 1;
        }
        let want = (buf.len() as u64).min(size - self.pos);
        match exts.get(self.ext_idx) {
            Some(e) if e.logical <= self.pos => {
                let off_in = self.pos - e.logical;
                let n = want.min(e.len - off_in) as usize;
                let got = self.src.read_at(e.physical + off_in, &mut buf[..n])?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("source ended inside an extent at file offset {}", self.pos),
                    ));
                }
                self.pos += got as u64;
                Ok(got)
            }
            next => {
                // In a hole: zeros up to the next extent or the end.
                let hole_end = next.map(|e| e.logical).unwrap_or(size);
                let n = want.min(hole_end - self.pos) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn holes_read_as_zeros() {
        let src: Arc<dyn ReadAt> = Arc::new(b"abcdefgh".to_vec());
        let c = Content::from_extents(
            Source::Shared(src),
            12,
            vec![
                Extent {
                    logical: 2,
                    physical: 0,
                    len: 3,
                },
                Extent {
                    logical: 8,
                    physical: 5,
                    len: 3,
                },
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        c.reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"\0\0abc\0\0\0fgh\0");
        assert!(c.is_sparse());
        assert_eq!(c.stored_bytes(), 6);
    }

    #[test]
    fn overlapping_extents_are_refused() {
        let r = Content::from_extents(
            Source::None,
            10,
            vec![
                Extent {
                    logical: 0,
                    physical: 0,
                    len: 5,
                },
                Extent {
                    logical: 4,
                    physical: 0,
                    len: 2,
                },
            ],
        );
        assert!(matches!(r, Err(ContentError::Overlap { logical: 4 })));
        let r = Content::from_extents(
            Source::None,
            3,
            vec![Extent {
                logical: 0,
                physical: 0,
                len: 5,
            }],
        );
        assert!(matches!(r, Err(ContentError::BeyondSize { .. })));
    }
}
