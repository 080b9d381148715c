//! Address leases in the site's state directory.
//!
//! Layout under the state directory:
//!
//! ```text
//! lock                          flock(2) target; every change happens while holding it
//! leases/NETWORK/IP.json        one record per leased address
//! ```
//!
//! A record is created with write-temp, fsync, link (never replaces), fsync-dir, and updated
//! with write-temp, fsync, rename, fsync-dir; so after a crash at any point an address is either
//! leased by one complete record or free. Because one file name per address exists, an address
//! can never be leased twice. A lease is first *pending* (it carries the pid that took it) and
//! becomes *committed* once the deployment that took it is recorded; [`StateLock::recover`]
//! frees pending leases whose process is gone and removes leftover temporary files, and
//! [`StateLock::reclaim_expired`] frees leases whose expiry has passed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::fsutil;
use crate::names::check_name;
use crate::net::MacAddr;
use crate::site::Network;

/// Largest lease record read.
const MAX_RECORD: u64 = 64 * 1024;

/// Lease store error.
#[derive(Debug, Error)]
pub enum LeaseError {
    /// File-system error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A lease record is unreadable.
    #[error("{path}: corrupt lease record: {message}")]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Every address of the pool is leased.
    #[error("network {network}: all {size} addresses of the pool are leased")]
    PoolExhausted {
        /// Network.
        network: String,
        /// Pool size.
        size: usize,
    },
    /// The lease does not exist or belongs to someone else.
    #[error("network {network}: {ip} is not leased to {owner}")]
    NotOwner {
        /// Network.
        network: String,
        /// Address.
        ip: Ipv4Addr,
        /// Who asked.
        owner: String,
    },
    /// Bad owner name.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LeaseError + '_ {
    move |source| LeaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One lease record (`leases/NETWORK/IP.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// Network name.
    pub network: String,
    /// Leased address.
    pub ip: Ipv4Addr,
    /// MAC derived for the guest's interface on this network.
    pub mac: String,
    /// Host name bound to the address by a host line, if any.
    pub hostname: Option<String>,
    /// Owner (deployment name).
    pub owner: String,
    /// Process that took the lease while it is pending.
    pub pid: Option<u32>,
    /// Unix time taken.
    pub created: u64,
    /// Unix time after which it may be reclaimed; `None` = until released.
    pub expires: Option<u64>,
    /// True once the owning deployment is recorded.
    pub committed: bool,
}

/// What [`StateLock::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Temporary files removed.
    pub tmp_removed: usize,
    /// Pending leases of dead processes freed.
    pub freed: Vec<Lease>,
}

/// The MAC for address `ip` on `network`: the network's prefix plus the first three bytes of
/// SHA-256("wafer-mac\0" network "\0" ip "\0" attempt). `attempt` is raised on a collision.
pub fn derive_mac(network: &Network, ip: Ipv4Addr, attempt: u32) -> MacAddr {
    let mut h = Sha256::new();
    h.update(b"wafer-mac\0");
    h.update(network.name.as_bytes());
    h.update(b"\0");
    h.update(ip.octets());
    h.update(b"\0");
    h.update(attempt.to_be_bytes());
    let d = h.finalize();
    network.mac_prefix.with_suffix([d[0], d[1], d[2]])
}

/// True when a process with this pid exists (kill(pid, 0) succeeds or fails with EPERM).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state directory.
    pub fn open(root: &Path) -> Result<StateDir, LeaseError> {
        fs::create_dir_all(root.join("leases")).map_err(io_err(root))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing state directory for reading only, creating nothing (`wafer ps`,
    /// `wafer slots`): `None` when it does not exist yet (no deployment ever ran).
    pub fn open_read_only(root: &Path) -> Result<Option<StateDir>, LeaseError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(Some(StateDir {
                root: root.to_path_buf(),
            })),
            Ok(_) => Err(LeaseError::Io {
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LeaseError::Io {
                path: root.to_path_buf(),
                source: e,
            }),
        }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the lock shared, for reading only: a writer (holding it exclusively) is waited
    /// for, other readers are not. The lock file is opened read-only and never created (no
    /// write access to the state directory is needed); when no writer ever made it, the state
    /// is read without it. Pass the guard only to readers ([`StateLock::all_leases`],
    /// [`StateLock::network_leases`], `deployment::records`).
    pub fn lock_shared(&self) -> Result<StateLock, LeaseError> {
        let path = self.root.join("lock");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(StateLock {
                    _file: None,
                    root: self.root.clone(),
                })
            }
            Err(e) => return Err(LeaseError::Io { path, source: e }),
        };
        loop {
            // SAFETY: flock on a file descriptor we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(LeaseError::Io { path, source: e });
            }
        }
        Ok(StateLock {
            _file: Some(file),
            root: self.root.clone(),
        })
    }

    /// Takes the exclusive lock (blocking). Everything that reads-then-writes state does so
    /// through the returned guard; the lock is released when it is dropped (or the process dies).
    pub fn lock(&self) -> Result<StateLock, LeaseError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        loop {
            // SAFETY: flock on a file descriptor we own.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(LeaseError::Io { path, source: e });
            }
        }
        Ok(StateLock {
            _file: Some(file),
            root: self.root.clone(),
        })
    }
}

