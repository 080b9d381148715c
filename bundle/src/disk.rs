//! `disk.img.zst`: the seekable zstd image of a bundle.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rootfs::zseek::{SeekTable, SeekableReader, ZseekError};
use rootfs::ReadAt;

use crate::digest::{self, DigestError, DigestOptions, ImageDigests, BLOCK_SIZE};
use crate::BundleError;

/// Problems reading or materialising the disk; each names `disk.img.zst`.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// I/O failed (reading the bundle or writing the destination).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The seekable zstd stream is damaged.
    #[error("{path}: {source}")]
    Zseek {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ZseekError,
    },
    /// Hashing failed.
    #[error("{path}: {source}")]
    Digest {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DigestError,
    },
    /// The seek table changed since the bundle was opened or verified.
    #[error("{path}: the seek table declares {declared} bytes, the verified manifest {expected}: changed since verification")]
    SizeChanged {
        /// The file.
        path: PathBuf,
        /// What the table declares now.
        declared: u64,
        /// What the manifest says.
        expected: u64,
    },
    /// The manifest's salt is not hex.
    #[error("verity salt: {0}")]
    Salt(String),
    /// The dm-verity root of what was written is not the expected one.
    #[error("the disk written has dm-verity root {got}, not the verified {expected}: {path} changed after verification")]
    Root {
        /// The file.
        path: PathBuf,
        /// Computed.
        got: String,
        /// Expected.
        expected: String,
    },
}

/// An opened `disk.img.zst` with its seek table.
#[derive(Debug)]
pub struct Disk {
    file: Arc<File>,
    path: PathBuf,
    table: SeekTable,
    len: u64,
}

/// Reads a shared file at its own position (`pread`): readers of one [`Disk`] do not share an
/// offset.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for At<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let len = self.file.metadata()?.len();
        let new = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// [`At`] owning its handle (for readers that outlive the [`Disk`]).
struct OwnedAt {
    file: Arc<File>,
    pos: u64,
}

impl Read for OwnedAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut a = At {
            file: &self.file,
            pos: self.pos,
        };
        let n = a.read(buf)?;
        self.pos = a.pos;
        Ok(n)
    }
}

impl Seek for OwnedAt {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let mut a = At {
            file: &self.file,
            pos: self.pos,
        };
        self.pos = a.seek(pos)?;
        Ok(self.pos)
    }
}

/// Positional reads of the decompressed image ([`rootfs::ReadAt`]): one frame cached, reads
/// serialised. It holds its own handle of the file, so it may outlive the [`Disk`] (a tree read
/// from it keeps it).
pub struct DiskReader {
    inner: Mutex<SeekableReader<OwnedAt>>,
    len: u64,
}

impl ReadAt for DiskReader {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut r = self
            .inner
            .lock()
            .map_err(|_| io::Error::other("seekable zstd reader poisoned"))?;
        r.read_at(offset, buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
    fn len(&self) -> u64 {
        self.len
    }
}

impl Disk {
    pub(crate) fn new(file: File, path: PathBuf, len: u64) -> Result<Disk, BundleError> {
        let table = SeekTable::read_from(&mut At {
            file: &file,
            pos: 0,
        })
        .map_err(|source| BundleError::SeekTable {
            path: path.clone(),
            source,
        })?;
        Ok(Disk {
            file: Arc::new(file),
            path,
            table,
            len,
        })
    }

    /// The file's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seek table read when the disk was opened.
    pub fn table(&self) -> &SeekTable {
        &self.table
    }

    /// Length of `disk.img.zst` in bytes.
    pub fn compressed_size(&self) -> u64 {
        self.len
    }

    /// The decompressed size the seek table declares.
    pub fn size(&self) -> u64 {
        self.table.decompressed_size()
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.table.frames.len()
    }

    /// The compressed file from its first byte, buffered (for a pass over every frame).
    pub(crate) fn compressed_stream(&self) -> impl Read + Send + '_ {
        io::BufReader::with_capacity(
            1 << 20,
            At {
                file: &self.file,
                pos: 0,
            },
        )
    }

