//! Debian bases (issue 12): the manifest names the Debian ext profile and the dpkg package
//! summary, checked against `dpkg-query -W`, `dumpe2fs` and `e2fsck -fn`; with a small synthetic
//! tree and with the real debootstrap tree the end-to-end tests share (root and network needed,
//! as CI has). And the purge of `/etc/resolv.conf` (the base's, often the build host's) unless
//! the recipe supplies one, read back with our ext reader and with `debugfs`.

mod common;

#[path = "../../tests/debian_rootfs/debootstrap.rs"]
mod debootstrap;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use builder::{build, BuildOptions, NoProgress};
use common::*;

/// dpkg's status: installed packages (one `Multi-Arch: same` with its architecture), one left as
/// `config-files` (listed by `dpkg-query -W`), one `not-installed` selection (not listed).
const STATUS: &str = "Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Essential: yes
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u7
Description: GNU C Library: Shared libraries

Package: dash
Status: install ok installed
Architecture: amd64
Version: 0.5.12-2
Description: POSIX-compliant shell

Package: oldtool
Status: deinstall ok config-files
Architecture: all
Version: 1:0.9-1
Conffiles:
 /etc/oldtool.conf 0123456789abcdef0123456789abcdef
Description: removed, its configuration left

Package: wanted
Status: install ok not-installed
Architecture: amd64
";

/// A journal entry dpkg has not folded into `status` yet: dash upgraded.
const UPDATE: &str = "Package: dash
Status: install ok installed
Architecture: amd64
Version: 0.5.12-2+b1
Description: POSIX-compliant shell
";

fn debian_tree(root: &Path, os_release: &str) {
    put(root, "etc/os-release", os_release.as_bytes());
    put(root, "etc/debian_version", b"12.7\n");
    put(root, "etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n");
    put(root, "etc/group", b"root:x:0:\n");
    put(root, "var/lib/dpkg/status", STATUS.as_bytes());
    put(root, "var/lib/dpkg/updates/0001", UPDATE.as_bytes());
    put(root, "bin/sh", &fake_elf());
    put(root, "bin/dash", &fake_elf());
}

const DEBIAN12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n";

/// A recipe folder with `base.tar` made from a tree `fill` lays out; returns (folder, recipe).
fn tar_recipe(tmp: &Path, name: &str, fill: impl FnOnce(&Path), body: &str) -> (PathBuf, PathBuf) {
    let root = tmp.join(format!("{name}-root"));
    fill(&root);
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    tar_root(&root, &dir.join("base.tar"));
    let sha = sha256_hex(&dir.join("base.tar"));
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        format!("[wafer]\nname = \"{name}\"\nversion = \"1\"\nvo = \"cms\"\n\n[base]\nkind = \"tar\"\npath = \"base.tar\"\nsha256 = \"{sha}\"\n{body}"),
    )
    .unwrap();
    (dir, recipe)
}

