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

/// Find the backend and the file's bytes: the first of `rpmdb.sqlite`, `Packages.db`,
/// `Packages` that exists with the right magic.
pub fn detect(src: &dyn DbSource) -> Result<(Backend, Vec<u8>), Error> {
    for b in [Backend::Sqlite, Backend::Ndb, Backend::Bdb] {
        let name = b.file_name();
        let Some(bytes) = src.read(name).map_err(|e| Error::Io {
            path: name.into(),
            source: e,
        })?
        else {
            continue;
        };
        let ok = match b {
            Backend::Sqlite => bytes.starts_with(b"SQLite format 3\0"),
            Backend::Ndb => bytes.starts_with(b"RpmP"),
            Backend::Bdb => bytes
                .get(12..16)
                .is_some_and(|m| m == [0x61, 0x15, 6, 0] || m == [0, 6, 0x15, 0x61]),
        };
        if ok {
            return Ok((b, bytes));
        }
        tracing::warn!(
            file = name,
            "rpm database file has the wrong magic; ignored"
        );
    }
    Err(Error::NoDatabase)
}

/// Header blobs keyed by record number.
pub type Blobs = Vec<(u32, Vec<u8>)>;

/// Read the header blobs `(record number, blob)` of whatever database `src` holds.
pub fn read_blobs(src: &dyn DbSource) -> Result<(Backend, Blobs), Error> {
    let (backend, bytes) = detect(src)?;
    let blobs = match backend {
        Backend::Sqlite => {
            let wal = src.read("rpmdb.sqlite-wal").map_err(|e| Error::Io {
                path: "rpmdb.sqlite-wal".into(),
                source: e,
            })?;
            sqlite::read_packages_bytes(&bytes, wal.as_deref())?
        }
        Backend::Ndb => ndb::read_packages(&bytes)?,
        Backend::Bdb => bdb::read_packages(&bytes)?,
    };
    Ok((backend, blobs))
}

/// Read and parse every package of the database in `src` (in record order). `gpg-pubkey`
/// entries are included, flagged with [`Package::is_gpg_pubkey`].
pub fn read_packages(src: &dyn DbSource) -> Result<Vec<Package>, Error> {
    let (backend, blobs) = read_blobs(src)?;
    let mut out = Vec::with_capacity(blobs.len());
    for (n, blob) in blobs {
        let header = Header::parse(&blob).map_err(|e| Error::Record {
            backend,
            record: n,
            source: e,
        })?;
        let mut p = Package::from_header(header).map_err(|e| Error::Record {
            backend,
            record: n,
            source: e,
        })?;
        p.db_id = Some(n);
        out.push(p);
    }
    Ok(out)
}
