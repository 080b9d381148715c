//! dpkg in the inventory against the real dpkg: `dpkg --root T --verify` on a small tree and on
//! a debootstrap'd Debian tree with files changed, deleted and a conffile edited; every dpkg
//! state listed with its `Status`; damaged databases reported (never fewer packages silently);
//! distroless `status.d/`.

#[path = "../../tests/debian_rootfs/debootstrap.rs"]
mod debootstrap;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use rootfs::dir::{read_dir, DirOptions};
use vetter::{inspect, InspectOptions, Inventory};

fn inventory(root: &Path) -> Inventory {
    let tree = read_dir(root, &DirOptions::default())
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", root.display()));
    let opts = InspectOptions {
        hash: false,
        scan_limit: 0,
        list_files: false,
        ..InspectOptions::default()
    };
    inspect(&tree, &opts).expect("inspect")
}

/// The sorted stdout lines of a command that must exit with at most `max_code` (dpkg --verify
/// exits 1 when files differ).
fn lines_of(cmd: &mut Command, max_code: i32) -> Vec<String> {
    let out = cmd
        .output()
        .expect("run dpkg / dpkg-query (Debian package dpkg)");
    assert!(
        out.status.code().is_some_and(|c| c <= max_code),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// `dpkg --root ROOT --verify`'s lines, sorted.
fn dpkg_verify(root: &Path) -> Vec<String> {
    lines_of(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("--verify"),
        1,
    )
}

fn ours(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .mismatches
        .iter()
        .filter_map(|m| m.verify.clone())
        .collect();
    v.sort();
    v
}

fn md5(b: &[u8]) -> String {
    let out = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout)[..32].to_string()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

const HEAD: &str = "Priority: optional\nMaintainer: M <m@example.org>\nArchitecture: all\n";

/// A small dpkg root: package `x` with a changed file, a missing one, a symlink where a file
/// was, a dangling symlink, an uppercase digest, a conffile edited, a conffile deleted, an
/// obsolete and a `newconffile` conffile, a file diverted by another package (dpkg checks the
/// diverted-to name, here missing, against the package's digest).
fn small_root(root: &Path) {
    let other = md5(b"other\n");
    let hi = md5(b"hi\n");
    write(root, "usr/bin/same", b"hi\n");
    write(root, "usr/bin/changed", b"changed\n");
    write(root, "usr/bin/target", b"hi\n");
    symlink("target", root.join("usr/bin/link")).unwrap();
    symlink("nowhere", root.join("usr/bin/dangling")).unwrap();
    write(root, "usr/bin/upper", b"hi\n");
    write(root, "usr/bin/diverted", b"local version\n");
    write(root, "etc/x.conf", b"edited\n");
    write(root, "etc/new.conf", b"edited\n");
    write(root, "etc/obsolete.conf", b"edited\n");
    write(root, "etc/kept.conf", b"other\n");
    let status = format!(
        "Package: x\nStatus: install ok installed\n{HEAD}Version: 1.0-1\nConffiles:\n /etc/x.conf {other}\n /etc/gone.conf {other}\n /etc/new.conf newconffile\n /etc/obsolete.conf {other} obsolete\n /etc/kept.conf {other}\nDescription: x\n\n\
         Package: divert\nStatus: install ok installed\n{HEAD}Version: 1\nDescription: d\n\n"
    );
    write(root, "var/lib/dpkg/status", status.as_bytes());
    write(
        root,
        "var/lib/dpkg/info/x.list",
        b"/.\n/usr\n/usr/bin\n/usr/bin/same\n/usr/bin/changed\n/usr/bin/gone\n/usr/bin/link\n/usr/bin/dangling\n/usr/bin/upper\n/usr/bin/diverted\n/etc\n/etc/x.conf\n/etc/gone.conf\n/etc/new.conf\n/etc/obsolete.conf\n/etc/kept.conf\n",
    );
    let md5sums = format!(
        "{hi}  usr/bin/same\n{hi}  usr/bin/changed\n{hi}  usr/bin/gone\n{hi}  usr/bin/link\n{hi}  ./usr/bin/dangling\n{}  usr/bin/upper\n{hi}  usr/bin/diverted\n",
        hi.to_uppercase()
    );
    write(root, "var/lib/dpkg/info/x.md5sums", md5sums.as_bytes());
    write(
        root,
        "var/lib/dpkg/info/divert.list",
        b"/usr/bin/diverted\n",
    );
    let local = format!("{}  usr/bin/diverted\n", md5(b"local version\n"));
    write(root, "var/lib/dpkg/info/divert.md5sums", local.as_bytes());
    write(
        root,
        "var/lib/dpkg/diversions",
        b"/usr/bin/diverted\n/usr/bin/diverted.real\ndivert\n",
    );
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
}

#[test]
fn small_tree_verify_agrees_with_dpkg_verify() {
    let dir = tempfile::tempdir().unwrap();
    small_root(dir.path());
    let want = dpkg_verify(dir.path());
    let inv = inventory(dir.path());
    assert!(
        inv.packages.damaged.is_empty(),
        "{:?}",
        inv.packages.damaged
    );
    assert_eq!(ours(&inv), want);
    // The cases are all there (so the comparison is not vacuous).
    for l in [
        "??5??????   /usr/bin/changed",
        "missing     /usr/bin/gone",
        "missing     /usr/bin/diverted.real",
        "?M.??????   /usr/bin/link",
        "?M???????   /usr/bin/dangling",
        "??5??????   /usr/bin/upper",
        "??5?????? c /etc/x.conf",
        "missing   c /etc/gone.conf",
        "??5?????? c /etc/new.conf",
        "??5?????? c /etc/obsolete.conf",
    ] {
        assert!(
            want.iter().any(|w| w == l),
            "dpkg --verify lacks {l:?}: {want:#?}"
        );
    }
    let m = |p: &str| {
        inv.packages
            .mismatches
            .iter()
            .find(|m| m.path == p)
            .unwrap_or_else(|| panic!("no mismatch for {p}"))
    };
    assert_eq!(m("/usr/bin/gone").differs, ["missing"]);
    assert_eq!(m("/usr/bin/link").differs, ["type"]);
    assert_eq!(m("/etc/x.conf").differs, ["digest"]);
    assert!(m("/etc/x.conf").config);
    assert_eq!(m("/usr/bin/changed").package, "x_1.0-1");
}

#[test]
fn debootstrap_tree_verify_agrees_with_dpkg_verify() {
    let src = debootstrap::debian_root();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = work.path().join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let clean = dpkg_verify(&root);
    let inv = inventory(&root);
    assert!(
        inv.packages.damaged.is_empty(),
        "{:?}",
        inv.packages.damaged
    );
    assert_eq!(ours(&inv), clean, "unchanged tree");
    // Change files: contents of one packaged file, another deleted, a conffile edited, another
    // conffile deleted.
    let sums = std::fs::read_to_string(root.join("var/lib/dpkg/info/coreutils.md5sums")).unwrap();
    let files: Vec<&str> = sums.lines().map(|l| &l[34..]).collect();
    let changed = root.join(files[0]);
    let mut b = std::fs::read(&changed).unwrap();
    b.extend_from_slice(b"appended");
    std::fs::write(&changed, b).unwrap();
    std::fs::remove_file(root.join(files[1])).unwrap();
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    let conffiles: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with(" /etc/"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| root.join(&p[1..]).is_file())
        .collect();
    assert!(conffiles.len() >= 2, "{conffiles:?}");
    let mut edit = std::fs::read(root.join(&conffiles[0][1..])).unwrap();
    edit.extend_from_slice(b"\n# edited\n");
    std::fs::write(root.join(&conffiles[0][1..]), edit).unwrap();
    std::fs::remove_file(root.join(&conffiles[1][1..])).unwrap();
    let want = dpkg_verify(&root);
    assert_eq!(want.len(), clean.len() + 4, "{want:#?}");
    let inv = inventory(&root);
    assert_eq!(ours(&inv), want);
    assert!(
        want.contains(&format!("missing   c {}", conffiles[1])),
        "{want:#?}"
    );
    assert!(
        want.contains(&format!("??5?????? c {}", conffiles[0])),
        "{want:#?}"
    );
}

fn stanza(name: &str, status: &str) -> String {
    format!("Package: {name}\nStatus: {status}\n{HEAD}Version: 2.0\nDescription: d\n\n")
}

fn dpkg_query(root: &Path) -> Vec<String> {
    lines_of(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"]),
        0,
    )
}

#[test]
fn every_listed_state_is_in_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::new();
    for (n, st) in [
        ("held", "hold ok installed"),
        ("deinst", "deinstall ok installed"),
        ("unpacked", "install ok unpacked"),
        ("halfinst", "install reinstreq half-installed"),
        ("removed", "deinstall ok config-files"),
        ("gone", "purge ok not-installed"),
    ] {
        s += &stanza(n, st);
    }
    write(dir.path(), "var/lib/dpkg/status", s.as_bytes());
    std::fs::create_dir_all(dir.path().join("var/lib/dpkg/updates")).unwrap();
    let inv = inventory(dir.path());
    assert!(inv.packages.damaged.is_empty());
    let mut got: Vec<String> = inv
        .packages
        .list
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p.name,
                p.version,
                p.status.as_ref().unwrap().abbrev
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, dpkg_query(dir.path()));
    assert_eq!(got.len(), 5);
    let held = inv.packages.list.iter().find(|p| p.name == "held").unwrap();
    let st = held.status.as_ref().unwrap();
    assert_eq!(
        (st.want.as_str(), st.flag.as_str(), st.state.as_str()),
        ("hold", "ok", "installed")
    );
    let json = serde_json::to_value(held).unwrap();
    assert_eq!(json["status"]["abbrev"], "hi ");
}

