//! Reading and writing inside a folder whose contents someone else prepared (a wafer bundle): never
//! through a link, never anything but a regular file where a file is expected.
//!
//! A bundle comes from a VO administrator, over the network. Whatever it holds, wafer must not
//! write outside it (an `attestations/approval-KEYID.json` that is a symlink to a file of the
//! reviewer, or `attestations/` a symlink to another folder), and must not hang or read
//! somewhere else (a FIFO or a device named `disk.img.zst`, a symlink to `/dev/zero`).
//!
//! [`Folder`] holds a directory handle; every name inside it is one path component, opened
//! relative to that handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel
//! has it and `openat(O_NOFOLLOW)` otherwise, so a symlink is refused (`ELOOP`) instead of
//! followed. Files are opened with `O_NONBLOCK` (a FIFO does not block the open) and checked with
//! `fstat` to be regular before a byte is read. [`Folder::write_file`] writes a temporary file
//! created with `O_CREAT | O_EXCL | O_NOFOLLOW` and renames it into place with `renameat`: a
//! rename replaces a name, it never writes through it. It refuses to replace anything but a
//! regular file with a single link (a symlink, a hard link to a file elsewhere, a folder).
//!
//! The folder itself is opened following links in the path the user gave: that is the user's
//! choice, not the bundle's.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Errors of [`Folder`].
#[derive(Debug, thiserror::Error)]
pub enum SafeError {
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A symbolic link where a file or a folder is expected.
    #[error("{path}: is a symbolic link; a {expected} is expected here (links in a bundle are refused, never followed)")]
    Link {
        /// The path concerned.
        path: PathBuf,
        /// `file` or `folder`.
        expected: &'static str,
    },
    /// Something other than what is expected (a FIFO, a device, a socket, a folder).
    #[error("{path}: is a {found}, not a {expected}")]
    WrongType {
        /// The path concerned.
        path: PathBuf,
        /// What it is.
        found: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A regular file with more than one hard link, which a write would also change elsewhere.
    #[error(
        "{path}: has {links} hard links; refusing to replace a file that is also linked elsewhere"
    )]
    HardLink {
        /// The path concerned.
        path: PathBuf,
        /// Its link count.
        links: u64,
    },
    /// A file larger than the caller accepts.
    #[error("{path}: {size} bytes, larger than the {max} accepted")]
    TooLarge {
        /// The path concerned.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A name that is not one plain path component.
    #[error("{path}: {name:?} is not a plain file name")]
    BadName {
        /// The folder.
        path: PathBuf,
        /// The name.
        name: String,
    },
}

type Result<T> = std::result::Result<T, SafeError>;

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "folder",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

/// An entry of [`Folder::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, as bytes.
    pub name: OsString,
    /// What it is, without following links (`"regular file"`, `"symbolic link"`, ...).
    pub kind: &'static str,
    /// Whether it is a regular file.
    pub regular: bool,
}

/// An open folder; names inside it are resolved without following links.
#[derive(Debug)]
pub struct Folder {
    fd: OwnedFd,
    path: PathBuf,
}

