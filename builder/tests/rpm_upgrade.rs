//! The rpm step's upgrade semantics (`rpm -U`): packages built with the real rpmbuild in two
//! versions, bases whose database the real `rpm --root` made (sqlite) or the Berkeley DB fixture;
//! the result read back by the real `rpm -qa`/`-qf` and checked file by file in the image.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use builder::{build, BuildOptions, NoProgress};
use common::*;

const BDB_PACKAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/rpmdb-bdb-go-rpmdb-libuuid/Packages"
);

/// Build `name` version `ver` (release 1, noarch) with the real rpmbuild; returns its path.
fn rpmbuild(name: &str, ver: &str, top: &Path) -> PathBuf {
    let top = top.join(format!("{name}-{ver}"));
    let spec = Path::new(SPECS).join(format!("{name}.spec"));
    common::rpmbuild(&spec, &format!("{name}-{ver}"), &top, &[("upver", ver)])
}

/// `rpm --root ROOT --dbpath /var/lib/rpm ARGS`.
fn rpm_root(root: &Path, args: &[&str]) {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .arg("--define")
        .arg("_dbpath /var/lib/rpm")
        .args(args));
}

/// Whether `path` exists in the image.
fn exists(img: &Path, path: &str) -> bool {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(img)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    !err.contains("File not found")
}

/// The real rpm's `-qa` of a database directory, sorted.
fn qa(db: &Path, extra: &[&str]) -> Vec<String> {
    let out = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(db)
        .args(extra)
        .arg("-qa")
        .arg("--qf")
        .arg("%{NAME}-%{VERSION}-%{RELEASE}\n"));
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn upgrade_in_a_sqlite_rpmdb_made_by_real_rpm() {
    let top = tempfile::tempdir().unwrap();
    let up1 = rpmbuild("wafer-up", "1.0", top.path());
    let up2 = rpmbuild("wafer-up", "2.0", top.path());
    let k1 = rpmbuild("kernel-xen", "1.0", top.path());
    let k2 = rpmbuild("kernel-xen", "2.0", top.path());
    let fx = Fixture::new(|root| {
        rpm_root(root, &["--initdb"]);
        rpm_root(
            root,
            &[
                "-i",
                "--nodeps",
                "--noscripts",
                up1.to_str().unwrap(),
                k1.to_str().unwrap(),
            ],
        );
        // Local edits: one config file 2.0 drops, one it ships with new contents (noreplace).
        std::fs::write(root.join("etc/wafer-up-old.conf"), "edited old\n").unwrap();
        std::fs::write(root.join("etc/wafer-up.conf"), "edited\n").unwrap();
    });
    std::fs::copy(&up2, fx.dir.join("wafer-up.rpm")).unwrap();
    std::fs::copy(&k2, fx.dir.join("kernel-xen.rpm")).unwrap();
    let recipe = fx
        .recipe("\n[[step]]\ntype = \"rpm\"\npackages = [\"wafer-up.rpm\", \"kernel-xen.rpm\"]\n");
    let out = fx.tmp.path().join("bundle");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let step = &report.steps[0];
    assert!(
        step.notes
            .iter()
            .any(|n| n == "upgraded wafer-up 1.0-1 -> 2.0-1"),
        "{:?}",
        step.notes
    );
    assert!(
        !step.notes.iter().any(|n| n.contains("kernel-xen 1.0-1 ->")),
        "{:?}",
        step.notes
    );
    assert_eq!(report.packages_added[0].replaced.as_deref(), Some("1.0-1"));
    assert_eq!(report.packages_added[1].replaced, None);

    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(work.join("db")).unwrap();
    let img = unpack(&out, &work);
    fsck_clean(&img);
    debugfs(
        &img,
        &format!(
            "dump /var/lib/rpm/rpmdb.sqlite {}",
            work.join("db/rpmdb.sqlite").display()
        ),
    );
    // Only the new wafer-up; both kernels, side by side.
    assert_eq!(
        qa(&work.join("db"), &[]),
        ["kernel-xen-1.0-1", "kernel-xen-2.0-1", "wafer-up-2.0-1"]
    );
    // The old header's index keys went with it: rpm's name lookup (the Name index) finds 2.0
    // only, and no index table keeps a key for a header no longer in Packages.
    let q = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(work.join("db"))
        .arg("-q")
        .arg("wafer-up"));
    assert_eq!(q, "wafer-up-2.0-1.noarch\n");
    let conn = rusqlite::Connection::open(work.join("db/rpmdb.sqlite")).unwrap();
    let mut orphans = 0i64;
    let mut old_only = 0i64;
    for (table, _) in pkgdb::rpmdb::sqlite::INDEXES {
        let exists: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        if exists == 0 {
            continue;
        }
        orphans += conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM '{table}' WHERE hnum NOT IN (SELECT hnum FROM Packages)"
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
    }
    old_only += conn
        .query_row(
            "SELECT count(*) FROM Basenames WHERE key = 'old-only'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!((orphans, old_only), (0, 0));

    // Files of 1.0 only are gone (the emptied directory too); 2.0's are there.
    for gone in [
        "/usr/share/wafer-up/old-only",
        "/usr/share/wafer-up/obsolete/data",
        "/usr/share/wafer-up/obsolete",
        "/etc/wafer-up-gone.conf",
        "/etc/wafer-up-old.conf",
    ] {
        assert!(!exists(&img, gone), "{gone} should be gone");
    }
    assert_eq!(
        debugfs(&img, "cat /usr/bin/wafer-up"),
        "#!/bin/sh\necho 2.0\n"
    );
    assert_eq!(debugfs(&img, "cat /usr/share/wafer-up/new-only"), "new\n");
    assert_eq!(debugfs(&img, "cat /usr/share/wafer-up/common"), "common\n");
    // The edited config 2.0 dropped is kept as .rpmsave, as rpm does.
    assert_eq!(
        debugfs(&img, "cat /etc/wafer-up-old.conf.rpmsave"),
        "edited old\n"
    );
    // The edited %config(noreplace) stays; the new one comes as .rpmnew.
    assert_eq!(debugfs(&img, "cat /etc/wafer-up.conf"), "edited\n");
    assert_eq!(
        debugfs(&img, "cat /etc/wafer-up.conf.rpmnew"),
        "setting = 2.0\n"
    );
    // Both kernels' files.
    assert!(exists(&img, "/lib/modules/1.0-wafer-test/modules.dep"));
    assert!(exists(&img, "/lib/modules/2.0-wafer-test/modules.dep"));
}

