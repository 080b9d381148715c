//! Reproducibility, sizing and profiles of the ext writer.
mod ext_write_support;
use ext_write_support::*;

use sha2::{Digest, Sha256};

use rootfs::ext::{write_image, FsKind, Profile, WriteError, WriteOptions};
use rootfs::Timestamp;

fn sha(p: &std::path::Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

#[test]
fn same_inputs_same_bytes_different_inputs_different_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let t = feature_tree(false);
    let mut o = WriteOptions::new(FsKind::Ext4);
    o.epoch = 1_700_000_000;
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    write_image(&t, &a, &o).unwrap();
    write_image(&t, &b, &o).unwrap();
    assert_eq!(sha(&a), sha(&b), "two builds of the same tree differ");

    let mut o2 = o.clone();
    o2.epoch += 1;
    write_image(&t, &b, &o2).unwrap();
    assert_ne!(sha(&a), sha(&b), "a different epoch gives the same image");

    let mut t2 = t.clone();
    let id = t2.lookup(b"/etc/hosts").unwrap();
    t2.node_mut(id).meta.mtime = Timestamp { sec: 1, nsec: 0 };
    write_image(&t2, &b, &o).unwrap();
    assert_ne!(sha(&a), sha(&b), "a different tree gives the same image");

    // The UUID and hash seed follow the inputs too.
    let uuid = |p: &std::path::Path| {
        let out = std::process::Command::new("dumpe2fs")
            .arg("-h")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("Filesystem UUID"))
            .unwrap()
            .to_string()
    };
    assert_ne!(uuid(&a), uuid(&b));
}

#[test]
fn given_size_too_small_names_the_size_needed() {
    let dir = tempfile::tempdir().unwrap();
    let t = feature_tree(false);
    let img = dir.path().join("small.img");
    let mut o = WriteOptions::new(FsKind::Ext4);
    o.size = Some(1 << 20);
    let err = write_image(&t, &img, &o).unwrap_err();
    let needed = match err {
        WriteError::TooSmall { given, needed, .. } => {
            assert_eq!(given, 1 << 20);
            needed
        }
        e => panic!("unexpected error {e}"),
    };
    assert!(err_text(needed).contains(&needed.to_string()));
    // The size it names is enough.
    o.size = Some(needed);
    let r = write_image(&t, &img, &o).unwrap();
    assert!(r.size <= needed);
    fsck(&img);
    // A large given size makes a sparse image of exactly that size.
    o.size = Some(3 << 30);
    let r = write_image(&t, &img, &o).unwrap();
    assert_eq!(r.size, 3 << 30);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 3 << 30);
    fsck(&img);
    check_with_debugfs(&t, &img, true);
}

fn err_text(needed: u64) -> String {
    WriteError::TooSmall {
        given: 1,
        needed,
        what: "x",
    }
    .to_string()
}

fn features(p: &std::path::Path) -> (String, String) {
    let out = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(p)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
            .unwrap_or_default()
    };
    (get("Filesystem features:"), get("Inode size:"))
}