/// Proof that the state lock is held; all lease operations go through it.
#[derive(Debug)]
pub struct StateLock {
    /// The locked file (`None` only for a shared lock on a state no writer has locked yet).
    _file: Option<File>,
    root: PathBuf,
}

/// Reads a JSON record with a size cap.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<T, (PathBuf, String, Option<io::Error>)> {
    let buf = fsutil::read_regular(path, MAX_RECORD).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            (path.to_path_buf(), e.to_string(), None)
        }
        _ => (path.to_path_buf(), String::new(), Some(e)),
    })?;
    serde_json::from_slice(&buf).map_err(|e| (path.to_path_buf(), e.to_string(), None))
}

impl StateLock {
    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn net_dir(&self, network: &str) -> Result<PathBuf, LeaseError> {
        check_name("network", network)?;
        Ok(self.root.join("leases").join(network))
    }

    fn record_path(&self, network: &str, ip: Ipv4Addr) -> Result<PathBuf, LeaseError> {
        Ok(self.net_dir(network)?.join(format!("{ip}.json")))
    }

    fn read_lease(path: &Path) -> Result<Lease, LeaseError> {
        read_json::<Lease>(path).map_err(|(path, message, io)| match io {
            Some(source) => LeaseError::Io { path, source },
            None => LeaseError::Corrupt { path, message },
        })
    }

    fn write_lease(&self, lease: &Lease, create: bool) -> Result<(), LeaseError> {
        let path = self.record_path(&lease.network, lease.ip)?;
        let bytes = serde_json::to_vec_pretty(lease).map_err(|e| LeaseError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let r = if create {
            fsutil::create_atomic(&path, &bytes)
        } else {
            fsutil::write_atomic(&path, &bytes)
        };
        r.map_err(io_err(&path))
    }

    /// Every lease of one network, sorted by address.
    pub fn network_leases(&self, network: &str) -> Result<Vec<Lease>, LeaseError> {
        let dir = self.net_dir(network)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(LeaseError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ip: Ipv4Addr = stem.parse().map_err(|_| LeaseError::Corrupt {
                path: path.clone(),
                message: "file name is not an IPv4 address".into(),
            })?;
            let lease = Self::read_lease(&path)?;
            if lease.ip != ip || lease.network != network {
                return Err(LeaseError::Corrupt {
                    path,
                    message: format!("record is for {} on {}", lease.ip, lease.network),
                });
            }
            out.push(lease);
        }
        out.sort_by_key(|l| l.ip);
        Ok(out)
    }

    /// Every lease of every network, sorted by network then address.
    pub fn all_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        let dir = self.root.join("leases");
        let mut nets = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(LeaseError::Io {
                    path: dir,
                    source: e,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name("network", &name).is_ok() && entry.path().is_dir() {
                nets.push(name);
            }
        }
        nets.sort();
        let mut out = Vec::new();
        for n in nets {
            out.extend(self.network_leases(&n)?);
        }
        Ok(out)
    }

    /// Leases one address of `network` to `owner` (pending, with this process's pid). If `owner`
    /// already holds an address there, that lease is returned: one address per network per owner.
    pub fn acquire(
        &self,
        network: &Network,
        owner: &str,
        now: u64,
        ttl: Option<u64>,
    ) -> Result<Lease, LeaseError> {
        check_name("lease owner", owner)?;
        let dir = self.net_dir(&network.name)?;
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let existing = self.network_leases(&network.name)?;
        if let Some(l) = existing.iter().find(|l| l.owner == owner) {
            return Ok(l.clone());
        }
        let taken: std::collections::BTreeSet<Ipv4Addr> = existing.iter().map(|l| l.ip).collect();
        let macs: std::collections::BTreeSet<String> =
            self.all_leases()?.into_iter().map(|l| l.mac).collect();
        let Some(entry) = network.pool.iter().find(|e| !taken.contains(&e.ip)) else {
            return Err(LeaseError::PoolExhausted {
                network: network.name.clone(),
                size: network.pool.len(),
            });
        };
        let mut attempt = 0u32;
        let mac = loop {
            let m = derive_mac(network, entry.ip, attempt).to_string();
            if !macs.contains(&m) || attempt >= 1024 {
                break m;
            }
            attempt += 1;
        };
        let lease = Lease {
            network: network.name.clone(),
            ip: entry.ip,
            mac,
            hostname: entry.hostname.clone(),
            owner: owner.to_string(),
            pid: Some(std::process::id()),
            created: now,
            expires: ttl.map(|t| now.saturating_add(t)),
            committed: false,
        };
        self.write_lease(&lease, true)?;
        tracing::info!(network = %lease.network, ip = %lease.ip, owner, "address leased");
        Ok(lease)
    }

    fn owned(&self, network: &str, ip: Ipv4Addr, owner: &str) -> Result<Lease, LeaseError> {
        let path = self.record_path(network, ip)?;
        let not_owner = || LeaseError::NotOwner {
            network: network.to_string(),
            ip,
            owner: owner.to_string(),
        };
        if !path.exists() {
            return Err(not_owner());
        }
        let l = Self::read_lease(&path)?;
        if l.owner != owner {
            return Err(not_owner());
        }
        Ok(l)
    }

    /// Marks a pending lease committed (its deployment is recorded); clears the pid.
    pub fn commit(&self, network: &str, ip: Ipv4Addr, owner: &str) -> Result<Lease, LeaseError> {
        let mut l = self.owned(network, ip, owner)?;
        l.committed = true;
        l.pid = None;
        self.write_lease(&l, false)?;
        Ok(l)
    }

    /// Sets a new expiry.
    pub fn renew(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: &str,
        expires: Option<u64>,
    ) -> Result<Lease, LeaseError> {
        let mut l = self.owned(network, ip, owner)?;
        l.expires = expires;
        self.write_lease(&l, false)?;
        Ok(l)
    }

    /// Frees one lease held by `owner`.
    pub fn release(&self, network: &str, ip: Ipv4Addr, owner: &str) -> Result<Lease, LeaseError> {
        let l = self.owned(network, ip, owner)?;
        let path = self.record_path(network, ip)?;
        fsutil::remove_durable(&path).map_err(io_err(&path))?;
        tracing::info!(network, %ip, owner, "lease released");
        Ok(l)
    }

    /// Frees every lease held by `owner`.
    pub fn release_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        for l in self.all_leases()? {
            if l.owner == owner {
                out.push(self.release(&l.network, l.ip, owner)?);
            }
        }
        Ok(out)
    }