/// (name, version, architecture) of every package `dpkg-query -W` lists for the tree `root`.
fn dpkg_query(root: &Path) -> BTreeSet<(String, String, String)> {
    let out = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .arg("-W")
        .arg("-f")
        .arg("${Package}\\t${Version}\\t${Architecture}\\n"));
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn manifest_packages(m: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    m["packages"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["evr"].as_str().unwrap().to_string(),
                p["arch"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `Filesystem features:` of an image, as words.
fn features(img: &Path) -> BTreeSet<String> {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(img));
    out.lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .unwrap_or_else(|| panic!("no features in dumpe2fs output: {out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The ext4 feature set Debian 12's mke2fs makes (its mke2fs.conf `ext4` stanza plus the
/// `base_features` the writer sets; `resize_inode` it never sets).
const DEBIAN12_FEATURES: &[&str] = &[
    "has_journal",
    "ext_attr",
    "dir_index",
    "filetype",
    "extent",
    "64bit",
    "flex_bg",
    "sparse_super",
    "large_file",
    "huge_file",
    "dir_nlink",
    "extra_isize",
    "metadata_csum",
];

fn check_debian_image(out: &Path, work: &Path) -> PathBuf {
    std::fs::create_dir_all(work).unwrap();
    let img = unpack(out, work);
    fsck_clean(&img);
    let want: BTreeSet<String> = DEBIAN12_FEATURES.iter().map(|s| s.to_string()).collect();
    assert_eq!(features(&img), want);
    img
}

#[test]
fn debian_base_gets_the_debian_profile_and_its_dpkg_packages() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().join("debian-root");
    let (_, recipe) = tar_recipe(tmp.path(), "debian", |r| debian_tree(r, DEBIAN12), "");
    debian_tree(&root, DEBIAN12);
    let out = tmp.path().join("out");
    build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let m = manifest(&out);
    assert_eq!(m["os"]["id"], "debian");
    assert_eq!(m["filesystem"]["profile"], "debian12");
    assert_eq!(m["filesystem"]["type"], "ext4");
    assert_eq!(m["packages"]["database"], "dpkg");
    let want = dpkg_query(&root);
    // The journal's upgrade and the config-files package are there, the selection is not.
    assert!(
        want.contains(&("dash".into(), "0.5.12-2+b1".into(), "amd64".into())),
        "{want:?}"
    );
    assert!(
        want.contains(&("oldtool".into(), "1:0.9-1".into(), "all".into())),
        "{want:?}"
    );
    assert_eq!(want.len(), 4, "{want:?}");
    assert_eq!(manifest_packages(&m), want);
    assert_eq!(m["packages"]["count"], want.len());
    check_debian_image(&out, &tmp.path().join("w"));

    // A derivative says so in ID_LIKE: the same profile.
    let mint =
        "NAME=\"Linux Mint\"\nVERSION_ID=\"21.3\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
    let (_, recipe) = tar_recipe(tmp.path(), "mint", |r| debian_tree(r, mint), "");
    let out = tmp.path().join("out-mint");
    build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert_eq!(manifest(&out)["filesystem"]["profile"], "debian12");
    assert_eq!(manifest(&out)["packages"]["count"], 4);

    // A damaged status file stops the build, naming the file and line.
    let (_, recipe) = tar_recipe(
        tmp.path(),
        "broken",
        |r| {
            debian_tree(r, DEBIAN12);
            put(
                r,
                "var/lib/dpkg/status",
                b"Package: x\nStatus: install ok bogus\n",
            );
        },
        "",
    );
    let e = build(
        &recipe,
        &BuildOptions::new(tmp.path().join("o")),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("dpkg database"), "{e}");
    assert!(e.contains("/var/lib/dpkg/status line"), "{e}");
}

/// Whether our ext reader finds `path` in the image, and its bytes if a regular file.
fn read_back(img: &Path, path: &str) -> Option<Option<Vec<u8>>> {
    let opened = rootfs::open::open_source(img, &Default::default()).unwrap();
    let t = opened.tree;
    let id = t.lookup(path.as_bytes())?;
    Some(match &t.node(id).kind {
        rootfs::NodeKind::Regular(c) => Some(c.read_to_vec(1 << 20).unwrap()),
        _ => None,
    })
}

fn debugfs_absent(img: &Path, path: &str) {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(img)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("File not found by ext2_lookup"),
        "{path} present: {all}"
    );
}

const HOST_RESOLV: &[u8] = b"# build host's\nnameserver 192.0.2.53\nsearch build.example.org\n";

#[test]
fn purge_removes_the_base_resolv_conf_unless_the_recipe_supplies_one() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let with_file = |r: &Path| {
        debian_tree(r, DEBIAN12);
        put(r, "etc/resolv.conf", HOST_RESOLV);
    };

    // A regular file from the base, no recipe file: gone.
    let (_, recipe) = tar_recipe(tmp.path(), "plain", with_file, "");
    let out = tmp.path().join("out-plain");
    let report = build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    assert!(report
        .steps
        .last()
        .unwrap()
        .removed
        .contains(&"/etc/resolv.conf".to_string()));
    let img = check_debian_image(&out, &tmp.path().join("w1"));
    assert_eq!(read_back(&img, "/etc/resolv.conf"), None);
    debugfs_absent(&img, "/etc/resolv.conf");
    assert!(read_back(&img, "/etc/os-release").is_some());

    // A symlink (resolvconf's, systemd-resolved's): the link goes, its target stays.
    let (_, recipe) = tar_recipe(
        tmp.path(),
        "link",
        |r| {
            debian_tree(r, DEBIAN12);
            put(r, "run/resolvconf/resolv.conf", HOST_RESOLV);
            std::os::unix::fs::symlink("../run/resolvconf/resolv.conf", r.join("etc/resolv.conf"))
                .unwrap();
        },
        "",
    );
    let out = tmp.path().join("out-link");
    build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let img = check_debian_image(&out, &tmp.path().join("w2"));
    assert_eq!(read_back(&img, "/etc/resolv.conf"), None);
    debugfs_absent(&img, "/etc/resolv.conf");
    assert_eq!(
        read_back(&img, "/run/resolvconf/resolv.conf"),
        Some(Some(HOST_RESOLV.to_vec())),
        "the link's target must not be touched"
    );

    // The recipe's own resolv.conf stays, byte for byte, with the default purge and with an
    // explicit purge after it.
    let mine = b"# the VO's resolver\nnameserver 198.51.100.1\noptions edns0\n";
    for (name, extra) in [("own", ""), ("own-purge", "\n[[step]]\ntype = \"purge\"\n")] {
        let body = format!(
            "\n[[step]]\ntype = \"copy\"\nsrc = \"files/resolv.conf\"\ndest = \"/etc/resolv.conf\"\n{extra}"
        );
        let (dir, recipe) = tar_recipe(tmp.path(), name, with_file, &body);
        std::fs::write(dir.join("files/resolv.conf"), mine).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
        let img = check_debian_image(&out, &tmp.path().join(format!("w-{name}")));
        assert_eq!(
            read_back(&img, "/etc/resolv.conf"),
            Some(Some(mine.to_vec())),
            "{name}"
        );
        assert_eq!(
            debugfs(&img, "cat /etc/resolv.conf").as_bytes(),
            mine,
            "{name}"
        );
    }

    // `keep = ["resolv-conf"]` keeps the base's.
    let (_, recipe) = tar_recipe(
        tmp.path(),
        "kept",
        with_file,
        "\n[[step]]\ntype = \"purge\"\nkeep = [\"resolv-conf\"]\n",
    );
    let out = tmp.path().join("out-kept");
    build(&recipe, &BuildOptions::new(&out), &NoProgress).unwrap();
    let img = check_debian_image(&out, &tmp.path().join("w-kept"));
    assert_eq!(
        read_back(&img, "/etc/resolv.conf"),
        Some(Some(HOST_RESOLV.to_vec()))
    );
}

/// The real Debian 12 tree debootstrap makes (shared with the other end-to-end tests, built once
/// under CARGO_TARGET_TMPDIR; root and network needed), as a `dir` base.
#[test]
fn debootstrap_tree_as_dir_base_gets_debian_profile_and_dpkg_packages() {
    let src = debootstrap::debian_root();
    assert!(
        src.join("etc/resolv.conf").symlink_metadata().is_ok(),
        "debootstrap copies the host's resolv.conf in; the purge must take it out"
    );
    let tree = rootfs::dir::read_dir(
        src,
        &rootfs::dir::DirOptions {
            host_times: false,
            ..Default::default()
        },
    )
    .unwrap();
    let pin = builder::tree_digest(&tree).unwrap();
    drop(tree);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let recipe = tmp.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            "[wafer]\nname = \"bookworm\"\nversion = \"1\"\nvo = \"cms\"\n\n[base]\nkind = \"dir\"\npath = \"{}\"\nsha256 = \"{pin}\"\n",
            src.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut opts = BuildOptions::new(&out);
    opts.allow_host_paths = vec![src.to_path_buf()];
    build(&recipe, &opts, &NoProgress).unwrap();
    let m = manifest(&out);
    assert_eq!(m["os"]["id"], "debian");
    assert_eq!(m["os"]["version"], "12");
    assert_eq!(m["filesystem"]["profile"], "debian12");
    assert_eq!(m["packages"]["database"], "dpkg");
    let want = dpkg_query(src);
    assert!(
        want.len() > 80,
        "a minbase tree has ~100 packages: {}",
        want.len()
    );
    assert_eq!(m["packages"]["count"], want.len());
    assert_eq!(manifest_packages(&m), want);
    let img = check_debian_image(&out, &tmp.path().join("w"));
    debugfs_absent(&img, "/etc/resolv.conf");
    std::fs::remove_dir_all(tmp.path().join("w")).unwrap();

    // The case: the same tree copied with `cp -a`, and that copy copied again later
    // (new inodes and ctimes; the builds have just read every file): the same pin, and the
    // same recipe builds the same bundle from either.
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    run(Command::new("cp").arg("-a").arg(src).arg(a.join("base")));
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(&format!("\"{}\"", src.display()), "\"base\"");
    assert!(text.contains("path = \"base\""), "{text}");
    std::fs::write(a.join("recipe.toml"), &text).unwrap();
    let out_a = tmp.path().join("out-a");
    build(
        &a.join("recipe.toml"),
        &BuildOptions::new(&out_a),
        &NoProgress,
    )
    .unwrap();
    let b = tmp.path().join("b");
    run(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let out_b = tmp.path().join("out-b");
    build(
        &b.join("recipe.toml"),
        &BuildOptions::new(&out_b),
        &NoProgress,
    )
    .unwrap();
    for f in ["wafer.json", "disk.img.zst", "build-report.json"] {
        assert!(
            std::fs::read(out_a.join(f)).unwrap() == std::fs::read(out_b.join(f)).unwrap(),
            "{f} differs between two cp -a copies of the tree"
        );
    }
    // The raw image is the one built from the tree itself (the verity salt covers the recipe).
    assert_eq!(manifest(&out_a)["image"]["sha256"], m["image"]["sha256"]);
}
