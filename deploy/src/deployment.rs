//! Deployment records, launch through a [`Hypervisor`], `ps` and `stop`.
//!
//! [`deploy`] only accepts a [`trust::Verified<Bundle>`]: the value only a successful
//! verification (`trust::verify_dir`, `trust::verify`) produces, so nothing here runs — no lease
//! taken, no file written — for a wafer that was not verified. An unverified bundle does not
//! compile:
//!
//! ```compile_fail
//! fn deploy_unverified(
//!     site: &deploy::site::Site,
//!     b: &bundle::Bundle,
//!     opts: &deploy::deployment::DeployOptions,
//!     hv: &deploy::deployment::XlTool,
//! ) {
//!     let _ = deploy::deployment::deploy(site, b, opts, hv);
//! }
//! ```
//!
//! while a verified one does:
//!
//! ```no_run
//! fn deploy_verified(
//!     site: &deploy::site::Site,
//!     b: &trust::Verified<bundle::Bundle>,
//!     opts: &deploy::deployment::DeployOptions,
//!     hv: &deploy::deployment::XlTool,
//! ) {
//!     let _ = deploy::deployment::deploy(site, b, opts, hv);
//! }
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cidata::{self, Context, Interface};
use crate::fit::{self, Allocation};
use crate::fsutil;
use crate::lease::{self, Lease, LeaseError, StateDir, StateLock};
use crate::names::{check_name, NameError};
use crate::site::Site;
use crate::wafer::Image;
use crate::xl::{DiskSpec, Domain, GuestConfig, VifSpec};

/// Deployment error.
#[derive(Debug, Error)]
pub enum DeployError {
    /// Bad name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No slot fits.
    #[error(transparent)]
    Fit(#[from] fit::FitError),
    /// Lease store.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// CIDATA image.
    #[error(transparent)]
    Cidata(#[from] cidata::CidataError),
    /// xl.cfg.
    #[error(transparent)]
    Xl(#[from] crate::xl::XlError),
    /// QEMU.
    #[error(transparent)]
    Qemu(#[from] crate::qemu::QemuError),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The verified manifest cannot be deployed (a requirement that does not parse).
    #[error("{0}")]
    Manifest(String),
    /// A deployment of that name exists.
    #[error("deployment {0} already exists")]
    Exists(String),
    /// No such deployment.
    #[error("no deployment called {0}")]
    NotFound(String),
    /// A record is unreadable.
    #[error("{path}: corrupt deployment record: {message}")]
    Corrupt {
        /// Path.
        path: PathBuf,
        /// What.
        message: String,
    },
    /// The deployment's guest may still exist, so nothing it holds was released.
    #[error("deployment {name}: {reason}; its addresses, slot and disk stay held until the hypervisor confirms the guest is gone (retry `wafer stop {name}` or `wafer recover`)")]
    Held {
        /// Deployment.
        name: String,
        /// Why it could not be confirmed gone.
        reason: String,
    },
    /// A deploy failed after its guest may have been created; says what was undone.
    #[error("{cause}; {undone}")]
    Undone {
        /// What failed.
        cause: Box<DeployError>,
        /// What happened to the guest and its resources.
        undone: String,
    },
    /// The hypervisor already has a domain of that name that is no deployment of this site.
    #[error("the hypervisor already has a guest called {0} that is not a wafer deployment of this site; choose another --name (nothing was written)")]
    DomainExists(String),
    /// Another wafer process is deploying or stopping this deployment right now.
    #[error("deployment {0} is being deployed or stopped by another process")]
    Busy(String),
    /// The hypervisor command failed.
    #[error("{command}: {message}")]
    Hypervisor {
        /// Command line.
        command: String,
        /// What happened.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a launch or teardown did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Launch {
    /// The command ran and succeeded.
    Ran(String),
    /// Dry run or no `xl`: the command to run by hand.
    Printed(String),
}

/// The hypervisor-facing operations, behind a trait so tests substitute a fake hypervisor:
/// [`XlTool`] for Xen, [`QemuTool`] for QEMU/KVM.
pub trait Hypervisor {
    /// True when [`Hypervisor::create`] really starts guests (false: it only prints the
    /// command, as with `--dry-run` or without `xl`).
    fn launches(&self) -> bool;
    /// The domains that exist now, in any state; `Ok(None)` when this hypervisor cannot be
    /// asked at all (no `xl` on this host).
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError>;
    /// Starts the guest described by `cfg` (xl.cfg for Xen, qemu.json for QEMU).
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError>;
    /// Destroys the guest `name`.
    fn destroy(&self, name: &str) -> Result<Launch, DeployError>;
}

/// The real `xl`: runs it when it exists and this is not a dry run, else prints what it would
/// run. `xl list` is read-only, so it is run even in a dry run (recovery needs it).
#[derive(Debug, Clone)]
pub struct XlTool {
    /// Path of `xl`, if found.
    pub xl: Option<PathBuf>,
    /// Print instead of running `xl create` and `xl destroy`.
    pub dry_run: bool,
}

impl XlTool {
    /// Looks `xl` up in `PATH`.
    pub fn detect(dry_run: bool) -> XlTool {
        let xl = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("xl"))
                .find(|c| c.is_file())
        });
        // op1: a dry run where `xl` cannot reach a hypervisor (xen-utils installed on a host not
        // booted under Xen) goes on as on a host without xl: no guest can exist there, and
        // recovery still holds whatever a real launch left (it cannot ask)
        let xl = match xl {
            Some(path) if dry_run => match Self::output(&path, &["list"]) {
                Ok(_) => Some(path),
                Err(e) => {
                    tracing::info!("{e}: this dry run goes on as on a host without xl");
                    None
                }
            },
            other => other,
        };
        XlTool { xl, dry_run }
    }

    /// Runs `xl ARGS` and returns its stdout. The child gets SIGKILL if wafer dies first
    /// (`PR_SET_PDEATHSIG`): an `xl create` orphaned by a killed deploy must not finish creating
    /// a domain after recovery has looked (see docs/site.md, "Recovery").
    fn output(xl: &Path, args: &[&str]) -> Result<Vec<u8>, DeployError> {
        let line = format!("xl {}", args.join(" "));
        let failed = |message: String| DeployError::Hypervisor {
            command: line.clone(),
            message,
        };
        let out = crate::child::output(xl, args).map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err: String = err.trim().chars().take(2000).collect();
            return Err(failed(format!("{} ({})", err, out.status)));
        }
        Ok(out.stdout)
    }

    fn run(&self, args: &[&str]) -> Result<Launch, DeployError> {
        let line = format!("xl {}", args.join(" "));
        match (&self.xl, self.dry_run) {
            (Some(xl), false) => {
                Self::output(xl, args)?;
                Ok(Launch::Ran(line))
            }
            _ => Ok(Launch::Printed(line)),
        }
    }
}

impl Hypervisor for XlTool {
    fn launches(&self) -> bool {
        self.xl.is_some() && !self.dry_run
    }
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
        let Some(xl) = &self.xl else { return Ok(None) };
        let out = Self::output(xl, &["list"])?;
        let text = String::from_utf8(out).map_err(|_| DeployError::Hypervisor {
            command: "xl list".into(),
            message: "output is not UTF-8".into(),
        })?;
        Ok(Some(crate::xl::parse_list(&text)?))
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        self.run(&["create", &cfg.to_string_lossy()])
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        self.run(&["destroy", name])
    }
}

