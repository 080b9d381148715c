//! dm-verity against the real `veritysetup` (Debian package cryptsetup-bin).

use std::path::Path;
use std::process::Command;

use trust::digest::{digest_reader, digest_seekable, DigestOptions};

fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if (i / 4096) % 5 == 0 {
                0
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

fn veritysetup(args: &[&str]) -> std::process::Output {
    Command::new("veritysetup")
        .args(args)
        .output()
        .expect("`veritysetup` (Debian package cryptsetup-bin) is required by this test")
}

fn their_root(img: &Path, hash: &Path, salt: &str) -> String {
    let o = veritysetup(&[
        "format",
        "--no-superblock",
        "--hash=sha256",
        "--data-block-size=4096",
        "--hash-block-size=4096",
        "--format=1",
        &format!("--salt={salt}"),
        img.to_str().unwrap(),
        hash.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "veritysetup format failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    out.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no root hash in {out}"))
}

fn check_size(blocks: usize, salt_hex: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let raw = data(blocks * 4096, blocks as u32);
    std::fs::write(&img, &raw).unwrap();
    let theirs = their_root(&img, &dir.path().join("their.hash"), salt_hex);
    let salt = hex::decode(salt_hex).unwrap();
    let opts = DigestOptions {
        salt: salt.clone(),
        sha256: true,
        compressed_sha256: true,
        threads: 2,
    };
    let ours = digest_reader(&raw[..], &opts).unwrap();
    assert_eq!(ours.verity.root_hex(), theirs, "blocks={blocks}");
    assert_eq!(ours.sha256.map(hex::encode), Some(sha256_hex(&raw)));
    // Our hash device is byte-identical to theirs and veritysetup verify accepts it.
    let ours_hash = dir.path().join("our.hash");
    ours.verity
        .write_hash_device(std::fs::File::create(&ours_hash).unwrap())
        .unwrap();
    if blocks > 1 {
        assert_eq!(
            std::fs::read(&ours_hash).unwrap(),
            std::fs::read(dir.path().join("their.hash")).unwrap()
        );
        let o = veritysetup(&[
            "verify",
            "--no-superblock",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
            "--format=1",
            &format!("--salt={salt_hex}"),
            img.to_str().unwrap(),
            ours_hash.to_str().unwrap(),
            &theirs,
        ]);
        assert!(
            o.status.success(),
            "veritysetup verify failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The same through seekable zstd (frames of 3 blocks + a non-aligned frame size).
    for frame in [3 * 4096, 5000] {
        let mut z = Vec::new();
        rootfs::zseek::compress(&raw[..], &mut z, frame, 1, 2).unwrap();
        let zd = digest_seekable(std::io::Cursor::new(&z), &opts).unwrap();
        assert_eq!(
            zd.verity.root_hex(),
            theirs,
            "blocks={blocks} frame={frame}"
        );
        assert_eq!(zd.sha256, ours.sha256);
        assert_eq!(zd.compressed_sha256.map(hex::encode), Some(sha256_hex(&z)));
        assert_eq!(zd.size, raw.len() as u64);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn root_hash_matches_veritysetup() {
    let salt = "5a17c0ffee00112233445566778899aabbccddeeff00112233445566778899aa";
    for blocks in [1, 2, 127, 128, 129, 300, 16385] {
        check_size(blocks, salt);
    }
    check_size(200, "ab");
}

#[test]
fn veritysetup_verify_rejects_wrong_root() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let raw = data(40 * 4096, 7);
    std::fs::write(&img, &raw).unwrap();
    let opts = DigestOptions {
        salt: vec![1, 2, 3],
        ..Default::default()
    };
    let mut ours = digest_reader(&raw[..], &opts).unwrap();
    let hash = dir.path().join("h");
    ours.verity
        .write_hash_device(std::fs::File::create(&hash).unwrap())
        .unwrap();
    ours.verity.root[0] ^= 1;
    let o = veritysetup(&[
        "verify",
        "--no-superblock",
        "--hash=sha256",
        "--format=1",
        "--salt=010203",
        img.to_str().unwrap(),
        hash.to_str().unwrap(),
        &ours.verity.root_hex(),
    ]);
    assert!(!o.status.success(), "veritysetup accepted a wrong root");
}
