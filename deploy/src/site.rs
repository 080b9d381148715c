//! Site configuration (TOML), documented in `docs/site.md`.
//!
//! [`SiteConfig`] is the file as written (strict: unknown keys are refused, TOML errors carry
//! line and column); [`Site`] is the validated form every other module works with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::names::{check_hostname, check_name};
use crate::net::{mask_to_prefix, Ipv4Net, MacPrefix};

/// Upper bounds that keep a hostile or mistaken file from costing unbounded memory.
pub mod limits {
    /// Largest site file read.
    pub const MAX_FILE_BYTES: u64 = 1 << 20;
    /// Most slots.
    pub const MAX_SLOTS: usize = 1024;
    /// Most networks.
    pub const MAX_NETWORKS: usize = 64;
    /// Most addresses in one network's pool.
    pub const MAX_POOL: u64 = 65536;
    /// Most CIDR ranges in one pool.
    pub const MAX_RANGES: usize = 256;
    /// Most DNS servers per network.
    pub const MAX_DNS: usize = 8;
    /// Most VOs per slot.
    pub const MAX_VOS: usize = 256;
    /// Most pinned CPUs per slot or set aside by the host.
    pub const MAX_CPUS: usize = 4096;
}

/// Error reading or validating a site file.
#[derive(Debug, Error)]
pub enum SiteError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`limits::MAX_FILE_BYTES`].
    #[error("{path}: {size} bytes is larger than the {max} bytes a site file may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// TOML syntax or shape error; the message carries line and column.
    #[error("{source_name}: {message}")]
    Toml {
        /// File name (or other label) of the text.
        source_name: String,
        /// toml's message, with line, column and the offending line.
        message: String,
    },
    /// A value is well-formed TOML but wrong.
    #[error("{source_name}: {field}: {message}")]
    Invalid {
        /// File name (or other label) of the text.
        source_name: String,
        /// Dotted path of the field, e.g. `network[public].gateway`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Xen guest type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Paravirtualised.
    Pv,
    /// PVH.
    Pvh,
    /// Hardware virtual machine.
    Hvm,
}

impl GuestType {
    /// The value of xl.cfg's `type` key.
    pub fn as_str(&self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }
}

impl fmt::Display for GuestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GuestType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pv" => Ok(GuestType::Pv),
            "pvh" => Ok(GuestType::Pvh),
            "hvm" => Ok(GuestType::Hvm),
            _ => Err(format!("unknown guest type {s:?} (pv, pvh or hvm)")),
        }
    }
}

/// A Xen version `major.minor[.patch]`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XenVersion(pub u32, pub u32, pub u32);

impl FromStr for XenVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{:?} is not a Xen version (major.minor or major.minor.patch)",
                s.chars().take(40).collect::<String>()
            )
        };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let mut n = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n[i] = p.parse().map_err(|_| bad())?;
        }
        Ok(XenVersion(n[0], n[1], n[2]))
    }
}

impl Serialize for XenVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for XenVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.2 == 0 {
            write!(f, "{}.{}", self.0, self.1)
        } else {
            write!(f, "{}.{}.{}", self.0, self.1, self.2)
        }
    }
}

// ---------------------------------------------------------------- Xen version bands

/// Which keys a Xen version's `xl` reads, where they changed between 4.4 and 4.17
/// (xl.cfg(5) of each release; docs/site.md lists the bands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenKeys {
    /// `type = "pv|pvh|hvm"` (4.10 and later); before it, `builder = "generic|hvm"` and no
    /// PVH (version 2) guests.
    pub type_key: bool,
    /// `cmdline = "..."` (4.5 and later); before it, `extra = "..."`, which every xl reads
    /// when there is no `cmdline`.
    pub cmdline_key: bool,
}

impl XenKeys {
    /// Oldest Xen wafer writes xl.cfg for.
    pub const OLDEST: XenVersion = XenVersion(4, 4, 0);
    /// First Xen whose xl reads `type =` (and runs PVH guests).
    pub const TYPE_FROM: XenVersion = XenVersion(4, 10, 0);
    /// First Xen whose xl reads `cmdline =`.
    pub const CMDLINE_FROM: XenVersion = XenVersion(4, 5, 0);

