//! Outputs that appear under their final name only when complete.
//!
//! Every file or folder wafer writes for the user (an image, a bundle, a report, a key, an
//! approval) is written under a temporary name beside its final one (`.NAME.wafer-tmp-PID-N`, in
//! the same folder, so on the same filesystem), synced to disk, and renamed into place: the
//! final name holds either the complete output or what it held before, never a partial one. A
//! failed or dropped writer removes its temporary; an existing output is left untouched unless
//! the caller asked to replace it ([`Replace::Yes`], the commands' `--force`), and then it is
//! swapped out in one rename.
//!
//! The temporaries in progress are kept in a process-wide registry. [`install_signal_cleanup`]
//! (called first thing in `main`) handles SIGINT, SIGTERM and SIGHUP on one thread of its own: on
//! a signal it removes the registered temporaries, prints one line saying what was abandoned, and
//! exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). Temporaries of a process killed with SIGKILL stay behind under
//! their hidden temporary names; never under a final name.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Errors of atomic outputs.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// The output exists and replacing it was not asked for.
    #[error("{path}: {what}; use --force to replace it")]
    Exists {
        /// The final path.
        path: PathBuf,
        /// What is there (`exists`, `exists and is not empty`).
        what: &'static str,
    },
    /// The output exists and is not of the kind written (a folder where a file goes, ...).
    #[error("{path}: is {found}, not {expected}; refusing to replace it")]
    WrongType {
        /// The final path.
        path: PathBuf,
        /// What it is.
        found: &'static str,
        /// What would be written.
        expected: &'static str,
    },
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, AtomicError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AtomicError + '_ {
    move |source| AtomicError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether an existing output may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// An existing output is an error ([`AtomicError::Exists`]); for a folder, an existing empty
    /// folder is not "existing".
    No,
    /// An existing output of the same kind is replaced (`--force`), in one rename.
    Yes,
}