/// QEMU/KVM: starts `qemu-system-x86_64` (the site's `qemu.binary`) daemonized with a QMP
/// socket and pidfile in the deployment's storage folder, and asks those for the guests that
/// exist ([`crate::qemu::presence`]). The accelerator is chosen once, at the first launch.
#[derive(Debug)]
pub struct QemuTool {
    /// The site's `[qemu]`.
    pub settings: crate::site::QemuSite,
    /// The QEMU program, if found.
    pub program: Option<PathBuf>,
    /// The site's storage directory (one folder per deployment).
    pub storage_dir: PathBuf,
    /// Print instead of starting or stopping QEMU.
    pub dry_run: bool,
    accel: std::sync::OnceLock<crate::qemu::Chosen>,
}

impl QemuTool {
    /// The tool for `site` (which must be a QEMU site: else `None`); the program is looked up
    /// in `PATH` unless the site names a path.
    pub fn new(site: &Site, dry_run: bool) -> Option<QemuTool> {
        let settings = site.qemu()?.clone();
        Some(QemuTool {
            program: crate::qemu::find_program(&settings.binary),
            settings,
            storage_dir: site.storage_dir.clone(),
            dry_run,
            accel: std::sync::OnceLock::new(),
        })
    }

    /// The accelerator (probing KVM the first time, for `accel = "auto"`).
    pub fn accel(&self) -> &crate::qemu::Chosen {
        self.accel.get_or_init(|| {
            let c = crate::qemu::resolve_accel(
                self.program.as_deref(),
                &self.settings,
                self.settings.accel,
                &self.storage_dir,
            );
            tracing::info!(accel = c.accel.as_str(), reason = %c.reason, "QEMU accelerator");
            c
        })
    }
}

