//! Package formats both the builder and the vetter need: rpm headers and packages, rpm databases
//! (Berkeley DB hash, sqlite, ndb), dpkg status, and rpm/dpkg version comparison.
//!
//! Entry points:
//! * [`read_rpmdb`] — every package of an rpm database directory (`var/lib/rpm` or
//!   `usr/lib/sysimage/rpm`), whatever its backend, all or nothing; [`rpmdb::read_packages`] for
//!   in-memory files.
//! * [`rpmdb::read_packages_checked`] — the read that fails closed without losing what is
//!   readable: the packages whose headers parse and pass their digests, plus every problem
//!   (file, page, slot, offset, record) and how many records could not be trusted.
//! * [`version`] — `rpmvercmp`, [`version::Evr`], [`version::DpkgVersion`].
//! * [`rpm::Header`], [`rpm::Package`], [`rpm::RpmPackage`] (`.rpm` files).
//! * [`rpmdb::sqlite::add_package`], [`rpmdb::bdb::write_packages`] — register headers.
//! * [`dpkg::read_status`] — dpkg's installed packages.

pub mod dpkg;
pub mod rpm;
pub mod rpmdb;
pub mod version;

use std::path::Path;

pub use rpm::{FileEntry, Package};

/// Errors of this crate's top-level entry points.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// I/O on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No rpm database file found.
    #[error("no rpm database (rpmdb.sqlite, Packages.db or Packages) found")]
    NoDatabase,
    /// Berkeley DB error.
    #[error(transparent)]
    Bdb(#[from] rpmdb::bdb::BdbError),
    /// ndb error.
    #[error(transparent)]
    Ndb(#[from] rpmdb::ndb::NdbError),
    /// SQLite error.
    #[error(transparent)]
    Sqlite(#[from] rpmdb::sqlite::SqliteError),
    /// The database exists but is damaged (strict reads; see
    /// [`rpmdb::read_packages_checked`] for a read that keeps the readable records).
    #[error("rpm database {file} is damaged: {what}")]
    Damaged {
        /// The database file (`Packages`, `rpmdb.sqlite`, `Packages.db`).
        file: String,
        /// What is wrong, where, and how many records were read.
        what: String,
    },
    /// A record's header is malformed.
    #[error("{backend:?} rpm database record {record}: {source}")]
    Record {
        /// Backend.
        backend: rpmdb::Backend,
        /// Record number.
        record: u32,
        /// The error.
        #[source]
        source: rpm::HeaderError,
    },
}

/// Where rpm keeps its database inside a root filesystem, newest layout first.
pub const RPMDB_DIRS: [&str; 2] = ["usr/lib/sysimage/rpm", "var/lib/rpm"];

/// Read the rpm database of the system rooted at `root` (the first of [`RPMDB_DIRS`] holding a
/// database). On an image, prefer reading the files out of the image and using
/// [`rpmdb::read_packages`] with an in-memory [`rpmdb::DbSource`].
pub fn read_rpmdb_in_root(root: &Path) -> Result<Vec<Package>, Error> {
    for d in RPMDB_DIRS {
        let dir = root.join(d);
        match rpmdb::read_packages(&dir.as_path()) {
            Err(Error::NoDatabase) => continue,
            other => return other,
        }
    }
    Err(Error::NoDatabase)
}

/// Read every package (and `gpg-pubkey` entry) of the rpm database in directory `dir`, all or
/// nothing (see [`rpmdb::read_packages_checked`] for a read that reports damage and keeps the
/// readable records).
pub fn read_rpmdb(dir: &Path) -> Result<Vec<Package>, Error> {
    rpmdb::read_packages(&dir)
}
