//! Confined reads of recipe inputs: nothing outside the recipe's folder is ever opened.
//!
//! Every host file a build reads besides the recipe itself comes from the recipe's folder (or,
//! for the base only, from beneath a host path the operator allowed with `--allow-host-path`).
//! A [`Root`] is a directory handle opened once; paths are resolved beneath it **component by
//! component in user space**:
//!
//! * the path given by the recipe must be relative and may not contain `..`;
//! * each component is examined with `fstatat(AT_SYMLINK_NOFOLLOW)` and entered with
//!   `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)` relative to the handle of its parent, so a
//!   component swapped for a symbolic link during the build is refused, never followed;
//! * a symbolic link inside the folder is followed only by splicing its target into the
//!   remaining components, and only if the target is relative and its `..` never climbs above
//!   the root: `..` is never given to the kernel, it drops the last handle held. An absolute
//!   target, or one climbing out, is an error naming the link. At most [`MAX_SYMLINKS`] links;
//! * only regular files are opened for reading: the type is checked before the open (a device
//!   node is never opened), the open uses `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot block it),
//!   and `fstat` on the open descriptor checks the type again.
//!
//! Why not `openat2(RESOLVE_BENEATH)`: it needs Linux 5.6 and is often blocked by container
//! seccomp filters; the walk above gives the same guarantee (no path leaves the root, whatever
//! the folder holds or how it changes meanwhile) on every kernel, and lets links that stay
//! inside the folder work, with errors that name the link that does not.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// Most symbolic links followed while resolving one path (as the kernel's `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// A refusal or failure while reading beneath a [`Root`]. Messages name the path as the recipe
/// gave it and never show anything read from outside the root.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Absolute, empty, with `..`, or with a NUL byte.
    #[error("'{path}' must be a relative path inside {root} (no leading '/', no '..')")]
    NotRelative {
        /// The path as given.
        path: String,
        /// What the root is ("the recipe's folder", ...).
        root: String,
    },
    /// A symbolic link on the way leads outside the root.
    #[error("'{path}': symbolic link '{link}' -> '{target}' leads outside {root}")]
    Escape {
        /// The path as given.
        path: String,
        /// The link, relative to the root.
        link: String,
        /// Its target.
        target: String,
        /// What the root is.
        root: String,
    },
    /// Too many symbolic links.
    #[error("'{path}': more than {MAX_SYMLINKS} symbolic links")]
    TooManyLinks {
        /// The path as given.
        path: String,
    },
    /// Not the type of file expected (a FIFO, device or socket where a file is read, ...).
    #[error("'{path}' is a {found}, not a {wanted}")]
    WrongType {
        /// The path as given.
        path: String,
        /// What it is.
        found: &'static str,
        /// What was wanted.
        wanted: &'static str,
    },
    /// Bigger than the limit for this input.
    #[error("'{path}' is larger than the {limit} byte limit")]
    TooLarge {
        /// The path as given.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A system call failed.
    #[error("'{path}': {what}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}

impl ConfineError {
    fn io(path: &str, what: &'static str, source: io::Error) -> Self {
        ConfineError::Io {
            path: path.to_string(),
            what,
            source,
        }
    }
}

type Result<T, E = ConfineError> = std::result::Result<T, E>;

/// A directory beneath which every read is confined.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    label: String,
}

/// Where a path led: the directory holding it and its name there (`.` for the directory
/// itself), with its `lstat`.
#[derive(Debug)]
pub struct Located {
    /// Handle (`O_PATH`) of the directory holding the entry.
    pub dir: OwnedFd,
    /// The entry's name in `dir`.
    pub name: CString,
    /// The entry's `lstat`.
    pub stat: libc::stat,
}

