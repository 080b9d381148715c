//! Failing closed on damaged rpm databases, with the real rpm as the oracle: every fixture
//! database reads completely with its header digests verified; seeded corruptions (truncations,
//! byte flips in headers, pages and overflow chains, WAL damage) give either exactly what
//! `rpm -qa` lists or a damage report naming the file, never fewer packages silently; one bad
//! header among 129 leaves the other 128 listed and the bad one reported, as rpm does.
mod common;
use common::*;
use pkgdb::rpmdb::{self, CheckedRead};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Real fixture databases rpm 4.18 can read: (directory, file, extra rpm options).
const DBS: &[(&str, &str, &[&str])] = &[
    (
        "rpmdb-bdb-go-rpmdb-libuuid",
        "Packages",
        &["--define", "_db_backend bdb_ro"],
    ),
    (
        "rpmdb-bdb-syft-dive",
        "Packages",
        &["--define", "_db_backend bdb_ro"],
    ),
    ("rpmdb-sqlite-rpm-upstream-tests", "rpmdb.sqlite", &[]),
    ("rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0", "rpmdb.sqlite", &[]),
];

fn mem(files: &[(&str, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(n, b)| (n.to_string(), b.clone()))
        .collect()
}

fn nvrs(r: &CheckedRead) -> Vec<String> {
    let mut v: Vec<String> = r
        .packages
        .iter()
        .map(|p| format!("{}-{}-{}", p.name, p.version, p.release))
        .collect();
    v.sort();
    v
}

/// The real `rpm -qa` of the files in a fresh database directory, sorted.
fn rpm_qa(dir: &Path, files: &[(&str, Vec<u8>)], extra: &[&str]) -> Vec<String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (n, b) in files {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(dir)
        .args(extra)
        .args(["-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}\n"])
        .output()
        .expect("rpm must be installed (.ci/debian-packages)");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_reads_completely_with_digests_verified() {
    for (dir, file, _) in
        DBS.iter()
            .chain(&[("rpmdb-ndb-go-rpmdb-sle15-bci", "Packages.db", &[][..])])
    {
        let bytes = std::fs::read(testdata(dir).join(file)).unwrap();
        let r = rpmdb::read_packages_checked(&mem(&[(file, bytes.clone())])).unwrap();
        assert!(r.is_complete(), "{dir}: {:?}", r.damage);
        assert!(!r.packages.is_empty());
        // The digests are there and are checked (over the original blobs).
        let (_, blobs) = rpmdb::read_blobs(&mem(&[(file, bytes)])).unwrap();
        let checked = blobs
            .iter()
            .filter(|(_, b)| {
                let h = pkgdb::rpm::Header::parse(b).unwrap();
                let d = h.verify_digests(b).unwrap();
                d.sha1 || d.sha256
            })
            .count();
        assert!(
            checked * 2 > blobs.len(),
            "{dir}: {checked}/{}",
            blobs.len()
        );
    }
}

/// Flip one character of `needle` (a NUL-delimited string) inside the record's blob.
fn tamper_string(blob: &mut [u8], needle: &str) -> bool {
    let pat: Vec<u8> = [&[0u8][..], needle.as_bytes(), &[0]].concat();
    let Some(at) = blob.windows(pat.len()).position(|w| w == pat) else {
        return false;
    };
    let i = at + 1 + needle.len() / 2;
    blob[i] = if blob[i] == b'T' { b'U' } else { b'T' };
    true
}

#[test]
fn one_bad_header_among_many_lists_the_others_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = testdata("rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/rpmdb.sqlite");
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let file = db.join("rpmdb.sqlite");
    std::fs::copy(&src, &file).unwrap();
    let before = pkgdb::read_rpmdb(&db).unwrap();
    // Change curl's VERSION inside its immutable region, in place, as a bad disk would.
    let curl = before.iter().find(|p| p.name == "curl").unwrap();
    let hnum = curl.db_id.unwrap();
    {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let mut blob: Vec<u8> = conn
            .query_row("SELECT blob FROM Packages WHERE hnum = ?1", [hnum], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(tamper_string(&mut blob, &curl.version));
        conn.execute(
            "UPDATE Packages SET blob = ?1 WHERE hnum = ?2",
            rusqlite::params![blob, hnum],
        )
        .unwrap();
    }
    let bytes = std::fs::read(&file).unwrap();
    let r = rpmdb::read_packages_checked(&mem(&[("rpmdb.sqlite", bytes.clone())])).unwrap();
    assert_eq!(r.packages.len(), before.len() - 1);
    assert_eq!(r.records_unreadable, 1);
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.damage[0].record, Some(hnum));
    assert!(
        r.damage[0].what.contains("digest mismatch"),
        "{}",
        r.damage[0]
    );
    assert!(!r.packages.iter().any(|p| p.name == "curl"));
    // The real rpm skips the same header and lists the same 128.
    let want = rpm_qa(&tmp.path().join("oracle"), &[("rpmdb.sqlite", bytes)], &[]);
    assert_eq!(nvrs(&r), want);
    // Strict reads (the builder's) refuse the database, naming file and record.
    let e = pkgdb::read_rpmdb(&db).unwrap_err().to_string();
    assert!(
        e.contains("rpmdb.sqlite") && e.contains(&format!("record {hnum}")),
        "{e}"
    );
}

/// Truncations at page boundaries and elsewhere, byte flips anywhere, in header blobs and
/// (BDB) in page headers and overflow pages.
fn corruptions(rng: &mut Rng, base: &[u8], file: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let len = base.len();
    for cut in [0, 100, 4096, len / 2, len - 4096 + 13, len - 1] {
        if cut < len {
            out.push((format!("truncated at {cut}"), base[..cut].to_vec()));
        }
    }
    for _ in 0..14 {
        let mut b = base.to_vec();
        let i = rng.below(len as u64) as usize;
        b[i] ^= 1 << rng.below(8);
        out.push((format!("bit flip at {i}"), b));
    }
    // Flips inside header blobs: find the index entries' data by the header magic-free intro.
    let recs = match file {
        "Packages" => pkgdb::rpmdb::bdb::read_packages(base).unwrap(),
        _ => pkgdb::rpmdb::sqlite::read_packages_bytes(base, None).unwrap(),
    };
    for (_, blob) in recs.iter().take(4) {
        // Where the blob lies in the file (inline BDB items and small sqlite rows are contiguous).
        let probe = &blob[blob.len() / 2..blob.len() / 2 + 32.min(blob.len() / 2)];
        if let Some(at) = base.windows(probe.len()).position(|w| w == probe) {
            let mut b = base.to_vec();
            b[at + probe.len() / 2] ^= 0x20;
            out.push((format!("header byte flip at {}", at + probe.len() / 2), b));
        }
    }
    if file == "Packages" {
        for p in 1..len / 4096 {
            for (what, off) in [("page number", 8), ("next page", 16), ("page type", 25)] {
                let mut b = base.to_vec();
                b[p * 4096 + off] ^= 0x04;
                out.push((format!("page {p} {what}"), b));
            }
            if base[p * 4096 + 25] == 7 {
                let mut b = base.to_vec();
                b[p * 4096 + 22] ^= 0x01; // overflow bytes used
                out.push((format!("overflow page {p} length"), b));
            }
        }
    }
    out
}

#[test]
fn seeded_corruptions_give_rpms_answer_or_a_damage_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_0001);
    let mut damaged = 0;
    let mut agreed = 0;
    for (dir, file, extra) in DBS {
        let base = std::fs::read(testdata(dir).join(file)).unwrap();
        let full = rpmdb::read_packages_checked(&mem(&[(file, base.clone())])).unwrap();
        let full_list = nvrs(&full);
        let cases = corruptions(&mut rng, &base, file);
        // The 3.6 MB database: every truncation and header flip, a few random flips (speed).
        let big = base.len() > 1 << 20;
        let mut flips = 0;
        let cases = cases.into_iter().filter(|(what, _)| {
            flips += what.starts_with("bit flip") as u32;
            !big || !what.starts_with("bit flip") || flips <= 4
        });
        for (what, bytes) in cases {
            let r = match rpmdb::read_packages_checked(&mem(&[(file, bytes.clone())])) {
                Ok(r) => r,
                Err(e) => panic!("{dir} {what}: not even a damage report: {e}"),
            };
            if !r.is_complete() {
                damaged += 1;
                assert_eq!(r.file, *file);
                continue;
            }
            // Read "completely": it must be exactly rpm's answer and lose nothing.
            let got = nvrs(&r);
            let want = rpm_qa(&tmp.path().join("q"), &[(file, bytes)], extra);
            assert_eq!(got, want, "{dir} {what}: differs from rpm -qa");
            assert_eq!(
                got.len(),
                full_list.len(),
                "{dir} {what}: fewer packages, silently"
            );
            agreed += 1;
        }
    }
    eprintln!(
        "corruptions: {damaged} reported damaged, {agreed} read completely and equal to rpm -qa"
    );
    assert!(
        damaged > 20 && agreed > 5,
        "damaged {damaged}, agreed {agreed}"
    );
}

