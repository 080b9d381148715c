//! rpm's SQLite database (`rpmdb.sqlite`, rpm ≥ 4.16): read, register new headers and remove old ones.
//!
//! Schema (rpm lib/backend/sqlite.c): `Packages(hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)`
//! holds the header blobs; one index table per indexed tag (`Name`, `Basenames`, `Group`,
//! `Requirename`, `Providename`, `Conflictname`, `Obsoletename`, `Triggername`, `Dirnames`,
//! `Installtid`, `Sigmd5`, `Sha1header`, `Filetriggername`, `Transfiletriggername`,
//! `Recommendname`, `Suggestname`, `Supplementname`, `Enhancename`), each `(key, hnum, idx)`, where
//! `idx` is the element number within the tag. String keys are TEXT; `Installtid` is the 4-byte
//! host-order integer and `Sigmd5` the 16 raw bytes, both as BLOB.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags};

use crate::rpm::header::{tag, Header};

/// Errors of the SQLite backend.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite failed.
    #[error("rpmdb.sqlite {path}: {source}")]
    Sql {
        /// Database path.
        path: String,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// I/O on the private copy.
    #[error("rpmdb.sqlite {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> SqliteError + '_ {
    move |source| SqliteError::Sql {
        path: path.display().to_string(),
        source,
    }
}

/// Read `(hnum, blob)` from database bytes (plus an optional pending `-wal`). The bytes are
/// written to a private temporary copy, so the WAL is applied there and the caller's image is never
/// touched.
pub fn read_packages_bytes(
    db: &[u8],
    wal: Option<&[u8]>,
) -> Result<Vec<(u32, Vec<u8>)>, SqliteError> {
    let io = |source| SqliteError::Io {
        path: "<private copy>".into(),
        source,
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let p = dir.path().join("rpmdb.sqlite");
    std::fs::write(&p, db).map_err(io)?;
    if let Some(w) = wal {
        std::fs::write(dir.path().join("rpmdb.sqlite-wal"), w).map_err(io)?;
    }
    read_packages_file(&p)
}

/// Read `(hnum, blob)` from our private copy, opened read-only (SQLite still reads a `-wal` beside it).
fn read_packages_file(p: &Path) -> Result<Vec<(u32, Vec<u8>)>, SqliteError> {
    let conn = Connection::open_with_flags(
        p,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(p))?;
    let mut st = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(sql(p))?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(sql(p))?;
    let mut out = Vec::new();
    for r in rows {
        let (h, b) = r.map_err(sql(p))?;
        out.push((h as u32, b));
    }
    Ok(out)
}

/// Read `(hnum, blob)` from `rpmdb.sqlite` at `path` (and its `-wal` if present), via a private copy.
pub fn read_packages(path: &Path) -> Result<Vec<(u32, Vec<u8>)>, SqliteError> {
    let io = |source| SqliteError::Io {
        path: path.display().to_string(),
        source,
    };
    let db = std::fs::read(path).map_err(io)?;
    let mut walp = path.as_os_str().to_owned();
    walp.push("-wal");
    let wal = match std::fs::read(&walp) {
        Ok(w) => Some(w),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    read_packages_bytes(&db, wal.as_deref())
}

/// Index tables rpm keeps, with the header tag each one indexes.
pub const INDEXES: &[(&str, u32)] = &[
    ("Name", tag::NAME),
    ("Basenames", tag::BASENAMES),
    ("Group", tag::GROUP),
    ("Requirename", tag::REQUIRENAME),
    ("Providename", tag::PROVIDENAME),
    ("Conflictname", tag::CONFLICTNAME),
    ("Obsoletename", tag::OBSOLETENAME),
    ("Triggername", tag::TRIGGERNAME),
    ("Dirnames", tag::DIRNAMES),
    ("Installtid", tag::INSTALLTID),
    ("Sigmd5", tag::SIGMD5),
    ("Sha1header", tag::SHA1HEADER),
    ("Filetriggername", tag::FILETRIGGERNAME),
    ("Transfiletriggername", tag::TRANSFILETRIGGERNAME),
    ("Recommendname", tag::RECOMMENDNAME),
    ("Suggestname", tag::SUGGESTNAME),
    ("Supplementname", tag::SUPPLEMENTNAME),
    ("Enhancename", tag::ENHANCENAME),
];

/// Create an empty rpm SQLite database with rpm's schema at `path`.
pub fn create(path: &Path) -> Result<(), SqliteError> {
    let conn = Connection::open(path).map_err(sql(path))?;
    let mut ddl = String::from(
        "PRAGMA journal_mode=WAL;\nCREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);\n",
    );
    for (name, t) in INDEXES {
        let ty = if *t == tag::INSTALLTID || *t == tag::SIGMD5 {
            "BLOB"
        } else {
            "TEXT"
        };
        ddl.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS '{name}' (key '{ty}' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum));\nCREATE INDEX IF NOT EXISTS '{name}_key_idx' ON '{name}'(key ASC);\n"
        ));
    }
    conn.execute_batch(&ddl).map_err(sql(path))?;
    Ok(())
}

