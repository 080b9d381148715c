//! rpm databases from real systems: exact agreement with each fixture's expected CSVs.
mod common;
use common::*;
use pkgdb::rpm::{Header, Package};

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn check_packages(dir: &str) -> Vec<Package> {
    let pkgs = pkgdb::read_rpmdb(&testdata(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let want = csv_maps(&testdata(&format!("{dir}/expected.csv")));
    assert_eq!(pkgs.len(), want.len(), "{dir}: package count");
    for (p, w) in pkgs.iter().zip(&want) {
        let ctx = format!("{dir}: {}", p.nevra());
        assert_eq!(
            p.epoch.map(|e| e.to_string()).unwrap_or_default(),
            w["epoch"],
            "{ctx} epoch"
        );
        assert_eq!(p.name, w["name"], "{ctx}");
        assert_eq!(p.version, w["version"], "{ctx}");
        assert_eq!(p.release, w["release"], "{ctx}");
        assert_eq!(opt(&p.arch), w["arch"], "{ctx}");
        assert_eq!(opt(&p.source_rpm), w["sourcerpm"], "{ctx}");
        assert_eq!(
            p.size.map(|s| s.to_string()).unwrap_or_default(),
            w["size"],
            "{ctx} size"
        );
        assert_eq!(opt(&p.license), w["license"], "{ctx}");
        assert_eq!(opt(&p.vendor), w["vendor"], "{ctx}");
        assert_eq!(opt(&p.modularity_label), w["modularitylabel"], "{ctx}");
        assert_eq!(opt(&p.summary), w["summary"], "{ctx}");
        assert_eq!(opt(&p.sigmd5), w["sigmd5"], "{ctx}");
        assert_eq!(p.is_gpg_pubkey, p.name == "gpg-pubkey");
        // Every header re-serializes to the exact bytes it came from.
        let again = Header::parse(&p.header.to_bytes()).unwrap();
        assert_eq!(again, p.header, "{ctx}: serialize/parse round trip");
    }
    pkgs
}

fn check_files(p: &Package, csv: &str) {
    let files = p.files().unwrap();
    let want = csv_maps(&testdata(csv));
    assert_eq!(files.len(), want.len(), "{csv}");
    for (f, w) in files.iter().zip(&want) {
        assert_eq!(f.path, w["path"]);
        assert_eq!(format!("0{:o}", f.mode), w["mode_octal"], "{}", f.path);
        assert_eq!(opt(&f.digest), w["digest"], "{}", f.path);
        assert_eq!(f.size.to_string(), w["size"], "{}", f.path);
        assert_eq!(opt(&f.user), w["user"], "{}", f.path);
        assert_eq!(opt(&f.group), w["group"], "{}", f.path);
        assert_eq!(
            f.flags.map(|x| x.to_string()).unwrap_or_default(),
            w["fileflags"],
            "{}",
            f.path
        );
        if f.digest.is_some() {
            assert_eq!(f.digest_algo, pkgdb::rpm::DigestAlgo::Sha256);
        }
    }
}

#[test]
fn bdb_libuuid() {
    let pkgs = check_packages("rpmdb-bdb-go-rpmdb-libuuid");
    assert_eq!(pkgs[0].install_time, Some(1696444673));
    check_files(
        &pkgs[0],
        "rpmdb-bdb-go-rpmdb-libuuid/expected_files_libuuid.csv",
    );
    let links: Vec<_> = pkgs[0]
        .files()
        .unwrap()
        .into_iter()
        .filter_map(|f| f.link_target)
        .collect();
    assert!(links.contains(&"libuuid.so.1.3.0".to_string()), "{links:?}");
}

#[test]
fn bdb_dive() {
    let pkgs = check_packages("rpmdb-bdb-syft-dive");
    check_files(&pkgs[0], "rpmdb-bdb-syft-dive/expected_files_dive.csv");
}

#[test]
fn ndb_sle15() {
    check_packages("rpmdb-ndb-go-rpmdb-sle15-bci");
}

#[test]
fn sqlite_mariner() {
    let pkgs = check_packages("rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0");
    let curl = pkgs.iter().find(|p| p.name == "curl").unwrap();
    assert_eq!(curl.install_time, Some(1643279454));
    check_files(
        curl,
        "rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/expected_files_curl.csv",
    );
    // Every file list in the database is consistent.
    for p in &pkgs {
        p.files().unwrap_or_else(|e| panic!("{}: {e}", p.name));
    }
}

#[test]
fn sqlite_rpm_upstream_with_gpg_pubkey() {
    let pkgs = check_packages("rpmdb-sqlite-rpm-upstream-tests");
    assert!(pkgs[2].is_gpg_pubkey);
    assert!(!pkgs[0].is_gpg_pubkey);
    let hl = pkgs[1].files().unwrap();
    assert!(hl.iter().any(|f| f.path == "/foo/hello"), "{hl:?}");
}

#[test]
fn malformed_header_blob_reads_name_but_not_files() {
    let blob = std::fs::read(testdata("rpm-header-blob-go-rpmdb/blob.bin")).unwrap();
    let h = Header::parse(&blob).unwrap();
    let p = Package::from_header(h).unwrap();
    assert_eq!(p.nevra(), "publicsuffix-list-dafsa-20210518-2.fc35.noarch");
    assert_eq!(p.epoch, None);
    assert_eq!(
        p.source_rpm.as_deref(),
        Some("publicsuffix-list-20210518-2.fc35.src.rpm")
    );
    assert_eq!(p.size, Some(68815));
    assert_eq!(p.license.as_deref(), Some("MPLv2.0"));
    assert_eq!(p.vendor.as_deref(), Some("Fedora Project"));
    let err = p.files().unwrap_err();
    assert!(
        matches!(
            err,
            pkgdb::rpm::FileListError::DirIndexOutOfRange {
                index: 4,
                dirs: 4,
                file: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        p.header.to_bytes(),
        blob,
        "blob re-serializes byte for byte"
    );
}

#[test]
fn database_found_inside_a_root_and_from_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("usr/lib/sysimage/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        pkgdb::read_rpmdb_in_root(tmp.path()),
        Err(pkgdb::Error::NoDatabase)
    ));
    std::fs::copy(
        testdata("rpmdb-ndb-go-rpmdb-sle15-bci/Packages.db"),
        dir.join("Packages.db"),
    )
    .unwrap();
    assert_eq!(pkgdb::read_rpmdb_in_root(tmp.path()).unwrap().len(), 35);
    let mut mem = std::collections::HashMap::new();
    mem.insert(
        "Packages".to_string(),
        std::fs::read(testdata("rpmdb-bdb-syft-dive/Packages")).unwrap(),
    );
    let (backend, _) = pkgdb::rpmdb::detect(&mem).unwrap();
    assert_eq!(backend, pkgdb::rpmdb::Backend::Bdb);
    assert_eq!(pkgdb::rpmdb::read_packages(&mem).unwrap()[0].name, "dive");
}