    /// The keys for `xen`; a Xen older than [`XenKeys::OLDEST`] is refused.
    pub fn for_version(xen: XenVersion) -> Result<XenKeys, String> {
        if xen < Self::OLDEST {
            return Err(format!(
                "Xen {xen} is older than {}, the oldest Xen wafer writes xl.cfg for",
                Self::OLDEST
            ));
        }
        Ok(XenKeys {
            type_key: xen >= Self::TYPE_FROM,
            cmdline_key: xen >= Self::CMDLINE_FROM,
        })
    }
}

/// The site file as written. See `docs/site.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Site name (informational).
    pub name: String,
    /// Resources the host sets aside for wafers.
    pub host: HostConfig,
    /// Which hypervisor runs the guests (absent: Xen).
    #[serde(default)]
    pub hypervisor: Option<HypervisorConfig>,
    /// Xen (required when the hypervisor is Xen).
    #[serde(default)]
    pub xen: Option<XenConfig>,
    /// QEMU/KVM (only when the hypervisor is QEMU; every key has a default).
    #[serde(default)]
    pub qemu: Option<QemuConfig>,
    /// Directories.
    pub paths: PathsConfig,
    /// Edge Services slots.
    #[serde(default, rename = "slot")]
    pub slots: Vec<SlotConfig>,
    /// Networks and their address pools.
    #[serde(default, rename = "network")]
    pub networks: Vec<NetworkConfig>,
}

/// `[host]`: what the host sets aside for all wafers together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Memory for guests, MiB.
    pub memory_mib: u64,
    /// Virtual CPUs that running guests may have in total.
    pub vcpus: u32,
    /// Disk space in the storage directory for guests, MiB.
    pub disk_mib: u64,
    /// Physical CPUs reserved for guests (slots may only pin to these).
    #[serde(default)]
    pub pcpus: Option<Vec<u32>>,
}

/// `[xen]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct XenConfig {
    /// Xen version, e.g. "4.17".
    pub version: String,
    /// Guest types this host runs.
    pub guest_types: Vec<GuestType>,
}

/// `[hypervisor]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HypervisorConfig {
    /// `xen` or `qemu`.
    pub kind: HypervisorKind,
}

/// The hypervisor a site runs its guests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HypervisorKind {
    /// Xen, through `xl`.
    Xen,
    /// QEMU (KVM or TCG), through `qemu-system-x86_64` and its QMP socket.
    Qemu,
}

/// `accel` of `[qemu]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a probe guest runs under it, else TCG (the reason is logged).
    Auto,
    /// KVM only.
    Kvm,
    /// QEMU's software emulation only.
    Tcg,
}

impl Accel {
    /// The name in the site file.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// `network` of `[qemu]`: how a guest NIC reaches its site network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuNetwork {
    /// `-netdev bridge,br=BRIDGE` (qemu-bridge-helper; the bridge listed in
    /// `/etc/qemu/bridge.conf`): production.
    Bridge,
    /// `-netdev user` (QEMU's own NAT, no host set-up), its network and gateway set to the site
    /// network's so the leased static address works: tests and single-host trials.
    User,
}

/// `[qemu]` as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    /// The QEMU program: a name looked up in `PATH`, or a path (default `qemu-system-x86_64`).
    #[serde(default)]
    pub binary: Option<String>,
    /// `auto` (default), `kvm` or `tcg`.
    #[serde(default)]
    pub accel: Option<Accel>,
    /// Machine type (default `q35`).
    #[serde(default)]
    pub machine: Option<String>,
    /// `bridge` (default) or `user`.
    #[serde(default)]
    pub network: Option<QemuNetwork>,
    /// Seconds `wafer stop` waits after ACPI power-down before it makes QEMU quit (default 60).
    #[serde(default)]
    pub stop_timeout_s: Option<u64>,
}

/// Validated `[qemu]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSite {
    /// The QEMU program (a name looked up in `PATH`, or a path).
    pub binary: String,
    /// Accelerator choice.
    pub accel: Accel,
    /// Machine type.
    pub machine: String,
    /// NIC back-end.
    pub network: QemuNetwork,
    /// Seconds between `system_powerdown` and `quit` in `wafer stop`.
    pub stop_timeout_s: u64,
}

