//! `wafer ls` on directories and tar archives (made by GNU tar), and its error handling.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn wafer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .output()
        .expect("run wafer")
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"binary\0data").unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::write(root.join("README"), "hello\n".repeat(1000)).unwrap();
    fs::hard_link(root.join("README"), root.join("README.link")).unwrap();
    std::os::unix::fs::symlink("usr/bin/tool", root.join("tool")).unwrap();
    let st = Command::new("mknod")
        .arg(root.join("console"))
        .args(["c", "5", "1"])
        .status()
        .expect("mknod");
    assert!(st.success());
    xattr::set(root.join("README"), "user.origin", b"test").unwrap();
    xattr::set(root.join("usr/bin/tool"), "user.bin", b"\x00\x01\xff").unwrap();
}

/// The listing as a map path -> object.
fn listing(out: &Output) -> BTreeMap<String, serde_json::Value> {
    assert!(
        out.status.success(),
        "wafer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// Check a listing against the host directory, independently (std lstat, sha2, xattr).
fn check_against_dir(
    list: &BTreeMap<String, serde_json::Value>,
    root: &Path,
    check_root_meta: bool,
) {
    let mut count = 0;
    for entry in walkdir(root) {
        count += 1;
        let rel = entry.strip_prefix(root).unwrap();
        let key = format!("/{}", rel.display());
        let key = if key == "/" {
            key
        } else {
            key.trim_end_matches('/').to_string()
        };
        let e = list
            .get(&key)
            .unwrap_or_else(|| panic!("{key} missing from listing"));
        let md = fs::symlink_metadata(&entry).unwrap();
        if key == "/" && !check_root_meta {
            continue;
        }
        assert_eq!(
            e["mode"].as_str().unwrap(),
            format!("{:04o}", md.mode() & 0o7777),
            "{key}"
        );
        assert_eq!(e["uid"].as_u64().unwrap(), u64::from(md.uid()), "{key}");
        assert_eq!(e["gid"].as_u64().unwrap(), u64::from(md.gid()), "{key}");
        assert_eq!(e["mtime_sec"].as_i64().unwrap(), md.mtime(), "{key}");
        let ft = md.file_type();
        if ft.is_file() {
            assert_eq!(e["type"], "regular", "{key}");
            assert_eq!(e["size"].as_u64().unwrap(), md.len(), "{key}");
            let want = hex::encode(Sha256::digest(fs::read(&entry).unwrap()));
            assert_eq!(e["sha256"].as_str().unwrap(), want, "{key}");
            assert_eq!(e["nlink"].as_u64().unwrap(), md.nlink(), "{key}");
        } else if ft.is_symlink() {
            assert_eq!(e["type"], "symlink");
            assert_eq!(
                e["link_target"].as_str().unwrap(),
                fs::read_link(&entry).unwrap().to_str().unwrap()
            );
        } else if ft.is_dir() {
            assert_eq!(e["type"], "directory");
        } else {
            assert_eq!(e["type"], "chardevice");
            assert_eq!(e["device"]["major"], 5);
            assert_eq!(e["device"]["minor"], 1);
        }
        let names: Vec<String> = xattr::list(&entry)
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        let got: Vec<String> = e["xattrs"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(got, names, "{key}: xattr names");
    }
    assert_eq!(count, list.len(), "path count");
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut kids: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

#[test]
fn ls_json_of_a_directory_matches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    make_tree(&root);
    let list = listing(&wafer(&["ls", "--json", root.to_str().unwrap()]));
    check_against_dir(&list, &root, true);
    assert_eq!(list["/usr/bin/tool"]["xattrs"]["user.bin"]["hex"], "0001ff");
    assert_eq!(list["/README"]["xattrs"]["user.origin"]["text"], "test");
}

#[test]
fn ls_json_of_a_compressed_tar_matches_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    make_tree(&root);
    let tarball = tmp.path().join("t.tar.zst");
    let st = Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--zstd",
            "-cf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("GNU tar");
    assert!(st.success());
    let list = listing(&wafer(&["ls", "--json", tarball.to_str().unwrap()]));
    check_against_dir(&list, &root, true);
}

#[test]
fn ls_plain_and_long_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("t");
    make_tree(&root);
    let out = wafer(&["ls", root.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "/",
            "/README",
            "/README.link",
            "/console",
            "/tool",
            "/usr",
            "/usr/bin",
            "/usr/bin/tool"
        ]
    );
    let out = wafer(&["ls", "--long", root.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let tool = text
        .lines()
        .find(|l| l.ends_with("/usr/bin/tool [user.bin]"))
        .expect("tool line");
    assert!(
        tool.starts_with("-rwsr-xr-x   1      0      0           11 "),
        "{tool}"
    );
    assert!(
        tool.contains(&hex::encode(Sha256::digest(b"binary\0data"))),
        "{tool}"
    );
    let console = text.lines().find(|l| l.ends_with("/console")).unwrap();
    assert!(
        console.starts_with("crw-r--r--") && console.contains(" 5,1 "),
        "{console}"
    );
    assert!(text.lines().any(|l| l.ends_with("/tool -> usr/bin/tool")));
    let out = wafer(&["ls", "--long", "--no-hash", root.to_str().unwrap()]);
    assert!(!String::from_utf8(out.stdout)
        .unwrap()
        .contains(&hex::encode(Sha256::digest(b"binary\0data"))));
}

#[test]
fn ls_errors_exit_1_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-image");
    let out = wafer(&["ls", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-image") && err.contains("No such file"),
        "{err}"
    );
    let junk = tmp.path().join("junk.img");
    fs::write(&junk, vec![7u8; 4096]).unwrap();
    let out = wafer(&["ls", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory, tar archive"));
    // A truncated archive names the offset.
    let bad = tmp.path().join("bad.tar");
    let mut hdr = vec![0u8; 512];
    hdr[..4].copy_from_slice(b"file");
    fs::write(&bad, &hdr[..300]).unwrap();
    let out = wafer(&["ls", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // Usage errors exit 2 (docs/exit-codes.md); --help exits 0 and shows examples.
    assert_eq!(wafer(&["ls"]).status.code(), Some(2));
    let help = wafer(&["ls", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}