impl Root {
    /// Open `dir` (the operator named it: symbolic links in it are followed) as the root of
    /// confined reads; `label` names it in messages, e.g. "the recipe's folder".
    pub fn open(dir: &Path, label: impl Into<String>) -> io::Result<Root> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))?;
        // SAFETY: a valid NUL-terminated path; the result is checked and owned at once.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Root {
            fd,
            label: label.into(),
        })
    }

    /// What the root is, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Check that `rel` is a relative path without `..` and NUL; returns its components.
    fn components(&self, rel: &str) -> Result<Vec<Vec<u8>>> {
        let bad = rel.is_empty()
            || rel.starts_with('/')
            || rel.contains('\0')
            || rel.split('/').any(|c| c == "..");
        if bad {
            return Err(ConfineError::NotRelative {
                path: rel.to_string(),
                root: self.label.clone(),
            });
        }
        Ok(rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(|c| c.as_bytes().to_vec())
            .collect())
    }

    /// Resolve `rel` beneath the root (see the module documentation). With `follow_final`, a
    /// final symbolic link is followed (confined, like the others); without, it is returned.
    pub fn locate(&self, rel: &str, follow_final: bool) -> Result<Located> {
        let mut todo: std::collections::VecDeque<Vec<u8>> = self.components(rel)?.into();
        let io = |what, e| ConfineError::io(rel, what, e);
        let mut stack: Vec<OwnedFd> =
            vec![
                open_at(self.fd.as_fd(), c".", libc::O_PATH | libc::O_DIRECTORY)
                    .map_err(|e| io("open the root", e))?,
            ];
        // The names of the directories held, for messages about links.
        let mut names: Vec<String> = Vec::new();
        let mut links = 0usize;
        let mut last_link: Option<(String, String)> = None;
        while let Some(comp) = todo.pop_front() {
            if comp == b"." {
                continue;
            }
            if comp == b".." {
                if stack.len() == 1 {
                    let (link, target) = last_link.clone().unwrap_or_default();
                    return Err(ConfineError::Escape {
                        path: rel.to_string(),
                        link,
                        target,
                        root: self.label.clone(),
                    });
                }
                stack.pop();
                names.pop();
                continue;
            }
            let top = stack
                .last()
                .map(|f| f.as_fd())
                .ok_or_else(|| io("resolve", io::Error::other("no directory handle")))?;
            let name = cstring(&comp).map_err(|e| io("resolve", e))?;
            let st = stat_at(top, &name).map_err(|e| io("lstat", e))?;
            let last = todo.is_empty();
            let fmt = st.st_mode & libc::S_IFMT;
            if fmt == libc::S_IFLNK && (follow_final || !last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(ConfineError::TooManyLinks {
                        path: rel.to_string(),
                    });
                }
                let target = read_link_at(top, &name).map_err(|e| io("readlink", e))?;
                let mut shown = names.clone();
                shown.push(String::from_utf8_lossy(&comp).into_owned());
                let link = shown.join("/");
                let target_s = String::from_utf8_lossy(&target).into_owned();
                if target.first() == Some(&b'/') || target.is_empty() {
                    return Err(ConfineError::Escape {
                        path: rel.to_string(),
                        link,
                        target: target_s,
                        root: self.label.clone(),
                    });
                }
                last_link = Some((link, target_s));
                for c in target.split(|&b| b == b'/').rev() {
                    if !c.is_empty() {
                        todo.push_front(c.to_vec());
                    }
                }
                continue;
            }
            if last {
                let dir = stack
                    .pop()
                    .ok_or_else(|| io("resolve", io::Error::other("no directory handle")))?;
                return Ok(Located {
                    dir,
                    name,
                    stat: st,
                });
            }
            if fmt != libc::S_IFDIR {
                return Err(io("resolve", io::Error::from_raw_os_error(libc::ENOTDIR)));
            }
            let next = open_at(
                top,
                &name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )
            .map_err(|e| io("open directory", e))?;
            stack.push(next);
            names.push(String::from_utf8_lossy(&comp).into_owned());
        }
        // The path named a directory already held (".", or a link to one).
        let dir = stack
            .pop()
            .ok_or_else(|| io("resolve", io::Error::other("no directory handle")))?;
        let st = stat_at(dir.as_fd(), c".").map_err(|e| io("lstat", e))?;
        Ok(Located {
            dir,
            name: CString::from(c"."),
            stat: st,
        })
    }

    /// Open the regular file `rel` (symbolic links followed, confined); returns it and its size.
    pub fn open_file(&self, rel: &str) -> Result<(File, u64)> {
        let l = self.locate(rel, true)?;
        open_regular_at(l.dir.as_fd(), &l.name, &l.stat, rel)
    }

    /// Read the regular file `rel` into memory, refusing more than `limit` bytes.
    pub fn read_file(&self, rel: &str, limit: u64) -> Result<Vec<u8>> {
        let (f, size) = self.open_file(rel)?;
        read_limited(f, size, limit, rel)
    }

    /// Open the directory `rel` for listing (symbolic links followed, confined).
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd> {
        let l = self.locate(rel, true)?;
        open_dir_at(l.dir.as_fd(), &l.name, &l.stat, rel)
    }
}

