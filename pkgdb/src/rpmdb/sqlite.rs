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
    /// The database is damaged (strict reads only; see [`read_packages_bytes_checked`]).
    #[error("rpmdb.sqlite: {what}")]
    Damaged {
        /// What is wrong.
        what: String,
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

/// What a checked read of `rpmdb.sqlite` found.
#[derive(Debug, Default)]
pub struct SqliteRead {
    /// `(hnum, blob)` in hnum order.
    pub records: Vec<(u32, Vec<u8>)>,
    /// Every problem found (SQLite's `quick_check` findings, unreadable rows, a damaged WAL);
    /// empty when the database was read completely.
    pub damage: Vec<String>,
    /// Rows seen but not usable (NULL or non-BLOB blob, hnum out of range).
    pub unreadable: u64,
}

/// Read `(hnum, blob)` from database bytes (plus an optional pending `-wal`); the first problem
/// is an error (see [`read_packages_bytes_checked`]).
pub fn read_packages_bytes(
    db: &[u8],
    wal: Option<&[u8]>,
) -> Result<Vec<(u32, Vec<u8>)>, SqliteError> {
    let r = read_packages_bytes_checked(db, wal)?;
    match r.damage.into_iter().next() {
        Some(what) => Err(SqliteError::Damaged { what }),
        None => Ok(r.records),
    }
}

/// Read `(hnum, blob)` from database bytes (plus an optional pending `-wal`), keeping what is
/// readable. The bytes are written to a private temporary copy, so the WAL is applied there and
/// the caller's image is never touched. Damage: SQLite's `PRAGMA quick_check` findings, a row
/// that fails mid-scan, a row without a BLOB, and a WAL that SQLite would silently drop in part
/// (see [`check_wal`]). `Err` when SQLite cannot open the file or has no `Packages` table.
pub fn read_packages_bytes_checked(
    db: &[u8],
    wal: Option<&[u8]>,
) -> Result<SqliteRead, SqliteError> {
    let io = |source| SqliteError::Io {
        path: "<private copy>".into(),
        source,
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let p = dir.path().join("rpmdb.sqlite");
    std::fs::write(&p, db).map_err(io)?;
    let mut wal_damage = None;
    if let Some(w) = wal {
        wal_damage = check_wal(w).err();
        std::fs::write(dir.path().join("rpmdb.sqlite-wal"), w).map_err(io)?;
    }
    let mut r = read_packages_file(&p)?;
    if let Some(w) = wal_damage {
        r.damage.insert(0, format!("rpmdb.sqlite-wal: {w}"));
    }
    Ok(r)
}

/// Read `(hnum, blob)` from our private copy, opened read-only (SQLite still reads a `-wal` beside it).
fn read_packages_file(p: &Path) -> Result<SqliteRead, SqliteError> {
    let conn = Connection::open_with_flags(
        p,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(p))?;
    let mut out = SqliteRead::default();
    {
        let mut st = conn.prepare("PRAGMA quick_check(20)").map_err(sql(p))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql(p))?;
        for r in rows {
            match r {
                Ok(s) if s == "ok" => {}
                Ok(s) => out.damage.push(format!("quick_check: {s}")),
                Err(e) => out.damage.push(format!("quick_check: {e}")),
            }
        }
    }
    let mut st = conn
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .map_err(sql(p))?;
    let mut rows = st.query([]).map_err(sql(p))?;
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                out.damage.push(format!(
                    "reading Packages failed after {} rows: {e}",
                    out.records.len()
                ));
                break;
            }
        };
        let h = row.get::<_, i64>(0);
        let b = row.get::<_, Vec<u8>>(1);
        match (h.map(u32::try_from), b) {
            (Ok(Ok(h)), Ok(b)) => out.records.push((h, b)),
            (Ok(Ok(h)), Err(e)) => {
                out.damage.push(format!("Packages row hnum {h}: blob: {e}"));
                out.unreadable += 1;
            }
            (Ok(Err(_)), _) | (Err(_), _) => {
                out.damage
                    .push("Packages row with an hnum that is not a package number".into());
                out.unreadable += 1;
            }
        }
    }
    Ok(out)
}

/// Read `(hnum, blob)` from `rpmdb.sqlite` at `path` (and its `-wal` if present), via a private
/// copy; the first problem is an error.
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

/// Check a write-ahead log as SQLite recovers it (sqlite.org/fileformat2.html §4), for the damage
/// SQLite hides: it replays frames while their salts match the WAL header and their cumulative
/// checksums hold, and silently ignores the rest. A torn last transaction (a crash mid-write) is
/// normal, but a complete commit frame that fails its checksum, or a checksum break followed by
/// a later commit frame of the same generation, means committed transactions are being dropped;
/// a WAL with content but a broken header is dropped whole. Returns a description of such damage.
pub fn check_wal(wal: &[u8]) -> Result<(), String> {
    if wal.is_empty() {
        return Ok(());
    }
    let be = |off: usize| -> u32 {
        wal.get(off..off + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .unwrap_or(0)
    };
    if wal.len() < 32 {
        return Err(format!("{} bytes, shorter than a WAL header", wal.len()));
    }
    let magic = be(0);
    if magic & !1 != 0x377f_0682 {
        return Err(format!("bad magic {magic:#010x} at offset 0"));
    }
    let big = magic & 1 == 1;
    let page = be(8) as usize;
    if !(512..=65536).contains(&page) || !page.is_power_of_two() {
        return Err(format!("bad page size {page} at offset 8"));
    }
    let checksum = |data: &[u8], mut s0: u32, mut s1: u32| -> (u32, u32) {
        for c in data.chunks_exact(8) {
            let w = |i: usize| {
                let a = [c[i], c[i + 1], c[i + 2], c[i + 3]];
                if big {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                }
            };
            s0 = s0.wrapping_add(w(0)).wrapping_add(s1);
            s1 = s1.wrapping_add(w(4)).wrapping_add(s0);
        }
        (s0, s1)
    };
    let (mut s0, mut s1) = checksum(&wal[..24], 0, 0);
    if (s0, s1) != (be(24), be(28)) {
        return Err("header checksum mismatch at offset 24: SQLite ignores the whole WAL".into());
    }
    let (salt1, salt2) = (be(16), be(20));
    let frame = 24 + page;
    let mut off = 32;
    let mut n = 0usize;
    while off + frame <= wal.len() {
        let same_gen = be(off + 8) == salt1 && be(off + 12) == salt2;
        let (c0, c1) = checksum(&wal[off..off + 8], s0, s1);
        let (c0, c1) = checksum(&wal[off + 24..off + frame], c0, c1);
        if !same_gen || (c0, c1) != (be(off + 16), be(off + 20)) {
            // A complete commit frame of this generation whose contents fail: a committed
            // transaction is dropped (a torn write leaves a short or stale frame instead).
            if same_gen && be(off + 4) != 0 {
                return Err(format!(
                    "commit frame {n} at offset {off} fails its checksum, so SQLite drops that transaction"
                ));
            }
            // Recovery stops here: is a later commit of this generation lost with it?
            let mut later = off + frame;
            while later + frame <= wal.len() {
                if be(later + 8) == salt1 && be(later + 12) == salt2 && be(later + 4) != 0 {
                    return Err(format!(
                        "frame {n} at offset {off} fails its checksum, so SQLite drops it and the committed frame at offset {later} after it"
                    ));
                }
                later += frame;
            }
            return Ok(());
        }
        (s0, s1) = (c0, c1);
        off += frame;
        n += 1;
    }
    Ok(())
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