#[test]
fn profiles_have_their_releases_features() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = rootfs::Tree::new(meta(0o755, 0, 0));
    file(
        &mut t,
        "/etc/hosts",
        b"127.0.0.1 localhost\n".to_vec(),
        meta(0o644, 0, 0),
    );
    type Case<'a> = (Profile, &'a str, &'a str, &'a [&'a str], &'a [&'a str]);
    let cases: [Case<'_>; 6] = [
        (
            Profile::El4,
            "el4",
            "128",
            &["has_journal", "dir_index", "filetype", "sparse_super"],
            &[
                "extent",
                "flex_bg",
                "huge_file",
                "dir_nlink",
                "extra_isize",
                "metadata_csum",
                "64bit",
            ],
        ),
        (
            Profile::El5,
            "el5",
            "256",
            &["has_journal", "ext_attr", "dir_index"],
            &["extent", "flex_bg", "huge_file", "metadata_csum"],
        ),
        (
            Profile::El6,
            "el6",
            "256",
            &[
                "has_journal",
                "extent",
                "flex_bg",
                "huge_file",
                "dir_nlink",
                "extra_isize",
                "uninit_bg",
            ],
            &["metadata_csum", "64bit"],
        ),
        (
            Profile::El7,
            "el7",
            "256",
            &["extent", "64bit", "flex_bg", "uninit_bg"],
            &["metadata_csum"],
        ),
        (
            Profile::El8,
            "el8",
            "256",
            &["extent", "64bit", "metadata_csum"],
            &[],
        ),
        (
            Profile::El9,
            "el9",
            "256",
            &["extent", "64bit", "metadata_csum", "flex_bg", "huge_file"],
            &[],
        ),
    ];
    for (p, name, isz, has, hasnt) in cases {
        let img = dir.path().join(format!("{name}.img"));
        let mut o = WriteOptions::for_profile(p);
        o.epoch = 1_000_000_000;
        write_image(&t, &img, &o).unwrap();
        fsck(&img);
        let (f, i) = features(&img);
        let words: Vec<&str> = f.split_whitespace().collect();
        assert_eq!(i, isz, "{name}: inode size");
        for h in has {
            assert!(words.contains(h), "{name}: missing {h} in {f}");
        }
        for h in hasnt {
            assert!(!words.contains(h), "{name}: unexpected {h} in {f}");
        }
    }
    assert_eq!(Profile::from_name("EL7"), Some(Profile::El7));
    assert_eq!(Profile::from_name("rhel"), None);
}

/// Debian 12's `/etc/mke2fs.conf` (e2fsprogs 1.47.0-2, as bookworm ships it): the oracle for
/// the `debian12` profile, handed to the real mke2fs through `MKE2FS_CONFIG` so that the test
/// does not depend on the host's own configuration.
const DEBIAN12_MKE2FS_CONF: &str = "[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext3 = {
		features = has_journal
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
";

#[test]
fn debian12_profile_has_the_features_debian12_mke2fs_makes() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = rootfs::Tree::new(meta(0o755, 0, 0));
    file(
        &mut t,
        "/etc/hosts",
        b"127.0.0.1 localhost\n".to_vec(),
        meta(0o644, 0, 0),
    );
    assert_eq!(Profile::from_name("debian12"), Some(Profile::Debian12));
    let ours = dir.path().join("debian12.img");
    let mut o = WriteOptions::for_profile(Profile::Debian12);
    o.epoch = 1_000_000_000;
    o.size = Some(64 << 20);
    write_image(&t, &ours, &o).unwrap();
    fsck(&ours);
    let conf = dir.path().join("mke2fs.conf");
    std::fs::write(&conf, DEBIAN12_MKE2FS_CONF).unwrap();
    let theirs = dir.path().join("mke2fs.img");
    std::fs::File::create(&theirs)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let out = std::process::Command::new("mke2fs")
        .env("MKE2FS_CONFIG", &conf)
        .args(["-F", "-q", "-t", "ext4"])
        .arg(&theirs)
        .output()
        .expect("mke2fs (e2fsprogs) must be installed");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = |f: &str| {
        let mut v: Vec<String> = f
            .split_whitespace()
            // resize_inode: reserved blocks for growing the filesystem online, which the writer
            // never sets for any profile (see `Profile`); needs_recovery is state, not a choice.
            .filter(|w| *w != "resize_inode" && *w != "needs_recovery")
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let (f_ours, i_ours) = features(&ours);
    let (f_theirs, i_theirs) = features(&theirs);
    assert_eq!(set(&f_ours), set(&f_theirs), "features: ours vs mke2fs");
    assert_eq!(i_ours, i_theirs, "inode size");
    for w in [
        "metadata_csum",
        "64bit",
        "extent",
        "flex_bg",
        "huge_file",
        "dir_nlink",
        "extra_isize",
        "has_journal",
    ] {
        assert!(
            set(&f_ours).iter().any(|x| x == w),
            "{w} missing from {f_ours}"
        );
    }
}
