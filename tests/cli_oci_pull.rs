//! `wafer pull` of a disk of a few MB from a real registry (Debian's docker-registry): the disk
//! streams through `bundle::stream` (checked against the signed wafer.json as it arrives) into
//! `DIR.wafer-partial/`; `--from OLD` pulls only the frames the earlier version lacks (the block
//! index `wafer push` publishes as a referrer); a pull killed with SIGKILL resumes where it
//! stopped. Oracles: the pushed bundle's bytes and `wafer verify` against a trust store.
//!
//! Debian packages: docker-registry.

mod common;
mod oci_registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ok, put, s, trust_store, Fixture};
use oci_registry::{tree_digest, Registry};
use serde_json::Value;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

/// Deterministic incompressible bytes (splitmix64).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn wafer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wafer"))
        .args(args)
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env("HOME", "/nonexistent")
        .env("SOURCE_DATE_EPOCH", "1500000000")
        .env_remove("WAFER_PASSPHRASE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run wafer")
}

/// Two approved versions of `cms-squid` (6 MiB of noise in the base; 2.0 adds one file), the
/// trust store approving them.
struct Versions {
    f: Fixture,
    v1: PathBuf,
    v2: PathBuf,
    trust: PathBuf,
}

fn versions() -> Versions {
    let f = Fixture::new(|root| put(root, "srv/data/noise.bin", &noise(6 << 20, 7)));
    let (trust, alice, _) = trust_store(&f);
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let r1 = f.recipe_named("v1.toml", "cms-squid", "1.0", "");
    let r2 = f.recipe_named(
        "v2.toml",
        "cms-squid",
        "2.0",
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let v1 = f.build(&r1, "v1");
    let v2 = f.build(&r2, "v2");
    for b in [&v1, &v2] {
        ok(wafer(&[
            "approve",
            s(b),
            "--key",
            s(&alice),
            "--policy",
            s(&policy),
        ]));
    }
    Versions { f, v1, v2, trust }
}

fn push(bundle: &Path, r: &str, reg: &Registry) {
    ok(wafer(&["push", s(bundle), r, "--insecure", &reg.host]));
}

fn result(o: &std::process::Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().expect("a result line")).expect("JSON")
}

#[test]
fn a_delta_pull_from_the_earlier_version_fetches_less_and_writes_the_same_bundle() {
    let reg = Registry::start();
    let v = versions();
    let r1 = reg.repo("cms/squid:1.0");
    let r2 = reg.repo("cms/squid:2.0");
    push(&v.v1, &r1, &reg);
    push(&v.v2, &r2, &reg);
    let p1 = v.f.path("pulled-1");
    let o = ok(wafer(&[
        "pull",
        &r1,
        "-o",
        s(&p1),
        "--insecure",
        &reg.host,
        "--trust",
        s(&v.trust),
        "--json",
    ]));
    let full = result(&o);
    assert_eq!(
        tree_digest(&p1),
        tree_digest(&v.v1),
        "the block index is never pulled"
    );
    assert!(full["fetched"].as_u64().unwrap() >= full["layer_size"].as_u64().unwrap());

    let p2 = v.f.path("pulled-2");
    let o = ok(wafer(&[
        "pull",
        &r2,
        "-o",
        s(&p2),
        "--from",
        s(&p1),
        "--insecure",
        &reg.host,
        "--trust",
        s(&v.trust),
        "--json",
    ]));
    let res = result(&o);
    assert_eq!(tree_digest(&p2), tree_digest(&v.v2));
    ok(wafer(&["verify", s(&p2), "--trust", s(&v.trust)]));
    let (fetched, layer) = (
        res["fetched"].as_u64().unwrap(),
        res["layer_size"].as_u64().unwrap(),
    );
    eprintln!("delta pull: {fetched} of {layer} bytes fetched");
    assert_eq!(res["delta"], true, "{res}");
    assert!(fetched < layer / 2, "{fetched} of {layer}");
    assert!(!v.f.path("pulled-2.wafer-partial").exists());

    // A garbled --from: a warning and the whole disk, same bytes.
    let junk = v.f.path("junk");
    std::fs::create_dir_all(&junk).unwrap();
    let p3 = v.f.path("pulled-3");
    let o = ok(wafer(&[
        "pull",
        &r2,
        "-o",
        s(&p3),
        "--from",
        s(&junk),
        "--insecure",
        &reg.host,
        "--json",
    ]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{o:?}"
    );
    assert_eq!(tree_digest(&p3), tree_digest(&v.v2));
}

#[test]
fn a_pull_killed_at_several_points_resumes_and_completes() {
    let reg = Registry::start();
    let v = versions();
    let r2 = reg.repo("cms/squid:2.0");
    push(&v.v2, &r2, &reg);
    let layer = std::fs::metadata(v.v2.join("disk.img.zst")).unwrap().len();
    let dest = v.f.path("pulled");
    let pdir = v.f.path("pulled.wafer-partial");
    let mut killed_at = Vec::new();
    for k in 1..=4u64 {
        let threshold = layer * k / 6;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wafer"))
            .args(["pull", &r2, "-o", s(&dest), "--insecure", &reg.host])
            .args(["--trust", s(&v.trust)])
            .env("HOME", "/nonexistent")
            .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                // It finished first: start again from nothing.
                std::fs::remove_dir_all(&dest).unwrap();
                break;
            }
            let size = std::fs::read_dir(&pdir)
                .ok()
                .and_then(|mut rd| rd.next())
                .and_then(|e| e.ok())
                .and_then(|e| e.metadata().ok())
                .map_or(0, |m| m.len());
            if size >= threshold && size < layer {
                child.kill().unwrap();
                child.wait().unwrap();
                killed_at.push(size);
                assert!(!dest.exists(), "nothing under the final name");
                break;
            }
            std::thread::yield_now();
        }
    }
    eprintln!("killed with {killed_at:?} of {layer} bytes in the partial file");
    let o = ok(wafer(&[
        "pull",
        &r2,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--trust",
        s(&v.trust),
        "--json",
    ]));
    let res = result(&o);
    if let Some(last) = killed_at.last() {
        assert!(res["resumed_from"].as_u64().unwrap() >= *last, "{res}");
        assert!(res["fetched"].as_u64().unwrap() < layer, "{res}");
    }
    assert_eq!(tree_digest(&dest), tree_digest(&v.v2));
    ok(wafer(&["verify", s(&dest), "--trust", s(&v.trust)]));
    assert!(
        !pdir.exists(),
        "the partial folder is removed once the pull is complete"
    );

    // Deterministically: the first half of the disk left by an earlier run is resumed from, and
    // only the rest (and the seek-table tail) is fetched.
    let disk = std::fs::read(v.v2.join("disk.img.zst")).unwrap();
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&disk))
    };
    let dest2 = v.f.path("pulled-again");
    let pdir2 = v.f.path("pulled-again.wafer-partial");
    std::fs::create_dir(&pdir2).unwrap();
    let half = disk.len() / 2;
    std::fs::write(pdir2.join(format!("{hex}.disk.img.zst")), &disk[..half]).unwrap();
    let o = ok(wafer(&[
        "pull",
        &r2,
        "-o",
        s(&dest2),
        "--insecure",
        &reg.host,
        "--trust",
        s(&v.trust),
        "--json",
    ]));
    let res = result(&o);
    assert_eq!(res["resumed_from"].as_u64(), Some(half as u64), "{res}");
    let fetched = res["fetched"].as_u64().unwrap();
    assert!(
        fetched >= (disk.len() - half) as u64 && fetched < (disk.len() - half) as u64 + (1 << 20),
        "{res}"
    );
    assert_eq!(tree_digest(&dest2), tree_digest(&v.v2));
}

