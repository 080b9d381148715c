//! Image inventory, site policy, verdicts and reports.
//!
//! [`inspect`] reads a [`rootfs::Tree`] (never the host: every path resolves inside the image)
//! and returns an [`Inventory`]: the system (distribution, architecture, kernels, init, SELinux),
//! every inode with its sha256, packages, services and the ports they will listen on with
//! provenance, ELF hardening of privileged binaries and daemons, accounts and credentials.
//! [`render::summary`] prints it for a terminal; [`sbom::cyclonedx`] turns it into a CycloneDX 1.5
//! SBOM. The JSON form is documented field by field in `docs/inventory.md`. [`vet::vet`] is the
//! whole of `wafer vet` on an opened image: inventory, policy, identity, verdict.

pub mod accounts;
pub mod caps;
pub mod diff;
pub mod elf;
pub mod files;
pub mod license;
pub mod packages;
pub mod policy;
pub mod render;
pub mod report;
pub mod sbom;
pub mod secrets;
pub mod services;
pub mod system;
pub mod util;
pub mod vet;

use rootfs::Tree;
use serde::Serialize;

/// The version of the inventory's JSON layout.
pub const INVENTORY_SCHEMA: &str = "wafer-inventory/1";

/// Default for [`InspectOptions::max_path_bytes`]: Linux's `PATH_MAX`.
pub const DEFAULT_MAX_PATH_BYTES: usize = 4096;

/// Options for [`inspect`].
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// Hash regular files (sha256). Default true.
    pub hash: bool,
    /// Files larger than this (logical size) are not hashed; the inventory says so. Default 4 GiB.
    pub hash_limit: u64,
    /// Hole bytes (zeros sparse files declare but do not store) hashed or scanned over the whole
    /// image; sparse files past it are not hashed and the inventory says so. Default 1 GiB.
    pub hash_holes: u64,
    /// Longest path (bytes) the inventory holds; a longer one stops the inspection with
    /// [`Error::PathTooLong`]. Default 4096 (Linux `PATH_MAX`).
    pub max_path_bytes: usize,
    /// Files larger than this are not scanned for credentials. Default 1 MiB.
    pub scan_limit: u64,
    /// Include one entry per inode in `files.entries`. Default true.
    pub list_files: bool,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            hash: true,
            hash_limit: rootfs::content::DEFAULT_HASH_MAX_FILE,
            hash_holes: rootfs::content::DEFAULT_HASH_HOLES,
            max_path_bytes: DEFAULT_MAX_PATH_BYTES,
            scan_limit: 1 << 20,
            list_files: true,
        }
    }
}

/// Something the vetter could not read or understand, with where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The path in the image concerned.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// A place in a file: path and 1-based line number (absent when the fact is a file or symlink itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Provenance {
    /// Path in the image.
    pub file: String,
    /// 1-based line number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The line's text (trimmed) or a description such as a symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Provenance {
    /// A file (or symlink) as a whole.
    pub fn file(file: impl Into<String>, text: Option<String>) -> Self {
        Provenance {
            file: file.into(),
            line: None,
            text,
        }
    }
    /// A line of a file.
    pub fn line(file: impl Into<String>, line: usize, text: &str) -> Self {
        let mut t = text.trim().to_string();
        if t.len() > 200 {
            let mut cut = 200;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            t.truncate(cut);
        }
        Provenance {
            file: file.into(),
            line: Some(u32::try_from(line).unwrap_or(u32::MAX)),
            text: Some(t),
        }
    }
}

/// Everything a reviewer needs to know about an image. See `docs/inventory.md`.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// Layout version, [`INVENTORY_SCHEMA`].
    pub schema: String,
    /// Distribution, architecture, kernels, init system, SELinux.
    pub system: system::System,
    /// Inodes, hashes and file findings.
    pub files: files::Files,
    /// Installed packages and their verification.
    pub packages: packages::Packages,
    /// Services started at boot and their ports.
    pub services: services::Services,
    /// ELF hardening of setuid/setgid/capability binaries and service daemons.
    pub elf: Vec<ElfEntry>,
    /// Accounts, sudoers and ssh settings.
    pub accounts: accounts::Accounts,
    /// Private keys and credentials found (path and kind only).
    pub credentials: Vec<secrets::Credential>,
    /// Files that could not be read or parsed.
    pub problems: Vec<Problem>,
    /// Damage the image reader skipped over (checksum mismatches, an unreplayed journal,
    /// skipped attributes, a truncated archive), recorded by the caller that opened the image
    /// ([`Inventory::add_reader_damage`]). The verdict is "could not vet" while any is unwaived.
    pub reader_damage: Vec<ReaderDamage>,
}

/// Something the image reader could not read and skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReaderDamage {
    /// The image file read (as given on the command line), or the path in it.
    pub path: String,
    /// What was skipped, and why.
    pub reason: String,
}

impl Inventory {
    /// Record damage the image reader skipped over while reading `path` (one entry per reason).
    pub fn add_reader_damage(&mut self, path: &str, reasons: impl IntoIterator<Item = String>) {
        for reason in reasons {
            self.reader_damage.push(ReaderDamage {
                path: path.to_string(),
                reason,
            });
        }
    }
}

