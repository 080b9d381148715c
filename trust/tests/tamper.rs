//! Verification of a whole bundle, and one test per tampering case of issue 6.

use std::path::{Path, PathBuf};

use bundle::Manifest;
use trust::digest::{digest_reader, DigestOptions};
use trust::key::PrivateKey;
use trust::statement::{Statement, PROVENANCE_V1};
use trust::store::TrustStore;
use trust::verify::{
    approval_statement, sign_statement, verify_bundle_dir, wafer_subjects, ApprovalRequest,
    BundleOptions, Report, RollbackException, ROLLBACK_EXCEPTION_V1,
};

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

struct Fixture {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    store_dir: PathBuf,
    reviewers: Vec<PrivateKey>,
    atlas: PrivateKey,
    cms: PrivateKey,
    outsider: PrivateKey,
    raw: Vec<u8>,
}

fn image(seed: u8) -> Vec<u8> {
    (0..300 * 4096u32)
        .map(|i| {
            if i % 4096 < 100 {
                (i / 4096) as u8 ^ seed
            } else {
                0
            }
        })
        .collect()
}

fn write_image(bundle: &Path, raw: &[u8], salt: &[u8], version: &str) -> Vec<u8> {
    let mut z = Vec::new();
    rootfs::zseek::compress(raw, &mut z, 64 * 4096, 3, 2).unwrap();
    std::fs::write(bundle.join("disk.img.zst"), &z).unwrap();
    let d = digest_reader(
        raw,
        &DigestOptions {
            salt: salt.to_vec(),
            sha256: true,
            ..Default::default()
        },
    )
    .unwrap();
    use sha2::Digest;
    // A complete manifest: verification parses wafer.json strictly (bundle::Manifest).
    let manifest = serde_json::json!({
        "format": "wafer-bundle/1",
        "name": "atlas-squid", "version": version, "vo": "atlas",
        "os": {"id": "scientific", "version": "5", "name": "SL5"}, "arch": "x86_64",
        "filesystem": {"type": "ext3", "profile": "el5", "size": d.size},
        "requirements": {"memory_mib": 512, "vcpus": 1, "disk_mib": 2, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
        "boot": null,
        "image": {"sha256": hex::encode(d.sha256.unwrap()), "size": d.size, "verity": {"root": d.verity.root_hex(), "salt": hex::encode(salt), "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
        "compressed": {"file": "disk.img.zst", "sha256": hex::encode(sha2::Sha256::digest(&z)), "size": z.len(), "frame_size": 64 * 4096, "level": 3, "frames": 5},
        "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
        "base": {"kind": "tar", "sha256": "44".repeat(32)},
        "packages": null,
        "source_date_epoch": 0
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    std::fs::write(bundle.join("wafer.json"), &bytes).unwrap();
    bytes
}

fn approve(bundle: &Path, key: &PrivateKey, file: &str, time: i64, expires: i64) {
    let m = std::fs::read(bundle.join("wafer.json")).unwrap();
    let st = approval_statement(&ApprovalRequest {
        manifest_bytes: &m,
        verifier_id: "https://site.example/reviewers".into(),
        policy_uri: "https://site.example/policy.toml".into(),
        policy_sha256: "11".repeat(32),
        report_sha256: "22".repeat(32),
        time,
        expires,
    })
    .unwrap();
    std::fs::write(
        bundle.join("attestations").join(file),
        sign_statement(&st, key),
    )
    .unwrap();
}

fn provenance(bundle: &Path, key: &PrivateKey) {
    let m = std::fs::read(bundle.join("wafer.json")).unwrap();
    let man = Manifest::from_json(&m).unwrap();
    let pred = serde_json::json!({
        "buildDefinition": {"buildType": trust::statement::WAFER_BUILD_TYPE, "externalParameters": {"recipe": "recipes/atlas-squid.toml"},
            "resolvedDependencies": [{"name": "recipe", "digest": {"sha256": "33".repeat(32)}}, {"name": "base", "digest": {"sha256": "44".repeat(32)}}]},
        "runDetails": {"builder": {"id": "https://atlas.example/wafer-build"}}
    });
    let st = Statement::new(wafer_subjects(&m, &man), PROVENANCE_V1, &pred);
    std::fs::write(
        bundle.join("attestations/provenance.json"),
        sign_statement(&st, key),
    )
    .unwrap();
}

fn store_toml(extra: &str) -> String {
    store_toml_top("", extra)
}

fn store_toml_top(top: &str, extra: &str) -> String {
    format!(
        "format = 1\nmax_approval_age_days = 90\n{top}\n[reviewers]\nthreshold = 2\nkeys = [\"reviewers/r0.pub\", \"reviewers/r1.pub\", \"reviewers/r2.pub\"]\n\n\
         [[vo_admins]]\nvo = \"atlas\"\nkey = \"vo/atlas.pub\"\nwafers = [\"atlas-*\"]\n\n[[vo_admins]]\nvo = \"cms\"\nkey = \"vo/cms.pub\"\nwafers = [\"cms-*\"]\n\n{extra}"
    )
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(bundle.join("attestations")).unwrap();
    std::fs::create_dir_all(store_dir.join("reviewers")).unwrap();
    std::fs::create_dir_all(store_dir.join("vo")).unwrap();
    let seeds = |i: u8| PrivateKey::from_seed(&[i; 32]);
    let reviewers = vec![seeds(1), seeds(2), seeds(3)];
    for (i, k) in reviewers.iter().enumerate() {
        std::fs::write(
            store_dir.join(format!("reviewers/r{i}.pub")),
            k.public().to_pem().unwrap(),
        )
        .unwrap();
    }
    let (atlas, cms, outsider) = (seeds(10), seeds(11), seeds(12));
    std::fs::write(
        store_dir.join("vo/atlas.pub"),
        atlas.public().to_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(store_dir.join("vo/cms.pub"), cms.public().to_pem().unwrap()).unwrap();
    std::fs::write(store_dir.join("trust.toml"), store_toml("")).unwrap();
    let raw = image(0);
    write_image(&bundle, &raw, b"wafer-salt", "3.1");
    approve(
        &bundle,
        &reviewers[0],
        "approval-r0.json",
        NOW - DAY,
        NOW + 30 * DAY,
    );
    approve(
        &bundle,
        &reviewers[1],
        "approval-r1.json",
        NOW - DAY,
        NOW + 30 * DAY,
    );
    provenance(&bundle, &atlas);
    Fixture {
        _dir: dir,
        bundle,
        store_dir,
        reviewers,
        atlas,
        cms,
        outsider,
        raw,
    }
}

fn run(f: &Fixture) -> Report {
    run_with(f, true)
}

/// Verifies with or without the plain sha256 passes (`wafer verify` with/without `--sha256`).
fn run_with(f: &Fixture, sha256: bool) -> Report {
    let store = TrustStore::load(&f.store_dir).unwrap();
    verify_bundle_dir(
        &f.bundle,
        &store,
        NOW,
        &BundleOptions { sha256, threads: 2 },
    )
}

/// Asserts the bundle is refused and that check `name` failed with a detail containing `why`.
fn refused(f: &Fixture, name: &str, why: &str) {
    let r = run(f);
    assert!(!r.passed(), "accepted:\n{r}");
    assert!(
        r.failures()
            .iter()
            .any(|c| c.name.contains(name) && c.detail.contains(why)),
        "expected failed check {name:?} with {why:?}, got:\n{r}"
    );
}

fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    b[offset % n] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn good_bundle_passes() {
    let f = fixture();
    let r = run(&f);
    assert!(r.passed(), "{r}");
    assert!(r.to_string().contains("PASS reviewer threshold: 2 of 2"));
}

/// The default pass (no `--sha256`) checks the dm-verity root and size only; it still refuses
/// every change to the image, and `--sha256` adds both plain digests.
/// The image with one block's data run changed (the first block at or after byte `from` whose
/// change keeps the compressed length), recompressed: the manifest's `compressed.size` still matches, so the
/// change is found by the digests, not by the cheap size check.
fn flipped_same_length(f: &Fixture, from: usize, mask: u8) -> Vec<u8> {
    let want = std::fs::metadata(f.bundle.join("disk.img.zst"))
        .unwrap()
        .len() as usize;
    // Blocks hold 100 equal bytes then zeros: changing a block's whole run keeps its shape.
    for b in from / 4096..f.raw.len() / 4096 {
        let mut raw = f.raw.clone();
        for x in &mut raw[b * 4096..b * 4096 + 100] {
            *x ^= mask;
        }
        let mut z = Vec::new();
        rootfs::zseek::compress(&raw[..], &mut z, 64 * 4096, 3, 2).unwrap();
        if z.len() == want {
            return z;
        }
    }
    panic!("no change near byte {from} keeps the compressed length");
}

#[test]
fn default_pass_checks_verity_and_size_only() {
    let f = fixture();
    let quick = run_with(&f, false);
    assert!(quick.passed(), "{quick}");
    let text = quick.to_string();
    assert!(text.contains("PASS image dm-verity root"), "{text}");
    assert!(text.contains("PASS image size"), "{text}");
    assert!(!text.contains("compressed sha256"), "{text}");
    assert!(!text.contains("image sha256"), "{text}");
    let full = run(&f).to_string();
    assert!(full.contains("PASS compressed sha256"), "{full}");
    assert!(full.contains("PASS image sha256"), "{full}");

    // A changed image byte, a flipped compressed bit: refused without --sha256 too.
    let z = flipped_same_length(&f, 200_000, 0x80);
    std::fs::write(f.bundle.join("disk.img.zst"), &z).unwrap();
    let r = run_with(&f, false);
    assert!(!r.passed(), "{r}");
    assert!(r.to_string().contains("FAIL image dm-verity root"), "{r}");
    let mut z = Vec::new();
    rootfs::zseek::compress(&f.raw[..], &mut z, 64 * 4096, 3, 2).unwrap();
    z[1000] ^= 1;
    std::fs::write(f.bundle.join("disk.img.zst"), &z).unwrap();
    let r = run_with(&f, false);
    assert!(!r.passed(), "{r}");
    assert!(r.to_string().contains("FAIL image stream"), "{r}");
}

/// Zero bytes appended after the last whole block do not change the dm-verity root (the
/// last block is zero-padded anyway); the size check catches them.
#[test]
fn trailing_zeros_change_the_size_not_the_root() {
    let f = fixture();
    assert_eq!(f.raw.len() % 4096, 0);
    let mut raw = f.raw.clone();
    raw.extend_from_slice(&[0u8; 100]);
    let mut z = Vec::new();
    rootfs::zseek::compress(&raw[..], &mut z, 64 * 4096, 3, 2).unwrap();
    std::fs::write(f.bundle.join("disk.img.zst"), &z).unwrap();
    let r = run_with(&f, false);
    assert!(!r.passed(), "{r}");
    let text = r.to_string();
    assert!(text.contains("FAIL image size"), "{text}");
}

#[test]
fn flipped_bit_in_compressed_file() {
    let f = fixture();
    flip(&f.bundle.join("disk.img.zst"), 1000);
    refused(&f, "image stream", "frame");
}

#[test]
fn flipped_bit_in_compressed_seek_table() {
    let f = fixture();
    let n = std::fs::metadata(f.bundle.join("disk.img.zst"))
        .unwrap()
        .len() as usize;
    flip(&f.bundle.join("disk.img.zst"), n - 12);
    let r = run(&f);
    assert!(!r.passed(), "{r}");
}

#[test]
fn flipped_bit_in_raw_image() {
    let f = fixture();
    let z = flipped_same_length(&f, 123_456, 1);
    std::fs::write(f.bundle.join("disk.img.zst"), z).unwrap();
    refused(&f, "image dm-verity root", "manifest says");
    refused(&f, "image sha256", "manifest says");
}

#[test]
fn flipped_bit_in_manifest() {
    let f = fixture();
    let m = std::fs::read_to_string(f.bundle.join("wafer.json")).unwrap();
    std::fs::write(f.bundle.join("wafer.json"), m.replace("SL5", "SL4")).unwrap();
    refused(&f, "approval", "subject wafer.json sha256");
}

#[test]
fn flipped_bit_in_envelope_payload() {
    let f = fixture();
    let p = f.bundle.join("attestations/approval-r0.json");
    let mut e = trust::dsse::Envelope::from_json(&std::fs::read(&p).unwrap()).unwrap();
    e.payload[40] ^= 1;
    std::fs::write(&p, e.to_json()).unwrap();
    refused(&f, "approval-r0.json: signature", "does not verify");
}

#[test]
fn flipped_bit_in_signature() {
    let f = fixture();
    let p = f.bundle.join("attestations/approval-r1.json");
    let mut e = trust::dsse::Envelope::from_json(&std::fs::read(&p).unwrap()).unwrap();
    e.signatures[0].sig[5] ^= 1;
    std::fs::write(&p, e.to_json()).unwrap();
    refused(&f, "approval-r1.json: signature", "does not verify");
}

#[test]
fn signature_by_unknown_key() {
    let f = fixture();
    approve(
        &f.bundle,
        &f.outsider,
        "approval-x.json",
        NOW - DAY,
        NOW + DAY,
    );
    refused(&f, "approval-x.json: signature", "unknown key");
}

#[test]
fn signature_by_revoked_key() {
    let f = fixture();
    let id = f.reviewers[1].public().keyid();
    std::fs::write(
        f.store_dir.join("trust.toml"),
        store_toml(&format!("[revoked]\nkeys = [\"{id}\"]\n")),
    )
    .unwrap();
    refused(&f, "approval-r1.json: signature", "revoked key");
    refused(&f, "reviewer threshold", "1 of 2");
}

#[test]
fn vo_key_for_another_vos_wafer() {
    let f = fixture();
    provenance(&f.bundle, &f.cms);
    refused(&f, "provenance", "VO administrator of cms");
    // The right VO key passes.
    provenance(&f.bundle, &f.atlas);
    assert!(run(&f).passed());
}

#[test]
fn too_few_reviewer_signatures() {
    let f = fixture();
    std::fs::remove_file(f.bundle.join("attestations/approval-r1.json")).unwrap();
    refused(&f, "reviewer threshold", "1 of 2");
    // The same reviewer twice does not count twice.
    approve(
        &f.bundle,
        &f.reviewers[0],
        "approval-r0-again.json",
        NOW - 2 * DAY,
        NOW + DAY,
    );
    refused(&f, "reviewer threshold", "1 of 2");
    // A VO administrator's approval does not count as a reviewer's.
    approve(
        &f.bundle,
        &f.atlas,
        "approval-atlas.json",
        NOW - DAY,
        NOW + DAY,
    );
    refused(
        &f,
        "approval-atlas.json: approval",
        "not signed by any reviewer",
    );
}

#[test]
fn expired_approval() {
    let f = fixture();
    approve(
        &f.bundle,
        &f.reviewers[1],
        "approval-r1.json",
        NOW - 10 * DAY,
        NOW - DAY,
    );
    refused(&f, "approval-r1.json: approval", "expired");
    // Too old for the store's maximum age, even if not expired.
    approve(
        &f.bundle,
        &f.reviewers[1],
        "approval-r1.json",
        NOW - 100 * DAY,
        NOW + DAY,
    );
    refused(&f, "approval-r1.json: approval", "maximum age");
}

#[test]
fn revoked_digest() {
    let f = fixture();
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(f.bundle.join("wafer.json")).unwrap()).unwrap();
    let t = store_toml(&format!(
        "[revoked]\ndigests = [\"dm-verity-sha256:{}\"]\n",
        m.image.verity.root
    ));
    std::fs::write(f.store_dir.join("trust.toml"), t).unwrap();
    refused(&f, "revoked digests", "dm-verity-sha256");
}

#[test]
fn older_version_than_allowed_and_signed_exception() {
    let f = fixture();
    let top = "rollback_exceptions = [\"exceptions/atlas-squid-3.1.json\"]\n";
    let min = "[[min_versions]]\nwafer = \"atlas-squid\"\nversion = \"3.10\"\n";
    std::fs::write(f.store_dir.join("trust.toml"), store_toml_top(top, min)).unwrap();
    std::fs::create_dir_all(f.store_dir.join("exceptions")).unwrap();
    let exc = f.store_dir.join("exceptions/atlas-squid-3.1.json");
    // An exception signed by one reviewer only is not enough.
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(f.bundle.join("wafer.json")).unwrap()).unwrap();
    let pred = RollbackException {
        name: "atlas-squid".into(),
        version: "3.1".into(),
        reason: "3.10 breaks FroNTier".into(),
        expires: trust::time::format_rfc3339(NOW + DAY),
    };
    let st = Statement::new(
        vec![trust::statement::ResourceDescriptor::new(
            "disk.img",
            &[("sha256", m.image.sha256.clone())],
        )],
        ROLLBACK_EXCEPTION_V1,
        &pred,
    );
    let mut env = trust::dsse::Envelope::sign(
        trust::dsse::INTOTO_PAYLOAD_TYPE,
        st.to_json(),
        &f.reviewers[0],
    );
    std::fs::write(&exc, env.to_json()).unwrap();
    refused(&f, "rollback", "older than the lowest allowed 3.10");
    // Signed by the threshold: the deliberate rollback is allowed.
    env.add_signature(&f.reviewers[2]);
    std::fs::write(&exc, env.to_json()).unwrap();
    let r = run(&f);
    assert!(r.passed(), "{r}");
    assert!(r.to_string().contains("allowed by signed exception"));
}

#[test]
fn swapped_subject() {
    let f = fixture();
    // An approval made for another image, then the manifest and image swapped in: re-approve a
    // different image and put it in a bundle holding the original manifest.
    let other = f.bundle.parent().unwrap().join("other");
    std::fs::create_dir_all(other.join("attestations")).unwrap();
    write_image(&other, &image(7), b"wafer-salt", "3.1");
    approve(&other, &f.reviewers[0], "a.json", NOW - DAY, NOW + DAY);
    std::fs::copy(
        other.join("attestations/a.json"),
        f.bundle.join("attestations/approval-r0.json"),
    )
    .unwrap();
    refused(
        &f,
        "approval-r0.json: approval",
        "does not match the bundle's",
    );
}

#[test]
fn unsigned_or_garbage_attestation_is_refused() {
    let f = fixture();
    std::fs::write(
        f.bundle.join("attestations/junk.json"),
        b"{\"payload\":\"\",\"payloadType\":\"application/vnd.in-toto+json\",\"signatures\":[]}",
    )
    .unwrap();
    refused(&f, "junk.json: signature", "no signature");
}

/// A seek table claiming far more data than the manifest's `image.size` (here: every frame
/// declared 64 MiB, 1.2 GB in all) is refused from the table alone, before any frame is
/// decompressed; so is a table that agrees but behind a manifest the approvals do not sign.
#[test]
fn seek_table_size_is_checked_before_decompressing() {
    use rootfs::zseek::{SeekTable, MAX_FRAME_SIZE};
    let f = fixture();
    let zst = f.bundle.join("disk.img.zst");
    let bytes = std::fs::read(&zst).unwrap();
    let mut table = SeekTable::read_from(&mut std::io::Cursor::new(&bytes)).unwrap();
    let frames_end = table.compressed_frames_size() as usize;
    for (i, fr) in table.frames.iter_mut().enumerate() {
        fr.decompressed_size = MAX_FRAME_SIZE;
        fr.decompressed_offset = i as u64 * u64::from(MAX_FRAME_SIZE);
    }
    let claimed = table.decompressed_size();
    let mut lying = bytes[..frames_end].to_vec();
    lying.extend_from_slice(&table.to_bytes());
    std::fs::write(&zst, &lying).unwrap();
    let r = run(&f);
    refused(
        &f,
        "image size",
        &format!("declares {claimed} bytes decompressed"),
    );
    assert!(
        r.failures()
            .iter()
            .any(|c| c.name == "image digests" && c.detail.contains("not computed")),
        "{r}"
    );
    assert!(
        !r.checks
            .iter()
            .any(|c| c.name.starts_with("image dm-verity") || c.name == "image stream"),
        "the image was decompressed:\n{r}"
    );
    // Only the size is wrong: every signature and approval passed.
    assert_eq!(r.failures().len(), 2, "{r}");
}

/// Links and special files where the bundle should hold regular files and folders are refused
/// with the file named, never followed or opened.
#[test]
fn links_and_special_files_in_the_bundle_are_refused() {
    let f = fixture();
    let att = f.bundle.join("attestations/approval-r0.json");
    let moved = f.bundle.parent().unwrap().join("moved.json");
    std::fs::rename(&att, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &att).unwrap();
    refused(&f, "attestations", "approval-r0.json: is a symbolic link");
    std::fs::remove_file(&att).unwrap();
    std::fs::rename(&moved, &att).unwrap();
    assert!(run(&f).passed());

    let adir = f.bundle.join("attestations");
    let elsewhere = f.bundle.parent().unwrap().join("elsewhere");
    std::fs::rename(&adir, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &adir).unwrap();
    refused(&f, "attestations", "attestations: is a symbolic link");
    std::fs::remove_file(&adir).unwrap();
    std::fs::rename(&elsewhere, &adir).unwrap();

    let m = f.bundle.join("wafer.json");
    let real = f.bundle.parent().unwrap().join("real.json");
    std::fs::rename(&m, &real).unwrap();
    std::os::unix::fs::symlink(&real, &m).unwrap();
    refused(&f, "manifest", "wafer.json: is a symbolic link");
    std::fs::remove_file(&m).unwrap();
    std::fs::rename(&real, &m).unwrap();

    let zst = f.bundle.join("disk.img.zst");
    std::fs::remove_file(&zst).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(&zst)
        .status()
        .unwrap();
    assert!(st.success());
    refused(&f, "image file", "is a FIFO, not a regular file");
}

/// Digests must be lowercase hex: they are compared and looked up in the revocation list as
/// strings, so an uppercase root must not slip past a revoked lowercase one.
#[test]
fn manifest_digests_must_be_lowercase_hex() {
    let f = fixture();
    let p = f.bundle.join("wafer.json");
    let m: Manifest = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace(&m.image.verity.root, &m.image.verity.root.to_uppercase()),
    )
    .unwrap();
    refused(
        &f,
        "manifest",
        "image.verity.root is not 64 lowercase hex digits",
    );
}
