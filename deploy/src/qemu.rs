//! QEMU/KVM as the site's hypervisor: the launch description a deploy writes (`qemu.json`,
//! [`GuestSpec`]), the `qemu-system-x86_64` command line made from it ([`argv`]), the
//! accelerator choice ([`resolve_accel`]: KVM only when a probe guest really runs under it),
//! the guest kernel command line for virtio disks and a serial console ([`guest_cmdline`]), and
//! finding, asking and ending a deployment's QEMU ([`presence`], [`shut_down`]) through its QMP
//! socket and pidfile. `deployment::QemuTool` puts these behind the `Hypervisor` trait.

use std::fs;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::qmp::{Qmp, QmpError};
use crate::site::{Accel, QemuNetwork, QemuSite};

/// File names inside a deployment's storage folder.
pub mod files {
    /// The launch description.
    pub const SPEC: &str = "qemu.json";
    /// The guest's serial console.
    pub const CONSOLE: &str = "console.log";
    /// The QMP socket.
    pub const QMP: &str = "qmp.sock";
    /// QEMU's pidfile.
    pub const PIDFILE: &str = "qemu.pid";
}

/// Largest `qemu.json` read back.
pub const MAX_SPEC: u64 = 1 << 20;
/// How long one QMP read may wait.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `quit` (then SIGKILL) may take to end QEMU.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the KVM probe guest may take before KVM counts as not working.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A QEMU operation failed.
#[derive(Debug, Error)]
pub enum QemuError {
    /// A file of the deployment.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `qemu.json` is not a launch description.
    #[error("{path}: not a QEMU launch description: {message}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// QMP.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU refused to start or failed.
    #[error("{command}: {message}")]
    Failed {
        /// The command line (or what was done).
        command: String,
        /// What happened.
        message: String,
    },
    /// The wafer's kernel cannot run under QEMU.
    #[error("{0}")]
    Unbootable(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QemuError + '_ {
    move |source| QemuError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One guest NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The leased MAC.
    pub mac: String,
    /// The site network's host bridge (`-netdev bridge`).
    pub bridge: String,
    /// The site network, `A.B.C.D/P` (`-netdev user` gives the guest this network).
    pub net: String,
    /// Its gateway (`-netdev user`'s host address).
    pub gateway: Option<Ipv4Addr>,
    /// Its first DNS server when it lies inside the network (`-netdev user`'s DNS address).
    pub dns: Option<Ipv4Addr>,
}

/// `STORAGE/NAME/qemu.json`: everything QEMU is started with, except the accelerator (chosen
/// when it starts) and the site's `[qemu]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Deployment name (`-name`).
    pub name: String,
    /// Kernel file.
    pub kernel: PathBuf,
    /// Initrd file.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Root disk (first virtio disk: `/dev/vda`).
    pub disk: PathBuf,
    /// CIDATA disk (second, read-only: `/dev/vdb`).
    pub cidata: PathBuf,
    /// NICs in the slot's network order.
    pub nics: Vec<NicSpec>,
    /// Serial console log.
    pub console: PathBuf,
    /// QMP socket.
    pub qmp: PathBuf,
    /// Pidfile.
    pub pidfile: PathBuf,
}

