//! Small file-system helpers: atomic writes, bounded reads of regular files only, and a guard
//! that keeps paths inside a directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of temporary files written by [`write_atomic`]; recovery removes leftovers.
pub const TMP_PREFIX: &str = ".tmp-";

/// Builds a unique temporary name next to `dest` (pid + per-process counter).
fn tmp_path(dest: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = format!("{TMP_PREFIX}{base}.{}.{n}", std::process::id());
    dest.with_file_name(name)
}

/// Fsyncs a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dest` atomically: a temporary file in the same directory is written and
/// fsynced, renamed over `dest`, and the directory fsynced. A reader sees the old content or the
/// new one, never a mixture, even if the process is killed at any point.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(dest);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dest)?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`] but fails with `AlreadyExists` if `dest` exists: the temporary file is
/// hard-linked to `dest` (which never replaces an existing file) and then unlinked.
pub fn create_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(dest);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::hard_link(&tmp, dest)?;
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    if result.is_ok() {
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
    }
    result
}

/// Removes a file and fsyncs its directory; a missing file is not an error.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes leftover temporary files (from a process killed mid-write) in `dir`; returns how many.
pub fn remove_tmp_files(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    if n > 0 {
        sync_dir(dir)?;
    }
    Ok(n)
}

/// Opens `path` for reading only if it is a regular file (a final symlink is followed): the one
/// check of the model, [`rootfs::content::open_regular`] — a non-blocking open, so a FIFO or a
/// device never blocks it, then `fstat` of the opened descriptor. Errors are `InvalidInput`
/// naming the file type found; the caller adds the path.
pub fn open_regular(path: &Path) -> io::Result<File> {
    rootfs::content::open_regular(path, true)
}

/// Reads a whole regular file of at most `limit` bytes (see [`open_regular`]): the size from
/// `fstat` is checked first, then at most `limit + 1` bytes are read, so a file that grows while
/// it is read is refused too. Errors are `InvalidInput`/`InvalidData` with a message saying what
/// is wrong; the caller adds the path.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let size = f.metadata()?.len();
    let too_big = |n: u64| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{n} bytes or more, larger than the {limit} bytes accepted"),
        )
    };
    if size > limit {
        return Err(too_big(size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

/// True when `rel` is a relative path made only of normal components (no `..`, no root, no `.`).
pub fn is_confined_relative(rel: &Path) -> bool {
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(_) => any = true,
            _ => return false,
        }
    }
    any
}

/// True when `path` is absolute and has no `.` or `..` component.
pub fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_and_create() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let e = create_atomic(&p, b"three").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        fs::write(d.path().join(".tmp-x.json.1.2"), b"junk").unwrap();
        assert_eq!(remove_tmp_files(d.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_regular_refuses_fifo_device_dir_and_oversize() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ok");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        let e = read_regular(&p, 4).unwrap_err();
        assert!(e.to_string().contains("larger than the 4 bytes"), "{e}");
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // would block forever in a plain open(2): no writer ever comes
        let e = read_regular(&fifo, 100).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_regular(d.path(), 100).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_regular(&link, 100).is_err());
    }

    #[test]
    fn confinement() {
        assert!(is_confined_relative(Path::new("a/b")));
        assert!(!is_confined_relative(Path::new("../a")));
        assert!(!is_confined_relative(Path::new("/a")));
        assert!(!is_confined_relative(Path::new("")));
        assert!(is_clean_absolute(Path::new("/var/lib/wafer")));
        assert!(!is_clean_absolute(Path::new("/var/../etc")));
        assert!(!is_clean_absolute(Path::new("var")));
    }
}