    /// Reads exactly `buf.len()` bytes of the compressed file at `offset`.
    pub fn read_compressed_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| DiskError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Positional reads of the raw image, decompressing the frames asked for.
    pub fn reader(&self) -> Result<DiskReader, DiskError> {
        let r = SeekableReader::new(OwnedAt {
            file: self.file.clone(),
            pos: 0,
        })
        .map_err(|source| DiskError::Zseek {
            path: self.path.clone(),
            source,
        })?;
        let len = r.size();
        Ok(DiskReader {
            inner: Mutex::new(r),
            len,
        })
    }

    /// One parallel pass over the frames read at open: the dm-verity root and size, and with
    /// `opts` the raw image's and the compressed file's sha256 ([`digest::digest_frames`]).
    pub fn digest(&self, opts: &DigestOptions) -> Result<ImageDigests, DiskError> {
        let mut src = io::BufReader::with_capacity(
            1 << 20,
            At {
                file: &self.file,
                pos: 0,
            },
        );
        digest::digest_frames(&mut src, &self.table, opts).map_err(|source| DiskError::Digest {
            path: self.path.clone(),
            source,
        })
    }

    /// Decompresses the frames in parallel into `dest` (every non-zero 4 KiB block written, zero
    /// blocks left as holes, its length set to the image size), recomputing the dm-verity root
    /// of exactly what was written; refuses when the seek table no longer declares
    /// `expected_size` (checked before a byte is decompressed) or the root is not
    /// `expected_root` (a disk changed after verification). Returns the image size.
    pub fn materialise(
        &self,
        dest: &File,
        salt_hex: &str,
        expected_size: u64,
        expected_root: &str,
    ) -> Result<u64, DiskError> {
        let salt = hex::decode(salt_hex).map_err(|e| DiskError::Salt(e.to_string()))?;
        let zseek_err = |source| DiskError::Zseek {
            path: self.path.clone(),
            source,
        };
        // Read the table again: the file may have been rewritten in place since it was opened.
        let mut src = io::BufReader::with_capacity(
            1 << 20,
            At {
                file: &self.file,
                pos: 0,
            },
        );
        let table = SeekTable::read_from(&mut src).map_err(zseek_err)?;
        src.seek(SeekFrom::Start(0))
            .map_err(|source| DiskError::Io {
                path: self.path.clone(),
                source,
            })?;
        let size = table.decompressed_size();
        if size != expected_size {
            return Err(DiskError::SizeChanged {
                path: self.path.clone(),
                declared: size,
                expected: expected_size,
            });
        }
        let mut verity = digest::VerityHasher::new(&salt).map_err(|source| DiskError::Digest {
            path: self.path.clone(),
            source,
        })?;
        rootfs::zseek::for_each_frame(
            &mut src,
            &table,
            0,
            |_, off, data| {
                (off % BLOCK_SIZE as u64 == 0).then(|| digest::hash_full_blocks_serial(&salt, data))
            },
            |_, off, data, hashes| {
                match hashes {
                    Some(h) => verity.push_block_hashes(h, data),
                    None => verity.update(data),
                }
                write_nonzero(dest, off, data).map_err(|e| format!("writing the disk: {e}"))
            },
            |_| {},
        )
        .map_err(zseek_err)?;
        let io_err = |source| DiskError::Io {
            path: self.path.clone(),
            source,
        };
        dest.set_len(size).map_err(io_err)?;
        let root = verity.finish().root_hex();
        if root != expected_root {
            return Err(DiskError::Root {
                path: self.path.clone(),
                got: root,
                expected: expected_root.to_string(),
            });
        }
        dest.sync_all().map_err(io_err)?;
        Ok(size)
    }
}

/// Writes the non-zero 4 KiB blocks of `data` (at image offset `off`), runs of them in one write.
fn write_nonzero(out: &File, off: u64, data: &[u8]) -> io::Result<()> {
    let zero = |b: &[u8]| b.iter().all(|x| *x == 0);
    let mut i = 0;
    while i < data.len() {
        let end = (i + BLOCK_SIZE).min(data.len());
        if zero(&data[i..end]) {
            i = end;
            continue;
        }
        let mut j = end;
        while j < data.len() {
            let e = (j + BLOCK_SIZE).min(data.len());
            if zero(&data[j..e]) {
                break;
            }
            j = e;
        }
        out.write_all_at(&data[i..j], off + i as u64)?;
        i = j;
    }
    Ok(())
}
