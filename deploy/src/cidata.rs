//! The contextualization disk: a FAT image labelled `CIDATA` holding a cloud-init NoCloud seed
//! (`meta-data`, `network-config` version 1, `user-data`) and `wafer-context.env` for guests
//! without cloud-init (format in `docs/site.md`).
//!
//! The image is reproducible: every timestamp is the DOS epoch (1980-01-01 00:00:00), the volume
//! id is derived from the instance id, and files are written in a fixed order.

use std::io::{Cursor, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::names::{check_hostname, check_name, NameError};
use crate::net::{prefix_to_mask, MacAddr};

/// Largest user-data accepted.
pub const MAX_USER_DATA: usize = 16 << 20;
/// Most interfaces.
pub const MAX_INTERFACES: usize = 16;
/// Volume label.
pub const LABEL: &str = "CIDATA";

/// Default user-data when the VO supplies none.
pub const DEFAULT_USER_DATA: &str = "#cloud-config\n{}\n";

/// Error building the image.
#[derive(Debug, Error)]
pub enum CidataError {
    /// A name is unusable.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Too much user-data.
    #[error("user-data is {0} bytes; at most {MAX_USER_DATA}")]
    UserDataTooLarge(usize),
    /// Too many interfaces.
    #[error("{0} interfaces; at most {MAX_INTERFACES}")]
    TooManyInterfaces(usize),
    /// Prefix length out of range.
    #[error("interface {name}: prefix length {prefix} is above 32")]
    BadPrefix {
        /// Interface.
        name: String,
        /// The prefix.
        prefix: u8,
    },
    /// FAT formatting or writing failed.
    #[error("building the FAT image: {0}")]
    Fat(std::io::Error),
    /// Writing the image file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One guest interface with its static address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Guest interface name, e.g. `eth0`.
    pub name: String,
    /// Site network it is on (informational).
    pub network: String,
    /// MAC (matches the vif in xl.cfg).
    pub mac: MacAddr,
    /// Address.
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// Default gateway on this interface.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// DNS search domain.
    pub search: Option<String>,
}

/// Everything the guest learns at first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// cloud-init instance id (changes per deployment so cloud-init runs again).
    pub instance_id: String,
    /// Guest host name.
    pub hostname: String,
    /// Interfaces in vif order.
    pub interfaces: Vec<Interface>,
    /// User-data from the VO; [`DEFAULT_USER_DATA`] when `None`.
    pub user_data: Option<Vec<u8>>,
}

impl Context {
    /// Checks every field that ends up in a file.
    pub fn validate(&self) -> Result<(), CidataError> {
        check_name("instance id", &self.instance_id)?;
        check_hostname("hostname", &self.hostname)?;
        if self.interfaces.len() > MAX_INTERFACES {
            return Err(CidataError::TooManyInterfaces(self.interfaces.len()));
        }
        for i in &self.interfaces {
            check_name("interface", &i.name)?;
            check_name("network", &i.network)?;
            if i.prefix > 32 {
                return Err(CidataError::BadPrefix {
                    name: i.name.clone(),
                    prefix: i.prefix,
                });
            }
            if let Some(s) = &i.search {
                check_hostname("search domain", s)?;
            }
        }
        if let Some(u) = &self.user_data {
            if u.len() > MAX_USER_DATA {
                return Err(CidataError::UserDataTooLarge(u.len()));
            }
        }
        Ok(())
    }

