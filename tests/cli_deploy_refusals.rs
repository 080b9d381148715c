//! Issue 7, first "How we will know it works" bullet: `wafer deploy --dry-run` refuses an unsigned,
//! tampered, expired or revoked wafer (and one approved only by a VO administrator) *before* any
//! file is written to the site's storage or state directory or any lease is taken.
//!
//! Every case deploys a copy of one bundle built, provenance-signed and approved once per test
//! process (see [`shared`]), then checks: a non-zero exit, the specific reason on stderr, and that
//! the storage and state directories are byte-for-byte what they were (every entry's type, mode,
//! mtime, contents or link target, the directories' own mtimes included, so a file created and
//! removed again is noticed too) -- and, on a second site whose directories do not exist yet, that
//! they are still absent afterwards. The control case deploys the good bundle on the same kind of
//! site and sees those directories change, so the refusals mean something.
//!
//! Needs the Debian package `tar` (the test base), like the other end-to-end tests.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// `wafer` as on a machine without Xen (this one may have xen-utils for xl-dry-run, but no
/// hypervisor for `xl list`).
fn wafer(args: &[&str]) -> std::process::Output {
    wafer_env(args, &[("PATH", &path_without_xl())])
}

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

/// The good bundle and everything it was made with; built once per test process.
struct Shared {
    /// The recipe folder and its temporary root (kept alive for the whole process).
    fx: Fixture,
    /// The built, provenance-signed and reviewer-approved bundle.
    good: PathBuf,
    /// The site trust store that accepts `good`.
    store: PathBuf,
    /// The reviewer's private key.
    alice: PathBuf,
    /// The reviewer's key id.
    alice_id: String,
    /// The VO administrator's private key.
    admin: PathBuf,
    /// The site policy file.
    policy: PathBuf,
}

/// trust.toml of the good store, followed by `extra` (e.g. a `[revoked]` table).
fn trust_toml(extra: &str) -> String {
    format!(
        "format = 1\nmax_approval_age_days = 30\nrequire_provenance = true\n\n[reviewers]\nthreshold = 1\nkeys = [\"reviewers/alice.pub\"]\n\n[[vo_admins]]\nvo = \"cms\"\nkey = \"vo/cms-admin.pub\"\nwafers = [\"cms-*\"]\n{extra}"
    )
}

fn build_shared() -> Shared {
    // Under the target directory's scratch area: the OnceLock is never dropped, so this folder
    // outlives the process there (cargo owns that area) rather than in /tmp.
    let fx = Fixture::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let keys = fx.path("keys");
    ok(wafer(&["key", "generate", "alice", "--dir", s(&keys)]));
    ok(wafer(&["key", "generate", "cms-admin", "--dir", s(&keys)]));
    let alice_id = stdout(&ok(wafer(&["key", "id", s(&keys.join("alice.pub"))])))
        .trim()
        .to_string();
    assert_eq!(alice_id.len(), 64, "key id {alice_id:?}");
    let store = fx.path("trust");
    make_store(&store, &keys, &trust_toml(""));
    let policy = fx.path("policy.toml");
    std::fs::write(&policy, POLICY).expect("write policy");

    let recipe = fx.recipe(
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let good = fx.path("good");
    let admin = keys.join("cms-admin.key");
    let alice = keys.join("alice.key");
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&good),
        "--sign",
        s(&admin),
    ]));
    ok(wafer(&[
        "approve",
        s(&good),
        "--key",
        s(&alice),
        "--policy",
        s(&policy),
    ]));
    // The bundle as shared passes verification against the good store.
    ok(wafer(&["verify", s(&good), "--trust", s(&store)]));
    Shared {
        fx,
        good,
        store,
        alice,
        alice_id,
        admin,
        policy,
    }
}

/// The good bundle, built once for every test of this file.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(build_shared)
}

