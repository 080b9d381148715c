//! `Bundle::open` on hostile folders: each problem is its own typed [`BundleError`] whose message
//! names the file at fault. The valid bundle is made here with [`BundleWriter`], its disk with
//! rootfs's seekable zstd writer and its digests with [`bundle::digest`] (the builder cannot be
//! used: it sits above this crate).

use std::fs;
use std::path::{Path, PathBuf};

use bundle::digest::{digest_seekable, DigestOptions};
use bundle::manifest::{
    FsFacts, ManifestBase, ManifestCompressed, ManifestImage, ManifestRecipe, ManifestRequirements,
    ManifestVerity, OsInfo,
};
use bundle::{Bundle, BundleError, BundleWriter, Manifest, ManifestError, MAX_JSON};
use rootfs::atomic::Replace;
use rootfs::safe::SafeError;

/// 1 MiB of raw image: text, zeros and pseudo-random bytes, so frames differ.
fn raw_image() -> Vec<u8> {
    let mut v = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while v.len() < 1 << 20 {
        if (v.len() >> 16) % 3 == 1 {
            v.extend_from_slice(&[0u8; 4096]);
        } else {
            for _ in 0..512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    v
}

const FRAME: usize = 64 << 10;

/// A complete, valid bundle at `dir/name`, written with [`BundleWriter`]; returns its path and
/// manifest.
fn valid_bundle(dir: &Path, name: &str) -> (PathBuf, Manifest) {
    let dest = dir.join(name);
    let w = BundleWriter::create(&dest, Replace::No).unwrap();
    let raw = raw_image();
    let zst = w.path().join("disk.img.zst");
    rootfs::zseek::compress(&raw[..], fs::File::create(&zst).unwrap(), FRAME, 3, 1).unwrap();
    let salt = vec![7u8; 32];
    let d = digest_seekable(
        fs::File::open(&zst).unwrap(),
        &DigestOptions {
            salt: salt.clone(),
            sha256: true,
            compressed_sha256: true,
            threads: 1,
        },
    )
    .unwrap();
    let frames = raw.len().div_ceil(FRAME) as u64;
    let m = Manifest {
        format: bundle::FORMAT.into(),
        name: "tiny".into(),
        version: "1".into(),
        vo: "test".into(),
        os: OsInfo {
            id: "unknown".into(),
            version: String::new(),
            name: "unknown".into(),
        },
        arch: "x86_64".into(),
        filesystem: FsFacts {
            fs_type: "ext4".into(),
            profile: "el9".into(),
            size: d.size,
        },
        requirements: ManifestRequirements {
            memory_mib: 64,
            vcpus: 1,
            disk_mib: 1,
            arch: "x86_64".into(),
            guest_types: vec!["pv".into()],
            min_xen: None,
        },
        boot: None,
        image: ManifestImage {
            sha256: hex(&d.sha256.unwrap()),
            size: d.size,
            verity: ManifestVerity {
                root: d.verity.root_hex(),
                salt: hex(&salt),
                hash_algorithm: "sha256".into(),
                data_block_size: 4096,
                hash_block_size: 4096,
                format: 1,
            },
        },
        compressed: ManifestCompressed {
            file: "disk.img.zst".into(),
            sha256: hex(&d.compressed_sha256.unwrap()),
            size: fs::metadata(&zst).unwrap().len(),
            frame_size: FRAME as u64,
            level: 3,
            frames,
        },
        recipe: ManifestRecipe {
            sha256: "00".repeat(32),
            inputs_sha256: "11".repeat(32),
        },
        base: ManifestBase {
            kind: "tar".into(),
            sha256: "22".repeat(32),
        },
        packages: None,
        source_date_epoch: 1_700_000_000,
    };
    w.write_manifest(&m).unwrap();
    fs::write(w.path().join("attestations/approval-x.json"), b"{}").unwrap();
    assert_eq!(w.commit().unwrap(), dest);
    (dest, m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn err(dir: &Path) -> BundleError {
    match Bundle::open(dir) {
        Ok(_) => panic!("{}: opened", dir.display()),
        Err(e) => e,
    }
}

/// The message starts with the file at fault.
fn names(e: &BundleError, file: &Path) {
    let m = e.to_string();
    assert!(
        m.starts_with(&file.display().to_string()),
        "the message does not name {}: {m}",
        file.display()
    );
}

/// Rewrites `wafer.json` as `f` changes its JSON.
fn edit_manifest(b: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = b.join("wafer.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn a_valid_bundle_opens_with_its_manifest_and_attestations() {
    let t = tempfile::tempdir().unwrap();
    let (b, m) = valid_bundle(t.path(), "b");
    let opened = Bundle::open(&b).unwrap();
    assert_eq!(opened.manifest(), &m);
    assert_eq!(
        opened.manifest_bytes(),
        fs::read(b.join("wafer.json")).unwrap()
    );
    assert_eq!(opened.manifest_bytes(), m.to_json().unwrap());
    assert_eq!(opened.disk().size(), 1 << 20);
    assert_eq!(opened.disk().frames() as u64, m.compressed.frames);
    assert_eq!(opened.attestations().len(), 1);
    assert_eq!(opened.attestations()[0].name, "approval-x.json");
    // The disk decompresses to the image the manifest describes (the verity root checked).
    let out = t.path().join("raw");
    let f = fs::File::create(&out).unwrap();
    let v = &m.image.verity;
    assert_eq!(
        opened
            .disk()
            .materialise(&f, &v.salt, m.image.size, &v.root)
            .unwrap(),
        1 << 20
    );
    assert_eq!(fs::read(&out).unwrap(), raw_image());
}

#[test]
fn missing_linked_fifo_or_huge_wafer_json_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let (b, _) = valid_bundle(t.path(), "b");
    let mpath = b.join("wafer.json");
    let good = fs::read(&mpath).unwrap();

    // Missing.
    fs::remove_file(&mpath).unwrap();
    let e = err(&b);
    assert!(matches!(e, BundleError::Read(SafeError::Io { .. })), "{e}");
    names(&e, &mpath);

    // A link to a good manifest: refused, never followed.
    let elsewhere = t.path().join("elsewhere.json");
    fs::write(&elsewhere, &good).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &mpath).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Read(SafeError::Link { .. })),
        "{e}"
    );
    names(&e, &mpath);
    fs::remove_file(&mpath).unwrap();

    // A FIFO: refused without being opened for reading (which would wait for a writer).
    let st = std::process::Command::new("mkfifo")
        .arg(&mpath)
        .status()
        .expect("mkfifo (Debian package coreutils)");
    assert!(st.success());
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Read(SafeError::WrongType { .. })),
        "{e}"
    );
    names(&e, &mpath);
    assert!(e.to_string().contains("FIFO"), "{e}");
    fs::remove_file(&mpath).unwrap();

    // Larger than MAX_JSON (sparse: nothing is read).
    let f = fs::File::create(&mpath).unwrap();
    f.set_len(MAX_JSON + 1).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Read(SafeError::TooLarge { size, max, .. }) if size == MAX_JSON + 1 && max == MAX_JSON),
        "{e}"
    );
    names(&e, &mpath);

    // Restored: opens again.
    fs::write(&mpath, &good).unwrap();
    Bundle::open(&b).unwrap();
}