/// ELF report of one file, or the reason there is none.
#[derive(Clone, Debug, Serialize)]
pub struct ElfEntry {
    /// Path in the image.
    pub path: String,
    /// Why it was examined: `setuid`, `setgid`, `capabilities`, `service:NAME`.
    pub reasons: Vec<String>,
    /// The analysis, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<elf::ElfInfo>,
    /// The error, when the file is not ELF or is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Errors that stop an inspection (per-file problems go to [`Inventory::problems`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tree has no root directory.
    #[error("the image's root is not a directory")]
    NoRoot,
    /// A path is longer than [`InspectOptions::max_path_bytes`].
    #[error("a path of {len} bytes exceeds the {limit} byte path limit (it starts {start:?})")]
    PathTooLong {
        /// The path's first bytes.
        start: String,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// Build the inventory of `tree`.
pub fn inspect(tree: &Tree, opts: &InspectOptions) -> Result<Inventory, Error> {
    if tree.entries(tree.root()).is_none() {
        return Err(Error::NoRoot);
    }
    let mut problems = Vec::new();
    let system = system::inspect(tree, &mut problems);
    let users = accounts::read_ids(tree);
    let scan = files::scan(tree, opts, &users)?;
    problems.extend(scan.problems.iter().cloned());
    let credentials = scan.credentials.clone();
    let files = scan.files;
    let services = services::inspect(tree, &system, &mut problems);
    let mut owner_paths = privileged_paths(&files, &services);
    // Owners of credential files: a key shipped inside a package is reported with its package.
    owner_paths.extend(credentials.iter().map(|c| c.path.clone()));
    owner_paths.sort();
    owner_paths.dedup();
    let packages = packages::inspect(
        tree,
        &scan.hashes,
        &users,
        system.distro.as_deref(),
        &owner_paths,
        &mut problems,
    );
    let mut packages = packages;
    unrecognised_databases(tree, &mut packages);
    let accounts = accounts::inspect(tree, &system, &mut problems);
    let elf = elf_entries(tree, &files, &services, &mut problems);
    problems.sort();
    problems.dedup();
    Ok(Inventory {
        schema: INVENTORY_SCHEMA.to_string(),
        system,
        files,
        packages,
        services,
        elf,
        accounts,
        credentials,
        problems,
        reader_damage: Vec::new(),
    })
}

impl PartialOrd for Problem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Problem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.path, &self.message).cmp(&(&other.path, &other.message))
    }
}

/// Package database files an rpm or dpkg would read.
const DATABASE_FILES: [(&str, &str); 7] = [
    ("/var/lib/rpm/rpmdb.sqlite", "rpm-sqlite"),
    ("/var/lib/rpm/Packages.db", "rpm-ndb"),
    ("/var/lib/rpm/Packages", "rpm-bdb"),
    ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "rpm-sqlite"),
    ("/usr/lib/sysimage/rpm/Packages.db", "rpm-ndb"),
    ("/usr/lib/sysimage/rpm/Packages", "rpm-bdb"),
    ("/var/lib/dpkg/status", "dpkg"),
];

/// Fail closed when no package database was read although a database file is there (wrong
/// magic, empty, unreadable): each such file is a [`packages::DamagedSource`], so the verdict is
/// "could not vet" rather than "no packages".
fn unrecognised_databases(tree: &Tree, pk: &mut packages::Packages) {
    if pk.format.is_some() {
        return;
    }
    for (path, format) in DATABASE_FILES {
        let Some(id) = util::resolve(tree, path) else {
            continue;
        };
        if tree.node(id).file_type() != rootfs::FileType::Regular
            || pk
                .damaged
                .iter()
                .any(|d| d.path == path || path.starts_with(&format!("{}/", d.path)))
        {
            continue;
        }
        tracing::warn!(path, "package database file not recognised");
        pk.damaged.push(packages::DamagedSource {
            path: path.to_string(),
            format: format.to_string(),
            reason: format!(
                "the file is there ({} bytes) but is not a {format} database this reader recognises",
                tree.node(id).size()
            ),
            records_read: 0,
            records_unreadable: None,
        });
    }
}

/// Setuid, setgid and capability files and enabled services' daemons: the paths whose owning
/// packages the inventory records.
fn privileged_paths(files: &files::Files, services: &services::Services) -> Vec<String> {
    let mut v: Vec<String> = files
        .setuid
        .iter()
        .chain(files.setgid.iter())
        .cloned()
        .collect();
    v.extend(files.capabilities.iter().map(|c| c.path.clone()));
    v.extend(
        services
            .list
            .iter()
            .filter(|s| s.enabled)
            .filter_map(|s| s.daemon.clone()),
    );
    v.sort();
    v.dedup();
    v
}

fn elf_entries(
    tree: &Tree,
    files: &files::Files,
    services: &services::Services,
    problems: &mut Vec<Problem>,
) -> Vec<ElfEntry> {
    use std::collections::BTreeMap;
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &files.setuid {
        wanted.entry(p.clone()).or_default().push("setuid".into());
    }
    for p in &files.setgid {
        wanted.entry(p.clone()).or_default().push("setgid".into());
    }
    for c in &files.capabilities {
        wanted
            .entry(c.path.clone())
            .or_default()
            .push("capabilities".into());
    }
    for s in services.list.iter().filter(|s| s.enabled) {
        if let Some(d) = &s.daemon {
            wanted
                .entry(d.clone())
                .or_default()
                .push(format!("service:{}", s.name));
        }
    }
    let list: Vec<(String, Vec<String>)> = wanted.into_iter().collect();
    use rayon::prelude::*;
    let out: Vec<ElfEntry> = list
        .into_par_iter()
        .map(|(path, reasons)| {
            let (info, error) = match util::read_file(tree, &path, elf::MAX_ELF_BYTES) {
                Ok(bytes) => match elf::analyse(&bytes, Some(tree)) {
                    Ok(i) => (Some(i), None),
                    Err(e) => (None, Some(e.to_string())),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            ElfEntry {
                path,
                reasons,
                info,
                error,
            }
        })
        .collect();
    for e in &out {
        if let Some(err) = &e.error {
            if err != "not an ELF file" {
                problems.push(Problem {
                    path: e.path.clone(),
                    message: err.clone(),
                });
            }
        }
    }
    out
}
