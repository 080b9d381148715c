//! Open any supported source as a [`Tree`], telling the kind by content, never by name:
//!
//! * a **directory** (a wafer bundle if it holds `wafer.json` and `disk.img.zst`);
//! * a **tar archive**, plain (ustar/GNU magic at offset 257, or a valid v7 header checksum) or
//!   gzip/xz/bzip2/zstd compressed (their magic bytes at offset 0);
//! * an **ext2/3/4 image** (superblock magic 0xEF53 at byte 1080: superblock at 1024,
//!   `s_magic` at offset 0x38 in it — ext4 disk layout, "The Super Block").

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::content::{FileSource, ReadAt};
use crate::dir::{read_dir, DirError, DirOptions};
use crate::ext::{self, ExtError, FsInfo};
use crate::tar::{self, Compression, TarError, TarOptions};
use crate::tree::Tree;
use crate::zseek::{SeekableReader, ZseekError};

/// What a source path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "compression")]
pub enum SourceKind {
    /// A tar archive with the given compression.
    Tar(Compression),
    /// A host directory.
    Directory,
    /// A raw ext2/3/4 image.
    Ext,
    /// A wafer bundle directory (`wafer.json` + `disk.img.zst`).
    Bundle,
}

/// Options for [`open_source`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Tar reading (spool directory, caps).
    pub tar: TarOptions,
    /// Directory reading.
    pub dir: DirOptions,
    /// ext image reading.
    pub ext: ext::ReadOptions,
}

/// A source read into a tree.
pub struct Opened {
    /// What the source was.
    pub kind: SourceKind,
    /// Its tree.
    pub tree: Tree,
    /// Filesystem facts, for ext images and bundles.
    pub fs_info: Option<FsInfo>,
}

/// Errors opening a source; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path cannot be examined.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not a directory, tar archive or ext image.
    #[error(
        "{path}: not a directory, tar archive (plain, gzip, xz, bzip2, zstd) or ext2/3/4 image"
    )]
    Unknown {
        /// The path.
        path: PathBuf,
    },
    /// Reading the tar archive failed.
    #[error("{path}: {source}")]
    Tar {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: TarError,
    },
    /// Reading the directory failed.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Reading the ext image failed.
    #[error("{path}: {source}")]
    Ext {
        /// The image (or bundle).
        path: PathBuf,
        /// Why.
        source: ExtError,
    },
    /// The bundle's compressed image is not valid seekable zstd.
    #[error("{path}: {source}")]
    Zseek {
        /// The `disk.img.zst`.
        path: PathBuf,
        /// Why.
        source: ZseekError,
    },
}

/// Byte offset of the ext superblock magic.
pub const EXT_MAGIC_OFFSET: u64 = 1024 + 0x38;

/// Tell what `path` holds, from its content.
pub fn detect(path: &Path) -> Result<SourceKind, OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let md = std::fs::metadata(path).map_err(io_err)?;
    if md.is_dir() {
        if path.join("wafer.json").is_file() && path.join("disk.img.zst").is_file() {
            return Ok(SourceKind::Bundle);
        }
        return Ok(SourceKind::Directory);
    }
    let src = FileSource::open(path).map_err(io_err)?;
    let mut head = [0u8; 512];
    let n = read_up_to(&src, 0, &mut head).map_err(io_err)?;
    let c = Compression::detect(&head[..n]);
    if c != Compression::None {
        return Ok(SourceKind::Tar(c));
    }
    if n == 512 && tar::looks_like_tar(&head) {
        return Ok(SourceKind::Tar(Compression::None));
    }
    let mut magic = [0u8; 2];
    if read_up_to(&src, EXT_MAGIC_OFFSET, &mut magic).map_err(io_err)? == 2
        && u16::from_le_bytes(magic) == 0xEF53
    {
        return Ok(SourceKind::Ext);
    }
    Err(OpenError::Unknown {
        path: path.to_path_buf(),
    })
}

fn read_up_to(src: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = src.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// A seekable-zstd file as a positional source (one frame cached; reads are serialised).
pub struct ZseekSource {
    inner: Mutex<SeekableReader<File>>,
    len: u64,
}

impl ZseekSource {
    /// Open the seekable zstd file at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let f = crate::content::open_regular(path, true).map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let r = SeekableReader::new(f).map_err(|source| OpenError::Zseek {
            path: path.to_path_buf(),
            source,
        })?;
        let len = r.size();
        Ok(ZseekSource {
            inner: Mutex::new(r),
            len,
        })
    }
}

impl ReadAt for ZseekSource {
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

/// Read whatever `path` holds into a tree. See the module documentation.
pub fn open_source(path: &Path, opts: &OpenOptions) -> Result<Opened, OpenError> {
    let kind = detect(path)?;
    tracing::debug!(path = %path.display(), ?kind, "opening source");
    match kind {
        SourceKind::Directory => Ok(Opened {
            kind,
            tree: read_dir(path, &opts.dir)?,
            fs_info: None,
        }),
        SourceKind::Tar(_) => {
            let (tree, _) =
                tar::read_tar_file(path, &opts.tar).map_err(|source| OpenError::Tar {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok(Opened {
                kind,
                tree,
                fs_info: None,
            })
        }
        SourceKind::Ext => {
            let src: Arc<dyn ReadAt> =
                Arc::new(FileSource::open(path).map_err(|source| OpenError::Io {
                    path: path.to_path_buf(),
                    source,
                })?);
            let img = ext::read_image(src, &opts.ext).map_err(|source| OpenError::Ext {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Opened {
                kind,
                tree: img.tree,
                fs_info: Some(img.info),
            })
        }
        SourceKind::Bundle => {
            let zst = path.join("disk.img.zst");
            let src: Arc<dyn ReadAt> = Arc::new(ZseekSource::open(&zst)?);
            let img = ext::read_image(src, &opts.ext).map_err(|source| OpenError::Ext {
                path: zst.clone(),
                source,
            })?;
            Ok(Opened {
                kind,
                tree: img.tree,
                fs_info: Some(img.info),
            })
        }
    }
}
