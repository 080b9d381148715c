//! Hostile bundles and images against the real `wafer` binary: `approve` never writes through a
//! link planted in the bundle, `approve --report` refuses a verdict edited to pass, `verify`
//! refuses a zstd bomb and a FIFO before decompressing anything, and `verify`, `inspect`, `ls`
//! and `diff` print crafted names and versions with visible escapes, never raw control
//! characters.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sha2::Digest;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

/// Every path below `dir` (and `dir` itself) with what it is: a file's sha256, a link's target,
/// a folder. Equal fingerprints before and after mean nothing there changed.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let what = if md.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            "dir".to_string()
        } else {
            format!(
                "file {} links {}",
                hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())),
                std::os::unix::fs::MetadataExt::nlink(&md)
            )
        };
        out.push((p, what));
    }
    out.sort();
    out
}

fn approve(bundle: &Path, key: &Path, policy: &Path) -> std::process::Output {
    wafer(&["approve", s(bundle), "--key", s(key), "--policy", s(policy)])
}

/// Asserts `text` holds no raw control, C1 or bidi character (newlines apart).
fn assert_no_raw_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && rootfs::escape::needs_escape(c))
        .collect();
    assert!(bad.is_empty(), "{what} printed raw {bad:?}:\n{text}");
}

#[test]
fn approve_never_writes_through_a_link_in_the_bundle() {
    let f = Fixture::new(|_| {});
    let (_store, alice, _admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let pristine = f.build(&f.recipe(""), "pristine");

    // The approval's name is predictable from the key: learn it from a clean approval.
    let probe = f.path("probe");
    copy_dir(&pristine, &probe);
    ok(approve(&probe, &alice, &policy));
    let names: Vec<String> = std::fs::read_dir(probe.join("attestations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    assert!(name.starts_with("approval-"), "{name}");
    let written = probe.join("attestations").join(name);
    assert!(std::fs::symlink_metadata(&written).unwrap().is_file());
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
    assert!(env["signatures"].as_array().is_some_and(|s| s.len() == 1));

    // 1. The approval file is a symlink to a file of the reviewer's.
    let victim = f.path("victim.txt");
    std::fs::write(&victim, b"the reviewer's precious file\n").unwrap();
    let a = f.path("a");
    copy_dir(&pristine, &a);
    std::os::unix::fs::symlink(&victim, a.join("attestations").join(name)).unwrap();
    let (before_a, before_v) = (fingerprint(&a), fingerprint(&victim));
    let o = approve(&a, &alice, &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("is a symbolic link") && stderr(&o).contains(name.as_str()),
        "{}",
        stderr(&o)
    );
    assert_eq!(fingerprint(&victim), before_v, "the link's target changed");
    assert_eq!(fingerprint(&a), before_a, "the bundle changed");

    // 2. attestations/ itself is a symlink to another folder.
    let elsewhere = f.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep.txt"), b"keep").unwrap();
    let b = f.path("b");
    copy_dir(&pristine, &b);
    std::fs::remove_dir_all(b.join("attestations")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.join("attestations")).unwrap();
    let (before_b, before_e) = (fingerprint(&b), fingerprint(&elsewhere));
    let o = approve(&b, &alice, &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("attestations: is a symbolic link"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fingerprint(&elsewhere),
        before_e,
        "the linked folder changed"
    );
    assert_eq!(fingerprint(&b), before_b, "the bundle changed");

    // 3. The approval file is a hard link to a file elsewhere.
    let victim2 = f.path("victim2.txt");
    std::fs::write(&victim2, b"also precious\n").unwrap();
    let c = f.path("c");
    copy_dir(&pristine, &c);
    std::fs::hard_link(&victim2, c.join("attestations").join(name)).unwrap();
    let (before_c, before_v2) = (fingerprint(&c), fingerprint(&victim2));
    let o = approve(&c, &alice, &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("2 hard links"), "{}", stderr(&o));
    assert_eq!(
        fingerprint(&victim2),
        before_v2,
        "the hard link's other name changed"
    );
    assert_eq!(fingerprint(&c), before_c, "the bundle changed");
}

#[test]
fn approve_report_refuses_a_verdict_edited_to_pass() {
    let f = Fixture::new(|r| put(r, "usr/bin/evil", &fake_elf()));
    let (_store, alice, _admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let bad = f.build(
        &f.recipe_named(
            "bad.toml",
            "cms-squid",
            "1.0",
            "[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n",
        ),
        "bad",
    );
    let report = f.path("verdict.json");
    let o = wafer(&[
        "vet",
        s(&bad),
        "--policy",
        s(&policy),
        "--report",
        s(&report),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["outcome"], "fail");
    assert!(v["totals"]["blocking"].as_u64().unwrap() >= 1);
    let before = fingerprint(&bad);
    let run = |v: &serde_json::Value| {
        std::fs::write(&report, serde_json::to_vec_pretty(v).unwrap()).unwrap();
        wafer(&[
            "approve",
            s(&bad),
            "--key",
            s(&alice),
            "--policy",
            s(&policy),
            "--report",
            s(&report),
        ])
    };

    // Only the outcome edited: the totals still list blocking findings.
    v["outcome"] = "pass".into();
    let o = run(&v);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let e = stderr(&o);
    assert!(e.contains("the verdict is inconsistent"), "{e}");
    assert!(
        e.contains("its outcome is \"pass\", but its findings make it \"fail\""),
        "{e}"
    );

    // The totals edited too: the findings themselves are still blocking.
    v["totals"]["blocking"] = 0.into();
    let o = run(&v);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("the verdict is inconsistent")
            && e.contains("its totals.blocking is 0, but its findings count"),
        "{e}"
    );

    // Every blocking flag cleared: the severities at the policy's threshold still block.
    for f in v["findings"].as_array_mut().unwrap() {
        f["blocking"] = false.into();
    }
    let o = run(&v);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("is marked blocking=false, but with fail_on medium it is blocking"),
        "{e}"
    );
    assert_eq!(
        fingerprint(&bad),
        before,
        "nothing was written into the bundle"
    );
}

#[test]
fn verify_prints_a_crafted_version_escaped() {
    let f = Fixture::new(|_| {});
    let (store, _alice, _admin) = trust_store(&f);
    let b = f.build(&f.recipe(""), "bundle");
    let crafted = "1.0\u{1b}[2K\rRESULT: PASSED\u{202e}\u{9b}31m\nPASS everything: fine";
    let mpath = b.join("wafer.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["version"] = crafted.into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    let o = wafer(&["verify", s(&b), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_no_raw_controls("verify", &out);
    assert_no_raw_controls("verify (stderr)", &stderr(&o));
    assert!(
        out.contains("1.0\\x1b[2K\\rRESULT: PASSED\\u{202e}\\u{9b}31m\\nPASS everything: fine"),
        "{out}"
    );
    let results: Vec<&str> = out.lines().filter(|l| l.starts_with("RESULT")).collect();
    assert_eq!(results, ["RESULT: FAILED"], "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("PASS everything")),
        "{out}"
    );

    // JSON stays JSON: the exact string, escaped by the JSON encoder.
    let o = wafer(&["verify", s(&b), "--trust", s(&store), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["detail"].as_str().is_some_and(|d| d.contains(crafted))),
        "{v}"
    );
}

#[test]
fn inspect_ls_and_diff_print_crafted_file_names_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    make_root(&old);
    let new = tmp.path().join("new");
    make_root(&new);
    let name = "usr/bin/x\u{1b}]0;owned\u{7}\r\u{202e}fdp.sh";
    put(&new, name, &fake_elf());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(new.join(name), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let shown = "x\\x1b]0;owned\\x07\\r\\u{202e}fdp.sh";

    let o = ok(wafer(&["inspect", s(&new), "--no-hash"]));
    let out = stdout(&o);
    assert_no_raw_controls("inspect", &out);
    assert!(out.contains(shown), "{out}");

    for args in [vec!["ls", s(&new)], vec!["ls", s(&new), "-l", "--no-hash"]] {
        let o = ok(wafer(&args));
        let out = stdout(&o);
        assert_no_raw_controls("ls", &out);
        assert!(out.contains(shown), "{out}");
    }

    let o = ok(wafer(&["diff", s(&old), s(&new)]));
    let out = stdout(&o);
    assert_no_raw_controls("diff", &out);
    assert!(out.contains(shown), "{out}");

    // JSON output keeps the exact name.
    let o = ok(wafer(&["inspect", s(&new), "--no-hash", "--json"]));
    let raw = format!("/{name}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["files"]["setuid"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == raw.as_str()),
        "{}",
        v["files"]["setuid"]
    );
}

/// A seekable zstd file of `frames` frames of 64 MiB of zeros each: a few KB per frame on disk,
/// `frames` x 64 MiB once decompressed.
fn zstd_bomb(frames: usize) -> Vec<u8> {
    use rootfs::zseek::{FrameEntry, SeekTable, MAX_FRAME_SIZE};
    let chunk = vec![0u8; MAX_FRAME_SIZE as usize];
    let mut one = Vec::new();
    rootfs::zseek::compress(&chunk[..], &mut one, chunk.len(), 3, 1).unwrap();
    let table = SeekTable::read_from(&mut std::io::Cursor::new(&one)).unwrap();
    let frame = table.frames[0];
    let bytes = &one[..frame.compressed_size as usize];
    let mut out = Vec::with_capacity(bytes.len() * frames + 16 * frames);
    let mut bomb = SeekTable {
        frames: Vec::new(),
        has_checksums: table.has_checksums,
    };
    for i in 0..frames {
        out.extend_from_slice(bytes);
        bomb.frames.push(FrameEntry {
            compressed_offset: (i * bytes.len()) as u64,
            decompressed_offset: i as u64 * u64::from(MAX_FRAME_SIZE),
            ..frame
        });
    }
    out.extend_from_slice(&bomb.to_bytes());
    out
}

#[test]
fn verify_refuses_a_zstd_bomb_and_a_fifo_before_decompressing() {
    let f = Fixture::new(|_| {});
    let (store, alice, _admin) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let good = f.build(&f.recipe(""), "good");
    ok(approve(&good, &alice, &policy));
    ok(wafer(&["verify", s(&good), "--trust", s(&store)]));

    // 400 frames of 64 MiB: 26.8 GB of zeros in well under a megabyte, behind a manifest and
    // approvals that are all valid.
    let bomb = zstd_bomb(400);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let claimed = 400 * (64u64 << 20);
    let b = f.path("bomb");
    copy_dir(&good, &b);
    std::fs::write(b.join("disk.img.zst"), &bomb).unwrap();
    for extra in [&[][..], &["--sha256"][..]] {
        let mut args = vec!["verify", s(&b), "--trust", s(&store)];
        args.extend_from_slice(extra);
        let o = wafer(&args);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!(
                "FAIL image size: the seek table of disk.img.zst declares {claimed} bytes decompressed"
            )) && out.contains("wafer.json image.size says"),
            "{out}"
        );
        assert!(out.contains("FAIL image digests: not computed"), "{out}");
        assert!(!out.contains("image dm-verity root"), "{out}");
        assert!(out.contains("PASS attestation"), "{out}");
    }
    // approve refuses it the same way, before vetting or hashing.
    let before = fingerprint(&b);
    let o = approve(&b, &alice, &policy);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("declares {claimed} bytes decompressed")),
        "{}",
        stderr(&o)
    );
    assert_eq!(fingerprint(&b), before);

    // The bomb with a manifest edited to claim its size: the approvals no longer match, and
    // nothing is decompressed either.
    let mpath = b.join("wafer.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["image"]["size"] = claimed.into();
    m["compressed"]["size"] = (bomb.len() as u64).into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let o = wafer(&["verify", s(&b), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("does not match the bundle's"), "{out}");
    assert!(out.contains("FAIL image digests: not computed"), "{out}");

    // A FIFO named disk.img.zst is refused at once (opening it must not wait for a writer).
    let p = f.path("fifo");
    copy_dir(&good, &p);
    std::fs::remove_file(p.join("disk.img.zst")).unwrap();
    let st = Command::new("mkfifo")
        .arg(p.join("disk.img.zst"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = wafer(&["verify", s(&p), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL image file")
            && stdout(&o).contains("is a FIFO, not a regular file"),
        "{}",
        stdout(&o)
    );
    let o = approve(&p, &alice, &policy);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is a FIFO"), "{}", stderr(&o));

    // A symlinked wafer.json or attestation is refused, not followed.
    let l = f.path("linked");
    copy_dir(&good, &l);
    let att = std::fs::read_dir(l.join("attestations"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let moved = f.path("moved.json");
    std::fs::rename(&att, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &att).unwrap();
    let o = wafer(&["verify", s(&l), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL attestations") && stdout(&o).contains("is a symbolic link"),
        "{}",
        stdout(&o)
    );
}
