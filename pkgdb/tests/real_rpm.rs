//! Packages and databases made in the test by the real rpm, rpmbuild and Berkeley DB tools.
mod common;
use common::*;
use pkgdb::rpm::{Header, RpmPackage};
use pkgdb::rpmdb::{bdb, sqlite};
use std::io::Read;
use std::path::{Path, PathBuf};

const SPEC: &str = r#"Name: NAME
Version: 1.2
Release: 3
Epoch: EPOCH
Summary: wafer test package NAME
License: MIT
BuildArch: noarch
%description
test
%install
mkdir -p %{buildroot}/etc/NAME %{buildroot}/usr/bin %{buildroot}/usr/share/NAME
echo hello > %{buildroot}/etc/NAME/conf
printf '#!/bin/sh\necho hi\n' > %{buildroot}/usr/bin/NAME
ln -s NAME %{buildroot}/usr/bin/NAME-link
echo ping > %{buildroot}/usr/bin/NAME-ping
for i in $(seq 1 FILES); do echo "data $i" > %{buildroot}/usr/share/NAME/file-with-a-long-name-$i.txt; done
%files
%config(noreplace) /etc/NAME/conf
%dir /etc/NAME
%attr(0755,root,root) /usr/bin/NAME
/usr/bin/NAME-link
%caps(cap_net_raw=ep) %attr(4755,root,root) /usr/bin/NAME-ping
/usr/share/NAME
"#;

/// Build a noarch rpm with `rpmbuild`; `files` extra files make the header large.
fn build(top: &Path, name: &str, epoch: u32, files: u32, payload: &str) -> PathBuf {
    let spec = SPEC
        .replace("NAME", name)
        .replace("EPOCH", &epoch.to_string())
        .replace("FILES", &files.to_string());
    rpmbuild_spec(top, name, &spec, payload)
}

fn rpm_qa(dbpath: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--dbpath", dbpath.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-qa",
        "--qf",
        "%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH} %{SIGMD5}\\n",
    ]);
    let mut v: Vec<String> = run("rpm", &args).lines().map(String::from).collect();
    v.sort();
    v
}