impl GuestSpec {
    /// Reads `qemu.json` (a regular file, bounded).
    pub fn read(path: &Path) -> Result<GuestSpec, QemuError> {
        let bytes = crate::fsutil::read_regular(path, MAX_SPEC).map_err(io_err(path))?;
        serde_json::from_slice(&bytes).map_err(|e| QemuError::Spec {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The accelerator QEMU runs with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// `kvm` or `tcg`.
    pub accel: Accel,
    /// Why (for `auto`).
    pub reason: String,
}

/// The guest kernel command line under QEMU, from the signed manifest's: Xen's paravirtual
/// disk names become virtio's (`root=/dev/xvda1` → `root=/dev/vda1`, the root disk being the
/// first virtio disk), a Xen console (`console=hvc0`/`xvc0`) becomes the serial port
/// (`console=ttyS0`, the console log), which is added when the line names no console; every
/// other word is kept. Without a command line: `root=/dev/vda ro console=ttyS0`.
pub fn guest_cmdline(cmdline: Option<&str>) -> String {
    let Some(line) = cmdline else {
        return "root=/dev/vda ro console=ttyS0".into();
    };
    let mut has_console = false;
    let mut words: Vec<String> = Vec::new();
    for w in line.split_whitespace() {
        if let Some(dev) = w.strip_prefix("console=") {
            has_console = true;
            let name = dev.split(',').next().unwrap_or(dev);
            if matches!(name, "xvc0" | "hvc0") {
                words.push("console=ttyS0".into());
                continue;
            }
        }
        match w.split_once("=/dev/xvd") {
            Some((key, rest)) => words.push(format!("{key}=/dev/vd{rest}")),
            None => words.push(w.to_string()),
        }
    }
    if !has_console {
        words.push("console=ttyS0".into());
    }
    words.join(" ")
}

/// The refusal for a kernel that only runs as a Xen PV guest.
pub fn check_flavour(flavour: crate::xl::KernelFlavour) -> Result<(), QemuError> {
    match flavour {
        crate::xl::KernelFlavour::Pvops => Ok(()),
        crate::xl::KernelFlavour::Xenlinux => Err(QemuError::Unbootable(
            "the wafer's kernel is a xenlinux (2.6.18-xen style) kernel, which runs only as a Xen \
             paravirtual guest: deploy it on a Xen site"
                .into(),
        )),
    }
}

/// The QEMU command line (program first) for `spec` on a site with `q`, running with `accel`.
pub fn argv(program: &str, q: &QemuSite, accel: Accel, spec: &GuestSpec) -> Vec<String> {
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let mut a: Vec<String> = vec![program.to_string()];
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    push(&["-name", &spec.name]);
    push(&["-machine", &q.machine]);
    match accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        _ => push(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
    push(&["-m", &spec.memory_mib.to_string(), "-smp", &spec.vcpus.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-kernel", &p(&spec.kernel)]);
    if let Some(i) = &spec.initrd {
        push(&["-initrd", &p(i)]);
    }
    push(&["-append", &spec.cmdline]);
    push(&[
        "-drive",
        &format!("file={},format=raw,if=virtio,index=0", p(&spec.disk)),
    ]);
    push(&[
        "-drive",
        &format!(
            "file={},format=raw,if=virtio,index=1,readonly=on",
            p(&spec.cidata)
        ),
    ]);
    for (i, n) in spec.nics.iter().enumerate() {
        let netdev = match q.network {
            QemuNetwork::Bridge => format!("bridge,id=net{i},br={}", n.bridge),
            QemuNetwork::User => {
                let mut s = format!("user,id=net{i},net={}", n.net);
                if let Some(g) = n.gateway {
                    s.push_str(&format!(",host={g}"));
                }
                if let Some(d) = n.dns {
                    s.push_str(&format!(",dns={d}"));
                }
                s
            }
        };
        push(&["-netdev", &netdev]);
        push(&[
            "-device",
            &format!("virtio-net-pci,netdev=net{i},mac={}", n.mac),
        ]);
    }
    push(&[
        "-chardev",
        &format!("file,id=console,path={}", p(&spec.console)),
        "-serial",
        "chardev:console",
    ]);
    push(&[
        "-chardev",
        &format!("socket,id=qmp,path={},server=on,wait=off", p(&spec.qmp)),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    push(&["-pidfile", &p(&spec.pidfile), "-daemonize"]);
    a
}

/// `argv` as one line a POSIX shell reads back (words quoted where needed).
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=,:+@%".contains(&b))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program to run: `binary` itself when it is a path, else found in `PATH`.
pub fn find_program(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(binary))
            .find(|c| c.is_file())
    })
}

/// A tiny multiboot (v1, "a.out kludge") x86 kernel: in 32-bit protected mode it writes
/// `message` to the first serial port, then — with `exit` — writes 0 to the `isa-debug-exit`
/// port 0xf4 (QEMU then exits with status 1), else halts for ever. QEMU's `-kernel` loads it
/// like a Linux kernel; the KVM probe runs it, and tests deploy it as a wafer's kernel.
pub fn tiny_kernel(message: &[u8], exit: bool) -> Vec<u8> {
    const BASE: u32 = 0x10_0000;
    const MAGIC: u32 = 0x1BAD_B002;
    const FLAGS: u32 = 0x0001_0000;
    let entry = BASE + 32;
    let mut code: Vec<u8> = vec![0x66, 0xBA, 0xF8, 0x03]; // mov dx, 0x3f8
    code.extend([0xBE, 0, 0, 0, 0]); // mov esi, message
    code.extend([0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8]); // lodsb; test; jz; out; jmp
    if exit {
        code.extend([0x66, 0xBA, 0xF4, 0x00, 0x31, 0xC0, 0xEF]); // mov dx, 0xf4; xor eax; out
    }
    code.extend([0xFA, 0xF4, 0xEB, 0xFD]); // cli; hlt; jmp hlt
    let msg_addr = entry + code.len() as u32;
    code[5..9].copy_from_slice(&msg_addr.to_le_bytes());
    let mut out = Vec::new();
    for v in [
        MAGIC,
        FLAGS,
        0u32.wrapping_sub(MAGIC.wrapping_add(FLAGS)),
        BASE,
        BASE,
        0,
        0,
        entry,
    ] {
        out.extend(v.to_le_bytes());
    }
    out.extend(code);
    out.extend(message.iter().filter(|&&b| b != 0));
    out.push(0);
    out
}

/// The marker the KVM probe guest prints.
const PROBE_MARK: &[u8] = b"wafer-kvm-probe-ok\n";

/// Decides the accelerator for `accel` (`auto`: KVM only when a probe guest, [`tiny_kernel`],
/// really runs and exits under KVM on this host's machine type; otherwise TCG, with the reason).
/// The probe works in a folder made (and removed) inside `scratch`. Without a program to run,
/// `auto` is KVM when `/dev/kvm` opens, else TCG.
pub fn resolve_accel(
    program: Option<&Path>,
    q: &QemuSite,
    accel: Accel,
    scratch: &Path,
) -> Chosen {
    match accel {
        Accel::Kvm | Accel::Tcg => Chosen {
            accel,
            reason: format!("the site sets accel = \"{}\"", accel.as_str()),
        },
        Accel::Auto => {
            if let Err(e) = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
            {
                return Chosen {
                    accel: Accel::Tcg,
                    reason: format!("/dev/kvm cannot be opened ({e}): TCG"),
                };
            }
            let Some(program) = program else {
                return Chosen {
                    accel: Accel::Kvm,
                    reason: "/dev/kvm opens (no QEMU here to probe it)".into(),
                };
            };
            match probe_kvm(program, q, scratch) {
                Ok(()) => Chosen {
                    accel: Accel::Kvm,
                    reason: "a probe guest ran under KVM".into(),
                },
                Err(why) => Chosen {
                    accel: Accel::Tcg,
                    reason: format!("KVM does not run a plain guest here ({why}): TCG"),
                },
            }
        }
    }
}

fn probe_kvm(program: &Path, q: &QemuSite, scratch: &Path) -> Result<(), String> {
    let dir = scratch.join(format!(".kvm-probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let r = (|| {
        let kernel = dir.join("kernel");
        fs::write(&kernel, tiny_kernel(PROBE_MARK, true))
            .map_err(|e| format!("{}: {e}", kernel.display()))?;
        let out = dir.join("serial");
        let args: Vec<String> = vec![
            "-machine".into(),
            q.machine.clone(),
            "-accel".into(),
            "kvm".into(),
            "-cpu".into(),
            "host".into(),
            "-m".into(),
            "32".into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-chardev".into(),
            format!("file,id=s,path={}", out.display()),
            "-serial".into(),
            "chardev:s".into(),
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=4".into(),
            "-kernel".into(),
            kernel.to_string_lossy().into_owned(),
        ];
        let mut child = crate::child::command(program, &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the probe guest did not finish in {} s",
                        PROBE_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        let mut err = Vec::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.by_ref().take(64 << 10).read_to_end(&mut err);
        }
        let printed = fs::read(&out).unwrap_or_default();
        if status.code() == Some(1) && printed.windows(PROBE_MARK.len()).any(|w| w == PROBE_MARK)
        {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&err);
            let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(format!(
                "the probe guest ended with {status}{}{}",
                if first.is_empty() { "" } else { ": " },
                first.chars().take(300).collect::<String>().escape_debug()
            ))
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    r
}

/// Starts QEMU with `argv` (daemonizing: it returns once the guest is set up) and returns the
/// command line run.
pub fn launch(program: &Path, argv: &[String]) -> Result<String, QemuError> {
    let line = shell_line(argv);
    let out = crate::child::output(program, &argv[1..]).map_err(|e| QemuError::Failed {
        command: line.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(QemuError::Failed {
            command: line,
            message: format!(
                "{} ({})",
                err.trim().chars().take(2000).collect::<String>(),
                out.status
            ),
        });
    }
    Ok(line)
}

/// Whether a deployment's QEMU exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// No QEMU for it: nothing listens on its QMP socket and no live QEMU process holds its
    /// pidfile.
    Gone,
    /// Its QEMU exists.
    Alive {
        /// Process id, when its pidfile names a live QEMU of this deployment.
        pid: Option<u32>,
        /// The run state QMP reports (`running`, `paused`, ...), or why it could not be asked.
        status: Result<String, String>,
    },
}

/// The pid in `pidfile` when that process is alive and is the QEMU whose command line names
/// `qmp` (so a reused pid is never taken for it).
pub fn verified_pid(pidfile: &Path, qmp: &Path) -> Option<u32> {
    let text = crate::fsutil::read_regular(pidfile, 64).ok()?;
    let pid: u32 = std::str::from_utf8(&text).ok()?.trim().parse().ok()?;
    if !crate::lease::pid_alive(pid) {
        return None;
    }
    let mut cmdline = Vec::new();
    fs::File::open(format!("/proc/{pid}/cmdline"))
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut cmdline)
        .ok()?;
    let needle = format!("path={},", qmp.display());
    cmdline
        .split(|&b| b == 0)
        .any(|arg| arg.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .then_some(pid)
}

/// Asks whether the QEMU of the deployment folder `dir` exists, and its run state.
pub fn presence(dir: &Path) -> Presence {
    let qmp = dir.join(files::QMP);
    let pid = verified_pid(&dir.join(files::PIDFILE), &qmp);
    match Qmp::connect(&qmp, QMP_TIMEOUT).and_then(|mut c| c.status()) {
        Ok(s) => Presence::Alive {
            pid,
            status: Ok(s),
        },
        Err(QmpError::NotListening { .. }) if pid.is_none() => Presence::Gone,
        Err(e) => Presence::Alive {
            pid,
            status: Err(e.to_string()),
        },
    }
}

fn wait_gone(dir: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if presence_quick(dir) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when no QEMU of `dir` is left: no verified pid and nothing listening on its socket.
fn presence_quick(dir: &Path) -> bool {
    let qmp = dir.join(files::QMP);
    if verified_pid(&dir.join(files::PIDFILE), &qmp).is_some() {
        return false;
    }
    matches!(
        std::os::unix::net::UnixStream::connect(&qmp),
        Err(ref e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
    )
}

/// Ends the QEMU of deployment folder `dir`: ACPI power-down (`system_powerdown`) and up to
/// `grace` for the guest to power itself off, then `quit`, then SIGKILL of its verified
/// process; returns what was done once it is gone.
pub fn shut_down(dir: &Path, grace: Duration) -> Result<String, QemuError> {
    let qmp = dir.join(files::QMP);
    let mut done = Vec::new();
    if let Ok(mut c) = Qmp::connect(&qmp, QMP_TIMEOUT) {
        if !grace.is_zero() && c.execute("system_powerdown").is_ok() {
            done.push("system_powerdown");
            if wait_gone(dir, grace) {
                return Ok(format!("QMP {} on {}", done.join(", "), qmp.display()));
            }
        }
        // `quit` may close the socket before or after its reply
        let _ = c.execute("quit");
        done.push("quit");
    }
    if wait_gone(dir, QUIT_TIMEOUT) {
        return Ok(format!("QMP {} on {}", done.join(", "), qmp.display()));
    }
    if let Some(pid) = verified_pid(&dir.join(files::PIDFILE), &qmp) {
        // SAFETY: kill(2) of a pid just checked to be this deployment's QEMU.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        done.push("SIGKILL");
        if wait_gone(dir, QUIT_TIMEOUT) {
            return Ok(format!(
                "QMP {} on {} (pid {pid})",
                done.join(", "),
                qmp.display()
            ));
        }
    }
    Err(QemuError::Failed {
        command: format!("QMP {} on {}", done.join(", "), qmp.display()),
        message: "its QEMU is still there".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_moves_xen_devices_to_virtio_and_serial() {
        assert_eq!(
            guest_cmdline(Some("root=/dev/xvda ro console=hvc0")),
            "root=/dev/vda ro console=ttyS0"
        );
        assert_eq!(
            guest_cmdline(Some("root=/dev/xvda1 resume=/dev/xvdb2 console=xvc0,115200 quiet")),
            "root=/dev/vda1 resume=/dev/vdb2 console=ttyS0 quiet"
        );
        assert_eq!(
            guest_cmdline(Some("root=UUID=1234 ro")),
            "root=UUID=1234 ro console=ttyS0"
        );
        assert_eq!(
            guest_cmdline(Some("root=/dev/sda1 console=ttyS0,115200")),
            "root=/dev/sda1 console=ttyS0,115200"
        );
        assert_eq!(guest_cmdline(None), "root=/dev/vda ro console=ttyS0");
    }

    #[test]
    fn shell_line_quotes_what_a_shell_would_split() {
        let a: Vec<String> = ["qemu", "-append", "root=/dev/vda ro", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_line(&a),
            "qemu -append 'root=/dev/vda ro' 'it'\\''s'"
        );
    }

    #[test]
    fn tiny_kernel_has_a_valid_multiboot_header() {
        let k = tiny_kernel(b"hi\n", true);
        let w = |i: usize| u32::from_le_bytes([k[i], k[i + 1], k[i + 2], k[i + 3]]);
        assert_eq!(w(0), 0x1BAD_B002);
        assert_eq!(w(0).wrapping_add(w(4)).wrapping_add(w(8)), 0);
        assert!(k.ends_with(b"hi\n\0"));
    }
}
