//! Offline `rpm -V` against the real rpm: a package built with rpmbuild (%config, %config(noreplace),
//! %doc, %ghost, %dir, %missingok, %verify(not ...)), installed with the real `rpm --root T -i`,
//! files then changed in T; wafer's verify of T (read with rootfs::dir) must print exactly the
//! lines `rpm -Va --root T` prints, on sqlite (rpm 4.18's default) and on a Berkeley DB
//! `Packages` written by pkgdb from the same headers and read by rpm's `bdb_ro` backend.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../pkgdb/tests/common/mod.rs"]
mod pkgcommon;

const SPEC: &str = r#"Name: vtest
Version: 1.2
Release: 3
Summary: verify test
License: MIT
BuildArch: noarch
%description
Files with every attribute rpm -V treats specially.
%install
mkdir -p %{buildroot}/etc %{buildroot}/usr/bin %{buildroot}/usr/share/doc/vtest %{buildroot}/var/lib/vtest %{buildroot}/var/cache/vtest %{buildroot}/var/log %{buildroot}/opt/shared
echo conf > %{buildroot}/etc/vtest.conf
echo bar > %{buildroot}/etc/vtest-bar.conf
echo ver > %{buildroot}/etc/vtest-ver.conf
echo opt > %{buildroot}/etc/vtest-opt.conf
echo readme > %{buildroot}/usr/share/doc/vtest/README
printf '#!/bin/sh\necho hi\n' > %{buildroot}/usr/bin/vtool
chmod 755 %{buildroot}/usr/bin/vtool
ln -s vtool %{buildroot}/usr/bin/vlink
echo log > %{buildroot}/var/log/vtest.log
echo data > %{buildroot}/opt/shared/data
%files
%config(noreplace) /etc/vtest.conf
%config /etc/vtest-bar.conf
%config %verify(not md5 size mtime) /etc/vtest-ver.conf
%config %missingok /etc/vtest-opt.conf
%doc /usr/share/doc/vtest/README
/usr/bin/vtool
/usr/bin/vlink
%ghost /var/log/vtest.log
%dir /var/lib/vtest
%verify(not mode user group) %dir /var/cache/vtest
/opt/shared/data
"#;

fn build(top: &Path) -> PathBuf {
    std::fs::create_dir_all(top).unwrap();
    pkgcommon::rpmbuild_spec(top, "vtest", SPEC, "w2.xzdio")
}

/// `rpm --root ROOT --dbpath /var/lib/rpm ARGS`, (exit success, stdout, stderr).
fn rpm(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--define", "_dbpath /var/lib/rpm"])
        .args(args)
        .output()
        .expect("rpm must be installed (.ci/debian-packages)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn install(root: &Path, pkg: &Path, extra: &[&str]) {
    std::fs::create_dir_all(root).unwrap();
    let (ok, _, err) = rpm(root, &["--initdb"]);
    assert!(ok, "rpm --initdb: {err}");
    let mut args = vec!["-i", "--nodeps"];
    args.extend_from_slice(extra);
    args.push(pkg.to_str().unwrap());
    let (ok, _, err) = rpm(root, &args);
    assert!(ok, "rpm -i: {err}");
}

/// The real `rpm -Va` lines, sorted.
fn rpm_va(root: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = extra.to_vec();
    args.extend_from_slice(&["-Va", "--nodeps"]);
    let (_, out, err) = rpm(root, &args);
    assert!(!err.contains("error"), "rpm -Va: {err}");
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// wafer's offline verify of the tree at `root`, as rpm lines, sorted.
fn wafer_va(root: &Path) -> (Vec<String>, vetter::packages::Packages) {
    let tree = rootfs::dir::read_dir(root, &rootfs::dir::DirOptions::default()).unwrap();
    let inv = vetter::inspect(&tree, &vetter::InspectOptions::default()).unwrap();
    let p = inv.packages;
    let mut v: Vec<String> = p
        .mismatches
        .iter()
        .chain(&p.mtime_only)
        .filter_map(|m| m.rpm_line())
        .collect();
    v.sort();
    (v, p)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Change the installed files: content (same size and different size), mode, mtime, a deleted
/// config and a deleted %missingok config, a retargeted symlink, a %ghost created with other
/// permissions, directory modes (one under %verify(not mode)), and, when we may, an owner.
fn tamper(root: &Path) {
    write(&root.join("etc/vtest.conf"), "cOnf\n");
    std::fs::remove_file(root.join("etc/vtest-bar.conf")).unwrap();
    write(&root.join("etc/vtest-ver.conf"), "changed and longer\n");
    std::fs::remove_file(root.join("etc/vtest-opt.conf")).unwrap();
    chmod(&root.join("usr/bin/vtool"), 0o700);
    std::fs::remove_file(root.join("usr/bin/vlink")).unwrap();
    std::os::unix::fs::symlink("/bin/false", root.join("usr/bin/vlink")).unwrap();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    write(&root.join("var/log/vtest.log"), "x\n");
    chmod(&root.join("var/log/vtest.log"), 0o600);
    chmod(&root.join("var/lib/vtest"), 0o700);
    chmod(&root.join("var/cache/vtest"), 0o700);
    if let Ok(f) = std::fs::File::options()
        .write(true)
        .open(root.join("usr/share/doc/vtest/README"))
    {
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(5))
            .unwrap();
    }
    // Ownership only where we may change it (root); rpm and wafer must then agree on U and G.
    let _ = std::os::unix::fs::chown(root.join("opt/shared/data"), Some(1), Some(1));
}

#[test]
fn verify_agrees_with_rpm_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(&tmp.path().join("top"));
    let root = tmp.path().join("root");
    install(&root, &pkg, &[]);
    assert!(wafer_va(&root).0.is_empty(), "fresh install verifies clean");
    tamper(&root);
    let want = rpm_va(&root, &[]);
    let (got, p) = wafer_va(&root);
    assert!(p.damaged.is_empty(), "{:?}", p.damaged);
    assert_eq!(p.format.as_deref(), Some("rpm-sqlite"));
    // The changes above show in rpm's own output (size/digest, missing, mode, link, ghost mode).
    for path in [
        "/etc/vtest.conf",
        "/etc/vtest-bar.conf",
        "/usr/bin/vtool",
        "/usr/bin/vlink",
        "/var/log/vtest.log",
    ] {
        assert!(want.iter().any(|l| l.ends_with(path)), "{path}: {want:?}");
    }
    assert_eq!(got, want);
    // The config flag and the legacy `differs` words follow the codes.
    let conf = p
        .mismatches
        .iter()
        .find(|m| m.path == "/etc/vtest.conf")
        .unwrap();
    assert!(conf.config && conf.flag == "c" && conf.differs.contains(&"digest".to_string()));
    // A timestamp alone is rpm's `T` but not a modification the policy judges.
    let doc = &p.mtime_only;
    assert!(
        doc.len() == 1 && doc[0].path == "/usr/share/doc/vtest/README",
        "{doc:?}"
    );
}

#[test]
fn verify_agrees_with_rpm_on_excludedocs_and_netshared() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(&tmp.path().join("top"));
    let root = tmp.path().join("root");
    install(
        &root,
        &pkg,
        &["--excludedocs", "--define", "_netsharedpath /opt/shared"],
    );
    assert!(!root.join("usr/share/doc/vtest/README").exists());
    assert!(!root.join("opt/shared/data").exists());
    // Files rpm never installed are not missing; the rest behaves as usual.
    chmod(&root.join("usr/bin/vtool"), 0o711);
    let want = rpm_va(&root, &[]);
    let (got, p) = wafer_va(&root);
    assert!(p.damaged.is_empty(), "{:?}", p.damaged);
    assert_eq!(got, want);
    assert_eq!(want.len(), 1, "{want:?}");
}