fn ours(dbpath: &Path) -> Vec<String> {
    let mut v: Vec<String> = pkgdb::read_rpmdb(dbpath)
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}-{}:{}-{}.{} {}",
                p.name,
                p.epoch.unwrap_or(0),
                p.version,
                p.release,
                p.arch.as_deref().unwrap_or("(none)"),
                p.sigmd5.as_deref().unwrap_or("(none)")
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn rpm_files_every_compressor() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, payload) in [
        "w6.gzdio",
        "w9.bzdio",
        "w2.xzdio",
        "w2.lzdio",
        "w3.zstdio",
        "w0.ufdio",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("pay{i}");
        let path = build(tmp.path(), &name, 0, 3, payload);
        let mut pkg = RpmPackage::open(std::fs::File::open(&path).unwrap())
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        let p = pkg.package().unwrap();
        assert_eq!(p.nevra(), format!("{name}-1.2-3.noarch"));
        // The header's file list agrees with `rpm -qp`.
        let want = run(
            "rpm",
            &[
                "-qp",
                "--qf",
                "[%{FILENAMES} %{FILEMODES:octal} %{FILEFLAGS} %{FILECAPS}\\n]",
                path.to_str().unwrap(),
            ],
        );
        let got: String = pkg
            .files()
            .iter()
            .map(|f| {
                format!(
                    "{} {:o} {} {}\n",
                    f.path,
                    f.mode,
                    f.flags.unwrap_or(0),
                    f.caps.clone().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(got, want, "{payload}");
        let ping = pkg
            .files()
            .iter()
            .find(|f| f.path.ends_with("-ping"))
            .unwrap();
        assert_eq!(ping.caps.as_deref(), Some("cap_net_raw=ep"));
        assert_eq!(ping.mode & 0o7777, 0o4755);
        let conf = pkg
            .files()
            .iter()
            .find(|f| f.path.ends_with("/conf"))
            .unwrap();
        assert!(conf.is_config());
        // Stream the payload.
        let mut seen = Vec::new();
        while let Some(mut e) = pkg
            .next_entry()
            .unwrap_or_else(|e| panic!("{payload}: {e}"))
        {
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            if e.path.ends_with("/conf") {
                assert_eq!(body, b"hello\n");
                assert!(e.file.as_ref().unwrap().is_config());
            }
            if e.path.ends_with("-link") {
                assert_eq!(body, name.as_bytes(), "symlink body is its target");
                assert_eq!(
                    e.file.as_ref().unwrap().link_target.as_deref(),
                    Some(name.as_str())
                );
            }
            if let Some(f) = &e.file {
                if f.mode & 0o170000 == 0o100000 {
                    use sha2::Digest;
                    assert_eq!(
                        Some(hex::encode(sha2::Sha256::digest(&body))),
                        f.digest,
                        "{}",
                        e.path
                    );
                }
            }
            seen.push(e.path.clone());
        }
        let mut all: Vec<String> = pkg.files().iter().map(|f| f.path.clone()).collect();
        all.sort();
        seen.sort();
        assert_eq!(seen, all, "{payload}: payload lists every file");
    }
}

/// A database made by the real rpm (sqlite backend), read by us.
fn real_sqlite_db(tmp: &Path) -> (PathBuf, Vec<PathBuf>) {
    let db = tmp.join("db");
    std::fs::create_dir_all(&db).unwrap();
    run("rpm", &["--dbpath", db.to_str().unwrap(), "--initdb"]);
    let mut rpms = Vec::new();
    for (i, (name, files)) in [("alpha", 2u32), ("bravo", 300), ("charlie", 40)]
        .iter()
        .enumerate()
    {
        let p = build(tmp, name, i as u32, *files, "w6.gzdio");
        run(
            "rpm",
            &[
                "--dbpath",
                db.to_str().unwrap(),
                "-i",
                "--nodeps",
                "--justdb",
                "--noscripts",
                p.to_str().unwrap(),
            ],
        );
        rpms.push(p);
    }
    (db, rpms)
}

#[test]
fn sqlite_made_by_rpm_matches_rpm_qa() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = real_sqlite_db(tmp.path());
    let want = rpm_qa(&db, &[]);
    assert_eq!(want.len(), 3);
    assert_eq!(ours(&db), want);
    // A pending WAL: commit a change with autocheckpoint off and never close the connection.
    {
        let conn = rusqlite::Connection::open(db.join("rpmdb.sqlite")).unwrap();
        conn.execute_batch("PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint=0; DELETE FROM Packages WHERE hnum = 2;").unwrap();
        std::mem::forget(conn);
    }
    assert!(
        std::fs::metadata(db.join("rpmdb.sqlite-wal"))
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "WAL pending"
    );
    let before = std::fs::read(db.join("rpmdb.sqlite")).unwrap();
    let now = ours(&db);
    assert_eq!(now.len(), 2, "the pending WAL's delete is seen: {now:?}");
    assert_eq!(
        std::fs::read(db.join("rpmdb.sqlite")).unwrap(),
        before,
        "the database file is never written"
    );
}

#[test]
fn sqlite_add_package_seen_by_rpm() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = real_sqlite_db(tmp.path());
    let p = build(tmp.path(), "delta", 7, 5, "w2.xzdio");
    let pkg = RpmPackage::open(std::fs::File::open(&p).unwrap()).unwrap();
    let h = pkg.header_for_install(1_700_000_000, 1_700_000_000);
    let hnum = sqlite::add_package(&db.join("rpmdb.sqlite"), &h).unwrap();
    assert_eq!(hnum, 4);
    let qa = rpm_qa(&db, &[]);
    assert_eq!(qa.len(), 4);
    assert_eq!(ours(&db), qa);
    assert!(
        qa.iter().any(|l| l.starts_with("delta-7:1.2-3.noarch ")),
        "{qa:?}"
    );
    let dbp = db.to_str().unwrap();
    assert_eq!(
        run("rpm", &["--dbpath", dbp, "-q", "delta"]).trim(),
        "delta-1.2-3.noarch"
    );
    assert_eq!(
        run("rpm", &["--dbpath", dbp, "-qf", "/usr/bin/delta-ping"]).trim(),
        "delta-1.2-3.noarch"
    );
    assert_eq!(
        run("rpm", &["--dbpath", dbp, "-q", "--whatprovides", "delta"]).trim(),
        "delta-1.2-3.noarch"
    );
    // rpm verifies the header it reads back (the digests in the immutable region still match).
    let info = run("rpm", &["--dbpath", dbp, "-qi", "delta"]);
    assert!(info.contains("Install Date"), "{info}");
    // The same into a database we created ourselves.
    let own = tmp.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    sqlite::create(&own.join("rpmdb.sqlite")).unwrap();
    sqlite::add_package(&own.join("rpmdb.sqlite"), &h).unwrap();
    assert_eq!(
        run(
            "rpm",
            &["--dbpath", own.to_str().unwrap(), "-qf", "/etc/delta/conf"]
        )
        .trim(),
        "delta-1.2-3.noarch"
    );
}