    /// Frees every lease whose expiry is at or before `now`.
    pub fn reclaim_expired(&self, now: u64) -> Result<Vec<Lease>, LeaseError> {
        self.reclaim_expired_except(now, &|_| false)
    }

    /// [`Self::reclaim_expired`], except leases of owners for which `keep(owner)` is true (a
    /// recorded deployment's leases end with the deployment, once its guest is gone).
    pub fn reclaim_expired_except(
        &self,
        now: u64,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        for l in self.all_leases()? {
            if l.expires.is_some_and(|e| e <= now) && !keep(&l.owner) {
                let path = self.record_path(&l.network, l.ip)?;
                fsutil::remove_durable(&path).map_err(io_err(&path))?;
                tracing::info!(network = %l.network, ip = %l.ip, owner = %l.owner, "expired lease reclaimed");
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Crash recovery: removes temporary files left by killed writers and frees pending leases
    /// whose process is no longer alive (`alive` decides; normally [`pid_alive`]).
    pub fn recover(&self, alive: &dyn Fn(u32) -> bool) -> Result<Recovery, LeaseError> {
        self.recover_except(alive, &|_| false)
    }

    /// [`Self::recover`], except that pending leases of owners for which `keep(owner)` is true
    /// stay, whatever their pid: deployment recovery decides about those (a deployment whose
    /// process died may still have a running guest using the addresses).
    pub fn recover_except(
        &self,
        alive: &dyn Fn(u32) -> bool,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Recovery, LeaseError> {
        let mut rec = Recovery::default();
        let leases_dir = self.root.join("leases");
        for entry in fs::read_dir(&leases_dir).map_err(io_err(&leases_dir))? {
            let entry = entry.map_err(io_err(&leases_dir))?;
            if entry.path().is_dir() {
                rec.tmp_removed +=
                    fsutil::remove_tmp_files(&entry.path()).map_err(io_err(&entry.path()))?;
            }
        }
        rec.tmp_removed += fsutil::remove_tmp_files(&self.root).map_err(io_err(&self.root))?;
        for l in self.all_leases()? {
            if !l.committed && !l.pid.is_some_and(alive) && !keep(&l.owner) {
                let path = self.record_path(&l.network, l.ip)?;
                fsutil::remove_durable(&path).map_err(io_err(&path))?;
                tracing::warn!(network = %l.network, ip = %l.ip, owner = %l.owner, pid = ?l.pid, "pending lease of a dead process freed");
                rec.freed.push(l);
            }
        }
        Ok(rec)
    }
}