impl Hypervisor for QemuTool {
    fn launches(&self) -> bool {
        self.program.is_some() && !self.dry_run
    }
    fn domains(&self) -> Result<Option<Vec<Domain>>, DeployError> {
        let dir = &self.storage_dir;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => {
                return Err(DeployError::Io {
                    path: dir.clone(),
                    source: e,
                })
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if check_name("deployment name", &name).is_err()
                || !e.file_type().map_err(io_err(dir))?.is_dir()
            {
                continue;
            }
            if let crate::qemu::Presence::Alive { pid, status } =
                crate::qemu::presence(&e.path())
            {
                let spec = crate::qemu::GuestSpec::read(&e.path().join(crate::qemu::files::SPEC)).ok();
                out.push(Domain {
                    name,
                    id: pid.unwrap_or(0),
                    memory_mib: spec.as_ref().map_or(0, |s| s.memory_mib),
                    vcpus: spec.as_ref().map_or(0, |s| s.vcpus),
                    state: match status {
                        Ok(s) => s,
                        Err(why) => format!("unresponsive ({why})"),
                    },
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        let spec = crate::qemu::GuestSpec::read(cfg)?;
        let chosen = self.accel().clone();
        let shown = self
            .program
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.settings.binary.clone());
        let argv = crate::qemu::argv(&shown, &self.settings, chosen.accel, &spec);
        match (&self.program, self.dry_run) {
            (Some(program), false) => Ok(Launch::Ran(crate::qemu::launch(program, &argv)?)),
            _ => Ok(Launch::Printed(crate::qemu::shell_line(&argv))),
        }
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        check_name("deployment name", name)?;
        let dir = self.storage_dir.join(name);
        if !self.launches() {
            return Ok(Launch::Printed(format!(
                "QMP system_powerdown, then quit, on {}",
                dir.join(crate::qemu::files::QMP).display()
            )));
        }
        let grace = std::time::Duration::from_secs(self.settings.stop_timeout_s);
        Ok(Launch::Ran(crate::qemu::shut_down(&dir, grace)?))
    }
}

/// The hypervisor of `site`: [`QemuTool`] on a QEMU site, else [`XlTool::detect`].
pub fn hypervisor_for(site: &Site, dry_run: bool) -> Box<dyn Hypervisor> {
    match QemuTool::new(site, dry_run) {
        Some(q) => Box::new(q),
        None => Box::new(XlTool::detect(dry_run)),
    }
}

/// State of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Being set up by process `pid`.
    Pending,
    /// Launched.
    Running,
    /// Everything written; the launch command was printed, not run.
    Printed,
    /// `wafer stop` has begun tearing it down; recovery finishes the stop if that process died.
    Stopping,
}

/// `STATE/deployments/NAME.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Deployment (and domain) name.
    pub name: String,
    /// Wafer name.
    pub wafer: String,
    /// Wafer version.
    pub version: String,
    /// VO.
    pub vo: String,
    /// Slot held.
    pub slot: String,
    /// Resources held.
    pub allocation: Allocation,
    /// Leases held.
    pub leases: Vec<Lease>,
    /// Files written (inside the storage directory).
    pub files: Vec<PathBuf>,
    /// Unix time created.
    pub created: u64,
    /// Unix time the deployment's leases expire.
    pub expires: Option<u64>,
    /// State.
    pub state: State,
    /// Process setting it up while pending.
    pub pid: Option<u32>,
    /// The launch command.
    pub launch: Option<Launch>,
    /// True when the deploy that made this record runs the hypervisor (`xl create`); false for
    /// a dry run, which only prints the command. Records without the field count as true.
    #[serde(default = "yes")]
    pub launches: bool,
    /// Set by `wafer stop --keep-disk` with [`State::Stopping`], so a recovery that finishes
    /// the stop keeps the disk too.
    #[serde(default)]
    pub keep_disk: bool,
    /// The guest's serial console log (QEMU sites: `STORAGE/NAME/console.log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

fn records_dir(lock: &StateLock) -> PathBuf {
    lock.root().join("deployments")
}

/// All deployment records.
pub fn records(lock: &StateLock) -> Result<Vec<Record>, DeployError> {
    let dir = records_dir(lock);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(DeployError::Io {
                path: dir,
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(&dir))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') || !n.ends_with(".json") {
            continue;
        }
        let r: Record = lease::read_json(&e.path()).map_err(|(path, message, io)| match io {
            Some(source) => DeployError::Io { path, source },
            None => DeployError::Corrupt { path, message },
        })?;
        if format!("{}.json", r.name) != n || check_name("deployment name", &r.name).is_err() {
            return Err(DeployError::Corrupt {
                path: e.path(),
                message: format!("the record is for deployment {:?}", r.name),
            });
        }
        out.push(r);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn save(lock: &StateLock, r: &Record) -> Result<(), DeployError> {
    let dir = records_dir(lock);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{}.json", r.name));
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| DeployError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(&path, &bytes).map_err(io_err(&path))
}

fn remove_record(lock: &StateLock, name: &str) -> Result<(), DeployError> {
    let path = records_dir(lock).join(format!("{name}.json"));
    fsutil::remove_durable(&path).map_err(io_err(&path))
}

/// Options for one deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Deployment name; defaults to `VO-WAFER`.
    pub name: Option<String>,
    /// Use only this slot.
    pub slot: Option<String>,
    /// User-data from the VO.
    pub user_data: Option<Vec<u8>>,
    /// Lease lifetime, seconds.
    pub ttl: Option<u64>,
    /// Current Unix time.
    pub now: u64,
}

/// `STATE/deployments/NAME.lock`: flock(2)ed exclusively by the process deploying NAME for the
/// whole deploy, so "is its deploy still running?" is answered by the kernel (the lock goes away
/// with the process, whatever kills it) rather than by a pid that may be reused.
fn claim_path(lock: &StateLock, name: &str) -> PathBuf {
    records_dir(lock).join(format!("{name}.lock"))
}

fn flock(file: &fs::File, path: &Path, block: bool) -> Result<bool, DeployError> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if block { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !block => return Ok(false),
            _ => {
                return Err(DeployError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
    }
}

fn open_claim(path: &Path) -> Result<fs::File, DeployError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))
}