impl Fixture {
    /// [`Fixture::new`] with an empty root, its temporary folder under `parent`.
    fn new_in(parent: &Path) -> Fixture {
        std::fs::create_dir_all(parent).expect("mkdir scratch parent");
        let f = Fixture::new(|_| {});
        // Only the recipe folder (base.tar, files/) is needed; the unpacked root stays behind.
        let tmp = tempfile::tempdir_in(parent).expect("tempdir");
        let dir = tmp.path().join("recipe");
        copy_dir(&f.dir, &dir);
        Fixture {
            tmp,
            dir,
            base_sha: f.base_sha.clone(),
        }
    }
}

/// A trust store in `dir` with alice as reviewer and cms-admin as the cms VO administrator.
fn make_store(dir: &Path, keys: &Path, toml: &str) {
    std::fs::create_dir_all(dir.join("reviewers")).expect("mkdir");
    std::fs::create_dir_all(dir.join("vo")).expect("mkdir");
    std::fs::copy(keys.join("alice.pub"), dir.join("reviewers/alice.pub")).expect("copy key");
    std::fs::copy(keys.join("cms-admin.pub"), dir.join("vo/cms-admin.pub")).expect("copy key");
    std::fs::write(dir.join("trust.toml"), toml).expect("write trust.toml");
}

/// One test's own site: storage and state directories and a site file naming a trust store.
struct TestSite {
    tmp: tempfile::TempDir,
}

impl TestSite {
    fn new() -> TestSite {
        TestSite {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes `NAME.toml` using `trust` and the directories `NAME-storage` and `NAME-state`,
    /// created (empty) when `create` is set.
    fn site(&self, name: &str, trust: &Path, create: bool) -> Site {
        let storage = self.path(&format!("{name}-storage"));
        let state = self.path(&format!("{name}-state"));
        if create {
            std::fs::create_dir_all(&storage).expect("mkdir storage");
            std::fs::create_dir_all(&state).expect("mkdir state");
        }
        let file = self.path(&format!("{name}.toml"));
        let text = format!(
            r#"name = "refusals"
[host]
memory_mib = 4096
vcpus = 4
disk_mib = 409600
[xen]
version = "4.17"
guest_types = ["pv", "pvh"]
[paths]
storage_dir = "{storage}"
state_dir = "{state}"
trust_store = "{trust}"
[[slot]]
name = "edge1"
memory_mib = 1024
vcpus = 1
disk_mib = 4096
arch = "x86_64"
vos = ["cms"]
networks = ["public"]
[[network]]
name = "public"
bridge = "xenbr0"
kind = "public"
gateway = "192.0.2.1"
prefix = 24
dns = ["192.0.2.53"]
domain = "edge.example.org"
mac_prefix = "02:16:3e"
ranges = ["192.0.2.16/29"]
"#,
            storage = storage.display(),
            state = state.display(),
            trust = trust.display()
        );
        std::fs::write(&file, text).expect("write site file");
        Site {
            file,
            storage,
            state,
        }
    }

    /// A copy of the good bundle under this test's folder, changed by `edit`.
    fn bundle(&self, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        let b = self.path(name);
        copy_dir(&shared().good, &b);
        edit(&b);
        b
    }

    /// A trust store like the good one, with `extra` appended to its trust.toml.
    fn store(&self, name: &str, extra: &str) -> PathBuf {
        let dir = self.path(name);
        make_store(&dir, &shared().fx.path("keys"), &trust_toml(extra));
        dir
    }
}

struct Site {
    file: PathBuf,
    storage: PathBuf,
    state: PathBuf,
}

/// One entry of a directory tree, as precisely as the tests compare it.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir {
        mode: u32,
        mtime: (i64, i64),
    },
    File {
        mode: u32,
        mtime: (i64, i64),
        bytes: Vec<u8>,
    },
    Link {
        target: PathBuf,
    },
    Other {
        mode: u32,
    },
}