#[test]
fn unknown_field_other_format_or_other_disk_name_is_refused_naming_wafer_json() {
    let t = tempfile::tempdir().unwrap();
    let (b, _) = valid_bundle(t.path(), "b");
    let mpath = b.join("wafer.json");

    edit_manifest(&b, |v| {
        v["image"]["verity"]["surprise"] = 1.into();
    });
    let e = err(&b);
    assert!(
        matches!(
            e,
            BundleError::Manifest {
                source: ManifestError::Parse { .. },
                ..
            }
        ),
        "{e}"
    );
    names(&e, &mpath);
    assert!(e.to_string().contains("unknown field `surprise`"), "{e}");

    let (b, _) = valid_bundle(t.path(), "c");
    let mpath = b.join("wafer.json");
    edit_manifest(&b, |v| v["format"] = "wafer-bundle/2".into());
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Manifest { source: ManifestError::Format(ref f), .. } if f == "wafer-bundle/2"),
        "{e}"
    );
    names(&e, &mpath);

    let (b, _) = valid_bundle(t.path(), "d");
    let mpath = b.join("wafer.json");
    edit_manifest(&b, |v| v["compressed"]["file"] = "../other.zst".into());
    let e = err(&b);
    assert!(matches!(e, BundleError::DiskName { .. }), "{e}");
    names(&e, &mpath);

    // Not JSON at all.
    fs::write(&mpath, b"\x00\xffnot json").unwrap();
    let e = err(&b);
    assert!(matches!(e, BundleError::Manifest { .. }), "{e}");
    names(&e, &mpath);
}