/// Register `header` in the existing database at `path` (as `rpm -i --justdb` would): the blob goes
/// into `Packages` and every indexed tag into its table, in one transaction. Returns the new `hnum`.
///
/// This writes the file in place: call it on the image's copy, never on a live system.
pub fn add_package(path: &Path, header: &Header) -> Result<u32, SqliteError> {
    let mut conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql(path))?;
    let tx = conn.transaction().map_err(sql(path))?;
    tx.execute(
        "INSERT INTO Packages (blob) VALUES (?1)",
        params![header.to_bytes()],
    )
    .map_err(sql(path))?;
    let hnum = tx.last_insert_rowid();
    for (table, t) in INDEXES {
        let Some(e) = header.entry(*t) else { continue };
        let q = format!("INSERT INTO '{table}' (key, hnum, idx) VALUES (?1, ?2, ?3)");
        if *t == tag::INSTALLTID {
            for (i, v) in header.ints(*t).unwrap_or_default().into_iter().enumerate() {
                tx.execute(
                    &q,
                    params![(v as u32).to_ne_bytes().to_vec(), hnum, i as i64],
                )
                .map_err(sql(path))?;
            }
        } else if *t == tag::SIGMD5 {
            tx.execute(&q, params![e.data.clone(), hnum, 0i64])
                .map_err(sql(path))?;
        } else {
            let vals = header.strings(*t).unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            for (i, v) in vals.iter().enumerate() {
                if !seen.insert(v) {
                    continue;
                }
                tx.execute(&q, params![v, hnum, i as i64])
                    .map_err(sql(path))?;
            }
        }
    }
    tx.commit().map_err(sql(path))?;
    Ok(hnum as u32)
}

/// Remove package `hnum` from the existing database at `path` (the database half of `rpm -e
/// --justdb`, and of the erase an upgrade does): its row in `Packages` and its keys in every index
/// table that exists, in one transaction. Returns whether a package with that number was there.
///
/// This writes the file in place: call it on the image's copy, never on a live system.
pub fn remove_package(path: &Path, hnum: u32) -> Result<bool, SqliteError> {
    let mut conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql(path))?;
    let tx = conn.transaction().map_err(sql(path))?;
    let existing: Vec<String> = {
        let mut st = tx
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .map_err(sql(path))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql(path))?;
        rows.collect::<Result<_, _>>().map_err(sql(path))?
    };
    for (table, _) in INDEXES {
        if existing.iter().any(|t| t == table) {
            tx.execute(
                &format!("DELETE FROM '{table}' WHERE hnum = ?1"),
                params![i64::from(hnum)],
            )
            .map_err(sql(path))?;
        }
    }
    let n = tx
        .execute(
            "DELETE FROM Packages WHERE hnum = ?1",
            params![i64::from(hnum)],
        )
        .map_err(sql(path))?;
    tx.commit().map_err(sql(path))?;
    Ok(n > 0)
}