    /// `meta-data` (YAML).
    pub fn meta_data(&self) -> String {
        format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            self.instance_id, self.hostname
        )
    }

    /// `network-config`: cloud-init network config version 1, one `physical` entry per
    /// interface matched by MAC with one static subnet; only the first interface with a gateway
    /// gets it (one default route).
    pub fn network_config(&self) -> String {
        let mut s = String::from("version: 1\nconfig:\n");
        let mut gateway_given = false;
        for i in &self.interfaces {
            s.push_str(&format!(
                "  - type: physical\n    name: {}\n    mac_address: \"{}\"\n    subnets:\n",
                i.name, i.mac
            ));
            s.push_str(&format!(
                "      - type: static\n        address: {}\n        netmask: {}\n",
                i.address,
                prefix_to_mask(i.prefix)
            ));
            if let Some(g) = i.gateway {
                if !gateway_given {
                    s.push_str(&format!("        gateway: {g}\n"));
                    gateway_given = true;
                }
            }
            if !i.dns.is_empty() {
                s.push_str("        dns_nameservers:\n");
                for d in &i.dns {
                    s.push_str(&format!("          - {d}\n"));
                }
            }
            if let Some(search) = &i.search {
                s.push_str(&format!("        dns_search:\n          - {search}\n"));
            }
        }
        s
    }

    /// `user-data` bytes.
    pub fn user_data(&self) -> Vec<u8> {
        self.user_data
            .clone()
            .unwrap_or_else(|| DEFAULT_USER_DATA.as_bytes().to_vec())
    }

    /// `wafer-context.env`: `KEY='value'` lines a POSIX shell can source (see docs/site.md).
    pub fn context_env(&self) -> String {
        let mut s = String::from("# wafer-context.env: written by wafer deploy; sourced by the first-boot hook of guests without cloud-init\n");
        let mut kv = |k: &str, v: &str| s.push_str(&format!("{k}='{v}'\n"));
        kv("WAFER_INSTANCE_ID", &self.instance_id);
        kv("WAFER_HOSTNAME", &self.hostname);
        let mut dns: Vec<String> = Vec::new();
        let mut search: Vec<String> = Vec::new();
        for i in &self.interfaces {
            for d in &i.dns {
                let d = d.to_string();
                if !dns.contains(&d) {
                    dns.push(d);
                }
            }
            if let Some(x) = &i.search {
                if !search.contains(x) {
                    search.push(x.clone());
                }
            }
        }
        kv("WAFER_DNS", &dns.join(" "));
        kv("WAFER_SEARCH", &search.join(" "));
        let names: Vec<&str> = self.interfaces.iter().map(|i| i.name.as_str()).collect();
        kv("WAFER_IFACES", &names.join(" "));
        let mut gateway_given = false;
        for i in &self.interfaces {
            let p = format!(
                "WAFER_{}",
                i.name.to_ascii_uppercase().replace(['-', '.'], "_")
            );
            kv(&format!("{p}_NETWORK"), &i.network);
            kv(&format!("{p}_MAC"), &i.mac.to_string());
            kv(&format!("{p}_IP"), &i.address.to_string());
            kv(
                &format!("{p}_NETMASK"),
                &prefix_to_mask(i.prefix).to_string(),
            );
            kv(&format!("{p}_PREFIX"), &i.prefix.to_string());
            let gw = match i.gateway {
                Some(g) if !gateway_given => {
                    gateway_given = true;
                    g.to_string()
                }
                _ => String::new(),
            };
            kv(&format!("{p}_GATEWAY"), &gw);
        }
        s
    }

    /// The files of the image, in the order written.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("meta-data", self.meta_data().into_bytes()),
            ("user-data", self.user_data()),
            ("network-config", self.network_config().into_bytes()),
            ("wafer-context.env", self.context_env().into_bytes()),
        ]
    }
}

#[derive(Debug)]
struct EpochTime;

impl fatfs::TimeProvider for EpochTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static EPOCH_TIME: EpochTime = EpochTime;

/// Builds the FAT image in memory (FAT12 for small seeds; size grows with the user-data).
pub fn build_image(ctx: &Context) -> Result<Vec<u8>, CidataError> {
    ctx.validate()?;
    let files = ctx.files();
    let content: usize = files.iter().map(|(_, b)| b.len()).sum();
    // room for content, FATs and directory, in whole MiB, at least 1 MiB
    let size = (content + content / 8 + (256 << 10))
        .div_ceil(1 << 20)
        .max(1)
        << 20;
    let mut img = vec![0u8; size];
    let volume_id = {
        let d = Sha256::digest(ctx.instance_id.as_bytes());
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    };
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    let opts = fatfs::FormatVolumeOptions::new()
        .volume_label(label)
        .volume_id(volume_id)
        .bytes_per_cluster(if size <= 4 << 20 { 512 } else { 2048 });
    fatfs::format_volume(Cursor::new(&mut img[..]), opts).map_err(CidataError::Fat)?;
    {
        let fs = fatfs::FileSystem::new(
            Cursor::new(&mut img[..]),
            fatfs::FsOptions::new()
                .time_provider(&EPOCH_TIME)
                .update_accessed_date(false),
        )
        .map_err(CidataError::Fat)?;
        {
            let root = fs.root_dir();
            for (name, bytes) in &files {
                let mut f = root.create_file(name).map_err(CidataError::Fat)?;
                f.truncate().map_err(CidataError::Fat)?;
                f.write_all(bytes).map_err(CidataError::Fat)?;
                f.flush().map_err(CidataError::Fat)?;
            }
        }
        fs.unmount().map_err(CidataError::Fat)?;
    }
    Ok(img)
}

/// Builds the image and writes it atomically to `dest`.
pub fn write_image(ctx: &Context, dest: &Path) -> Result<(), CidataError> {
    let img = build_image(ctx)?;
    crate::fsutil::write_atomic(dest, &img).map_err(|source| CidataError::Io {
        path: dest.to_path_buf(),
        source,
    })
}