#[test]
fn the_partial_folder_is_never_a_link_and_wrong_bytes_in_it_are_not_kept() {
    let reg = Registry::start();
    let v = versions();
    let r2 = reg.repo("cms/squid:2.0");
    push(&v.v2, &r2, &reg);
    let dest = v.f.path("pulled");
    let pdir = v.f.path("pulled.wafer-partial");
    let pull = || {
        wafer(&[
            "pull",
            &r2,
            "-o",
            s(&dest),
            "--insecure",
            &reg.host,
            "--trust",
            s(&v.trust),
            "--json",
        ])
    };

    // A planted link as the partial folder: refused, nothing written through it.
    let elsewhere = v.f.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &pdir).unwrap();
    let o = pull();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("wafer-partial") && e.contains("not a folder"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(!dest.exists());
    std::fs::remove_file(&pdir).unwrap();

    // A trust store that does not know the approval's key: refused before the disk is fetched
    // (no partial file was started).
    let other = Fixture::new(|_| {});
    let (other_trust, _, _) = trust_store(&other);
    let o = wafer(&[
        "pull",
        &r2,
        "-o",
        s(&dest),
        "--insecure",
        &reg.host,
        "--trust",
        s(&other_trust),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!dest.exists());
    assert!(!pdir.exists(), "no byte of the disk fetched");

    // A partial file of the right length holding wrong (valid zstd) bytes: the pull fails at
    // the digest check and deletes it; the next run starts again and completes.
    let disk = std::fs::read(v.v2.join("disk.img.zst")).unwrap();
    let wrong = std::fs::read(v.v1.join("disk.img.zst")).unwrap();
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&disk))
    };
    std::fs::create_dir(&pdir).unwrap();
    let part = pdir.join(format!("{hex}.disk.img.zst"));
    let n = wrong.len().min(disk.len()) / 2;
    assert_ne!(
        wrong[..n],
        disk[..n],
        "the earlier version's bytes are wrong bytes here"
    );
    std::fs::write(&part, &wrong[..n]).unwrap();
    let o = pull();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!dest.exists());
    assert!(!part.exists(), "wrong bytes are not kept for a resume");
    // Another pull holding the partial folder's lock: refused, its files left alone.
    std::fs::create_dir_all(&pdir).unwrap();
    let lock = std::fs::File::create(pdir.join("lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(&part, &disk[..1000]).unwrap();
    let o = pull();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another pull"),
        "{o:?}"
    );
    assert_eq!(std::fs::read(&part).unwrap(), &disk[..1000]);
    drop(lock);
    // Garbage that is not zstd at all: a warning, then a fresh start.
    std::fs::write(&part, b"not zstd at all, not even close").unwrap();
    let o = ok(pull());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("starting again"),
        "{o:?}"
    );
    assert_eq!(tree_digest(&dest), tree_digest(&v.v2));
    assert!(!pdir.exists());
}
