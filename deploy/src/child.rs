//! Running the hypervisor's tools (`xl`, `qemu-system-x86_64`) as children that die with wafer.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `program ARGS`, stdin from /dev/null, its output collected. The child gets SIGKILL if wafer
/// dies first (`PR_SET_PDEATHSIG`): an `xl create` or a starting QEMU orphaned by a killed
/// deploy must not finish creating a guest after recovery has looked (see docs/site.md,
/// "Recovery").
pub(crate) fn output<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> io::Result<Output> {
    command(program, args).output()
}

/// The [`Command`] of [`output`], for callers that wait themselves.
pub(crate) fn command<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls (prctl, getppid, kill) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() as u32 != parent {
                // wafer died before prctl took effect: do not run orphaned
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd
}