/// Every entry below `root` and `root` itself (key ""), or `None` if `root` does not exist.
fn tree(root: &Path) -> Tree {
    fn entry(p: &Path) -> Entry {
        let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mode = md.permissions().mode();
        let mtime = (md.mtime(), md.mtime_nsec());
        let ft = md.file_type();
        if ft.is_dir() {
            Entry::Dir { mode, mtime }
        } else if ft.is_file() {
            Entry::File {
                mode,
                mtime,
                bytes: std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            }
        } else if ft.is_symlink() {
            Entry::Link {
                target: std::fs::read_link(p).expect("read_link"),
            }
        } else {
            Entry::Other { mode }
        }
    }
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).expect("below root").to_path_buf();
            let en = entry(&p);
            let is_dir = matches!(en, Entry::Dir { .. });
            out.insert(rel, en);
            if is_dir {
                walk(root, &p, out);
            }
        }
    }
    if std::fs::symlink_metadata(root).is_err() {
        return None;
    }
    let mut out = BTreeMap::new();
    out.insert(PathBuf::new(), entry(root));
    walk(root, root, &mut out);
    Some(out)
}

/// A directory tree as [`tree`] reads it.
type Tree = Option<BTreeMap<PathBuf, Entry>>;

/// Both directories of a site.
fn site_state(site: &Site) -> (Tree, Tree) {
    (tree(&site.storage), tree(&site.state))
}

/// `wafer deploy BUNDLE --site SITE --dry-run` on a site whose directories exist (empty) and on one
/// whose directories do not exist: both refused with every one of `reasons` on stderr, neither
/// site's storage or state directory changed.
fn assert_refused(t: &TestSite, bundle: &Path, trust: &Path, reasons: &[&str]) {
    for (name, create) in [("site", true), ("fresh", false)] {
        let site = t.site(name, trust, create);
        let before = site_state(&site);
        if create {
            assert!(before.0.is_some() && before.1.is_some());
        } else {
            assert!(before.0.is_none() && before.1.is_none());
        }
        let o = wafer(&["deploy", s(bundle), "--site", s(&site.file), "--dry-run"]);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name}: deploy of {} was not refused with exit 1\nstdout: {}\nstderr: {err}",
            bundle.display(),
            stdout(&o)
        );
        assert!(
            err.contains("refused: verification failed") && err.contains("nothing was deployed"),
            "{name}: not refused by verification:\n{err}"
        );
        for r in reasons {
            assert!(
                err.contains(r),
                "{name}: stderr does not give the reason {r:?}:\n{err}"
            );
        }
        assert!(
            stdout(&o).is_empty(),
            "{name}: a refused deploy printed {}",
            stdout(&o)
        );
        let after = site_state(&site);
        assert!(
            before == after,
            "{name}: the refused deploy changed the site's directories\nbefore: {before:#?}\nafter: {after:#?}"
        );
    }
}

/// Removes every attestation file from `bundle` (keeping the directory) and returns how many.
fn clear_attestations(bundle: &Path) -> usize {
    let dir = bundle.join("attestations");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("attestations/") {
        std::fs::remove_file(e.expect("entry").path()).expect("remove attestation");
        n += 1;
    }
    n
}

/// Removes the reviewer approvals (approval-*.json), keeping the VO administrator's provenance.
fn remove_approvals(bundle: &Path) {
    let mut n = 0;
    for e in std::fs::read_dir(bundle.join("attestations")).expect("attestations/") {
        let p = e.expect("entry").path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("approval-"))
        {
            std::fs::remove_file(&p).expect("remove approval");
            n += 1;
        }
    }
    assert_eq!(n, 1, "the shared bundle should carry exactly one approval");
}

fn flip_bit(file: &Path, offset: usize, bit: u8) {
    let mut bytes = std::fs::read(file).expect("read");
    assert!(offset < bytes.len(), "{}: offset {offset}", file.display());
    bytes[offset] ^= 1 << bit;
    std::fs::write(file, bytes).expect("write");
}

fn manifest(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("wafer.json")).expect("read wafer.json"))
        .expect("parse wafer.json")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

#[test]
fn refuses_an_unsigned_wafer() {
    let sh = shared();
    let t = TestSite::new();
    let b = t.bundle("unsigned", |b| {
        assert_eq!(clear_attestations(b), 2, "approval and provenance");
    });
    assert!(b.join("attestations").is_dir());
    assert_refused(
        &t,
        &b,
        &sh.store,
        &[
            "reviewer threshold: 0 of 1 required distinct reviewer approvals",
            "provenance: the store requires a build provenance",
        ],
    );
}