fn blobs(db: &Path) -> Vec<(u32, Vec<u8>)> {
    sqlite::read_packages(&db.join("rpmdb.sqlite")).unwrap()
}

#[test]
fn bdb_written_by_us_passes_db_verify_and_rpm() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = real_sqlite_db(tmp.path());
    let want = rpm_qa(&db, &[]);
    let out = tmp.path().join("bdb");
    std::fs::create_dir_all(&out).unwrap();
    let file = bdb::write_packages(&blobs(&db)).unwrap();
    std::fs::write(out.join("Packages"), &file).unwrap();
    run("db_verify", &["-q", out.join("Packages").to_str().unwrap()]);
    assert_eq!(rpm_qa(&out, &["--define", "_db_backend bdb_ro"]), want);
    assert_eq!(ours(&out), want);
    // Many records: several buckets, chained bucket pages, overflow chains.
    let mut many = Vec::new();
    let base = blobs(&db);
    for i in 0..200u32 {
        let (_, b) = &base[(i % 3) as usize];
        many.push((i + 1, b.clone()));
    }
    let file = bdb::write_packages(&many).unwrap();
    std::fs::write(out.join("Packages"), &file).unwrap();
    run("db_verify", &["-q", out.join("Packages").to_str().unwrap()]);
    assert_eq!(rpm_qa(&out, &["--define", "_db_backend bdb_ro"]).len(), 200);
    let got = bdb::read_packages(&file).unwrap();
    assert_eq!(got, many);
    // Register one more package into a BDB file made by db_load (big-endian) and ask rpm.
    let p = build(tmp.path(), "echo", 0, 2, "w2.xzdio");
    let pkg = RpmPackage::open(std::fs::File::open(&p).unwrap()).unwrap();
    let d = tmp.path().join("dump.txt");
    std::fs::write(&d, dump(&blobs(&db), true)).unwrap();
    let be = tmp.path().join("be");
    std::fs::create_dir_all(&be).unwrap();
    run(
        "db_load",
        &[
            "-c",
            "db_lorder=4321",
            "-f",
            d.to_str().unwrap(),
            be.join("Packages").to_str().unwrap(),
        ],
    );
    let (file, n) = bdb::add_package(
        &std::fs::read(be.join("Packages")).unwrap(),
        &pkg.header_for_install(1, 1),
    )
    .unwrap();
    assert_eq!(n, 4);
    std::fs::write(out.join("Packages"), &file).unwrap();
    run("db_verify", &["-q", out.join("Packages").to_str().unwrap()]);
    let qa = rpm_qa(&out, &["--define", "_db_backend bdb_ro"]);
    assert_eq!(qa.len(), 4);
    assert!(
        qa.iter().any(|l| l.starts_with("echo-0:1.2-3.noarch")),
        "{qa:?}"
    );
    assert_eq!(ours(&out), qa);
}

