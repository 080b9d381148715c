//! Read a host directory into a [`Tree`].
//!
//! Every entry is examined with `lstat` (symlinks are never followed, so the walk never leaves
//! the directory); modes, owners, nanosecond times, device numbers, extended attributes (when
//! the filesystem lets us read them) and hard links (by device and inode number) are recorded.
//! Access and change times are kept unless [`DirOptions::host_times`] is off (then they are the
//! modification time). Names are read in byte order, so the tree (its node numbering included)
//! depends only on the structure: never on the directory's read order or inode numbers.
//! Regular files are referenced by path ([`Source::Path`]); sparse files are mapped into extents
//! with `SEEK_DATA`/`SEEK_HOLE`.
//!
//! The walk holds at most one directory handle open at a time: each directory's names are read
//! and the handle closed before descending.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::content::{Content, ContentError, Extent, Source};
use crate::tree::{Device, Metadata, Node, NodeId, NodeKind, PathError, Timestamp, Tree};

/// Options for reading a directory.
#[derive(Clone, Debug)]
pub struct DirOptions {
    /// Read extended attributes (skipped silently where the filesystem refuses).
    pub xattrs: bool,
    /// Map sparse files into extents with `SEEK_DATA`/`SEEK_HOLE`.
    pub detect_sparse: bool,
    /// Keep each entry's access and change times (`st_atime`, `st_ctime`) as the host has them
    /// (the default). When `false`, both are set to the entry's modification time, as for a tar
    /// member without pax times: the tree then holds only what a copy (`cp -a`, `rsync -a`,
    /// tar) preserves, so reading the directory, a no-op `chmod` or copying it does not change
    /// the tree (the builder reads `dir` bases this way).
    pub host_times: bool,
}

impl Default for DirOptions {
    fn default() -> Self {
        DirOptions {
            xattrs: true,
            detect_sparse: true,
            host_times: true,
        }
    }
}

/// Errors reading a directory; each names the host path.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// A system call on `path` failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The root is not a directory.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// An entry has a type the model does not know.
    #[error("{path}: unknown file type (mode {mode:o})")]
    UnknownType {
        /// The host path.
        path: PathBuf,
        /// Its `st_mode`.
        mode: u32,
    },
    /// Adding the entry to the tree failed.
    #[error("{path}: {source}")]
    Tree {
        /// The host path.
        path: PathBuf,
        /// Why.
        source: PathError,
    },
    /// The sparse map is inconsistent (the file changed while being read?).
    #[error("{path}: {source}")]
    Content {
        /// The host path.
        path: PathBuf,
        /// Why.
        source: ContentError,
    },
}

/// `major(3)` with glibc's encoding of `dev_t`.
pub fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// `minor(3)` with glibc's encoding of `dev_t`.
pub fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

fn ts(sec: i64, nsec: i64) -> Timestamp {
    Timestamp {
        sec,
        nsec: u32::try_from(nsec).unwrap_or(0).min(999_999_999),
    }
}

fn metadata_of(path: &Path, md: &fs::Metadata, opts: &DirOptions) -> Result<Metadata, DirError> {
    let mtime = ts(md.mtime(), md.mtime_nsec());
    let (atime, ctime) = if opts.host_times {
        (
            ts(md.atime(), md.atime_nsec()),
            ts(md.ctime(), md.ctime_nsec()),
        )
    } else {
        (mtime, mtime)
    };
    let mut meta = Metadata {
        perm: (md.mode() & 0o7777) as u16,
        uid: md.uid(),
        gid: md.gid(),
        atime,
        mtime,
        ctime,
        crtime: None,
        xattrs: Default::default(),
    };
    if opts.xattrs {
        // `xattr::list`/`get` use the l* calls: symlinks are not followed.
        match xattr::list(path) {
            Ok(names) => {
                for name in names {
                    match xattr::get(path, &name) {
                        Ok(Some(v)) => {
                            meta.xattrs.insert(name.as_bytes().to_vec(), v);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::debug!(path = %path.display(), name = ?name, error = %e, "xattr not readable")
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "xattrs not listable"),
        }
    }
    Ok(meta)
}

/// Map a regular file's data ranges with `SEEK_DATA`/`SEEK_HOLE`.
fn sparse_extents(path: &Path, size: u64) -> Result<Vec<Extent>, DirError> {
    let file = crate::content::open_regular(path, false).map_err(|source| DirError::Io {
        path: path.to_path_buf(),
        what: "open",
        source,
    })?;
    let ranges = data_ranges(&file, size).map_err(|(what, source)| DirError::Io {
        path: path.to_path_buf(),
        what,
        source,
    })?;
    Ok(ranges
        .into_iter()
        .map(|(start, len)| Extent {
            logical: start,
            physical: start,
            len,
        })
        .collect())
}

/// The data ranges `(offset, length)` of the first `size` bytes of an open file, in order, from
/// `SEEK_DATA`/`SEEK_HOLE`; everything else is a hole (reads as zeros). A file system without
/// `SEEK_DATA` gives one range covering the whole file. On error, says which call failed.
pub fn data_ranges(
    file: &fs::File,
    size: u64,
) -> Result<Vec<(u64, u64)>, (&'static str, io::Error)> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos: i64 = 0;
    let end = i64::try_from(size).unwrap_or(i64::MAX);
    while pos < end {
        // SAFETY: lseek on a descriptor the caller keeps open; no memory is touched.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            if e.raw_os_error() == Some(libc::EINVAL) && pos == 0 {
                // SEEK_DATA unsupported: treat the file as dense.
                return Ok(vec![(0, size)]);
            }
            return Err(("lseek SEEK_DATA", e));
        }
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(("lseek SEEK_HOLE", io::Error::last_os_error()));
        }
        let hole = hole.min(end);
        if hole <= data {
            break;
        }
        ranges.push((data as u64, (hole - data) as u64));
        pos = hole;
    }
    Ok(ranges)
}