/// Opens one component `name` under `dir` without following a link.
fn open_beneath(
    dir: &OwnedFd,
    name: &str,
    flags: OFlags,
    mode: Mode,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::openat2(
        dir.as_fd(),
        name,
        flags,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        // No openat2 (before Linux 5.6) or filtered by a seccomp policy: one component with
        // O_NOFOLLOW gives the same guarantee.
        Err(Errno::NOSYS) | Err(Errno::PERM) | Err(Errno::INVAL) => {
            rustix::fs::openat(dir.as_fd(), name, flags, mode)
        }
        r => r,
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Folder {
    /// Opens the folder at `path` (links in `path` itself are followed: it is the caller's).
    pub fn open(path: &Path) -> Result<Folder> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SafeError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Folder {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The folder's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside the folder (for messages).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(SafeError::BadName {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// What `name` is, without following a link; `None` if it does not exist.
    fn lstat(&self, name: &str) -> Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(self.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(SafeError::Io {
                path: self.join(name),
                source: e.into(),
            }),
        }
    }

    /// Maps an open error: a link (`ELOOP`) or a non-folder (`ENOTDIR`) gets a precise message.
    fn open_error(&self, name: &str, e: Errno, expected: &'static str) -> SafeError {
        let path = self.join(name);
        if let Ok(Some(st)) = self.lstat(name) {
            let t = FileType::from_raw_mode(st.st_mode);
            if t == FileType::Symlink {
                return SafeError::Link { path, expected };
            }
            if matches!(e, Errno::NOTDIR | Errno::ISDIR) {
                return SafeError::WrongType {
                    path,
                    found: type_name(t),
                    expected,
                };
            }
        }
        if e == Errno::LOOP {
            return SafeError::Link { path, expected };
        }
        SafeError::Io {
            path,
            source: e.into(),
        }
    }

    /// Opens the sub-folder `name`; a link or anything but a folder is refused.
    pub fn open_dir(&self, name: &str) -> Result<Folder> {
        self.check_name(name)?;
        let fd = open_beneath(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| self.open_error(name, e, "folder"))?;
        Ok(Folder {
            fd,
            path: self.join(name),
        })
    }

    /// Like [`Folder::open_dir`], `None` when `name` does not exist.
    pub fn open_dir_if_exists(&self, name: &str) -> Result<Option<Folder>> {
        match self.open_dir(name) {
            Err(SafeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            r => r.map(Some),
        }
    }

    /// Creates the sub-folder `name` if it does not exist, and opens it (never through a link).
    pub fn create_dir(&self, name: &str) -> Result<Folder> {
        self.check_name(name)?;
        match rustix::fs::mkdirat(self.fd.as_fd(), name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(SafeError::Io {
                    path: self.join(name),
                    source: e.into(),
                })
            }
        }
        self.open_dir(name)
    }

    /// Opens the regular file `name` for reading: a link, FIFO, device, socket or folder is
    /// refused (the open never blocks, and nothing is read from what is not a regular file).
    pub fn open_file(&self, name: &str) -> Result<File> {
        self.check_name(name)?;
        let fd = open_beneath(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| self.open_error(name, e, "regular file"))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| SafeError::Io {
            path: self.join(name),
            source: e.into(),
        })?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(SafeError::WrongType {
                path: self.join(name),
                found: type_name(t),
                expected: "regular file",
            });
        }
        // Regular files ignore O_NONBLOCK, but clear it so the handle behaves as usual.
        let _ = rustix::fs::fcntl_setfl(&fd, OFlags::empty());
        Ok(File::from(fd))
    }

    /// Like [`Folder::open_file`], `None` when `name` does not exist.
    pub fn open_file_if_exists(&self, name: &str) -> Result<Option<File>> {
        match self.open_file(name) {
            Err(SafeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            r => r.map(Some),
        }
    }

    /// Reads the regular file `name` whole, refusing one larger than `max` bytes (checked before
    /// reading, and again while reading in case it grows).
    pub fn read_file(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let f = self.open_file(name)?;
        let io_err = |source| SafeError::Io {
            path: self.join(name),
            source,
        };
        let size = f.metadata().map_err(io_err)?.len();
        if size > max {
            return Err(SafeError::TooLarge {
                path: self.join(name),
                size,
                max,
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| SafeError::Io {
                path: self.join(name),
                source: e,
            })?;
        if buf.len() as u64 > max {
            return Err(SafeError::TooLarge {
                path: self.join(name),
                size: buf.len() as u64,
                max,
            });
        }
        Ok(buf)
    }

    /// The folder's entries (without `.` and `..`), sorted by name, with their type as found
    /// without following links.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let io_err = |e: Errno| SafeError::Io {
            path: self.path.clone(),
            source: e.into(),
        };
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            // d_type may be unknown on some filesystems: ask lstat then.
            let mut t = e.file_type();
            if t == FileType::Unknown {
                if let Some(n) = name.to_str() {
                    if let Some(st) = self.lstat(n)? {
                        t = FileType::from_raw_mode(st.st_mode);
                    }
                }
            }
            out.push(Entry {
                name,
                kind: type_name(t),
                regular: t == FileType::RegularFile,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes `bytes` as the file `name`, atomically and never through a link: a temporary file
    /// created with `O_EXCL | O_NOFOLLOW`, synced, then renamed over `name`. An existing `name`
    /// must be a regular file with one link (a symlink, hard link, folder or device is refused and
    /// left as it is). Returns the path written.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        self.check_name(name)?;
        let target = self.join(name);
        if let Some(st) = self.lstat(name)? {
            let t = FileType::from_raw_mode(st.st_mode);
            if t == FileType::Symlink {
                return Err(SafeError::Link {
                    path: target,
                    expected: "regular file",
                });
            }
            if t != FileType::RegularFile {
                return Err(SafeError::WrongType {
                    path: target,
                    found: type_name(t),
                    expected: "regular file",
                });
            }
            #[allow(clippy::useless_conversion)]
            let links = u64::from(st.st_nlink);
            if links > 1 {
                return Err(SafeError::HardLink {
                    path: target,
                    links,
                });
            }
        }
        let (tmp, fd) = self.create_temp(name)?;
        // Removed by the interrupt handler if SIGINT/SIGTERM comes before the rename.
        let _reg = crate::atomic::register(&self.join(&tmp), &target, false);
        let written = (|| -> io::Result<()> {
            let mut f = File::from(fd);
            f.write_all(bytes)?;
            f.sync_all()
        })();
        let result = written.map_err(|e| SafeError::Io {
            path: self.join(&tmp),
            source: e,
        });
        let result = result.and_then(|()| {
            rustix::fs::renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name).map_err(
                |e| SafeError::Io {
                    path: target.clone(),
                    source: e.into(),
                },
            )
        });
        if result.is_err() {
            let _ = rustix::fs::unlinkat(self.fd.as_fd(), tmp.as_str(), AtFlags::empty());
        }
        result?;
        tracing::debug!(path = %target.display(), bytes = bytes.len(), "wrote");
        Ok(target)
    }

    /// Creates a fresh temporary file next to `name` (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    fn create_temp(&self, name: &str) -> Result<(String, OwnedFd)> {
        let mut last = None;
        for _ in 0..16 {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = format!(".{name}.tmp-{}-{n}", std::process::id());
            match open_beneath(
                &self.fd,
                &tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(Errno::EXIST) | Err(Errno::LOOP) => last = Some(tmp),
                Err(e) => {
                    return Err(SafeError::Io {
                        path: self.join(&tmp),
                        source: e.into(),
                    })
                }
            }
        }
        Err(SafeError::Io {
            path: self.join(&last.unwrap_or_default()),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                "could not create a temporary file: the names are taken",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_replace_and_never_follow() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"secret").unwrap();
        let b = d.path().join("bundle");
        std::fs::create_dir(&b).unwrap();
        let f = Folder::open(&b).unwrap();
        // A fresh file, then a replacement.
        f.write_file("a.json", b"1").unwrap();
        f.write_file("a.json", b"22").unwrap();
        assert_eq!(std::fs::read(b.join("a.json")).unwrap(), b"22");
        // A symlink and a hard link are refused and left alone.
        symlink(&victim, b.join("l.json")).unwrap();
        let e = f.write_file("l.json", b"x").unwrap_err();
        assert!(matches!(e, SafeError::Link { .. }), "{e}");
        std::fs::hard_link(&victim, b.join("h.json")).unwrap();
        let e = f.write_file("h.json", b"x").unwrap_err();
        assert!(e.to_string().contains("2 hard links"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        // A linked sub-folder is refused.
        symlink(d.path(), b.join("attestations")).unwrap();
        let e = f.create_dir("attestations").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // No temporary file is left behind.
        let names: Vec<_> = f.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(f.write_file("../x", b"").is_err());
    }

    #[test]
    fn only_regular_files_are_opened() {
        let d = tempfile::tempdir().unwrap();
        let f = Folder::open(d.path()).unwrap();
        let fifo = d.path().join("disk.img.zst");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = f.open_file("disk.img.zst").unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
        symlink("/dev/zero", d.path().join("wafer.json")).unwrap();
        let e = f.read_file("wafer.json", 10).unwrap_err();
        assert!(matches!(e, SafeError::Link { .. }), "{e}");
        std::fs::write(d.path().join("big"), [0u8; 11]).unwrap();
        assert!(matches!(
            f.read_file("big", 10),
            Err(SafeError::TooLarge { .. })
        ));
        assert_eq!(f.read_file("big", 11).unwrap().len(), 11);
        assert!(f.open_file_if_exists("none").unwrap().is_none());
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert!(f.open_file("sub").is_err());
        assert!(f.open_dir("big").is_err());
    }
}