/// Name of a file type from `st_mode`.
pub fn type_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "file of unknown type",
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a name"))
}

fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor and NUL-terminated name; the result is checked and owned at once.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `lstat` of `name` in `dir`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor, NUL-terminated name, and a buffer of the right type.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() })
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor and a buffer of the right type.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() })
}

/// The target of the symbolic link `name` in `dir` (at most `PATH_MAX` bytes).
pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid descriptor, NUL-terminated name, buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n >= buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "symbolic link target longer than PATH_MAX",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}

/// Open `name` in `dir` for reading if it is a regular file: `st` (its `lstat`) must say so,
/// the open does not follow a link nor block on a FIFO, and `fstat` must agree (same inode).
/// Returns the file and its size. `shown` names it in errors.
pub fn open_regular_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &libc::stat,
    shown: &str,
) -> Result<(File, u64)> {
    let wrong = |found| ConfineError::WrongType {
        path: shown.to_string(),
        found,
        wanted: "regular file",
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(wrong(type_name(st.st_mode)));
    }
    let fd = open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    )
    .map_err(|e| ConfineError::io(shown, "open", e))?;
    let now = fstat(fd.as_fd()).map_err(|e| ConfineError::io(shown, "fstat", e))?;
    if now.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(wrong(type_name(now.st_mode)));
    }
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(ConfineError::io(
            shown,
            "open",
            io::Error::other("replaced while being opened"),
        ));
    }
    Ok((File::from(fd), now.st_size.max(0) as u64))
}

/// Open `name` in `dir` for listing if it is a directory (`st` its `lstat`; no link followed).
pub fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &libc::stat,
    shown: &str,
) -> Result<OwnedFd> {
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(ConfineError::WrongType {
            path: shown.to_string(),
            found: type_name(st.st_mode),
            wanted: "directory",
        });
    }
    let fd = open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
    )
    .map_err(|e| ConfineError::io(shown, "open directory", e))?;
    let now = fstat(fd.as_fd()).map_err(|e| ConfineError::io(shown, "fstat", e))?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(ConfineError::io(
            shown,
            "open directory",
            io::Error::other("replaced while being opened"),
        ));
    }
    Ok(fd)
}