/// Read the directory `root` (recursively) into a tree. The root's own metadata becomes the
/// tree root's.
pub fn read_dir(root: &Path, opts: &DirOptions) -> Result<Tree, DirError> {
    let md = fs::metadata(root).map_err(|source| DirError::Io {
        path: root.to_path_buf(),
        what: "stat",
        source,
    })?;
    if !md.is_dir() {
        return Err(DirError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut tree = Tree::new(metadata_of(root, &md, opts)?);
    let root_dev = md.dev();
    let mut links: HashMap<(u64, u64), NodeId> = HashMap::new();
    // Work list of (host dir path, tree node); each directory's names are read, then it is closed.
    let mut stack: Vec<(PathBuf, NodeId)> = vec![(root.to_path_buf(), tree.root())];
    while let Some((dir, dir_id)) = stack.pop() {
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        {
            let rd = fs::read_dir(&dir).map_err(|source| DirError::Io {
                path: dir.clone(),
                what: "read directory",
                source,
            })?;
            for ent in rd {
                let ent = ent.map_err(|source| DirError::Io {
                    path: dir.clone(),
                    what: "read directory",
                    source,
                })?;
                names.push(ent.file_name());
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let md = fs::symlink_metadata(&path).map_err(|source| DirError::Io {
                path: path.clone(),
                what: "lstat",
                source,
            })?;
            let ft = md.file_type();
            let key = (md.dev(), md.ino());
            if !ft.is_dir() && md.nlink() > 1 {
                if let Some(&existing) = links.get(&key) {
                    tree.attach(dir_id, name.as_bytes(), existing)
                        .map_err(|source| DirError::Tree {
                            path: path.clone(),
                            source,
                        })?;
                    continue;
                }
            }
            let meta = metadata_of(&path, &md, opts)?;
            let mode = md.mode();
            let kind = match mode & 0o170000 {
                0o100000 => {
                    let size = md.len();
                    let allocated = md.blocks().saturating_mul(512);
                    if opts.detect_sparse && size > 0 && allocated < size {
                        let extents = sparse_extents(&path, size)?;
                        let c = Content::from_extents(
                            Source::Path(Arc::new(path.clone())),
                            size,
                            extents,
                        )
                        .map_err(|source| DirError::Content {
                            path: path.clone(),
                            source,
                        })?;
                        NodeKind::Regular(c)
                    } else {
                        // Check readability now so errors name the file here, not at write time.
                        crate::content::open_regular(&path, false).map_err(|source| {
                            DirError::Io {
                                path: path.clone(),
                                what: "open",
                                source,
                            }
                        })?;
                        NodeKind::Regular(Content::from_path(path.clone(), size))
                    }
                }
                0o040000 => NodeKind::empty_dir(),
                0o120000 => {
                    let target = fs::read_link(&path).map_err(|source| DirError::Io {
                        path: path.clone(),
                        what: "readlink",
                        source,
                    })?;
                    NodeKind::Symlink(target.as_os_str().as_bytes().to_vec())
                }
                0o020000 => NodeKind::CharDevice(Device {
                    major: dev_major(md.rdev()),
                    minor: dev_minor(md.rdev()),
                }),
                0o060000 => NodeKind::BlockDevice(Device {
                    major: dev_major(md.rdev()),
                    minor: dev_minor(md.rdev()),
                }),
                0o010000 => NodeKind::Fifo,
                0o140000 => NodeKind::Socket,
                _ => return Err(DirError::UnknownType { path, mode }),
            };
            let is_dir = matches!(kind, NodeKind::Directory(_));
            let id = tree.add_node(Node::new(kind, meta));
            tree.attach(dir_id, name.as_bytes(), id)
                .map_err(|source| DirError::Tree {
                    path: path.clone(),
                    source,
                })?;
            if is_dir {
                if md.dev() != root_dev {
                    tracing::debug!(path = %path.display(), "directory on another filesystem");
                }
                stack.push((path, id));
            } else if md.nlink() > 1 {
                links.insert(key, id);
            }
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_minor_match_glibc_encoding() {
        // makedev(8, 1) = 0x801; makedev(259, 65536+3) has both high parts.
        assert_eq!((dev_major(0x801), dev_minor(0x801)), (8, 1));
        let dev: u64 = ((259u64 & 0xfff) << 8)
            | ((259u64 & !0xfff) << 32)
            | (65539u64 & 0xff)
            | ((65539u64 & !0xff) << 12);
        assert_eq!((dev_major(dev), dev_minor(dev)), (259, 65539));
    }
}