#[test]
fn refuses_a_flipped_bit_in_the_disk() {
    let sh = shared();
    let t = TestSite::new();
    let want = manifest(&sh.good)["compressed"]["sha256"]
        .as_str()
        .expect("compressed.sha256")
        .to_string();
    let b = t.bundle("tampered-disk", |b| {
        let zst = b.join("disk.img.zst");
        let len = std::fs::metadata(&zst).expect("stat").len() as usize;
        flip_bit(&zst, len / 3, 4);
    });
    assert_ne!(sha256_hex(&b.join("disk.img.zst")), want);
    // The flipped bit lands inside a zstd frame: its checksum fails, so the image cannot be
    // streamed and its dm-verity root cannot be matched (the compressed file's own sha256 is
    // only computed by `verify --sha256`).
    assert_refused(
        &t,
        &b,
        &sh.store,
        &[
            "FAIL image stream:",
            "disk.img.zst: digest: seekable zstd: frame",
            "FAIL image dm-verity root",
        ],
    );
}

#[test]
fn refuses_a_flipped_bit_in_the_manifest() {
    let sh = shared();
    let t = TestSite::new();
    let m = manifest(&sh.good);
    let version = m["version"].as_str().expect("version").to_string();
    assert_eq!(version, "1.0");
    // Flip one bit inside the version string ("1.0" -> "1.1"): still valid JSON, so what refuses
    // it is the signatures' binding to the manifest digest, not a parse error.
    let b = t.bundle("tampered-manifest", |b| {
        let path = b.join("wafer.json");
        let text = std::fs::read(&path).expect("read");
        let needle = b"\"version\": \"1.0\"";
        let at = text
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("no {:?} in wafer.json", String::from_utf8_lossy(needle)));
        flip_bit(&path, at + needle.len() - 2, 0);
    });
    assert_eq!(manifest(&b)["version"], "1.1");
    let approval = "subject wafer.json sha256";
    assert_refused(
        &t,
        &b,
        &sh.store,
        &[
            approval,
            "does not match the bundle's",
            "reviewer threshold: 0 of 1",
        ],
    );
}

#[test]
fn refuses_an_approval_expired_by_the_clock() {
    let sh = shared();
    let t = TestSite::new();
    // The shortest expiry `wafer approve` accepts is one second.
    let b = t.bundle("expired-cli", |b| {
        remove_approvals(b);
        let o = ok(wafer(&[
            "approve",
            s(b),
            "--key",
            s(&sh.alice),
            "--policy",
            s(&sh.policy),
            "--expires",
            "1s",
        ]));
        assert!(stdout(&o).contains("valid until"), "{}", stdout(&o));
    });
    assert!(!wafer(&[
        "approve",
        s(&b),
        "--key",
        s(&sh.alice),
        "--policy",
        s(&sh.policy),
        "--expires",
        "0s"
    ])
    .status
    .success());
    // The approval was made at or before `done` and expires one second later.
    let done = unix_now();
    while unix_now() < done + 1 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_refused(
        &t,
        &b,
        &sh.store,
        &["approval: expired at", "reviewer threshold: 0 of 1"],
    );
}

#[test]
fn refuses_an_approval_whose_expiry_is_in_the_past() {
    let sh = shared();
    let t = TestSite::new();
    // An approval signed with the trust crate, made 10 days ago and expired yesterday (within the
    // store's 30-day maximum age, so expiry is the only thing wrong with it).
    let now = unix_now();
    let b = t.bundle("expired-api", |b| {
        remove_approvals(b);
        let bytes = std::fs::read(b.join("wafer.json")).expect("read wafer.json");
        let req = trust::verify::ApprovalRequest {
            manifest_bytes: &bytes,
            verifier_id: "https://wafer.invalid/site-reviewer".into(),
            policy_uri: "file:///etc/wafer/policy.toml".into(),
            policy_sha256: "0".repeat(64),
            report_sha256: "0".repeat(64),
            time: now - 10 * 86_400,
            expires: now - 86_400,
        };
        let st = trust::verify::approval_statement(&req).expect("approval statement");
        let key = trust::key::PrivateKey::load(&sh.alice, None).expect("alice's key");
        assert_eq!(key.public().keyid(), sh.alice_id);
        std::fs::write(
            b.join("attestations/approval-expired.json"),
            trust::verify::sign_statement(&st, &key),
        )
        .expect("write approval");
    });
    let expired = trust::time::format_rfc3339(now - 86_400);
    assert_refused(
        &t,
        &b,
        &sh.store,
        &[
            &format!("approval: expired at {expired}"),
            "reviewer threshold: 0 of 1",
        ],
    );
}