/// Validated `[xen]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenSite {
    /// Xen version.
    pub version: XenVersion,
    /// Guest types the host runs.
    pub guest_types: BTreeSet<GuestType>,
}

/// The site's hypervisor, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteHypervisor {
    /// Xen (`[xen]`).
    Xen(XenSite),
    /// QEMU/KVM (`[qemu]`).
    Qemu(QemuSite),
}

impl SiteHypervisor {
    /// `xen` or `qemu`.
    pub fn kind(&self) -> HypervisorKind {
        match self {
            SiteHypervisor::Xen(_) => HypervisorKind::Xen,
            SiteHypervisor::Qemu(_) => HypervisorKind::Qemu,
        }
    }
}

/// `[paths]`. Relative paths are taken from the site file's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    /// Where disks, kernels, CIDATA images and xl.cfg files go.
    pub storage_dir: PathBuf,
    /// Where leases, deployment records and the lock live.
    pub state_dir: PathBuf,
    /// The trust store (read by verification).
    pub trust_store: PathBuf,
}

/// `[[slot]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// Slot name.
    pub name: String,
    /// Guaranteed memory (memory = maxmem), MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Credit scheduler weight (1..=65535).
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// Credit scheduler cap, percent of one CPU (0 = none).
    #[serde(default)]
    pub cpu_cap: Option<u32>,
    /// Physical CPUs to pin to (instead of weight/cap).
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
    /// Disk, MiB.
    pub disk_mib: u64,
    /// Guest architecture, e.g. "x86_64".
    pub arch: String,
    /// VOs that may use the slot; `"*"` means every VO.
    pub vos: Vec<String>,
    /// Networks the slot is attached to (one address leased on each).
    #[serde(default)]
    pub networks: Vec<String>,
}

/// `public` or `private`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// Reachable from outside the site.
    Public,
    /// Site-internal.
    Private,
}

/// `[[network]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Network name.
    pub name: String,
    /// Host bridge the guests' vifs join.
    pub bridge: String,
    /// public or private.
    pub kind: NetworkKind,
    /// Default gateway (optional on a private network without a router).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Network address, needed only when there is no gateway.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Netmask (give this or `prefix`).
    #[serde(default)]
    pub netmask: Option<Ipv4Addr>,
    /// Prefix length (give this or `netmask`).
    #[serde(default)]
    pub prefix: Option<u8>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// DNS search domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// First three MAC octets (locally administered).
    pub mac_prefix: String,
    /// Pool: CIDR blocks (network/broadcast addresses of the network itself are skipped).
    #[serde(default)]
    pub ranges: Vec<String>,
    /// Pool: explicit hosts with their names.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostLine>,
}

/// An explicit pool entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostLine {
    /// The address.
    pub ip: Ipv4Addr,
    /// Its DNS name; the guest takes it as its host name.
    pub hostname: String,
}

/// Validated site.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Site name.
    pub name: String,
    /// Host resources set aside.
    pub host: HostConfig,
    /// The hypervisor and its settings.
    pub hypervisor: SiteHypervisor,
    /// Storage directory (absolute).
    pub storage_dir: PathBuf,
    /// State directory (absolute).
    pub state_dir: PathBuf,
    /// Trust store (absolute).
    pub trust_store: PathBuf,
    /// Slots in file order.
    pub slots: Vec<SlotConfig>,
    /// Networks in file order.
    pub networks: Vec<Network>,
}

/// A validated network with its expanded pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Bridge.
    pub bridge: String,
    /// public/private.
    pub kind: NetworkKind,
    /// The IP network.
    pub net: Ipv4Net,
    /// Gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// Search domain.
    pub domain: Option<String>,
    /// MAC prefix.
    pub mac_prefix: MacPrefix,
    /// Pool in allocation order: range addresses first, then host lines.
    pub pool: Vec<PoolEntry>,
}

/// One leasable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEntry {
    /// The address.
    pub ip: Ipv4Addr,
    /// Host name bound to it by a host line.
    pub hostname: Option<String>,
}