/// Takes NAME's deploy claim without waiting (under the state lock); `None` while another live
/// process holds it.
fn try_claim(lock: &StateLock, name: &str) -> Result<Option<fs::File>, DeployError> {
    let dir = records_dir(lock);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = claim_path(lock, name);
    let f = open_claim(&path)?;
    // A claim released a moment ago can still look held: a child another thread of this process
    // is forking inherits the descriptor until its exec closes it. So a busy claim is asked again
    // for up to a second before it counts as a live deploy (a real deploy holds it for minutes).
    for _ in 0..50 {
        if flock(&f, &path, false)? {
            return Ok(Some(f));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(None)
}

/// What [`recover`] or [`stop`] did with one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    /// Its deploy is still running in a live process: left alone.
    InProgress,
    /// The hypervisor has no such domain (or none could exist: a dry run's print-only deploy);
    /// everything it held was released. Carries the destroy command printed for a print-only
    /// deployment when no `xl` can be asked.
    Released(Option<Launch>),
    /// Its domain existed and was destroyed; once the hypervisor listed it gone, everything it
    /// held was released.
    Destroyed(Launch),
    /// Its domain may exist and could not be destroyed or confirmed gone: nothing was released.
    Held(String),
}

/// Releases what `r` holds: leases, files (the disk kept with `keep_disk`), record, claim file.
fn release(site: &Site, lock: &StateLock, r: &Record, keep_disk: bool) -> Result<(), DeployError> {
    lock.release_owner(&r.name)?;
    let dir = site.storage_dir.join(&r.name);
    if keep_disk {
        for f in &r.files {
            if f.starts_with(&dir) && f.file_name().is_some_and(|n| n != "disk.img") {
                fsutil::remove_durable(f).map_err(io_err(f))?;
            }
        }
    } else if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    remove_record(lock, &r.name)?;
    let claim = claim_path(lock, &r.name);
    fsutil::remove_durable(&claim).map_err(io_err(&claim))?;
    tracing::info!(deployment = %r.name, slot = %r.slot, "released");
    Ok(())
}

/// Makes sure `r`'s guest is gone, then releases what it holds; the caller holds the state lock
/// and `r`'s claim (so no deploy of `r` is running). The hypervisor decides: a domain it lists
/// is destroyed and must then be listed gone; when it cannot be asked, cannot destroy, or still
/// lists the domain, nothing is released ([`Teardown::Held`]). Only a deployment whose deploy
/// never ran the hypervisor (a dry run) is released without asking, if no `xl` can be asked.
pub fn teardown(
    site: &Site,
    lock: &StateLock,
    hv: &dyn Hypervisor,
    r: &Record,
    keep_disk: bool,
) -> Result<Teardown, DeployError> {
    let has = |list: &[Domain]| list.iter().any(|d| d.name == r.name);
    let listed = match hv.domains() {
        Ok(l) => l,
        Err(e) => return Ok(Teardown::Held(format!("cannot list the domains: {e}"))),
    };
    let outcome = match listed {
        None if r.launches => {
            return Ok(Teardown::Held(
                "no xl on this host to ask whether its guest still runs".into(),
            ))
        }
        None => {
            let cmd = if r.state == State::Pending {
                None
            } else {
                Some(hv.destroy(&r.name)?)
            };
            Teardown::Released(cmd)
        }
        Some(list) if !has(&list) => Teardown::Released(None),
        Some(_) => match hv.destroy(&r.name) {
            Err(e) => return Ok(Teardown::Held(format!("destroying its guest: {e}"))),
            Ok(Launch::Printed(c)) => {
                return Ok(Teardown::Held(format!(
                    "its guest exists and this is a dry run ({c} not run)"
                )))
            }
            Ok(Launch::Ran(c)) => match hv.domains() {
                Ok(Some(list)) if !has(&list) => Teardown::Destroyed(Launch::Ran(c)),
                Ok(_) => {
                    return Ok(Teardown::Held(format!(
                        "{c} succeeded but the domain is still listed"
                    )))
                }
                Err(e) => {
                    return Ok(Teardown::Held(format!(
                        "{c} succeeded but listing the domains failed: {e}"
                    )))
                }
            },
        },
    };
    if let Teardown::Destroyed(_) = &outcome {
        tracing::warn!(deployment = %r.name, "guest destroyed");
    }
    release(site, lock, r, keep_disk)?;
    Ok(outcome)
}

/// Reconciles what killed or failed deploys left with the hypervisor, under the state lock:
///
/// * a pending deployment whose deploy still runs (its claim is held) is left alone;
/// * a pending deployment whose process died is torn down ([`teardown`]): its domain, if the
///   hypervisor lists one, is destroyed, and only once it is listed gone are its leases, slot
///   and storage folder released — otherwise everything stays held;
/// * a deployment a `wafer stop` began tearing down ([`State::Stopping`]) whose process died,
///   and one whose expiry (`--ttl`) is at or before `now`, are torn down the same way;
/// * pending leases of dead processes that belong to no deployment, expired leases of no
///   deployment, and temporary files are removed.
///
/// Returns what happened to each deployment it looked at.
pub fn recover(
    site: &Site,
    lock: &StateLock,
    hv: &dyn Hypervisor,
    now: u64,
) -> Result<Vec<(String, Teardown)>, DeployError> {
    let mut out = Vec::new();
    for r in records(lock)? {
        let expired = r.expires.is_some_and(|e| e <= now);
        if !matches!(r.state, State::Pending | State::Stopping) && !expired {
            continue;
        }
        let legacy_busy = r.state == State::Pending
            && !claim_path(lock, &r.name).exists()
            && r.pid.is_some_and(lease::pid_alive);
        let claim = if legacy_busy {
            None
        } else {
            try_claim(lock, &r.name)?
        };
        let Some(_claim) = claim else {
            out.push((r.name, Teardown::InProgress));
            continue;
        };
        let keep_disk = r.state == State::Stopping && r.keep_disk;
        let t = teardown(site, lock, hv, &r, keep_disk)?;
        match &t {
            Teardown::Held(why) => {
                tracing::warn!(deployment = %r.name, reason = %why, "cannot reconcile; everything stays held")
            }
            other => {
                tracing::warn!(deployment = %r.name, outcome = ?other, expired, "recovered")
            }
        }
        out.push((r.name, t));
    }
    let names: std::collections::BTreeSet<String> =
        records(lock)?.into_iter().map(|r| r.name).collect();
    // claim files of deploys killed before they wrote a record
    let dir = records_dir(lock);
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd {
            let e = e.map_err(io_err(&dir))?;
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(name) = n.strip_suffix(".lock") else {
                continue;
            };
            if !names.contains(name) && check_name("deployment name", name).is_ok() {
                if let Some(_claim) = try_claim(lock, name)? {
                    let p = e.path();
                    fsutil::remove_durable(&p).map_err(io_err(&p))?;
                }
            }
        }
    }
    let keep = |owner: &str| names.contains(owner);
    lock.recover_except(&lease::pid_alive, &keep)?;
    lock.reclaim_expired_except(now, &keep)?;
    fsutil::remove_tmp_files(&records_dir(lock)).map_err(io_err(&records_dir(lock)))?;
    Ok(out)
}

