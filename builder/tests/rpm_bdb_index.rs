//! The rpm step on a Berkeley DB base regenerates rpm's index files beside `Packages`: the
//! real rpm (4.18 reading BDB through `_db_backend bdb_ro`, which uses the indexes) then finds
//! the installed package by name and by file, and db_verify accepts every index.

mod common;

use std::path::Path;
use std::process::Command;

use builder::{build, BuildOptions, NoProgress};
use common::*;

const BDB_PACKAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/rpmdb-bdb-go-rpmdb-libuuid/Packages"
);
const RECIPE: &str = "\n[[step]]\ntype = \"rpm\"\npackages = [\"wafer-demo.rpm\"]\n";

/// `rpm --dbpath DB --define '_db_backend bdb_ro' ARGS`: (success, stdout).
fn rpm_ro(db: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(db)
        .arg("--define")
        .arg("_db_backend bdb_ro")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Copy every file of the image's /var/lib/rpm out with debugfs; returns the names.
fn dump_rpmdb(img: &Path, to: &Path) -> Vec<String> {
    std::fs::create_dir_all(to).unwrap();
    let ls = debugfs(img, "ls -p /var/lib/rpm");
    let mut names = Vec::new();
    for line in ls.lines() {
        // /inode/mode/uid/gid/name/size/
        let f: Vec<&str> = line.split('/').collect();
        if f.len() < 7 || f[5] == "." || f[5] == ".." || f[5].is_empty() {
            continue;
        }
        assert!(f[2].starts_with("100"), "regular file: {line}");
        let name = f[5].to_string();
        debugfs(
            img,
            &format!("dump /var/lib/rpm/{name} {}", to.join(&name).display()),
        );
        names.push(name);
    }
    names.sort();
    names
}

/// Base: the libuuid BDB fixture plus stale leftovers (an old Name index, an environment region
/// file, a DB_CONFIG); optionally an `rpm` package header of `rpm_version` registered in it.
fn fixture(rpm_version: Option<&str>, top: &Path) -> Fixture {
    let packages = match rpm_version {
        None => std::fs::read(BDB_PACKAGES).unwrap(),
        Some(v) => {
            let spec = top.join("rpm.spec");
            std::fs::write(
                &spec,
                format!(
                    "Name: rpm\nVersion: {v}\nRelease: 1\nSummary: s\nLicense: GPL\n\
                     BuildArch: noarch\n%description\nd\n%files\n"
                ),
            )
            .unwrap();
            let p = rpmbuild(&spec, "rpm", top, &[]);
            let pkg = pkgdb::rpm::RpmPackage::open(std::fs::File::open(p).unwrap()).unwrap();
            pkgdb::rpmdb::bdb::add_package(
                &std::fs::read(BDB_PACKAGES).unwrap(),
                &pkg.header_for_install(1, 1),
            )
            .unwrap()
            .0
        }
    };
    Fixture::new(move |root| {
        let db = root.join("var/lib/rpm");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("Packages"), &packages).unwrap();
        std::fs::write(db.join("Name"), b"stale index").unwrap();
        std::fs::write(db.join("Conflictname"), b"stale index").unwrap();
        std::fs::write(db.join("__db.001"), b"old region").unwrap();
        std::fs::write(db.join("DB_CONFIG"), b"mutex_set_max 10000\n").unwrap();
    })
}