#[test]
fn verify_agrees_with_rpm_on_berkeley_db() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(&tmp.path().join("top"));
    let root = tmp.path().join("root");
    install(&root, &pkg, &[]);
    tamper(&root);
    // Same headers, now in a Berkeley DB Packages written by pkgdb (plus its index files).
    let db = root.join("var/lib/rpm");
    let records = pkgdb::rpmdb::sqlite::read_packages(&db.join("rpmdb.sqlite")).unwrap();
    for e in std::fs::read_dir(&db).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(
        db.join("Packages"),
        pkgdb::rpmdb::bdb::write_packages(&records).unwrap(),
    )
    .unwrap();
    let layout = pkgdb::rpmdb::bdb_index::Layout::Rpm48;
    for f in pkgdb::rpmdb::bdb_index::build_indexes(&records, layout).unwrap() {
        std::fs::write(db.join(f.name), &f.bytes).unwrap();
    }
    let want = rpm_va(&root, &["--define", "_db_backend bdb_ro"]);
    let (got, p) = wafer_va(&root);
    assert!(p.damaged.is_empty(), "{:?}", p.damaged);
    assert_eq!(p.format.as_deref(), Some("rpm-bdb"));
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(got, want);
}

/// A package owning one shared file (identical in both packages, so rpm installs both).
fn shared_spec(name: &str) -> String {
    format!(
        "Name: {name}\nVersion: 1.2\nRelease: 3\nSummary: shared file\nLicense: MIT\nBuildArch: noarch\n\
         %description\nshared\n%install\nmkdir -p %{{buildroot}}/usr/share/vshared\n\
         echo common > %{{buildroot}}/usr/share/vshared/common.txt\n\
         echo {name} > %{{buildroot}}/usr/share/vshared/{name}.txt\n\
         %files\n/usr/share/vshared/common.txt\n/usr/share/vshared/{name}.txt\n"
    )
}

#[test]
fn shared_files_skip_mtime_like_rpm() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    std::fs::create_dir_all(&top).unwrap();
    let a = pkgcommon::rpmbuild_spec(&top, "vsa", &shared_spec("vsa"), "w2.xzdio");
    let b = pkgcommon::rpmbuild_spec(&top, "vsb", &shared_spec("vsb"), "w2.xzdio");
    let root = tmp.path().join("root");
    install(&root, &a, &[]);
    let (ok, _, err) = rpm(&root, &["-i", "--nodeps", b.to_str().unwrap()]);
    assert!(ok, "{err}");
    // The shared file's mtime is not checked (two packages list it); an unshared one's is.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(5);
    for f in ["common.txt", "vsa.txt"] {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join("usr/share/vshared").join(f))
            .unwrap();
        file.set_modified(old).unwrap();
    }
    chmod(&root.join("usr/share/vshared/common.txt"), 0o600);
    let want = rpm_va(&root, &[]);
    let (got, _) = wafer_va(&root);
    assert_eq!(got, want);
    assert!(
        want.iter().filter(|l| l.ends_with("common.txt")).count() == 2
            && want
                .iter()
                .any(|l| l.starts_with(".......T.") && l.ends_with("vsa.txt")),
        "{want:?}"
    );
}
