//! The rpm step against real rpm databases: a sqlite one made by the real `rpm --root`, and the
//! Berkeley DB `Packages` fixture; the result is read back by the real rpm and db_verify.

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

fn dump(img: &Path, from: &str, to: &Path) {
    debugfs(img, &format!("dump {from} {}", to.display()));
    assert!(to.exists(), "debugfs could not dump {from}");
}

fn check_files(img: &Path, report: &builder::BuildReport) {
    let st = debugfs(img, "stat /etc/wafer-demo.conf");
    assert!(
        st.contains("Mode:  0640") && st.contains("User:    23   Group:    23"),
        "{st}"
    );
    assert_eq!(debugfs(img, "cat /etc/wafer-demo.conf"), "port = 3128\n");
    let st = debugfs(img, "stat /var/lib/wafer-demo");
    assert!(
        st.contains("Mode:  0750") && st.contains("User:    23"),
        "{st}"
    );
    // File capabilities from the header became security.capability.
    let st = debugfs(img, "stat /usr/sbin/wafer-demo");
    assert!(st.contains("Mode:  0755"), "{st}");
    let ea = debugfs(img, "ea_list /usr/sbin/wafer-demo");
    assert!(ea.contains("security.capability"), "{ea}");
    // The hard link shares the inode.
    let a = debugfs(img, "stat /usr/share/wafer-demo/a");
    let b = debugfs(img, "stat /usr/share/wafer-demo/b");
    assert!(a.contains("Links: 2"), "{a}");
    assert_eq!(a.lines().next(), b.lines().next(), "same inode");
    assert!(
        debugfs(img, "stat /usr/sbin/wafer-demo-sym").contains("Fast link dest: \"wafer-demo\"")
    );
    // Scriptlets are listed, never run.
    assert_eq!(
        report.scriptlets_skipped,
        [
            "wafer-demo-1.2-3: %pre (/bin/sh)",
            "wafer-demo-1.2-3: %post (/bin/sh)"
        ]
    );
    assert_eq!(report.packages_added.len(), 1);
    assert_eq!(report.packages_added[0].name, "wafer-demo");
    assert_eq!(report.packages_added[0].evr, "1.2-3");
}

#[test]
fn rpm_into_a_sqlite_rpmdb_made_by_real_rpm() {
    let top = tempfile::tempdir().unwrap();
    let base_rpm = rpmbuild(
        &Path::new(SPECS).join("wafer-base.spec"),
        "wafer-base",
        top.path(),
        &[],
    );
    let demo_rpm = rpmbuild(
        &Path::new(SPECS).join("wafer-demo.spec"),
        "wafer-demo",
        top.path(),
        &[],
    );
    let fx = Fixture::new(|root| {
        let rpm = |args: &[&str]| {
            run(Command::new("rpm")
                .arg("--root")
                .arg(root)
                .arg("--define")
                .arg("_dbpath /var/lib/rpm")
                .args(args));
        };
        rpm(&["--initdb"]);
        rpm(&["-i", "--nodeps", "--noscripts", base_rpm.to_str().unwrap()]);
    });
    std::fs::copy(&demo_rpm, fx.dir.join("wafer-demo.rpm")).unwrap();
    let recipe = fx.recipe(RECIPE);
    let out = fx.tmp.path().join("bundle");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let m = manifest(&out);
    assert_eq!(m["packages"]["database"], "sqlite");
    assert_eq!(m["packages"]["count"], 2);

    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(work.join("db")).unwrap();
    let img = unpack(&out, &work);
    fsck_clean(&img);
    check_files(&img, &report);
    dump(
        &img,
        "/var/lib/rpm/rpmdb.sqlite",
        &work.join("db/rpmdb.sqlite"),
    );
    let qa = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(work.join("db"))
        .arg("-qa")
        .arg("--qf")
        .arg("%{NAME}-%{VERSION}-%{RELEASE} %{INSTALLTIME}\n"));
    let mut lines: Vec<&str> = qa.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{qa}");
    assert!(lines[0].starts_with("wafer-base-5.11-1.el5 "), "{qa}");
    assert_eq!(lines[1], format!("wafer-demo-1.2-3 {BASE_MTIME}"));
    // rpm's own file list for the new package, from the image's database.
    let ql = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(work.join("db"))
        .arg("-ql")
        .arg("wafer-demo"));
    assert!(
        ql.contains("/usr/sbin/wafer-demo\n") && ql.contains("/etc/wafer-demo.conf\n"),
        "{ql}"
    );
}

#[test]
fn rpm_into_a_berkeley_db_packages_file() {
    let top = tempfile::tempdir().unwrap();
    let demo_rpm = rpmbuild(
        &Path::new(SPECS).join("wafer-demo.spec"),
        "wafer-demo",
        top.path(),
        &[],
    );
    let fx = Fixture::new(|root| {
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        std::fs::copy(BDB_PACKAGES, root.join("var/lib/rpm/Packages")).unwrap();
    });
    std::fs::copy(&demo_rpm, fx.dir.join("wafer-demo.rpm")).unwrap();
    let recipe = fx.recipe(RECIPE);
    let out = fx.tmp.path().join("bundle");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert_eq!(manifest(&out)["packages"]["database"], "bdb");

    let work = fx.tmp.path().join("work");
    std::fs::create_dir_all(work.join("db")).unwrap();
    let img = unpack(&out, &work);
    fsck_clean(&img);
    check_files(&img, &report);
    dump(&img, "/var/lib/rpm/Packages", &work.join("db/Packages"));
    // The real Berkeley DB tool accepts the rewritten file...
    run(Command::new("db_verify")
        .arg("-q")
        .arg(work.join("db/Packages")));
    // ...and the real rpm reads both the original package and ours.
    let qa = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(work.join("db"))
        .arg("--define")
        .arg("_db_backend bdb_ro")
        .arg("-qa")
        .arg("--qf")
        .arg("%{NAME}-%{VERSION}-%{RELEASE}\n"));
    let mut lines: Vec<&str> = qa.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["libuuid-2.32.1-42.el8_8", "wafer-demo-1.2-3"],
        "{qa}"
    );
}

#[test]
fn rpm_step_errors() {
    let fx = Fixture::new(|_| {});
    std::fs::write(
        fx.dir.join("wafer-demo.rpm"),
        b"not an rpm at all, just text",
    )
    .unwrap();
    let recipe = fx.recipe(RECIPE);
    let e = build(
        &recipe,
        &BuildOptions::new(fx.tmp.path().join("o1")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!("{}:11: step 1 (rpm): the image has no rpm database (/var/lib/rpm or /usr/lib/sysimage/rpm)", recipe.display())
    );
    let fx = Fixture::new(|root| {
        std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
        std::fs::copy(BDB_PACKAGES, root.join("var/lib/rpm/Packages")).unwrap();
    });
    std::fs::write(
        fx.dir.join("wafer-demo.rpm"),
        b"not an rpm at all, just text",
    )
    .unwrap();
    let recipe = fx.recipe(RECIPE);
    let e = build(
        &recipe,
        &BuildOptions::new(fx.tmp.path().join("o2")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!(
            "{}:11: step 1 (rpm): package 'wafer-demo.rpm': ",
            recipe.display()
        )),
        "{e}"
    );
}