#[test]
fn ndb_checksums_and_truncation_are_damage() {
    let base = std::fs::read(testdata("rpmdb-ndb-go-rpmdb-sle15-bci/Packages.db")).unwrap();
    let all = pkgdb::rpmdb::ndb::read_packages_checked(&base).unwrap();
    assert!(all.damage.is_empty());
    let n = all.records.len();
    // A flipped byte inside one blob fails its adler32: that record only.
    let (idx, blob) = &all.records[3];
    let at = base.windows(64).position(|w| w == &blob[100..164]).unwrap();
    let mut b = base.clone();
    b[at + 10] ^= 0x40;
    let r = pkgdb::rpmdb::ndb::read_packages_checked(&b).unwrap();
    assert_eq!(r.records.len(), n - 1);
    assert_eq!(r.unreadable, 1);
    assert!(
        r.damage[0].to_string().contains(&format!("package {idx}"))
            && r.damage[0].to_string().contains("adler32"),
        "{:?}",
        r.damage
    );
    // Cut the file: the blobs beyond the end are damage, the others still read.
    let cut = &base[..base.len() / 2];
    let r = rpmdb::read_packages_checked(&mem(&[("Packages.db", cut.to_vec())])).unwrap();
    assert!(!r.is_complete() && !r.packages.is_empty() && r.packages.len() < n);
    assert!(
        r.damage.iter().any(|d| d.what.contains("truncated")),
        "{:?}",
        r.damage
    );
}