/// Deploys a verified wafer: fit, leases, disk, kernel/initrd, CIDATA, xl.cfg, launch, record.
///
/// If anything fails after the record was written — writing files, `xl create`, or the final
/// commit (a full disk) — the deployment is torn down through the hypervisor ([`teardown`]):
/// its leases are freed only once its domain is confirmed gone, else everything stays held and
/// the error says so.
pub fn deploy(
    site: &Site,
    wafer: &trust::Verified<bundle::Bundle>,
    opts: &DeployOptions,
    hv: &dyn Hypervisor,
) -> Result<Record, DeployError> {
    let image = crate::wafer::BundleImage::new(wafer.get()).map_err(DeployError::Manifest)?;
    deploy_image(site, &image, opts, hv)
}

/// [`deploy`] of any [`Image`] (crate-private: tests use a fake image).
pub(crate) fn deploy_image<W: Image>(
    site: &Site,
    w: &W,
    opts: &DeployOptions,
    hv: &dyn Hypervisor,
) -> Result<Record, DeployError> {
    check_name("VO", w.vo())?;
    check_name("wafer name", w.name())?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", w.vo(), w.name()));
    check_name("deployment name", &name)?;
    let req = w.requirements();
    let flavour = crate::xl::resolve_flavour(w.kernel_flavour(), w.kernel_path().as_deref());
    if site.qemu().is_some() {
        crate::qemu::check_flavour(flavour)?;
    }
    let state = StateDir::open(&site.state_dir)?;

    // phase 1, under the lock: choose a slot, take leases, claim the name, record as pending
    let (mut record, guest_type, slot, _claim) = {
        let lock = state.lock()?;
        recover(site, &lock, hv, opts.now)?;
        let existing = records(&lock)?;
        if existing.iter().any(|r| r.name == name) {
            return Err(DeployError::Exists(name));
        }
        // a domain of that name that is not ours: creating would fail, and tearing the failed
        // deploy down would then destroy someone else's guest
        if let Some(list) = hv.domains()? {
            if list.iter().any(|d| d.name == name) {
                return Err(DeployError::DomainExists(name));
            }
        }
        let allocs: Vec<Allocation> = existing.iter().map(|r| r.allocation.clone()).collect();
        let placement = fit::place(site, &req, w.vo(), &allocs, opts.slot.as_deref())?;
        let slot = site
            .slot(&placement.slot)
            .cloned()
            .ok_or_else(|| DeployError::NotFound(placement.slot.clone()))?;
        let claim = try_claim(&lock, &name)?.ok_or_else(|| DeployError::Busy(name.clone()))?;
        let mut leases = Vec::new();
        for n in &slot.networks {
            let Some(net) = site.network(n) else { continue };
            match lock.acquire(net, &name, opts.now, opts.ttl) {
                Ok(l) => leases.push(l),
                Err(e) => {
                    lock.release_owner(&name)?;
                    let p = claim_path(&lock, &name);
                    fsutil::remove_durable(&p).map_err(io_err(&p))?;
                    return Err(e.into());
                }
            }
        }
        let r = Record {
            name: name.clone(),
            wafer: w.name().to_string(),
            version: w.version().to_string(),
            vo: w.vo().to_string(),
            slot: slot.name.clone(),
            allocation: Allocation::for_slot(&slot, &name),
            leases,
            files: Vec::new(),
            created: opts.now,
            expires: opts.ttl.map(|t| opts.now.saturating_add(t)),
            state: State::Pending,
            pid: Some(std::process::id()),
            launch: None,
            launches: hv.launches(),
            keep_disk: false,
            console: site
                .qemu()
                .map(|_| site.storage_dir.join(&name).join(crate::qemu::files::CONSOLE)),
        };
        save(&lock, &r)?;
        (r, placement.guest_type, slot, claim)
    };

    // phase 2, without the lock: write the files and launch
    let result = write_and_launch(site, w, opts, &record, guest_type, flavour, &slot, hv);

    // phase 3, under the lock: commit, or tear down through the hypervisor
    let lock = state.lock()?;
    let failure = match result {
        Ok((files, launch)) => {
            record.files = files;
            let committed = (|| -> Result<Record, DeployError> {
                let mut r = record.clone();
                for l in &mut r.leases {
                    *l = lock.commit(&l.network, l.ip, &name)?;
                }
                r.state = if matches!(launch, Launch::Ran(_)) {
                    State::Running
                } else {
                    State::Printed
                };
                r.launch = Some(launch.clone());
                r.pid = None;
                save(&lock, &r)?;
                Ok(r)
            })();
            match committed {
                Ok(r) => {
                    let p = claim_path(&lock, &name);
                    fsutil::remove_durable(&p).map_err(io_err(&p))?;
                    tracing::info!(deployment = %name, slot = %r.slot, "deployed");
                    return Ok(r);
                }
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    tracing::warn!(deployment = %name, error = %failure, "deploy failed; tearing down");
    let undone = match teardown(site, &lock, hv, &record, false) {
        Ok(Teardown::Destroyed(c)) => format!(
            "its guest was destroyed ({}) and its addresses and slot released",
            match c {
                Launch::Ran(c) | Launch::Printed(c) => c,
            }
        ),
        Ok(Teardown::Held(why)) => DeployError::Held {
            name: name.clone(),
            reason: why,
        }
        .to_string(),
        Ok(_) => "nothing was left running; its addresses and slot were released".into(),
        Err(e) => format!(
            "releasing its addresses and slot failed too ({e}); the next deploy or `wafer recover` retries"
        ),
    };
    Err(DeployError::Undone {
        cause: Box::new(failure),
        undone,
    })
}

/// Phase 2 of [`deploy`]: disk, kernel, initrd, CIDATA, xl.cfg in `STORAGE/NAME/`, then create.
fn write_and_launch<W: Image>(
    site: &Site,
    w: &W,
    opts: &DeployOptions,
    record: &Record,
    guest_type: crate::site::GuestType,
    flavour: crate::xl::KernelFlavour,
    slot: &crate::site::SlotConfig,
    hv: &dyn Hypervisor,
) -> Result<(Vec<PathBuf>, Launch), DeployError> {
    let name = &record.name;
    let dir = site.storage_dir.join(name);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut files = Vec::new();
    let disk = dir.join("disk.img");
    {
        let tmp = dir.join(".tmp-disk.img");
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        w.write_disk(&mut f).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &disk).map_err(io_err(&disk))?;
    }
    files.push(disk.clone());
    let kernel = dir.join("kernel");
    fsutil::write_atomic(&kernel, &w.kernel().map_err(io_err(&kernel))?)
        .map_err(io_err(&kernel))?;
    files.push(kernel.clone());
    let initrd = dir.join("initrd");
    let initrd = match w.initrd().map_err(io_err(&initrd))? {
        Some(b) => {
            fsutil::write_atomic(&initrd, &b).map_err(io_err(&initrd))?;
            files.push(initrd.clone());
            Some(initrd)
        }
        None => None,
    };
    let mut interfaces = Vec::new();
    let mut vifs = Vec::new();
    let mut hostname = None;
    for (i, l) in record.leases.iter().enumerate() {
        let Some(net) = site.network(&l.network) else {
            continue;
        };
        if hostname.is_none() {
            hostname = l.hostname.clone();
        }
        let mac = l
            .mac
            .parse()
            .map_err(|e: crate::net::NetError| DeployError::Corrupt {
                path: site.state_dir.clone(),
                message: e.to_string(),
            })?;
        interfaces.push(Interface {
            name: format!("eth{i}"),
            network: net.name.clone(),
            mac,
            address: l.ip,
            prefix: net.net.prefix(),
            gateway: net.gateway,
            dns: net.dns.clone(),
            search: net.domain.clone(),
        });
        vifs.push(VifSpec {
            mac: Some(l.mac.clone()),
            bridge: Some(net.bridge.clone()),
            ..VifSpec::default()
        });
    }
    let ctx = Context {
        instance_id: format!("{name}-{}", opts.now),
        hostname: hostname.unwrap_or_else(|| name.replace('_', "-")),
        interfaces,
        user_data: opts.user_data.clone(),
    };
    let cidata_path = dir.join("cidata.img");
    cidata::write_image(&ctx, &cidata_path)?;
    files.push(cidata_path.clone());
    let Some(xen) = site.xen() else {
        // a QEMU site: qemu.json, then start it
        let nics = record
            .leases
            .iter()
            .filter_map(|l| site.network(&l.network).map(|n| (l, n)))
            .map(|(l, n)| crate::qemu::NicSpec {
                mac: l.mac.clone(),
                bridge: n.bridge.clone(),
                net: n.net.to_string(),
                gateway: n.gateway,
                dns: n.dns.iter().copied().find(|d| n.net.contains(*d)),
            })
            .collect();
        let spec = crate::qemu::GuestSpec {
            name: name.clone(),
            kernel: kernel.clone(),
            initrd,
            cmdline: crate::qemu::guest_cmdline(w.cmdline().as_deref()),
            memory_mib: slot.memory_mib,
            vcpus: slot.vcpus,
            disk: disk.clone(),
            cidata: cidata_path.clone(),
            nics,
            console: dir.join(crate::qemu::files::CONSOLE),
            qmp: dir.join(crate::qemu::files::QMP),
            pidfile: dir.join(crate::qemu::files::PIDFILE),
        };
        let qmp_len = spec.qmp.as_os_str().len();
        if qmp_len > crate::qmp::MAX_SOCKET_PATH {
            return Err(crate::qemu::QemuError::Qmp(crate::qmp::QmpError::PathTooLong {
                path: spec.qmp.clone(),
                len: qmp_len,
            })
            .into());
        }
        let cfg = dir.join(crate::qemu::files::SPEC);
        let bytes = serde_json::to_vec_pretty(&spec).map_err(|e| DeployError::Corrupt {
            path: cfg.clone(),
            message: e.to_string(),
        })?;
        fsutil::write_atomic(&cfg, &bytes).map_err(io_err(&cfg))?;
        files.push(cfg.clone());
        let launch = hv.create(&cfg)?;
        return Ok((files, launch));
    };
    let guest = GuestConfig {
        name: name.clone(),
        guest_type,
        kernel: Some(kernel.to_string_lossy().into_owned()),
        ramdisk: initrd.map(|p| p.to_string_lossy().into_owned()),
        cmdline: Some(crate::xl::guest_cmdline(w.cmdline().as_deref(), flavour)),
        memory_mib: slot.memory_mib,
        vcpus: slot.vcpus,
        cpu_weight: slot.cpu_weight,
        cpu_cap: slot.cpu_cap,
        cpus: slot.cpus.clone(),
        disks: vec![
            DiskSpec::raw(&disk.to_string_lossy(), "xvda", true),
            DiskSpec::raw(&cidata_path.to_string_lossy(), "xvdb", false),
        ],
        vifs,
        on_poweroff: "destroy".into(),
        on_reboot: "restart".into(),
        on_crash: "destroy".into(),
    };
    let cfg = dir.join("xl.cfg");
    fsutil::write_atomic(&cfg, guest.to_xl(xen.version)?.as_bytes()).map_err(io_err(&cfg))?;
    files.push(cfg.clone());
    let launch = hv.create(&cfg)?;
    Ok((files, launch))
}

/// `wafer ps`: deployments, all leases, and resource use against what the host set aside.
#[derive(Debug, Clone)]
pub struct Status {
    /// Deployment records.
    pub deployments: Vec<Record>,
    /// Every lease.
    pub leases: Vec<Lease>,
    /// Resources in use.
    pub used: fit::Totals,
}

/// Lists deployments, leases and use (read-only: recovery is [`recover`]'s job).
/// Creates nothing and needs no write access: a state directory that does not exist yet is an
/// empty site, and the lock is taken shared ([`StateDir::lock_shared`]).
pub fn ps(site: &Site) -> Result<Status, DeployError> {
    let Some(state) = StateDir::open_read_only(&site.state_dir)? else {
        return Ok(Status {
            used: fit::used(&[]),
            leases: Vec::new(),
            deployments: Vec::new(),
        });
    };
    let lock = state.lock_shared()?;
    let deployments = records(&lock)?;
    let allocs: Vec<Allocation> = deployments.iter().map(|r| r.allocation.clone()).collect();
    Ok(Status {
        used: fit::used(&allocs),
        leases: lock.all_leases()?,
        deployments,
    })
}

/// What the hypervisor says of each deployment's guest, by deployment name: its run state
/// (`running`, `paused`, `shutdown`, `crashed`, `dying`, or QEMU's other QMP states), `gone`
/// when the hypervisor lists no such guest, `unknown` when it cannot be asked (no `xl`).
pub fn guest_states(hv: &dyn Hypervisor, records: &[Record]) -> Vec<(String, String)> {
    let listed = hv.domains();
    records
        .iter()
        .map(|r| {
            let state = match &listed {
                Ok(Some(list)) => match list.iter().find(|d| d.name == r.name) {
                    None => "gone".to_string(),
                    Some(d) => xen_state_word(&d.state).unwrap_or(&d.state).to_string(),
                },
                Ok(None) => "unknown".to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            (r.name.clone(), state)
        })
        .collect()
}

/// `xl list`'s six state flags (`-b----`) as one word; `None` for anything else (QEMU's
/// states are already words).
fn xen_state_word(flags: &str) -> Option<&'static str> {
    if flags.len() != 6 || !flags.bytes().all(|b| b"-rbpscd".contains(&b)) {
        return None;
    }
    let has = |c: char| flags.contains(c);
    Some(if has('d') {
        "dying"
    } else if has('c') {
        "crashed"
    } else if has('s') {
        "shutdown"
    } else if has('p') {
        "paused"
    } else {
        "running"
    })
}

/// `wafer recover`: [`recover`] on its own, under the state lock.
pub fn recover_site(
    site: &Site,
    hv: &dyn Hypervisor,
    now: u64,
) -> Result<Vec<(String, Teardown)>, DeployError> {
    let state = StateDir::open(&site.state_dir)?;
    let lock = state.lock()?;
    recover(site, &lock, hv, now)
}

/// `wafer stop NAME`: destroys the guest, and once the hypervisor lists it gone releases its
/// leases and slot and removes its files (keeping `disk.img` when `keep_disk`). A deployment
/// whose deploy is still running (e.g. inside `xl create`) is waited for first: stop blocks on
/// its claim, outside the state lock, then looks again. If the guest cannot be confirmed gone
/// the error is [`DeployError::Held`] and nothing is released.
pub fn stop(
    site: &Site,
    name: &str,
    keep_disk: bool,
    hv: &dyn Hypervisor,
) -> Result<(Record, Teardown), DeployError> {
    check_name("deployment name", name)?;
    let state = StateDir::open(&site.state_dir)?;
    loop {
        let lock = state.lock()?;
        let r = records(&lock)?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let Some(_claim) = try_claim(&lock, name)? else {
            // its deploy is running: wait for it without holding the state lock (the deploy
            // needs it to finish), then look again
            let path = claim_path(&lock, name);
            drop(lock);
            tracing::info!(deployment = name, "waiting for its deploy to finish");
            match fs::File::open(&path) {
                Ok(f) => {
                    flock(&f, &path, true)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DeployError::Io { path, source: e }),
            }
            continue;
        };
        let r = if r.state == State::Pending {
            r
        } else {
            // from here on the stop is finished by recovery if this process dies
            let mut stopping = r;
            stopping.state = State::Stopping;
            stopping.keep_disk = keep_disk;
            save(&lock, &stopping)?;
            stopping
        };
        return match teardown(site, &lock, hv, &r, keep_disk)? {
            Teardown::Held(reason) => Err(DeployError::Held {
                name: name.to_string(),
                reason,
            }),
            t => Ok((r, t)),
        };
    }
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "xl_xen_tests.rs"]
mod xl_xen_tests;
