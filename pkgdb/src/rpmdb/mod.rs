//! rpm package databases: backend detection and reading, plus writers.
//!
//! Backends, in the order rpm itself prefers them: SQLite `rpmdb.sqlite` (rpm ≥ 4.16), SUSE ndb
//! `Packages.db`, Berkeley DB hash `Packages` (rpm ≤ 4.15, every old distribution).

pub mod bdb;
pub mod bdb_index;
pub mod ndb;
pub mod sqlite;

use std::path::Path;

use crate::rpm::{Header, Package};
use crate::Error;

/// Which database format a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `rpmdb.sqlite`.
    Sqlite,
    /// `Packages.db`.
    Ndb,
    /// `Packages` (Berkeley DB hash).
    Bdb,
}

impl Backend {
    /// The file this backend keeps its packages in.
    pub fn file_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "rpmdb.sqlite",
            Backend::Ndb => "Packages.db",
            Backend::Bdb => "Packages",
        }
    }
}

/// Where database files come from: a real directory, or files already in memory (e.g. read out
/// of an image by name).
pub trait DbSource {
    /// Contents of the file `name` of the database directory; `Ok(None)` when absent.
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>>;
}

impl DbSource for &Path {
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl DbSource for std::collections::HashMap<String, Vec<u8>> {
    fn read(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.get(name).cloned())
    }
}

fn magic_ok(b: Backend, bytes: &[u8]) -> bool {
    match b {
        Backend::Sqlite => bytes.starts_with(b"SQLite format 3\0"),
        Backend::Ndb => bytes.starts_with(b"RpmP"),
        Backend::Bdb => bytes
            .get(12..16)
            .is_some_and(|m| m == [0x61, 0x15, 6, 0] || m == [0, 6, 0x15, 0x61]),
    }
}

/// Find the backend and the file's bytes: the first of `rpmdb.sqlite`, `Packages.db`,
/// `Packages` that exists with the right magic. A file that exists with the wrong magic is
/// skipped here (with a warning); [`read_packages_checked`] reports it as damage instead.
pub fn detect(src: &dyn DbSource) -> Result<(Backend, Vec<u8>), Error> {
    for b in [Backend::Sqlite, Backend::Ndb, Backend::Bdb] {
        let name = b.file_name();
        let Some(bytes) = read_src(src, name)? else {
            continue;
        };
        if magic_ok(b, &bytes) {
            return Ok((b, bytes));
        }
        tracing::warn!(
            file = name,
            "rpm database file has the wrong magic; ignored"
        );
    }
    Err(Error::NoDatabase)
}

fn read_src(src: &dyn DbSource, name: &str) -> Result<Option<Vec<u8>>, Error> {
    src.read(name).map_err(|e| Error::Io {
        path: name.into(),
        source: e,
    })
}

/// Header blobs keyed by record number.
pub type Blobs = Vec<(u32, Vec<u8>)>;

