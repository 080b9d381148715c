//! The vetter's side of failing closed on rpm databases: every damaged, garbage, cut, empty or
//! missing-but-expected database becomes a `packages.damaged` entry naming the file and what is
//! wrong, with the readable packages still listed.
mod common;
use common::*;
use rootfs::Tree;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata");

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{rel}")).unwrap()
}

fn packages(t: &Tree) -> vetter::packages::Packages {
    vetter::inspect(t, &vetter::InspectOptions::default())
        .unwrap()
        .packages
}

fn with_db(name: &str, bytes: &[u8]) -> Tree {
    let mut t = Tree::new(meta(0o755));
    file_mode(&mut t, &format!("/var/lib/rpm/{name}"), bytes, 0o644);
    t
}

#[test]
fn cut_garbage_and_empty_databases_are_damaged_not_empty() {
    let bdb = fixture("rpmdb-bdb-go-rpmdb-libuuid/Packages");
    for (name, bytes, format, why) in [
        ("Packages", bdb[..4096].to_vec(), "rpm-bdb", "truncated"),
        ("Packages", Vec::new(), "rpm-bdb", "empty"),
        ("rpmdb.sqlite", vec![7u8; 3000], "rpm-sqlite", "wrong magic"),
        ("Packages.db", b"RpmP\0\0\0\0".to_vec(), "rpm-ndb", "ndb"),
    ] {
        let p = packages(&with_db(name, &bytes));
        assert_eq!(p.damaged.len(), 1, "{name}: {:?}", p.damaged);
        let d = &p.damaged[0];
        assert_eq!(d.path, format!("/var/lib/rpm/{name}"));
        assert_eq!(d.format, format);
        assert!(d.reason.contains(why), "{name}: {}", d.reason);
        assert_eq!(d.records_read, 0);
        assert!(p.list.is_empty());
    }
}

#[test]
fn one_bad_header_is_reported_and_the_rest_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rpmdb.sqlite");
    std::fs::write(
        &file,
        fixture("rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/rpmdb.sqlite"),
    )
    .unwrap();
    let total = packages(&with_db("rpmdb.sqlite", &std::fs::read(&file).unwrap()))
        .list
        .len();
    {
        // Flip one byte of curl's NAME inside its immutable region.
        let conn = rusqlite::Connection::open(&file).unwrap();
        let (hnum, mut blob): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT hnum, blob FROM Packages WHERE hnum IN (SELECT hnum FROM Name WHERE key = 'curl')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let at = blob
            .windows(7)
            .position(|w| w == b"\0curl\0\0" || w.starts_with(b"\0curl\0"))
            .unwrap();
        blob[at + 2] ^= 0x20;
        conn.execute(
            "UPDATE Packages SET blob = ?1 WHERE hnum = ?2",
            rusqlite::params![blob, hnum],
        )
        .unwrap();
    }
    let p = packages(&with_db("rpmdb.sqlite", &std::fs::read(&file).unwrap()));
    assert_eq!(p.list.len(), total - 1);
    assert!(!p.list.iter().any(|x| x.name == "curl"));
    assert_eq!(p.damaged.len(), 1, "{:?}", p.damaged);
    let d = &p.damaged[0];
    assert_eq!(d.path, "/var/lib/rpm/rpmdb.sqlite");
    assert_eq!(d.records_unreadable, Some(1));
    assert_eq!(d.records_read as usize, total - 1 + p.gpg_keys.len());
    assert!(d.reason.contains("digest mismatch"), "{}", d.reason);
}

#[test]
fn a_database_rpm_created_but_holding_nothing_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("rpm")
        .arg("--dbpath")
        .arg(tmp.path())
        .arg("--initdb")
        .output()
        .expect("rpm must be installed");
    assert!(out.status.success());
    let p = packages(&with_db(
        "rpmdb.sqlite",
        &std::fs::read(tmp.path().join("rpmdb.sqlite")).unwrap(),
    ));
    assert_eq!(p.damaged.len(), 1, "{:?}", p.damaged);
    assert!(p.damaged[0].reason.contains("no package records"));
}

#[test]
fn removed_or_unreachable_database_files_are_damaged() {
    // Index files and the BDB environment, but no Packages: the database was removed.
    let mut t = Tree::new(meta(0o755));
    file_mode(&mut t, "/var/lib/rpm/Name", b"x", 0o644);
    file_mode(&mut t, "/var/lib/rpm/__db.001", b"x", 0o644);
    let p = packages(&t);
    assert_eq!(p.damaged.len(), 1, "{:?}", p.damaged);
    assert_eq!(p.damaged[0].path, "/var/lib/rpm");
    assert!(
        p.damaged[0].reason.contains("Name"),
        "{}",
        p.damaged[0].reason
    );
    // A database name that leads nowhere is not "no database".
    let mut t = Tree::new(meta(0o755));
    dir(&mut t, "/var/lib/rpm", 0o755);
    symlink(&mut t, "/var/lib/rpm/Packages", "/nowhere/Packages");
    let p = packages(&t);
    assert_eq!(p.damaged.len(), 1, "{:?}", p.damaged);
    // An image without rpm at all has no damage.
    let mut t = Tree::new(meta(0o755));
    dir(&mut t, "/var/lib/rpm", 0o755);
    assert!(packages(&t).damaged.is_empty());
}
