//! Open any supported source as a [`Tree`], telling the kind by content, never by name:
//!
//! * a **directory** (any directory: what a wafer bundle folder is, and reading its disk, is
//!   the `bundle` crate's business, `bundle::source`, which asks before it calls this);
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
    /// A tar archive whose entries all sit under one top-level directory that looks like a root
    /// filesystem (`rootfs/etc/...`) is read from inside it ([`Opened::notes`] says so). Off, it
    /// is only noted.
    pub descend_single_dir: bool,
}

/// A source read into a tree.
pub struct Opened {
    /// What the source was.
    pub kind: SourceKind,
    /// Its tree.
    pub tree: Tree,
    /// Filesystem facts, for ext images.
    pub fs_info: Option<FsInfo>,
    /// What the reader skipped or could not trust and went on (ext checksum mismatches, an
    /// unreplayed journal, skipped attributes; a tar without end-of-archive blocks, entries of
    /// unknown type). A vetter must not judge such a tree as complete.
    pub damage: Vec<String>,
    /// Remarks about how the source was read (e.g. the top-level directory descended into).
    pub notes: Vec<String>,
    /// The top-level directory of a tar archive that was descended into.
    pub descended: Option<String>,
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
        /// The image.
        path: PathBuf,
        /// Why.
        source: ExtError,
    },
    /// A seekable zstd file ([`ZseekSource`]) is not valid.
    #[error("{path}: {source}")]
    Zseek {
        /// The file.
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

/// The damage an ext reader went past, as lines for [`Opened::damage`].
pub fn ext_damage(info: &FsInfo) -> Vec<String> {
    let mut v = Vec::new();
    if info.needs_recovery {
        v.push(
            "the journal needs recovery and was not replayed: files may differ from what the \
             kernel would mount"
                .to_string(),
        );
    }
    v.extend(
        info.checksum_errors
            .iter()
            .map(|e| format!("checksum mismatch: {e}")),
    );
    v.extend(info.warnings.iter().cloned());
    v
}

/// If every entry of `tree` sits under one top-level directory that holds a root filesystem
/// (`etc`, `usr`, `bin` or `var`), its name.
pub fn single_top_dir(tree: &Tree) -> Option<String> {
    let top = tree.entries(tree.root())?;
    let (name, &id) = match top.iter().collect::<Vec<_>>().as_slice() {
        [(n, id)] => (*n, *id),
        _ => return None,
    };
    if matches!(
        name.as_slice(),
        b"etc" | b"usr" | b"bin" | b"var" | b"lib" | b"sbin"
    ) {
        return None;
    }
    let inner = tree.entries(id)?;
    ["etc", "usr", "bin", "var"]
        .iter()
        .any(|d| inner.contains_key(d.as_bytes()))
        .then(|| crate::tree::display_path(name))
}

/// Make the top-level directory `name` the root of `tree`.
fn descend(tree: &mut Tree, name: &str) {
    let root = tree.root();
    let Some(&id) = tree.entries(root).and_then(|e| e.get(name.as_bytes())) else {
        return;
    };
    let node = tree.node(id).clone();
    *tree.node_mut(root) = node;
}

/// Read whatever `path` holds into a tree. See the module documentation.
pub fn open_source(path: &Path, opts: &OpenOptions) -> Result<Opened, OpenError> {
    let kind = detect(path)?;
    tracing::debug!(path = %path.display(), ?kind, "opening source");
    let opened = |kind, tree, fs_info: Option<FsInfo>| {
        let damage = fs_info.as_ref().map(ext_damage).unwrap_or_default();
        Opened {
            kind,
            tree,
            fs_info,
            damage,
            notes: Vec::new(),
            descended: None,
        }
    };
    match kind {
        SourceKind::Directory => Ok(opened(kind, read_dir(path, &opts.dir)?, None)),
        SourceKind::Tar(_) => {
            let (mut tree, stats) =
                tar::read_tar_file(path, &opts.tar).map_err(|source| OpenError::Tar {
                    path: path.to_path_buf(),
                    source,
                })?;
            let top = single_top_dir(&tree);
            let mut o = opened(kind, Tree::default(), None);
            o.damage = stats.warnings;
            if let Some(top) = top {
                if opts.descend_single_dir {
                    descend(&mut tree, &top);
                    o.notes.push(format!(
                        "every entry sits under {top}/: read the root filesystem from there"
                    ));
                    o.descended = Some(top);
                } else {
                    o.notes.push(format!(
                        "every entry sits under {top}/ (a root filesystem one level down?)"
                    ));
                }
            }
            for n in &o.notes {
                tracing::warn!(path = %path.display(), "{n}");
            }
            o.tree = tree;
            Ok(o)
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
            Ok(opened(kind, img.tree, Some(img.info)))
        }
    }
}