#[test]
fn missing_empty_or_truncated_disk_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let (b, m) = valid_bundle(t.path(), "b");
    let zst = b.join("disk.img.zst");
    let good = fs::read(&zst).unwrap();

    fs::remove_file(&zst).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::MissingDisk { ref path } if *path == zst),
        "{e}"
    );
    names(&e, &zst);

    fs::write(&zst, b"").unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::EmptyDisk { ref path } if *path == zst),
        "{e}"
    );
    names(&e, &zst);

    fs::write(&zst, &good[..good.len() - 100]).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::CompressedSize { actual, expected, .. }
            if actual == good.len() as u64 - 100 && expected == m.compressed.size),
        "{e}"
    );
    names(&e, &zst);
    assert!(e.to_string().contains("truncated"), "{e}");

    // A disk that is a folder, or a link to the good one.
    fs::remove_file(&zst).unwrap();
    fs::create_dir(&zst).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Read(SafeError::WrongType { .. })),
        "{e}"
    );
    names(&e, &zst);
    fs::remove_dir(&zst).unwrap();
    let elsewhere = t.path().join("elsewhere.zst");
    fs::write(&elsewhere, &good).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &zst).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::Read(SafeError::Link { .. })),
        "{e}"
    );
    names(&e, &zst);
}

#[test]
fn wrong_compressed_size_garbage_seek_table_or_other_image_size_is_refused_naming_the_disk() {
    let t = tempfile::tempdir().unwrap();
    let (b, m) = valid_bundle(t.path(), "b");
    let zst = b.join("disk.img.zst");
    let good = fs::read(&zst).unwrap();

    // compressed.size says more than the file holds; then less.
    edit_manifest(&b, |v| {
        v["compressed"]["size"] = (m.compressed.size + 1).into();
    });
    let e = err(&b);
    assert!(matches!(e, BundleError::CompressedSize { .. }), "{e}");
    names(&e, &zst);
    assert!(e.to_string().contains("truncated"), "{e}");
    edit_manifest(&b, |v| {
        v["compressed"]["size"] = (m.compressed.size - 1).into();
    });
    let e = err(&b);
    assert!(matches!(e, BundleError::CompressedSize { .. }), "{e}");
    names(&e, &zst);
    assert!(e.to_string().contains("not the one built"), "{e}");
    assert!(
        e.to_string()
            .contains(&b.join("wafer.json").display().to_string()),
        "the message also names the manifest: {e}"
    );
    edit_manifest(&b, |v| {
        v["compressed"]["size"] = m.compressed.size.into();
    });
    Bundle::open(&b).unwrap();

    // The same length, the seek table's last bytes (its footer: frame count, descriptor,
    // magic) overwritten with garbage.
    let mut bad = good.clone();
    let n = bad.len();
    for (i, x) in bad[n - 9..].iter_mut().enumerate() {
        *x = 0xA5 ^ i as u8;
    }
    fs::write(&zst, &bad).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::SeekTable { ref path, .. } if *path == zst),
        "{e}"
    );
    names(&e, &zst);

    // The table's entries rewritten: a frame declares another decompressed size. The entries
    // precede the 9-byte footer (frame count u32, descriptor byte, magic u32); each is
    // (compressed u32 LE, decompressed u32 LE[, checksum u32 LE when descriptor bit 7 is set]).
    let mut bad = good.clone();
    let frames = m.compressed.frames as usize;
    let entry = if good[n - 5] & 0x80 != 0 { 12 } else { 8 };
    let first_entry = n - 9 - entry * frames;
    let d = first_entry + 4;
    let was = u32::from_le_bytes(bad[d..d + 4].try_into().unwrap());
    bad[d..d + 4].copy_from_slice(&(was - 4096).to_le_bytes());
    fs::write(&zst, &bad).unwrap();
    let e = err(&b);
    assert!(
        matches!(e, BundleError::ImageSize { declared, expected, .. }
            if declared == m.image.size - 4096 && expected == m.image.size),
        "{e}"
    );
    names(&e, &zst);
    fs::write(&zst, &good).unwrap();

    // A good table, but image.size in wafer.json says otherwise.
    edit_manifest(&b, |v| {
        v["image"]["size"] = (m.image.size + 4096).into();
    });
    let e = err(&b);
    assert!(
        matches!(e, BundleError::ImageSize { declared, expected, frames, .. }
            if declared == m.image.size && expected == m.image.size + 4096 && frames as u64 == m.compressed.frames),
        "{e}"
    );
    names(&e, &zst);
    assert!(e.to_string().contains("image.size"), "{e}");
}

#[test]
fn a_folder_that_is_not_one_is_refused_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing");
    let e = err(&missing);
    assert!(matches!(e, BundleError::Read(_)), "{e}");
    names(&e, &missing);
    let file = t.path().join("file");
    fs::write(&file, b"x").unwrap();
    let e = err(&file);
    assert!(matches!(e, BundleError::Read(_)), "{e}");
    names(&e, &file);
}