fn check(rpm_version: Option<&str>, want_md5_name: &[&str], absent: &[&str]) {
    let top = tempfile::tempdir().unwrap();
    let demo = rpmbuild(
        Path::new(&format!("{SPECS}/wafer-demo.spec")),
        "wafer-demo",
        top.path(),
        &[],
    );
    let fx = fixture(rpm_version, top.path());
    std::fs::copy(&demo, fx.dir.join("wafer-demo.rpm")).unwrap();
    let recipe = fx.recipe(RECIPE);
    let out = fx.tmp.path().join("bundle");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&out, &work);
    fsck_clean(&img);
    let db = work.join("db");
    let names = dump_rpmdb(&img, &db);

    // The installed package and the base's one, by name and by file.
    let (ok, q) = rpm_ro(&db, &["-q", "wafer-demo"]);
    assert!(ok, "rpm -q wafer-demo: {q}");
    assert_eq!(q.trim(), "wafer-demo-1.2-3.noarch");
    let (ok, q) = rpm_ro(&db, &["-qf", "/usr/sbin/wafer-demo"]);
    assert!(ok && q.trim() == "wafer-demo-1.2-3.noarch", "rpm -qf: {q}");
    let (ok, q) = rpm_ro(&db, &["-qf", "/etc/wafer-demo.conf"]);
    assert!(ok && q.trim() == "wafer-demo-1.2-3.noarch", "rpm -qf: {q}");
    let (ok, q) = rpm_ro(&db, &["-q", "libuuid"]);
    assert!(ok && q.trim() == "libuuid-2.32.1-42.el8_8.x86_64", "{q}");
    let (ok, q) = rpm_ro(&db, &["-qf", "/usr/lib64/libuuid.so.1"]);
    assert!(ok && q.trim() == "libuuid-2.32.1-42.el8_8.x86_64", "{q}");
    let (ok, q) = rpm_ro(&db, &["-q", "--whatprovides", "wafer-demo"]);
    assert!(ok && q.trim() == "wafer-demo-1.2-3.noarch", "{q}");
    let (ok, q) = rpm_ro(&db, &["-qa"]);
    assert!(ok, "{q}");
    assert_eq!(
        q.lines().count(),
        2 + usize::from(rpm_version.is_some()),
        "{q}"
    );

    // Every index present and accepted by the real Berkeley DB tool; leftovers handled.
    for n in [
        "Packages",
        "Name",
        "Basenames",
        "Group",
        "Requirename",
        "Providename",
        "Conflictname",
        "Triggername",
        "Dirnames",
        "Requireversion",
        "Provideversion",
        "Installtid",
        "Sigmd5",
        "Sha1header",
        "Pubkeys",
        "DB_CONFIG",
    ]
    .iter()
    .chain(want_md5_name)
    {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        if *n != "DB_CONFIG" {
            run(Command::new("db_verify").arg("-q").arg(db.join(n)));
        }
    }
    for n in absent.iter().chain(&["__db.001"]) {
        assert!(!names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    // rpm 4.4 (libdb 4.3) reads hash version 8 only: Packages and hash indexes are written so.
    let version = |n: &str| std::fs::read(db.join(n)).unwrap()[16];
    let want = if rpm_version == Some("4.8.0") { 9 } else { 8 };
    assert_eq!(version("Name"), want);
    assert_eq!(version("Dirnames"), 9, "btree");
    // Packages is written in the indexes' version (8 unless the image's rpm is 4.8).
    assert_eq!(version("Packages"), want);
    let st = debugfs(&img, "stat /var/lib/rpm/Basenames");
    assert!(
        st.contains("Mode:  0644") && st.contains("User:     0   Group:     0"),
        "{st}"
    );
    assert_eq!(
        std::fs::read(db.join("DB_CONFIG")).unwrap(),
        b"mutex_set_max 10000\n"
    );

    // The step reports what it wrote.
    let step = report.steps.iter().find(|s| s.kind == "rpm").unwrap();
    assert!(
        step.changed.iter().any(|p| p == "/var/lib/rpm/Name"),
        "{step:?}"
    );
    assert!(
        step.added.iter().any(|p| p == "/var/lib/rpm/Basenames"),
        "{step:?}"
    );
    assert!(
        step.removed.iter().any(|p| p == "/var/lib/rpm/__db.001"),
        "{step:?}"
    );
    assert!(
        step.notes
            .iter()
            .any(|n| n.starts_with("/var/lib/rpm: index files regenerated from Packages")),
        "{:?}",
        step.notes
    );
}

#[test]
fn bdb_base_of_unknown_rpm_gets_both_index_sets() {
    check(None, &["Filemd5s", "Filedigests", "Obsoletename"], &[]);
}

#[test]
fn bdb_base_with_rpm_4_4_gets_the_el5_index_set() {
    check(
        Some("4.4.2.3"),
        &["Filemd5s"],
        &["Filedigests", "Obsoletename"],
    );
}

#[test]
fn bdb_base_with_rpm_4_8_gets_the_el6_index_set() {
    check(
        Some("4.8.0"),
        &["Filedigests", "Obsoletename"],
        &["Filemd5s"],
    );
}

/// Same recipe, same inputs: the same image bytes (the indexes are deterministic).
#[test]
fn bdb_indexes_are_reproducible() {
    let top = tempfile::tempdir().unwrap();
    let demo = rpmbuild(
        Path::new(&format!("{SPECS}/wafer-demo.spec")),
        "wafer-demo",
        top.path(),
        &[],
    );
    let fx = fixture(None, top.path());
    std::fs::copy(&demo, fx.dir.join("wafer-demo.rpm")).unwrap();
    let recipe = fx.recipe(RECIPE);
    let a = fx.tmp.path().join("a");
    let b = fx.tmp.path().join("b");
    build(&recipe, &BuildOptions::new(&a), &NoProgress).unwrap();
    build(&recipe, &BuildOptions::new(&b), &NoProgress).unwrap();
    assert_eq!(
        sha256_hex(&a.join("disk.img.zst")),
        sha256_hex(&b.join("disk.img.zst"))
    );
}