#[test]
fn damaged_databases_are_reported() {
    // A status file cut short mid-field: the stanzas before it are listed, the file is damaged.
    let dir = tempfile::tempdir().unwrap();
    let full = stanza("a", "install ok installed") + &stanza("b", "install ok installed");
    let cut = &full[..full.len() - 12];
    write(dir.path(), "var/lib/dpkg/status", cut.as_bytes());
    let inv = inventory(dir.path());
    assert_eq!(inv.packages.damaged.len(), 1, "{:?}", inv.packages.damaged);
    let d = &inv.packages.damaged[0];
    assert_eq!(
        (d.path.as_str(), d.format.as_str(), d.records_read),
        ("/var/lib/dpkg/status", "dpkg", 1)
    );
    assert!(
        d.reason.contains("/var/lib/dpkg/status line 15") && d.reason.contains("cut short"),
        "{}",
        d.reason
    );
    assert_eq!(inv.packages.list.len(), 1);
    // The same package twice.
    write(
        dir.path(),
        "var/lib/dpkg/status",
        (full.clone() + &stanza("a", "hold ok installed")).as_bytes(),
    );
    let inv = inventory(dir.path());
    assert!(
        inv.packages.damaged[0].reason.contains("\"a\""),
        "{:?}",
        inv.packages.damaged
    );
    // A .list or .md5sums dpkg would refuse.
    write(dir.path(), "var/lib/dpkg/status", full.as_bytes());
    write(dir.path(), "var/lib/dpkg/info/a.list", b"/usr\n/usr/bin/a");
    write(dir.path(), "var/lib/dpkg/info/b.list", b"/usr\n");
    write(
        dir.path(),
        "var/lib/dpkg/info/b.md5sums",
        b"0123  usr/bin/b\n",
    );
    let inv = inventory(dir.path());
    let paths: Vec<&str> = inv
        .packages
        .damaged
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/var/lib/dpkg/info/a.list", "/var/lib/dpkg/info/b.md5sums"]
    );
    assert_eq!(inv.packages.list.len(), 2);
    // A journal entry dpkg applies over the status file.
    std::fs::remove_file(dir.path().join("var/lib/dpkg/info/a.list")).unwrap();
    std::fs::remove_file(dir.path().join("var/lib/dpkg/info/b.md5sums")).unwrap();
    write(
        dir.path(),
        "var/lib/dpkg/updates/0001",
        b"Package: c\nStatus: install ok unpacked\nMaintainer: m\nArchitecture: all\nVersion: 3\nDescription: d\n",
    );
    let inv = inventory(dir.path());
    assert!(
        inv.packages.damaged.is_empty(),
        "{:?}",
        inv.packages.damaged
    );
    let mut names: Vec<String> = inv
        .packages
        .list
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    names.sort();
    let want: Vec<String> = dpkg_query(dir.path())
        .iter()
        .map(|l| l.trim_end().rsplit_once(' ').unwrap().0.to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(names.len(), 3);
    // The status file removed (or a dangling symlink) while info/ still lists package files.
    std::fs::remove_file(dir.path().join("var/lib/dpkg/status")).unwrap();
    let inv = inventory(dir.path());
    assert_eq!(inv.packages.damaged.len(), 1, "{:?}", inv.packages.damaged);
    assert!(inv.packages.damaged[0]
        .reason
        .contains("holds 1 package file lists"));
    symlink("nowhere", dir.path().join("var/lib/dpkg/status")).unwrap();
    let inv = inventory(dir.path());
    assert_eq!(inv.packages.damaged[0].path, "/var/lib/dpkg/status");
    assert!(inv.packages.damaged[0].reason.contains("cannot be opened"));
}