#[test]
fn refuses_a_revoked_reviewer_key() {
    let sh = shared();
    let t = TestSite::new();
    let store = t.store(
        "trust-revoked-key",
        &format!("\n[revoked]\nkeys = [\"{}\"]\n", sh.alice_id),
    );
    let b = t.bundle("good", |_| {});
    assert_refused(
        &t,
        &b,
        &store,
        &[
            &format!("signed by revoked key {}", sh.alice_id),
            "reviewer threshold: 0 of 1",
        ],
    );
}

#[test]
fn refuses_a_revoked_wafer_digest() {
    let sh = shared();
    let t = TestSite::new();
    let m = manifest(&sh.good);
    let b = t.bundle("good", |_| {});
    // The raw image's sha256, then its dm-verity root: either revocation refuses the wafer.
    for (store, digest) in [
        (
            "trust-revoked-sha256",
            format!(
                "sha256:{}",
                m["image"]["sha256"].as_str().expect("image.sha256")
            ),
        ),
        (
            "trust-revoked-verity",
            format!(
                "dm-verity-sha256:{}",
                m["image"]["verity"]["root"].as_str().expect("verity.root")
            ),
        ),
    ] {
        let store = t.store(store, &format!("\n[revoked]\ndigests = [\"{digest}\"]\n"));
        assert_refused(
            &t,
            &b,
            &store,
            &[&format!("revoked digests: revoked: {digest}")],
        );
    }
}

#[test]
fn refuses_a_vo_admin_key_as_the_only_approval() {
    let sh = shared();
    let t = TestSite::new();
    let b = t.bundle("admin-approved", |b| {
        remove_approvals(b);
        ok(wafer(&[
            "approve",
            s(b),
            "--key",
            s(&sh.admin),
            "--policy",
            s(&sh.policy),
        ]));
    });
    assert_refused(
        &t,
        &b,
        &sh.store,
        &[
            "not signed by any reviewer key",
            "reviewer threshold: 0 of 1",
        ],
    );
}

#[test]
fn control_the_same_site_accepts_the_good_bundle() {
    let sh = shared();
    let t = TestSite::new();
    let b = t.bundle("good", |_| {});
    for (name, create) in [("site", true), ("fresh", false)] {
        let site = t.site(name, &sh.store, create);
        let before = site_state(&site);
        let o = ok(wafer(&[
            "deploy",
            s(&b),
            "--site",
            s(&site.file),
            "--dry-run",
            "--json",
        ]));
        let rec: serde_json::Value = serde_json::from_slice(&o.stdout).expect("record JSON");
        assert_eq!(rec["name"], "cms-cms-squid");
        assert_eq!(rec["slot"], "edge1");
        let ip = rec["leases"][0]["ip"]
            .as_str()
            .expect("a lease")
            .to_string();
        // What the refusals must not do, the accepted deploy does: files in storage, a lease in state.
        let (storage, state) = site_state(&site);
        assert!(
            before != (storage, state),
            "{name}: the deploy changed nothing"
        );
        let disk = site.storage.join("cms-cms-squid/disk.img");
        assert_eq!(
            sha256_hex(&disk),
            manifest(&b)["image"]["sha256"]
                .as_str()
                .expect("image.sha256")
        );
        assert!(
            site.state
                .join("leases/public")
                .join(format!("{ip}.json"))
                .is_file(),
            "{name}: no lease file for {ip}"
        );
    }
}