/// One problem found reading a database: the record it concerns (when known) and what is wrong,
/// naming the page, offset, slot or row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Record number (`hnum`, BDB key, ndb pkgidx) when the problem is one record's.
    pub record: Option<u32>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record {
            Some(n) => write!(f, "record {n}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// What a checked read of a database found: the packages that could be read and trusted, and
/// what could not be.
#[derive(Debug, Clone)]
pub struct CheckedRead {
    /// The backend.
    pub backend: Backend,
    /// The file read (`rpmdb.sqlite`, `Packages.db`, `Packages`), relative to the directory.
    pub file: &'static str,
    /// Every package read whose header parsed and passed its digests, in record order
    /// (`gpg-pubkey` entries included).
    pub packages: Vec<Package>,
    /// Every problem found; empty when the database was read completely.
    pub damage: Vec<Damage>,
    /// Records found but not trusted (unreadable, malformed or failing a digest). Damage that
    /// hides how many records it cost (a truncated file, a broken chain) counts nothing here,
    /// so a non-empty [`CheckedRead::damage`] is what says the read was incomplete.
    pub records_unreadable: u64,
}

impl CheckedRead {
    /// Whether the database was read completely and every record was trusted.
    pub fn is_complete(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Raw blobs of one backend with the damage found reading them.
struct RawRead {
    backend: Backend,
    blobs: Blobs,
    damage: Vec<Damage>,
    unreadable: u64,
}

/// A backend's checked read as blobs, damage and the unreadable count; a read that failed
/// outright is one damage entry with nothing read.
fn parts<D: std::fmt::Display, E: std::fmt::Display>(
    r: Result<(Blobs, Vec<D>, u64), E>,
) -> (Blobs, Vec<Damage>, u64) {
    match r {
        Ok((blobs, damage, unreadable)) => {
            (blobs, damage.into_iter().map(whole).collect(), unreadable)
        }
        Err(e) => (Vec::new(), vec![whole(e)], 0),
    }
}

fn whole(what: impl std::fmt::Display) -> Damage {
    Damage {
        record: None,
        what: what.to_string(),
    }
}

/// Read whatever the database in `src` holds, keeping what is readable. The database is the
/// first of `rpmdb.sqlite`, `Packages.db`, `Packages` that exists (rpm's own order): if it has
/// the wrong magic or cannot be opened at all, that is damage with nothing read, not a fall-back
/// to another file.
fn read_raw(src: &dyn DbSource) -> Result<RawRead, Error> {
    for backend in [Backend::Sqlite, Backend::Ndb, Backend::Bdb] {
        let name = backend.file_name();
        let Some(bytes) = read_src(src, name)? else {
            continue;
        };
        let mut raw = RawRead {
            backend,
            blobs: Vec::new(),
            damage: Vec::new(),
            unreadable: 0,
        };
        if !magic_ok(backend, &bytes) {
            let what = if bytes.is_empty() {
                "the file is empty".to_string()
            } else {
                format!(
                    "not a {} database (wrong magic in the first {} bytes of {})",
                    match backend {
                        Backend::Sqlite => "SQLite",
                        Backend::Ndb => "ndb",
                        Backend::Bdb => "Berkeley DB hash",
                    },
                    bytes.len().min(16),
                    bytes.len()
                )
            };
            raw.damage.push(whole(what));
            return Ok(raw);
        }
        let read = match backend {
            Backend::Sqlite => {
                let wal = read_src(src, "rpmdb.sqlite-wal")?;
                parts(
                    sqlite::read_packages_bytes_checked(&bytes, wal.as_deref())
                        .map(|r| (r.records, r.damage, r.unreadable)),
                )
            }
            Backend::Ndb => parts(
                ndb::read_packages_checked(&bytes).map(|r| (r.records, r.damage, r.unreadable)),
            ),
            Backend::Bdb => parts(
                bdb::read_packages_checked(&bytes).map(|r| (r.records, r.damage, r.unreadable)),
            ),
        };
        (raw.blobs, raw.damage, raw.unreadable) = read;
        return Ok(raw);
    }
    Err(Error::NoDatabase)
}

/// Read the header blobs `(record number, blob)` of whatever database `src` holds; any damage
/// is an error.
pub fn read_blobs(src: &dyn DbSource) -> Result<(Backend, Blobs), Error> {
    let raw = read_raw(src)?;
    if let Some(d) = raw.damage.into_iter().next() {
        return Err(Error::Damaged {
            file: raw.backend.file_name().into(),
            what: d.to_string(),
        });
    }
    Ok((raw.backend, raw.blobs))
}

/// Parse one database record as rpm trusts it: the blob must parse (structure, region,
/// entry layout), pass its header digests ([`Header::verify_digests`]) and name a package.
pub fn trusted_package(record: u32, blob: &[u8]) -> Result<Package, crate::rpm::HeaderError> {
    let header = Header::parse(blob)?;
    header.verify_digests(blob)?;
    let mut p = Package::from_header(header)?;
    p.db_id = Some(record);
    Ok(p)
}

/// Read every package of the database in `src`, keeping going past damage: a record that cannot
/// be read or fails its digests is left out and reported, the others are listed (as rpm lists
/// the readable headers). `Err` only when there is no database file at all
/// ([`Error::NoDatabase`]) or it cannot be read (I/O); a file that exists but is garbage, empty,
/// truncated or damaged comes back with [`CheckedRead::damage`] saying so.
pub fn read_packages_checked(src: &dyn DbSource) -> Result<CheckedRead, Error> {
    let raw = read_raw(src)?;
    let mut out = CheckedRead {
        backend: raw.backend,
        file: raw.backend.file_name(),
        packages: Vec::with_capacity(raw.blobs.len()),
        damage: raw.damage,
        records_unreadable: raw.unreadable,
    };
    for (n, blob) in raw.blobs {
        match trusted_package(n, &blob) {
            Ok(p) => out.packages.push(p),
            Err(e) => {
                tracing::warn!(file = out.file, record = n, error = %e, "untrusted rpm header skipped");
                out.damage.push(Damage {
                    record: Some(n),
                    what: e.to_string(),
                });
                out.records_unreadable += 1;
            }
        }
    }
    Ok(out)
}

/// Read and parse every package of the database in `src` (in record order), all or nothing: any
/// damage, or any record that fails to parse or fails its digests, is an error. `gpg-pubkey`
/// entries are included, flagged with [`Package::is_gpg_pubkey`].
pub fn read_packages(src: &dyn DbSource) -> Result<Vec<Package>, Error> {
    let r = read_packages_checked(src)?;
    if let Some(d) = r.damage.first() {
        return Err(Error::Damaged {
            file: r.file.into(),
            what: format!(
                "{d} ({} records read, {} not{})",
                r.packages.len(),
                r.records_unreadable,
                if r.damage.len() > 1 {
                    format!(", {} problems in all", r.damage.len())
                } else {
                    String::new()
                }
            ),
        });
    }
    Ok(r.packages)
}