#[test]
fn distroless_status_d_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "var/lib/dpkg/status.d/base",
        stanza("base-files", "install ok installed").as_bytes(),
    );
    write(
        r,
        "var/lib/dpkg/status.d/tzdata",
        stanza("tzdata", "install ok installed").as_bytes(),
    );
    write(r, "etc/os-release", b"ID=debian\n");
    write(r, "usr/share/zoneinfo/UTC", b"TZif changed");
    let sums = format!("{}  etc/os-release\n", md5(b"ID=debian\n"));
    write(r, "var/lib/dpkg/status.d/base.md5sums", sums.as_bytes());
    let sums = format!("{}  usr/share/zoneinfo/UTC\n", md5(b"TZif"));
    write(r, "var/lib/dpkg/status.d/tzdata.md5sums", sums.as_bytes());
    let inv = inventory(r);
    assert!(
        inv.packages.damaged.is_empty(),
        "{:?}",
        inv.packages.damaged
    );
    let names: Vec<&str> = inv.packages.list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["base-files", "tzdata"]);
    assert_eq!(inv.packages.format.as_deref(), Some("dpkg"));
    assert_eq!(inv.packages.verified_files, 2);
    assert_eq!(ours(&inv), ["??5??????   /usr/share/zoneinfo/UTC"]);
    // A status.d file cut short is damaged, named.
    write(
        r,
        "var/lib/dpkg/status.d/tzdata",
        b"Package: tzdata\nStatus: install ok inst",
    );
    let inv = inventory(r);
    assert_eq!(
        inv.packages.damaged[0].path,
        "/var/lib/dpkg/status.d/tzdata"
    );
    assert_eq!(inv.packages.list.len(), 1);
}