impl Replace {
    /// [`Replace::Yes`] when `force`.
    pub fn from_force(force: bool) -> Self {
        if force {
            Replace::Yes
        } else {
            Replace::No
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry of temporaries in progress.

struct Pending {
    id: u64,
    path: PathBuf,
    final_path: PathBuf,
    dir: bool,
}

static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

fn pending() -> MutexGuard<'static, Vec<Pending>> {
    // A panic while holding the lock leaves the list as it was: still usable.
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A temporary path registered for removal on SIGINT/SIGTERM/SIGHUP; unregistered on drop
/// (removing nothing: the owner cleans up or commits).
#[derive(Debug)]
pub struct Registration {
    id: u64,
}

/// Registers `temp` (the temporary of `final_path`; a folder when `dir`) for removal when the
/// process is interrupted.
pub fn register(temp: &Path, final_path: &Path, dir: bool) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    pending().push(Pending {
        id,
        path: temp.to_path_buf(),
        final_path: final_path.to_path_buf(),
        dir,
    });
    Registration { id }
}

/// Registers `temp` like [`register`] and runs `create` (which makes it) under the registry's
/// lock, so an interrupt either comes before (nothing made) or finds it registered.
fn register_creating<T>(
    temp: &Path,
    final_path: &Path,
    dir: bool,
    create: impl FnOnce() -> io::Result<T>,
) -> (Registration, io::Result<T>) {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut list = pending();
    let made = create();
    list.push(Pending {
        id,
        path: temp.to_path_buf(),
        final_path: final_path.to_path_buf(),
        dir,
    });
    (Registration { id }, made)
}

impl Drop for Registration {
    fn drop(&mut self) {
        pending().retain(|p| p.id != self.id);
    }
}

/// Removes every registered temporary and returns the final paths whose output was abandoned.
/// Holds the registry's lock until the process exits when called from the signal thread, so no
/// rename can happen after it.
fn remove_pending(list: &mut Vec<Pending>) -> Vec<PathBuf> {
    let mut abandoned = Vec::new();
    for p in list.drain(..) {
        let r = if p.dir {
            std::fs::remove_dir_all(&p.path)
        } else {
            std::fs::remove_file(&p.path)
        };
        if r.is_ok() && !abandoned.contains(&p.final_path) {
            abandoned.push(p.final_path);
        }
    }
    abandoned
}

/// The one line printed when interrupted.
pub fn interrupted_line(signal: &str, abandoned: &[PathBuf]) -> String {
    if abandoned.is_empty() {
        format!("wafer: interrupted ({signal}); nothing was left half-written")
    } else {
        let list: Vec<String> = abandoned.iter().map(|p| p.display().to_string()).collect();
        format!(
            "wafer: interrupted ({signal}); removed partial output {}",
            list.join(", ")
        )
    }
}

/// The write end of the pipe the signal handler writes the signal's number into.
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The signal handler: one `write(2)` of the signal's number (async-signal-safe); the work is
/// done on the cleanup thread.
extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: writing one byte from a valid local to a pipe; errors are ignored.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// Handles SIGINT, SIGTERM and SIGHUP on a thread of their own: remove the registered
/// temporaries, restore the terminal's echo if a prompt had turned it off, print one line, exit
/// with 128 + the signal's number.
///
/// The handler only writes the signal's number into a pipe (async-signal-safe); a thread reads
/// it and does the rest. Handlers (unlike a blocked signal mask) do not pass to child processes:
/// a program wafer runs gets the default actions back at `exec`. Call it first in `main`.
/// Returns an error when the pipe, the thread or a handler cannot be set up; the signals then
/// keep their default action.
pub fn install_signal_cleanup() -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    // The terminal's settings as they are now: a passphrase prompt turns echo off, and an
    // interrupt during it must not leave the user's terminal without echo.
    let tty = saved_terminal();
    std::thread::Builder::new()
        .name("wafer-signals".into())
        .spawn(move || loop {
            let mut b = 0u8;
            // SAFETY: reading one byte into a valid local from our pipe.
            let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
            if n != 1 {
                if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let sig = libc::c_int::from(b);
            let name = match sig {
                libc::SIGINT => "SIGINT",
                libc::SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            if let Some((fd, saved)) = &tty {
                restore_terminal(*fd, saved);
            }
            // Held until the process ends: no output is committed or registered after this.
            let mut list = pending();
            let abandoned = remove_pending(&mut list);
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{}", interrupted_line(name, &abandoned));
            let _ = err.flush();
            std::process::exit(128 + sig);
        })?;
    SIGNAL_PIPE.store(write_fd, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The controlling terminal (opened close-on-exec) and its settings, when there is one.
fn saved_terminal() -> Option<(libc::c_int, libc::termios)> {
    // SAFETY: a NUL-terminated path; termios is plain data filled by tcgetattr before use.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        );
        if fd < 0 {
            return None;
        }
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            libc::close(fd);
            return None;
        }
        Some((fd, t))
    }
}

/// Puts back the terminal's echo settings if something changed them since start (only then: a
/// process in the background that sets a terminal's attributes is stopped by SIGTTOU).
fn restore_terminal(fd: libc::c_int, saved: &libc::termios) {
    let keep = libc::ECHO | libc::ECHONL | libc::ICANON;
    // SAFETY: fd is the open terminal; termios is plain data.
    unsafe {
        let mut now: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut now) == 0 && (now.c_lflag & keep) != (saved.c_lflag & keep) {
            now.c_lflag = (now.c_lflag & !keep) | (saved.c_lflag & keep);
            libc::tcsetattr(fd, libc::TCSANOW, &now);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names.

/// The temporary sibling of `path`: `.NAME.wafer-tmp-PID-N` in the same folder.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = format!(".{name}.wafer-tmp-{}-{n}", std::process::id());
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(tmp),
        _ => PathBuf::from(tmp),
    }
}

/// Whether `name` is a temporary made by [`temp_sibling`] (tests look for leftovers with it).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".wafer-tmp-")
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Syncs a folder, so a rename into it is on disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Renames `from` to `to`, refusing to replace an existing `to` (`RENAME_NOREPLACE` where the
/// filesystem has it, else a check just before).
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(AtomicError::Exists {
            path: to.to_path_buf(),
            what: "exists",
        }),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(AtomicError::Exists {
                    path: to.to_path_buf(),
                    what: "exists",
                });
            }
            std::fs::rename(from, to).map_err(io_err(to))
        }
        Err(e) => Err(AtomicError::Io {
            path: to.to_path_buf(),
            source: e.into(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Files.

/// A file written under a temporary name and renamed into place by [`AtomicFile::commit`].
/// Dropped without a commit (an error, a panic), its temporary is removed.
#[derive(Debug)]
pub struct AtomicFile {
    final_path: PathBuf,
    temp: PathBuf,
    file: File,
    replace: Replace,
    sync: bool,
    committed: bool,
    _reg: Registration,
}

/// Checks that an output file may be written at `path` (nothing there, or a file and `replace`);
/// [`AtomicFile::create`] checks it again, this is for refusing before a long computation.
/// Only an existing output is refused here: other errors (a missing folder) surface when the
/// temporary is created.
pub fn check_file_target(path: &Path, replace: Replace) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if !m.file_type().is_file() && !m.file_type().is_symlink() => {
            Err(AtomicError::WrongType {
                path: path.to_path_buf(),
                found: kind_of(&m),
                expected: "a regular file",
            })
        }
        Ok(_) if replace == Replace::No => Err(AtomicError::Exists {
            path: path.to_path_buf(),
            what: "exists",
        }),
        Ok(_) => Ok(()),
    }
}

impl AtomicFile {
    /// Starts writing `path` (mode 0666 less the umask).
    pub fn create(path: &Path, replace: Replace) -> Result<Self> {
        Self::create_with_mode(path, replace, 0o666)
    }

    /// Starts writing `path` with `mode` (less the umask); e.g. 0o600 for a private key.
    pub fn create_with_mode(path: &Path, replace: Replace, mode: u32) -> Result<Self> {
        check_file_target(path, replace)?;
        let mut last = None;
        for _ in 0..16 {
            let temp = temp_sibling(path);
            let (reg, made) = register_creating(&temp, path, false, || {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&temp)
            });
            match made {
                Ok(file) => {
                    return Ok(AtomicFile {
                        final_path: path.to_path_buf(),
                        temp,
                        file,
                        replace,
                        sync: true,
                        committed: false,
                        _reg: reg,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(AtomicError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
        Err(AtomicError::Io {
            path: path.to_path_buf(),
            source: last.unwrap_or_else(|| io::Error::other("no free temporary name")),
        })
    }

    /// The temporary file's path (for a writer that opens the file itself by name; it must not
    /// replace it with another file).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Do not sync the file and its folder on commit (an output that is only an intermediate
    /// step, like `mkfs --no-sync`); the rename still happens only after the last write.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the temporary, renames it to the final name (replacing an existing file only with
    /// [`Replace::Yes`]) and syncs the folder. Returns the final path.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.file.flush().map_err(io_err(&self.temp))?;
        if self.sync {
            self.file.sync_all().map_err(io_err(&self.temp))?;
        }
        {
            // Under the registry's lock: an interrupt either removes the temporary before the
            // rename, or comes after it and finds nothing to remove.
            let _lock = pending();
            match self.replace {
                Replace::Yes => std::fs::rename(&self.temp, &self.final_path)
                    .map_err(io_err(&self.final_path))?,
                Replace::No => rename_noreplace(&self.temp, &self.final_path)?,
            }
            self.committed = true;
        }
        if self.sync {
            sync_dir(&parent_of(&self.final_path))?;
        }
        Ok(self.final_path.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically. Returns the final path.
pub fn write(path: &Path, bytes: &[u8], replace: Replace) -> Result<PathBuf> {
    let mut f = AtomicFile::create(path, replace)?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.commit()
}

// ---------------------------------------------------------------------------------------------
// Folders.

/// A folder filled under a temporary name and renamed into place by [`AtomicDir::commit`].
/// Dropped without a commit, the temporary folder and everything in it is removed.
#[derive(Debug)]
pub struct AtomicDir {
    final_path: PathBuf,
    temp: PathBuf,
    replace: Replace,
    committed: bool,
    reg: Option<Registration>,
}

/// What is at a folder output's final path.
enum DirTarget {
    Absent,
    Empty,
    NonEmpty,
}

fn dir_target(path: &Path) -> Result<DirTarget> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DirTarget::Absent),
        Err(e) => Err(AtomicError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        Ok(m) if !m.file_type().is_dir() => Err(AtomicError::WrongType {
            path: path.to_path_buf(),
            found: kind_of(&m),
            expected: "a folder",
        }),
        Ok(_) => {
            let mut it = std::fs::read_dir(path).map_err(io_err(path))?;
            Ok(if it.next().is_some() {
                DirTarget::NonEmpty
            } else {
                DirTarget::Empty
            })
        }
    }
}

fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let t = e.file_type().map_err(io_err(&e.path()))?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            File::open(e.path())
                .and_then(|f| f.sync_all())
                .map_err(io_err(&e.path()))?;
        }
    }
    sync_dir(dir)
}

/// Checks that a folder output may be written at `path` (nothing there, an empty folder, or a
/// folder and `replace`); [`AtomicDir::create`] checks it again, this is for refusing before a
/// long computation or a passphrase prompt.
pub fn check_dir_target(path: &Path, replace: Replace) -> Result<()> {
    if let DirTarget::NonEmpty = dir_target(path)? {
        if replace == Replace::No {
            return Err(AtomicError::Exists {
                path: path.to_path_buf(),
                what: "exists and is not empty",
            });
        }
    }
    Ok(())
}

impl AtomicDir {
    /// Starts a folder output at `path`. An existing non-empty folder is refused unless
    /// `replace` is [`Replace::Yes`]; the parent folders are created.
    pub fn create(path: &Path, replace: Replace) -> Result<Self> {
        check_dir_target(path, replace)?;
        let parent = parent_of(path);
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let mut last = None;
        for _ in 0..16 {
            let temp = temp_sibling(path);
            let (reg, made) = register_creating(&temp, path, true, || std::fs::create_dir(&temp));
            match made {
                Ok(()) => {
                    return Ok(AtomicDir {
                        final_path: path.to_path_buf(),
                        temp,
                        replace,
                        committed: false,
                        reg: Some(reg),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(AtomicError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            }
        }
        Err(AtomicError::Io {
            path: path.to_path_buf(),
            source: last.unwrap_or_else(|| io::Error::other("no free temporary name")),
        })
    }

    /// The temporary folder to fill.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Syncs every file in the temporary folder and renames it to the final name: onto nothing
    /// or an empty folder; onto a non-empty folder only with [`Replace::Yes`], exchanging the two
    /// in one rename and then removing the old one. Returns the final path.
    pub fn commit(mut self) -> Result<PathBuf> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        sync_tree(&self.temp)?;
        let swapped = {
            let _lock = pending();
            let target = dir_target(&self.final_path)?;
            match target {
                DirTarget::Absent | DirTarget::Empty => {
                    // rename(2) replaces an empty folder and refuses a non-empty one (ENOTEMPTY),
                    // so a folder filled meanwhile is never lost.
                    std::fs::rename(&self.temp, &self.final_path)
                        .map_err(io_err(&self.final_path))?;
                    false
                }
                DirTarget::NonEmpty if self.replace == Replace::No => {
                    return Err(AtomicError::Exists {
                        path: self.final_path.clone(),
                        what: "exists and is not empty",
                    })
                }
                DirTarget::NonEmpty => {
                    renameat_with(
                        CWD,
                        &self.temp,
                        CWD,
                        &self.final_path,
                        RenameFlags::EXCHANGE,
                    )
                    .map_err(|e| AtomicError::Io {
                        path: self.final_path.clone(),
                        source: e.into(),
                    })?;
                    true
                }
            }
        };
        self.committed = true;
        if swapped {
            // The temporary name now holds the replaced output; it stays registered, so an
            // interrupt while it is removed still removes it.
            std::fs::remove_dir_all(&self.temp).map_err(io_err(&self.temp))?;
        }
        self.reg = None;
        sync_dir(&parent_of(&self.final_path))?;
        Ok(self.final_path.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn file_appears_only_when_committed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.img");
        let mut f = AtomicFile::create(&p, Replace::No).unwrap();
        f.write_all(b"hello").unwrap();
        assert!(!p.exists());
        assert_eq!(names(d.path()).len(), 1);
        assert!(is_temp_name(&names(d.path())[0]));
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(names(d.path()), vec!["out.img"]);
    }

    #[test]
    fn dropped_file_leaves_old_output_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.img");
        std::fs::write(&p, b"old").unwrap();
        let e = AtomicFile::create(&p, Replace::No).unwrap_err();
        assert!(e.to_string().contains("use --force"), "{e}");
        {
            let mut f = AtomicFile::create(&p, Replace::Yes).unwrap();
            f.write_all(b"new but failed").unwrap();
            // dropped: an error happened
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(d.path()), vec!["out.img"]);
        write(&p, b"new", Replace::Yes).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(pending().iter().all(|x| x.final_path != p));
    }

    #[test]
    fn folder_refused_replaced_and_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bundle");
        // Absent: created.
        let a = AtomicDir::create(&p, Replace::No).unwrap();
        std::fs::write(a.path().join("x"), b"1").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read(p.join("x")).unwrap(), b"1");
        // Non-empty without replace: refused at once, and at commit if filled meanwhile.
        let e = AtomicDir::create(&p, Replace::No).unwrap_err();
        assert!(e.to_string().contains("not empty; use --force"), "{e}");
        // Dropped: old kept, temporary gone.
        {
            let b = AtomicDir::create(&p, Replace::Yes).unwrap();
            std::fs::write(b.path().join("y"), b"2").unwrap();
        }
        assert_eq!(names(&p), vec!["x"]);
        assert_eq!(names(d.path()), vec!["bundle"]);
        // Replaced.
        let c = AtomicDir::create(&p, Replace::Yes).unwrap();
        std::fs::write(c.path().join("y"), b"2").unwrap();
        c.commit().unwrap();
        assert_eq!(names(&p), vec!["y"]);
        assert_eq!(names(d.path()), vec!["bundle"]);
        // An empty folder is not an existing output.
        let e2 = d.path().join("empty");
        std::fs::create_dir(&e2).unwrap();
        let f = AtomicDir::create(&e2, Replace::No).unwrap();
        std::fs::write(f.path().join("z"), b"3").unwrap();
        f.commit().unwrap();
        assert_eq!(names(&e2), vec!["z"]);
        // A file where a folder goes is refused even with replace.
        let file = d.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            AtomicDir::create(&file, Replace::Yes),
            Err(AtomicError::WrongType { .. })
        ));
    }

    #[test]
    fn interrupted_removes_registered_temps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o");
        let f = AtomicFile::create(&p, Replace::No).unwrap();
        let temp = f.temp_path().to_path_buf();
        let mut list = pending();
        let mine: Vec<Pending> = {
            let (mine, rest): (Vec<Pending>, Vec<Pending>) =
                list.drain(..).partition(|x| x.final_path == p);
            *list = rest;
            mine
        };
        drop(list);
        let mut mine = mine;
        let abandoned = remove_pending(&mut mine);
        assert_eq!(abandoned, vec![p.clone()]);
        assert!(!temp.exists());
        assert!(interrupted_line("SIGINT", &abandoned).contains("removed partial output"));
        drop(f);
    }
}