impl Site {
    /// Reads and validates a site file; relative paths are taken from its directory.
    pub fn from_file(path: &Path) -> Result<Site, SiteError> {
        let io = |source| SiteError::Io {
            path: path.to_path_buf(),
            source,
        };
        // a regular file only (a FIFO or /dev/zero would hang or never end), read with a bound
        let f = crate::fsutil::open_regular(path).map_err(io)?;
        let too_large = |size| SiteError::TooLarge {
            path: path.to_path_buf(),
            size,
            max: limits::MAX_FILE_BYTES,
        };
        let size = f.metadata().map_err(io)?.len();
        if size > limits::MAX_FILE_BYTES {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(f, limits::MAX_FILE_BYTES + 1),
            &mut bytes,
        )
        .map_err(io)?;
        if bytes.len() as u64 > limits::MAX_FILE_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            ))
        })?;
        // the folder the site file really lies in, without `.`, `..` or links: `--site
        // ../site/site.toml` and relative paths in it then resolve to clean absolute paths
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            Path::new(".").to_path_buf()
        } else {
            base
        };
        let base = std::fs::canonicalize(&base).map_err(io)?;
        Site::from_toml_str(&text, &path.display().to_string(), Some(&base))
    }

    /// Parses and validates site TOML. `source_name` labels errors; relative paths are resolved
    /// against `base_dir`, and refused when it is `None`.
    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        base_dir: Option<&Path>,
    ) -> Result<Site, SiteError> {
        if text.len() as u64 > limits::MAX_FILE_BYTES {
            return Err(SiteError::TooLarge {
                path: PathBuf::from(source_name),
                size: text.len() as u64,
                max: limits::MAX_FILE_BYTES,
            });
        }
        let cfg: SiteConfig = toml::from_str(text).map_err(|e| SiteError::Toml {
            source_name: source_name.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(source_name, base_dir)
    }

    /// Xen's settings, on a Xen site.
    pub fn xen(&self) -> Option<&XenSite> {
        match &self.hypervisor {
            SiteHypervisor::Xen(x) => Some(x),
            SiteHypervisor::Qemu(_) => None,
        }
    }

    /// QEMU's settings, on a QEMU site.
    pub fn qemu(&self) -> Option<&QemuSite> {
        match &self.hypervisor {
            SiteHypervisor::Qemu(q) => Some(q),
            SiteHypervisor::Xen(_) => None,
        }
    }

    /// The slot called `name`.
    pub fn slot(&self, name: &str) -> Option<&SlotConfig> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

impl SiteConfig {
    /// Validates the file's content into a [`Site`].
    pub fn validate(&self, source_name: &str, base_dir: Option<&Path>) -> Result<Site, SiteError> {
        let err = |field: String, message: String| SiteError::Invalid {
            source_name: source_name.to_string(),
            field,
            message,
        };
        let name_err = |field: String, e: crate::names::NameError| err(field, e.to_string());

        check_name("site name", &self.name).map_err(|e| name_err("name".into(), e))?;

        // host
        if self.host.memory_mib == 0 {
            return Err(err("host.memory_mib".into(), "must be above 0".into()));
        }
        if self.host.vcpus == 0 {
            return Err(err("host.vcpus".into(), "must be above 0".into()));
        }
        if self.host.disk_mib == 0 {
            return Err(err("host.disk_mib".into(), "must be above 0".into()));
        }
        let host_pcpus: Option<BTreeSet<u32>> = match &self.host.pcpus {
            None => None,
            Some(list) => {
                if list.is_empty() || list.len() > limits::MAX_CPUS {
                    return Err(err(
                        "host.pcpus".into(),
                        format!("must list 1 to {} CPUs", limits::MAX_CPUS),
                    ));
                }
                let set: BTreeSet<u32> = list.iter().copied().collect();
                if set.len() != list.len() {
                    return Err(err("host.pcpus".into(), "lists a CPU twice".into()));
                }
                Some(set)
            }
        };

        // hypervisor
        let kind = self
            .hypervisor
            .as_ref()
            .map(|h| h.kind)
            .unwrap_or(HypervisorKind::Xen);
        let hypervisor = match kind {
            HypervisorKind::Xen => {
                if self.qemu.is_some() {
                    return Err(err(
                        "qemu".into(),
                        "[qemu] is for a site whose [hypervisor] kind is \"qemu\"; this site's is xen".into(),
                    ));
                }
                let Some(xen) = &self.xen else {
                    return Err(err(
                        "xen".into(),
                        "a Xen site needs a [xen] table (version, guest_types); for QEMU/KVM write [hypervisor] kind = \"qemu\"".into(),
                    ));
                };
                SiteHypervisor::Xen(validate_xen(xen, &err)?)
            }
            HypervisorKind::Qemu => {
                if self.xen.is_some() {
                    return Err(err(
                        "xen".into(),
                        "[xen] is for a site whose [hypervisor] kind is \"xen\"; this site's is qemu".into(),
                    ));
                }
                let q = self.qemu.clone().unwrap_or(QemuConfig {
                    binary: None,
                    accel: None,
                    machine: None,
                    network: None,
                    stop_timeout_s: None,
                });
                SiteHypervisor::Qemu(validate_qemu(&q, &err)?)
            }
        };

        // paths
        let resolve = |field: &str, p: &Path| -> Result<PathBuf, SiteError> {
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else if let Some(b) = base_dir {
                join_relative(b, p)
            } else {
                return Err(err(
                    format!("paths.{field}"),
                    format!(
                        "{} is relative and there is no site file directory to resolve it against",
                        p.display()
                    ),
                ));
            };
            if !crate::fsutil::is_clean_absolute(&abs) {
                return Err(err(
                    format!("paths.{field}"),
                    format!("{} must not contain '.' or '..' components", abs.display()),
                ));
            }
            Ok(abs)
        };
        let storage_dir = resolve("storage_dir", &self.paths.storage_dir)?;
        if kind == HypervisorKind::Qemu && storage_dir.to_string_lossy().contains(',') {
            // QEMU's option syntax (-drive file=...,) would need every comma doubled; a folder
            // name without one keeps the command line plain
            return Err(err(
                "paths.storage_dir".into(),
                format!(
                    "{} contains a comma, which a QEMU site's storage folder may not",
                    storage_dir.display()
                ),
            ));
        }
        let state_dir = resolve("state_dir", &self.paths.state_dir)?;
        let trust_store = resolve("trust_store", &self.paths.trust_store)?;
        if storage_dir == state_dir {
            return Err(err(
                "paths.state_dir".into(),
                "must differ from storage_dir".into(),
            ));
        }

        // networks
        if self.networks.len() > limits::MAX_NETWORKS {
            return Err(err(
                "network".into(),
                format!(
                    "{} networks; at most {}",
                    self.networks.len(),
                    limits::MAX_NETWORKS
                ),
            ));
        }
        let mut networks = Vec::new();
        let mut net_names = BTreeSet::new();
        let mut all_ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        for (i, n) in self.networks.iter().enumerate() {
            let f = |k: &str| {
                format!(
                    "network[{}].{k}",
                    if n.name.is_empty() {
                        i.to_string()
                    } else {
                        n.name.clone()
                    }
                )
            };
            check_name("network name", &n.name).map_err(|e| name_err(f("name"), e))?;
            if !net_names.insert(n.name.clone()) {
                return Err(err(
                    f("name"),
                    format!("network {:?} is declared twice", n.name),
                ));
            }
            check_name("bridge", &n.bridge).map_err(|e| name_err(f("bridge"), e))?;
            if n.bridge.len() > 15 {
                return Err(err(
                    f("bridge"),
                    format!(
                        "{:?} is longer than the 15 characters of a Linux interface name",
                        n.bridge
                    ),
                ));
            }
            let prefix = match (n.netmask, n.prefix) {
                (Some(_), Some(_)) => {
                    return Err(err(f("netmask"), "give netmask or prefix, not both".into()))
                }
                (None, None) => return Err(err(f("prefix"), "give netmask or prefix".into())),
                (Some(m), None) => {
                    mask_to_prefix(m).map_err(|e| err(f("netmask"), e.to_string()))?
                }
                (None, Some(p)) => {
                    if p > 30 || p == 0 {
                        return Err(err(f("prefix"), format!("{p} must be between 1 and 30")));
                    }
                    p
                }
            };
            if prefix > 30 || prefix == 0 {
                return Err(err(
                    f("netmask"),
                    format!("prefix length {prefix} must be between 1 and 30"),
                ));
            }
            let anchor = match (n.gateway, n.address) {
                (Some(g), _) => g,
                (None, Some(a)) => a,
                (None, None) => {
                    return Err(err(
                        f("gateway"),
                        "give a gateway, or the network address when there is none".into(),
                    ))
                }
            };
            let net = Ipv4Net::new(anchor, prefix).map_err(|e| err(f("prefix"), e.to_string()))?;
            if let Some(a) = n.address {
                if a != net.base() {
                    return Err(err(
                        f("address"),
                        format!(
                            "{a} is not the network address of {net} (gateway {})",
                            n.gateway.map(|g| g.to_string()).unwrap_or_default()
                        ),
                    ));
                }
            }
            if let Some(g) = n.gateway {
                if g == net.base() || g == net.last() {
                    return Err(err(
                        f("gateway"),
                        format!("{g} is the network or broadcast address of {net}"),
                    ));
                }
            }
            if n.dns.len() > limits::MAX_DNS {
                return Err(err(
                    f("dns"),
                    format!("{} servers; at most {}", n.dns.len(), limits::MAX_DNS),
                ));
            }
            if let Some(d) = &n.domain {
                check_hostname("domain", d).map_err(|e| name_err(f("domain"), e))?;
            }
            let mac_prefix: MacPrefix = n
                .mac_prefix
                .parse()
                .map_err(|e: crate::net::NetError| err(f("mac_prefix"), e.to_string()))?;

            if n.ranges.len() > limits::MAX_RANGES {
                return Err(err(
                    f("ranges"),
                    format!("{} ranges; at most {}", n.ranges.len(), limits::MAX_RANGES),
                ));
            }
            let mut pool: Vec<PoolEntry> = Vec::new();
            let mut seen: BTreeSet<Ipv4Addr> = BTreeSet::new();
            let mut total: u64 = 0;
            for (ri, r) in n.ranges.iter().enumerate() {
                let fr = f(&format!("ranges[{ri}]"));
                let block: Ipv4Net = r
                    .parse()
                    .map_err(|e: crate::net::NetError| err(fr.clone(), e.to_string()))?;
                if !net.covers(&block) {
                    return Err(err(fr, format!("{block} is not inside the network {net}")));
                }
                total = total.saturating_add(block.size());
                if total > limits::MAX_POOL {
                    return Err(err(
                        fr,
                        format!("pool would exceed {} addresses", limits::MAX_POOL),
                    ));
                }
                let start = u32::from(block.base());
                for off in 0..block.size() {
                    let ip = Ipv4Addr::from(start.wrapping_add(off as u32));
                    if ip == net.base() || ip == net.last() {
                        continue;
                    }
                    if Some(ip) == n.gateway {
                        return Err(err(fr, format!("{block} contains the gateway {ip}")));
                    }
                    if !seen.insert(ip) {
                        return Err(err(fr, format!("{ip} is in the pool twice")));
                    }
                    pool.push(PoolEntry { ip, hostname: None });
                }
            }
            let mut hostnames = BTreeSet::new();
            for (hi, h) in n.hosts.iter().enumerate() {
                let fh = f(&format!("host[{hi}]"));
                if pool.len() as u64 >= limits::MAX_POOL {
                    return Err(err(
                        fh,
                        format!("pool would exceed {} addresses", limits::MAX_POOL),
                    ));
                }
                if !net.contains(h.ip) || h.ip == net.base() || h.ip == net.last() {
                    return Err(err(
                        fh,
                        format!("{} is not a host address of the network {net}", h.ip),
                    ));
                }
                if Some(h.ip) == n.gateway {
                    return Err(err(fh, format!("{} is the gateway", h.ip)));
                }
                check_hostname("hostname", &h.hostname).map_err(|e| name_err(fh.clone(), e))?;
                if !hostnames.insert(h.hostname.to_ascii_lowercase()) {
                    return Err(err(fh, format!("hostname {} is listed twice", h.hostname)));
                }
                if !seen.insert(h.ip) {
                    return Err(err(fh, format!("{} is in the pool twice", h.ip)));
                }
                pool.push(PoolEntry {
                    ip: h.ip,
                    hostname: Some(h.hostname.clone()),
                });
            }
            if pool.is_empty() {
                return Err(err(
                    f("ranges"),
                    "the pool is empty: give ranges and/or host lines".into(),
                ));
            }
            for e in &pool {
                if let Some(other) = all_ips.insert(e.ip, n.name.clone()) {
                    return Err(err(
                        f("ranges"),
                        format!("{} is also in the pool of network {other:?}", e.ip),
                    ));
                }
            }
            networks.push(Network {
                name: n.name.clone(),
                bridge: n.bridge.clone(),
                kind: n.kind,
                net,
                gateway: n.gateway,
                dns: n.dns.clone(),
                domain: n.domain.clone(),
                mac_prefix,
                pool,
            });
        }

        // slots
        if self.slots.len() > limits::MAX_SLOTS {
            return Err(err(
                "slot".into(),
                format!("{} slots; at most {}", self.slots.len(), limits::MAX_SLOTS),
            ));
        }
        let mut slot_names = BTreeSet::new();
        for (i, s) in self.slots.iter().enumerate() {
            let f = |k: &str| {
                format!(
                    "slot[{}].{k}",
                    if s.name.is_empty() {
                        i.to_string()
                    } else {
                        s.name.clone()
                    }
                )
            };
            check_name("slot name", &s.name).map_err(|e| name_err(f("name"), e))?;
            if !slot_names.insert(s.name.clone()) {
                return Err(err(
                    f("name"),
                    format!("slot {:?} is declared twice", s.name),
                ));
            }
            if s.memory_mib == 0 {
                return Err(err(f("memory_mib"), "must be above 0".into()));
            }
            if s.memory_mib > self.host.memory_mib {
                return Err(err(
                    f("memory_mib"),
                    format!(
                        "{} MiB is more than the {} MiB the host sets aside",
                        s.memory_mib, self.host.memory_mib
                    ),
                ));
            }
            if s.vcpus == 0 {
                return Err(err(f("vcpus"), "must be above 0".into()));
            }
            if s.vcpus > self.host.vcpus {
                return Err(err(
                    f("vcpus"),
                    format!(
                        "{} is more than the {} vcpus the host sets aside",
                        s.vcpus, self.host.vcpus
                    ),
                ));
            }
            if s.disk_mib == 0 {
                return Err(err(f("disk_mib"), "must be above 0".into()));
            }
            if s.disk_mib > self.host.disk_mib {
                return Err(err(
                    f("disk_mib"),
                    format!(
                        "{} MiB is more than the {} MiB the host sets aside",
                        s.disk_mib, self.host.disk_mib
                    ),
                ));
            }
            if let Some(w) = s.cpu_weight {
                if w == 0 || w > 65535 {
                    return Err(err(
                        f("cpu_weight"),
                        format!("{w} must be between 1 and 65535"),
                    ));
                }
            }
            if let Some(c) = s.cpu_cap {
                if u64::from(c) > 100 * u64::from(s.vcpus) {
                    return Err(err(
                        f("cpu_cap"),
                        format!(
                            "{c}% is more than {} vcpus can use ({}%)",
                            s.vcpus,
                            100 * u64::from(s.vcpus)
                        ),
                    ));
                }
            }
            if let Some(pins) = &s.cpus {
                if s.cpu_weight.is_some() || s.cpu_cap.is_some() {
                    return Err(err(
                        f("cpus"),
                        "give cpu pinning or cpu_weight/cpu_cap, not both".into(),
                    ));
                }
                if pins.is_empty() || pins.len() > limits::MAX_CPUS {
                    return Err(err(
                        f("cpus"),
                        format!("must list 1 to {} CPUs", limits::MAX_CPUS),
                    ));
                }
                let set: BTreeSet<u32> = pins.iter().copied().collect();
                if set.len() != pins.len() {
                    return Err(err(f("cpus"), "lists a CPU twice".into()));
                }
                if let Some(hp) = &host_pcpus {
                    if let Some(c) = set.iter().find(|c| !hp.contains(c)) {
                        return Err(err(
                            f("cpus"),
                            format!("CPU {c} is not among the host's pcpus"),
                        ));
                    }
                }
            }
            check_name("arch", &s.arch).map_err(|e| name_err(f("arch"), e))?;
            if s.vos.is_empty() {
                return Err(err(f("vos"), "must list at least one VO (or \"*\")".into()));
            }
            if s.vos.len() > limits::MAX_VOS {
                return Err(err(f("vos"), format!("at most {} VOs", limits::MAX_VOS)));
            }
            for vo in &s.vos {
                if vo != "*" {
                    check_name("VO", vo).map_err(|e| name_err(f("vos"), e))?;
                }
            }
            let mut seen = BTreeSet::new();
            for n in &s.networks {
                if !net_names.contains(n) {
                    return Err(err(f("networks"), format!("network {n:?} is not declared")));
                }
                if !seen.insert(n) {
                    return Err(err(f("networks"), format!("network {n:?} is listed twice")));
                }
            }
        }

        Ok(Site {
            name: self.name.clone(),
            host: self.host.clone(),
            hypervisor,
            storage_dir,
            state_dir,
            trust_store,
            slots: self.slots.clone(),
            networks,
        })
    }
}

type ErrFn<'a> = dyn Fn(String, String) -> SiteError + 'a;

fn validate_xen(xen: &XenConfig, err: &ErrFn<'_>) -> Result<XenSite, SiteError> {
    let version: XenVersion = xen
        .version
        .parse()
        .map_err(|m| err("xen.version".into(), m))?;
    if xen.guest_types.is_empty() {
        return Err(err(
            "xen.guest_types".into(),
            "must list at least one of pv, pvh, hvm".into(),
        ));
    }
    let guest_types: BTreeSet<GuestType> = xen.guest_types.iter().copied().collect();
    // The xl.cfg keys wafer writes follow the Xen version (crate::xl::XenKeys).
    let keys = XenKeys::for_version(version).map_err(|m| err("xen.version".into(), m))?;
    if !keys.type_key && guest_types.contains(&GuestType::Pvh) {
        return Err(err(
            "xen.guest_types".into(),
            format!(
                "pvh guests need Xen {} or later (xl's type = \"pvh\"); this host runs Xen {version}",
                XenKeys::TYPE_FROM
            ),
        ));
    }
    Ok(XenSite {
        version,
        guest_types,
    })
}

/// Default QEMU program.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Default machine type.
pub const DEFAULT_MACHINE: &str = "q35";
/// Default seconds between ACPI power-down and `quit`.
pub const DEFAULT_STOP_TIMEOUT_S: u64 = 60;

fn validate_qemu(q: &QemuConfig, err: &ErrFn<'_>) -> Result<QemuSite, SiteError> {
    let binary = q.binary.clone().unwrap_or_else(|| DEFAULT_QEMU.to_string());
    if binary.is_empty()
        || binary.len() > 4096
        || binary.chars().any(|c| c.is_control())
        || (binary.contains('/') && !binary.starts_with('/'))
    {
        return Err(err(
            "qemu.binary".into(),
            format!(
                "{:?} is not a program name or an absolute path",
                binary.chars().take(80).collect::<String>()
            ),
        ));
    }
    let machine = q
        .machine
        .clone()
        .unwrap_or_else(|| DEFAULT_MACHINE.to_string());
    check_name("machine type", &machine)
        .map_err(|e| err("qemu.machine".into(), e.to_string()))?;
    let stop_timeout_s = q.stop_timeout_s.unwrap_or(DEFAULT_STOP_TIMEOUT_S);
    if stop_timeout_s > 3600 {
        return Err(err(
            "qemu.stop_timeout_s".into(),
            format!("{stop_timeout_s} is more than an hour (3600)"),
        ));
    }
    Ok(QemuSite {
        binary,
        accel: q.accel.unwrap_or(Accel::Auto),
        machine,
        network: q.network.unwrap_or(QemuNetwork::Bridge),
        stop_timeout_s,
    })
}

/// `rel` (relative) joined to `base`: `.` components dropped and leading `..` components taken
/// off `base`, so `../state` next to `/srv/site/site.toml` is `/srv/state`. Only leading `..`
/// are resolved (against the site file's folder, whose real path `Site::from_file` uses); a
/// `..` after a name is kept, and the resolved result is then refused as not clean.
fn join_relative(base: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = base.to_path_buf();
    let mut leading = true;
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if leading => {
                out.pop();
            }
            other => {
                leading = false;
                out.push(other.as_os_str());
            }
        }
    }
    out
}