/// `db_load` dump text for `(key, value)` records (keys as 4-byte host-order package numbers).
fn dump(records: &[(u32, Vec<u8>)], big: bool) -> String {
    let mut s = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    let key = |n: u32| {
        hex::encode(if big {
            n.to_be_bytes()
        } else {
            n.to_le_bytes()
        })
    };
    let max = records.iter().map(|r| r.0).max().unwrap_or(0) + 1;
    s.push_str(&format!(" {}\n {}\n", key(0), key(max)));
    for (n, b) in records {
        s.push_str(&format!(" {}\n {}\n", key(*n), hex::encode(b)));
    }
    s.push_str("DATA=END\n");
    s
}

#[test]
fn bdb_made_by_db_load_both_byte_orders() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = real_sqlite_db(tmp.path());
    let want = rpm_qa(&db, &[]);
    for (big, lorder) in [(false, "db_lorder=1234"), (true, "db_lorder=4321")] {
        let out = tmp.path().join(format!("load-{lorder}"));
        std::fs::create_dir_all(&out).unwrap();
        let d = out.join("dump.txt");
        std::fs::write(&d, dump(&blobs(&db), big)).unwrap();
        run(
            "db_load",
            &[
                "-c",
                lorder,
                "-f",
                d.to_str().unwrap(),
                out.join("Packages").to_str().unwrap(),
            ],
        );
        std::fs::remove_file(&d).unwrap();
        let bytes = std::fs::read(out.join("Packages")).unwrap();
        assert_eq!(bytes[12] == 0, big, "byte order {lorder} really used");
        assert_eq!(ours(&out), want, "{lorder}");
        if !big {
            assert_eq!(rpm_qa(&out, &["--define", "_db_backend bdb_ro"]), want);
        }
    }
}

#[test]
fn header_serialization_is_accepted_by_rpm() {
    // Our serializer reproduces rpm's own database blobs byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = real_sqlite_db(tmp.path());
    for (_, b) in blobs(&db) {
        assert_eq!(Header::parse(&b).unwrap().to_bytes(), b);
    }
}

/// rpm's stripped cpio (`07070X`, used for packages with files ≥ 4 GiB): rebuild a real
/// package's payload in that format (data from the original payload, metadata only in the
/// header, as rpm writes it) and read it back.
#[test]
fn stripped_cpio_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let path = build(tmp.path(), "strip", 0, 3, "w0.ufdio");
    let bytes = std::fs::read(&path).unwrap();
    // Locate the payload: lead, signature header (padded to 8), main header.
    let (_, sig_len) = Header::parse_with_magic(&bytes[96..]).unwrap();
    let hdr_at = 96 + sig_len + (8 - sig_len % 8) % 8;
    let (_, hdr_len) = Header::parse_with_magic(&bytes[hdr_at..]).unwrap();
    let prefix = &bytes[..hdr_at + hdr_len];
    // Original contents by path.
    let mut orig = std::collections::HashMap::new();
    let mut pkg = RpmPackage::open(std::io::Cursor::new(bytes.clone())).unwrap();
    let files = pkg.files().to_vec();
    while let Some(mut e) = pkg.next_entry().unwrap() {
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        orig.insert(e.path.clone(), body);
    }
    let mut payload = Vec::new();
    for (i, f) in files.iter().enumerate() {
        payload.extend_from_slice(format!("07070X{i:08x}").as_bytes());
        payload.extend_from_slice(&[0, 0]);
        let body = &orig[&f.path];
        payload.extend_from_slice(body);
        while payload.len() % 4 != 0 {
            payload.push(0);
        }
    }
    let name = b"TRAILER!!!\0";
    payload.extend_from_slice(
        format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            name.len(),
            0
        )
        .as_bytes(),
    );
    payload.extend_from_slice(name);
    while payload.len() % 4 != 0 {
        payload.push(0);
    }
    let mut stripped = prefix.to_vec();
    stripped.extend_from_slice(&payload);
    let mut pkg = RpmPackage::open(std::io::Cursor::new(stripped)).unwrap();
    let mut n = 0;
    while let Some(mut e) = pkg.next_entry().unwrap() {
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        assert_eq!(&body, &orig[&e.path], "{}", e.path);
        assert!(e.file.is_some());
        n += 1;
    }
    assert_eq!(n, files.len());
}