#[test]
fn empty_garbage_and_cut_databases_are_damage_not_zero_packages() {
    let bdb = std::fs::read(testdata("rpmdb-bdb-go-rpmdb-libuuid/Packages")).unwrap();
    let sql = std::fs::read(testdata("rpmdb-sqlite-rpm-upstream-tests/rpmdb.sqlite")).unwrap();
    for (file, bytes) in [
        ("Packages", Vec::new()),
        ("Packages", vec![0x55; 8192]),
        ("Packages", bdb[..4096].to_vec()),
        ("rpmdb.sqlite", Vec::new()),
        ("rpmdb.sqlite", b"SQLite format 3\0garbage".to_vec()),
        ("rpmdb.sqlite", sql[..sql.len() / 3].to_vec()),
        ("Packages.db", b"RpmP".to_vec()),
    ] {
        let r = rpmdb::read_packages_checked(&mem(&[(file, bytes.clone())])).unwrap();
        assert_eq!(r.file, file);
        assert!(
            !r.is_complete(),
            "{file} ({} bytes): no damage",
            bytes.len()
        );
        let e = rpmdb::read_packages(&mem(&[(file, bytes)])).unwrap_err();
        assert!(e.to_string().contains(file), "{e}");
    }
    // The BDB cut at 4 KiB names the truncation.
    let r = rpmdb::read_packages_checked(&mem(&[("Packages", bdb[..4096].to_vec())])).unwrap();
    assert!(r.damage[0].what.contains("truncated"), "{}", r.damage[0]);
}

#[test]
fn damaged_wal_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("rpmdb.sqlite");
    std::fs::copy(
        testdata("rpmdb-sqlite-rpm-upstream-tests/rpmdb.sqlite"),
        &db,
    )
    .unwrap();
    // A committed change left in the WAL (the connection is still open when we copy).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let removed = conn
        .execute(
            "DELETE FROM Packages WHERE hnum = (SELECT MAX(hnum) FROM Packages)",
            [],
        )
        .unwrap();
    assert_eq!(removed, 1);
    let main = std::fs::read(&db).unwrap();
    let wal = std::fs::read(tmp.path().join("rpmdb.sqlite-wal")).unwrap();
    drop(conn);
    assert!(wal.len() > 32);
    let read = |wal: &[u8]| {
        rpmdb::read_packages_checked(&mem(&[
            ("rpmdb.sqlite", main.clone()),
            ("rpmdb.sqlite-wal", wal.to_vec()),
        ]))
        .unwrap()
    };
    let good = read(&wal);
    assert!(good.is_complete(), "{:?}", good.damage);
    assert_eq!(good.packages.len(), 2, "the WAL's delete applies");
    // Damage in the first frame: SQLite would silently drop the delete and show 3 packages.
    let mut bad = wal.clone();
    bad[32 + 24 + 100] ^= 0xff;
    let r = read(&bad);
    assert!(!r.is_complete());
    assert!(
        r.damage[0].what.contains("rpmdb.sqlite-wal"),
        "{}",
        r.damage[0]
    );
    // A broken WAL header drops the whole log: damage too.
    let mut bad = wal.clone();
    bad[16] ^= 1;
    assert!(!read(&bad).is_complete());
}

#[test]
fn absurd_bdb_metadata_is_bounded_damage() {
    let mut b = std::fs::read(testdata("rpmdb-bdb-syft-dive/Packages")).unwrap();
    // last_pgno and max_bucket near 2^32 in a 4-page file: no long walk, no big allocation.
    b[32..36].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    b[72..76].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let r = pkgdb::rpmdb::bdb::read_packages_checked(&b).unwrap();
    assert!(r.damage.len() >= 2, "{:?}", r.damage);
    assert_eq!(r.records.len(), 1, "the one package is still read");
}