#[test]
fn upgrade_and_downgrade_in_a_berkeley_db_packages_file() {
    let top = tempfile::tempdir().unwrap();
    let up1 = rpmbuild("wafer-up", "1.0", top.path());
    let up2 = rpmbuild("wafer-up", "2.0", top.path());
    let fx = Fixture::new(|root| {
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        std::fs::copy(BDB_PACKAGES, root.join("var/lib/rpm/Packages")).unwrap();
    });
    std::fs::copy(&up1, fx.dir.join("up1.rpm")).unwrap();
    std::fs::copy(&up2, fx.dir.join("up2.rpm")).unwrap();
    let step = |pkgs: &str, extra: &str| {
        format!("\n[[step]]\ntype = \"rpm\"\npackages = [{pkgs}]\n{extra}")
    };

    // 2.0 over 1.0 installed by an earlier step (in the database by then), then over nothing.
    let recipe = fx.recipe(&format!(
        "{}{}",
        step("\"up1.rpm\"", ""),
        step("\"up2.rpm\"", "")
    ));
    let out = fx.tmp.path().join("b1");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert!(report.steps[1]
        .notes
        .iter()
        .any(|n| n == "upgraded wafer-up 1.0-1 -> 2.0-1"));
    let work = fx.tmp.path().join("w1");
    std::fs::create_dir_all(work.join("db")).unwrap();
    let img = unpack(&out, &work);
    fsck_clean(&img);
    debugfs(
        &img,
        &format!(
            "dump /var/lib/rpm/Packages {}",
            work.join("db/Packages").display()
        ),
    );
    run(Command::new("db_verify")
        .arg("-q")
        .arg(work.join("db/Packages")));
    let bdb = ["--define", "_db_backend bdb_ro"];
    assert_eq!(
        qa(&work.join("db"), &bdb),
        ["libuuid-2.32.1-42.el8_8", "wafer-up-2.0-1"]
    );
    assert!(!exists(&img, "/usr/share/wafer-up/old-only"));
    assert!(!exists(&img, "/etc/wafer-up-old.conf"));
    assert!(!exists(&img, "/etc/wafer-up-old.conf.rpmsave"));
    assert!(exists(&img, "/usr/share/wafer-up/new-only"));

    // 1.0 over 2.0 within one step: refused without allow_downgrade...
    let recipe = fx.recipe(&step("\"up2.rpm\", \"up1.rpm\"", ""));
    let e = build(
        &recipe,
        &BuildOptions::new(fx.tmp.path().join("b2")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "{}:11: step 1 (rpm): package 'up1.rpm': would downgrade wafer-up from 2.0-1 to 1.0-1 (set allow_downgrade = true in the step to allow it)",
            recipe.display()
        )
    );
    // ...the same version twice is refused as rpm does...
    let recipe = fx.recipe(&format!(
        "{}{}",
        step("\"up1.rpm\"", ""),
        step("\"up1.rpm\"", "")
    ));
    let e = build(
        &recipe,
        &BuildOptions::new(fx.tmp.path().join("b3")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "{}:15: step 2 (rpm): package 'up1.rpm': wafer-up 1.0-1 is already installed in the image",
            recipe.display()
        )
    );
    // ...and done when the step allows it.
    let recipe = fx.recipe(&step(
        "\"up2.rpm\", \"up1.rpm\"",
        "allow_downgrade = true\n",
    ));
    let out = fx.tmp.path().join("b4");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert!(report.steps[0]
        .notes
        .iter()
        .any(|n| n == "downgraded wafer-up 2.0-1 -> 1.0-1"));
    let work = fx.tmp.path().join("w4");
    std::fs::create_dir_all(work.join("db")).unwrap();
    let img = unpack(&out, &work);
    debugfs(
        &img,
        &format!(
            "dump /var/lib/rpm/Packages {}",
            work.join("db/Packages").display()
        ),
    );
    assert_eq!(
        qa(&work.join("db"), &bdb),
        ["libuuid-2.32.1-42.el8_8", "wafer-up-1.0-1"]
    );
    assert!(!exists(&img, "/usr/share/wafer-up/new-only"));
    assert!(exists(&img, "/usr/share/wafer-up/old-only"));
}