/// The names in directory `dir` (without `.` and `..`), sorted; more than `limit` is an error.
pub fn list_names(dir: BorrowedFd<'_>, limit: usize, shown: &str) -> Result<Vec<OsString>> {
    let err = |e| ConfineError::io(shown, "read directory", e);
    let own = open_at(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY).map_err(err)?;
    let raw = own.into_raw_fd();
    // SAFETY: raw is an open directory descriptor; fdopendir takes ownership on success.
    let dirp = unsafe { libc::fdopendir(raw) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(err(e));
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; clearing it tells end of directory from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dirp is a valid open DIR stream.
        let ent = unsafe { libc::readdir(dirp) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error().unwrap_or(0) != 0 {
                Err(err(e))
            } else {
                Ok(())
            };
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if names.len() >= limit {
            break Err(ConfineError::TooLarge {
                path: shown.to_string(),
                limit: limit as u64,
            });
        }
        names.push(OsString::from_vec(name.to_vec()));
    };
    // SAFETY: dirp is valid and closed exactly once.
    unsafe { libc::closedir(dirp) };
    result?;
    names.sort();
    Ok(names)
}

/// Read an open file of `size` bytes (its `fstat` size) into memory, refusing more than
/// `limit` bytes, whether the size said so or the file grew while read.
pub fn read_limited(f: File, size: u64, limit: u64, shown: &str) -> Result<Vec<u8>> {
    let too_large = || ConfineError::TooLarge {
        path: shown.to_string(),
        limit,
    };
    if size > limit {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(size as usize);
    f.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ConfineError::io(shown, "read", e))?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// A path naming exactly the file or directory open as `fd`, for readers that take paths
/// (`/proc/self/fd/N`: opening it reopens the same inode, whatever happens to the name since).
/// Valid while `fd` stays open.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("r");
        std::fs::create_dir_all(r.join("sub/deeper")).unwrap();
        std::fs::write(t.path().join("canary"), b"CANARY").unwrap();
        std::fs::write(r.join("sub/file"), b"inside").unwrap();
        symlink("../file", r.join("sub/deeper/up")).unwrap();
        symlink("sub", r.join("dirlink")).unwrap();
        symlink("../canary", r.join("out")).unwrap();
        symlink("sub/../../canary", r.join("out2")).unwrap();
        symlink(t.path().join("canary"), r.join("abs")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(&r, "the recipe's folder").unwrap();
        (t, root)
    }

    #[test]
    fn links_inside_are_followed() {
        let (_t, root) = setup();
        assert_eq!(root.read_file("sub/deeper/up", 100).unwrap(), b"inside");
        assert_eq!(root.read_file("dirlink/file", 100).unwrap(), b"inside");
        assert_eq!(root.read_file("./sub//file", 100).unwrap(), b"inside");
        let l = root.locate("dirlink", false).unwrap();
        assert_eq!(l.stat.st_mode & libc::S_IFMT, libc::S_IFLNK);
    }

    #[test]
    fn escapes_are_refused() {
        let (_t, root) = setup();
        for p in ["out", "out2", "abs", "dirlink/../out"] {
            let e = root.read_file(p, 100).unwrap_err().to_string();
            assert!(!e.contains("CANARY"), "{e}");
            assert!(
                e.contains("leads outside the recipe's folder")
                    || e.contains("must be a relative path"),
                "{p}: {e}"
            );
        }
        for p in ["/etc/passwd", "../canary", "sub/../../canary", ""] {
            let e = root.read_file(p, 100).unwrap_err();
            assert!(matches!(e, ConfineError::NotRelative { .. }), "{p}: {e}");
        }
        let e = root.read_file("loop", 100).unwrap_err();
        assert!(matches!(e, ConfineError::TooManyLinks { .. }), "{e}");
        let e = root.read_file("sub", 100).unwrap_err().to_string();
        assert_eq!(e, "'sub' is a directory, not a regular file");
        let e = root.read_file("sub/file", 3).unwrap_err().to_string();
        assert_eq!(e, "'sub/file' is larger than the 3 byte limit");
    }

    #[test]
    fn lists_names_sorted() {
        let (_t, root) = setup();
        let d = root.open_dir("dirlink").unwrap();
        let n = list_names(d.as_fd(), 10, "dirlink").unwrap();
        assert_eq!(n, vec![OsString::from("deeper"), OsString::from("file")]);
        assert!(list_names(d.as_fd(), 1, "dirlink").is_err());
    }
}
