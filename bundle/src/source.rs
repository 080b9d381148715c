//! Opening whatever a path names as a tree, wafer bundles included.
//!
//! `rootfs::open` tells directories, tar archives and ext images apart by content and knows
//! nothing of bundles; this module asks first whether the path is a bundle folder and reads its
//! disk itself:
//!
//! * a **bundle**: a folder holding `wafer.json` ([`is_bundle`]), whatever state its disk is
//!   in (an interrupted build must not be read as a plain directory). Its `disk.img.zst` must
//!   then be there, a regular file (never through a link), non-empty, with a valid seek table,
//!   or opening fails naming it ([`BundleError`]). The ext image in it is read frame by frame;
//!   `wafer.json` itself is not parsed here ([`crate::Bundle::open`] is the strict reader);
//! * anything else: [`rootfs::open::open_source`].

use std::path::Path;
use std::sync::Arc;

use rootfs::ext::{self, ExtError, ExtImage};
use rootfs::open::{self as ro, OpenError, OpenOptions};
use rootfs::tar::Compression;
use rootfs::ReadAt;

use crate::{BundleDir, BundleError, Disk, DiskError, DISK_FILE, MANIFEST_FILE};

/// What a source path holds. Serialises as `rootfs::open::SourceKind` does, with
/// `{"kind": "bundle"}` for a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "compression")]
pub enum SourceKind {
    /// A tar archive with the given compression.
    Tar(Compression),
    /// A host directory.
    Directory,
    /// A raw ext2/3/4 image.
    Ext,
    /// A wafer bundle folder (`wafer.json`, with its `disk.img.zst`).
    Bundle,
}

impl From<ro::SourceKind> for SourceKind {
    fn from(k: ro::SourceKind) -> Self {
        match k {
            ro::SourceKind::Tar(c) => SourceKind::Tar(c),
            ro::SourceKind::Directory => SourceKind::Directory,
            ro::SourceKind::Ext => SourceKind::Ext,
        }
    }
}

/// A source read into a tree: what it was (bundles included) and rootfs's reading of it (for a
/// bundle, the ext image on its disk).
pub struct Source {
    /// What the source was.
    pub kind: SourceKind,
    /// The tree, filesystem facts, reader damage and notes (`rootfs::open::Opened`).
    pub image: ro::Opened,
}

/// Errors opening a source; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not a bundle, and `rootfs::open` could not read it.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A bundle whose folder or disk is unusable (missing, empty, a link, a bad seek table).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle's disk cannot be decompressed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The ext image in the bundle's disk cannot be read.
    #[error("{path}: {source}")]
    Ext {
        /// The `disk.img.zst`.
        path: std::path::PathBuf,
        /// Why.
        source: ExtError,
    },
}

/// Whether `path` is a bundle folder: a folder (links in the path the user gave are followed)
/// holding an entry `wafer.json` of any kind (a link or FIFO there makes the bundle's readers
/// refuse it; it never makes the folder a plain directory).
pub fn is_bundle(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
        && std::fs::symlink_metadata(path.join(MANIFEST_FILE)).is_ok()
}

/// Tells what `path` holds: a bundle ([`is_bundle`]), else what `rootfs::open::detect` says.
pub fn detect(path: &Path) -> Result<SourceKind, OpenError> {
    if is_bundle(path) {
        return Ok(SourceKind::Bundle);
    }
    ro::detect(path).map(Into::into)
}

/// Reads the ext image on a bundle's disk (decompressing the frames it needs).
pub fn read_disk(disk: &Disk, opts: &ext::ReadOptions) -> Result<ExtImage, SourceError> {
    let src: Arc<dyn ReadAt> = Arc::new(disk.reader()?);
    ext::read_image(src, opts).map_err(|source| SourceError::Ext {
        path: disk.path().to_path_buf(),
        source,
    })
}

/// Reads whatever `path` holds into a tree. See the module documentation.
pub fn open_source(path: &Path, opts: &OpenOptions) -> Result<Source, SourceError> {
    if !is_bundle(path) {
        let image = ro::open_source(path, opts)?;
        return Ok(Source {
            kind: image.kind.into(),
            image,
        });
    }
    tracing::debug!(path = %path.display(), "opening a bundle's {DISK_FILE}");
    let dir = BundleDir::open(path)?;
    let disk = dir.open_disk(None)?;
    let img = read_disk(&disk, &opts.ext)?;
    Ok(Source {
        kind: SourceKind::Bundle,
        image: ro::Opened {
            kind: ro::SourceKind::Ext,
            tree: img.tree,
            damage: ro::ext_damage(&img.info),
            fs_info: Some(img.info),
            notes: Vec::new(),
            descended: None,
        },
    })
}
