//! Deployment records, launch through a [`Hypervisor`], `ps` and `stop`.
//!
//! [`deploy`] only accepts a [`Verified`] wafer: the token is built by the caller after
//! signature/digest verification succeeded (the trust crate), so nothing here runs — no lease
//! taken, no file written — for a wafer that was not verified.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cidata::{self, Context, Interface};
use crate::fit::{self, Allocation, Requirements};
use crate::fsutil;
use crate::lease::{self, Lease, LeaseError, StateDir, StateLock};
use crate::names::{check_name, NameError};
use crate::site::Site;
use crate::xl::{DiskSpec, GuestConfig, VifSpec};

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
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
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

/// The Xen-facing commands, behind a trait so tests substitute a fake.
pub trait Hypervisor {
    /// Starts the guest described by `cfg`.
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError>;
    /// Destroys the running guest `name`.
    fn destroy(&self, name: &str) -> Result<Launch, DeployError>;
}

/// Runs the real `xl` when it exists and this is not a dry run; else prints.
#[derive(Debug, Clone)]
pub struct XlTool {
    /// Path of `xl`, if found.
    pub xl: Option<PathBuf>,
    /// Print instead of running.
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
        XlTool { xl, dry_run }
    }
    fn run(&self, args: &[&str]) -> Result<Launch, DeployError> {
        let line = format!("xl {}", args.join(" "));
        match (&self.xl, self.dry_run) {
            (Some(xl), false) => {
                let out =
                    Command::new(xl)
                        .args(args)
                        .output()
                        .map_err(|e| DeployError::Hypervisor {
                            command: line.clone(),
                            message: e.to_string(),
                        })?;
                if !out.status.success() {
                    return Err(DeployError::Hypervisor {
                        command: line,
                        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                Ok(Launch::Ran(line))
            }
            _ => Ok(Launch::Printed(line)),
        }
    }
}

impl Hypervisor for XlTool {
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        self.run(&["create", &cfg.to_string_lossy()])
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        self.run(&["destroy", name])
    }
}

/// Read access to a verified wafer; implemented by the integration on top of the rootfs crate.
pub trait VerifiedImage {
    /// Wafer name.
    fn name(&self) -> &str;
    /// Wafer version.
    fn version(&self) -> &str;
    /// VO.
    fn vo(&self) -> &str;
    /// Requirements from the manifest.
    fn requirements(&self) -> Requirements;
    /// Kernel command line from the manifest.
    fn cmdline(&self) -> Option<String>;
    /// Writes the raw disk image (verified bytes) to `dest`; returns its size.
    fn write_disk(&self, dest: &mut fs::File) -> io::Result<u64>;
    /// The kernel read from the verified image.
    fn kernel(&self) -> io::Result<Vec<u8>>;
    /// The initrd read from the verified image, if the wafer has one.
    fn initrd(&self) -> io::Result<Option<Vec<u8>>>;
}

/// Token: a wafer whose verification succeeded. Build it only right after verification.
#[derive(Debug)]
pub struct Verified<W> {
    wafer: W,
}

impl<W: VerifiedImage> Verified<W> {
    /// Wraps a wafer the caller has just verified (digests, signatures, threshold, expiry,
    /// revocation). Deployment accepts nothing else.
    pub fn after_verification(wafer: W) -> Verified<W> {
        Verified { wafer }
    }
    /// The wafer.
    pub fn wafer(&self) -> &W {
        &self.wafer
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

/// Frees what killed deploys left: pending records of dead processes (with their storage
/// folders), their leases, and temporary files.
pub fn recover(site: &Site, lock: &StateLock) -> Result<Vec<String>, DeployError> {
    let mut gone = Vec::new();
    for r in records(lock)? {
        if r.state == State::Pending && !r.pid.is_some_and(lease::pid_alive) {
            lock.release_owner(&r.name)?;
            let dir = site.storage_dir.join(&r.name);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
            remove_record(lock, &r.name)?;
            gone.push(r.name);
        }
    }
    lock.recover(&lease::pid_alive)?;
    fsutil::remove_tmp_files(&records_dir(lock)).map_err(io_err(&records_dir(lock)))?;
    Ok(gone)
}

/// Deploys a verified wafer: fit, leases, disk, kernel/initrd, CIDATA, xl.cfg, launch, record.
pub fn deploy<W: VerifiedImage>(
    site: &Site,
    wafer: &Verified<W>,
    opts: &DeployOptions,
    hv: &dyn Hypervisor,
) -> Result<Record, DeployError> {
    let w = wafer.wafer();
    check_name("VO", w.vo())?;
    check_name("wafer name", w.name())?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", w.vo(), w.name()));
    check_name("deployment name", &name)?;
    let req = w.requirements();
    let state = StateDir::open(&site.state_dir)?;

    // phase 1, under the lock: choose a slot, take leases, record as pending
    let record = {
        let lock = state.lock()?;
        recover(site, &lock)?;
        lock.reclaim_expired(opts.now)?;
        let existing = records(&lock)?;
        if existing.iter().any(|r| r.name == name) {
            return Err(DeployError::Exists(name));
        }
        let allocs: Vec<Allocation> = existing.iter().map(|r| r.allocation.clone()).collect();
        let placement = fit::place(site, &req, w.vo(), &allocs, opts.slot.as_deref())?;
        let slot = site
            .slot(&placement.slot)
            .cloned()
            .ok_or_else(|| DeployError::NotFound(placement.slot.clone()))?;
        let mut leases = Vec::new();
        for n in &slot.networks {
            let Some(net) = site.network(n) else { continue };
            match lock.acquire(net, &name, opts.now, opts.ttl) {
                Ok(l) => leases.push(l),
                Err(e) => {
                    lock.release_owner(&name)?;
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
        };
        save(&lock, &r)?;
        (r, placement.guest_type, slot)
    };
    let (mut record, guest_type, slot) = record;

    // phase 2, without the lock: write the files
    let result = (|| -> Result<(Vec<PathBuf>, Launch), DeployError> {
        let dir = site.storage_dir.join(&name);
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
        let guest = GuestConfig {
            name: name.clone(),
            guest_type,
            kernel: Some(kernel.to_string_lossy().into_owned()),
            ramdisk: initrd.map(|p| p.to_string_lossy().into_owned()),
            cmdline: w.cmdline(),
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
        fsutil::write_atomic(&cfg, guest.to_xl()?.as_bytes()).map_err(io_err(&cfg))?;
        files.push(cfg.clone());
        let launch = hv.create(&cfg)?;
        Ok((files, launch))
    })();

    // phase 3, under the lock: commit or undo
    let lock = state.lock()?;
    match result {
        Ok((files, launch)) => {
            for l in &mut record.leases {
                *l = lock.commit(&l.network, l.ip, &name)?;
            }
            record.files = files;
            record.state = if matches!(launch, Launch::Ran(_)) {
                State::Running
            } else {
                State::Printed
            };
            record.launch = Some(launch);
            record.pid = None;
            save(&lock, &record)?;
            tracing::info!(deployment = %name, slot = %record.slot, "deployed");
            Ok(record)
        }
        Err(e) => {
            lock.release_owner(&name)?;
            let dir = site.storage_dir.join(&name);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
            }
            remove_record(&lock, &name)?;
            Err(e)
        }
    }
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

/// Lists deployments, leases and use.
pub fn ps(site: &Site) -> Result<Status, DeployError> {
    let state = StateDir::open(&site.state_dir)?;
    let lock = state.lock()?;
    let deployments = records(&lock)?;
    let allocs: Vec<Allocation> = deployments.iter().map(|r| r.allocation.clone()).collect();
    Ok(Status {
        used: fit::used(&allocs),
        leases: lock.all_leases()?,
        deployments,
    })
}

/// `wafer stop NAME`: destroys the guest, releases leases and slot, removes the files (keeping
/// `disk.img` when `keep_disk`).
pub fn stop(
    site: &Site,
    name: &str,
    keep_disk: bool,
    hv: &dyn Hypervisor,
) -> Result<(Record, Launch), DeployError> {
    check_name("deployment name", name)?;
    let state = StateDir::open(&site.state_dir)?;
    let lock = state.lock()?;
    let r = records(&lock)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
    let launch = hv.destroy(name)?;
    lock.release_owner(name)?;
    let dir = site.storage_dir.join(name);
    for f in &r.files {
        if !f.starts_with(&dir) || (keep_disk && f.file_name().is_some_and(|n| n == "disk.img")) {
            continue;
        }
        fsutil::remove_durable(f).map_err(io_err(f))?;
    }
    if !keep_disk && dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    remove_record(&lock, name)?;
    Ok((r, launch))
}
