//! Verification of a wafer bundle against the site trust store.
//!
//! ## What verification expects of the bundle (agreement with the builder)
//!
//! `wafer.json` is the bundle crate's [`bundle::Manifest`], parsed strictly (docs/bundle.md).
//! `disk.img.zst` is seekable zstd; `attestations/*.json` are DSSE envelopes of in-toto
//! statements (see [`crate::statement`] for subjects and predicates).
//!
//! ## Order (fail closed)
//!
//! Cheap checks first, and the image is decompressed only when all of them passed: every
//! envelope's signatures are checked over the exact PAE bytes first; only the verified payload
//! bytes are then parsed, once. The manifest is bound by its sha256 subject; the approvals'
//! image and compressed-file subjects must equal the digests the manifest states; roles, expiry,
//! threshold, revocation and rollback follow ([`verify_metadata`]); then the seek table's total
//! against `image.size` ([`check_image_facts`]); last, the one streaming pass whose digests must
//! equal the manifest's ([`check_streamed`]). Every attestation present must verify under a
//! trusted, unrevoked key: a bundle carrying anything unverifiable is refused.
//!
//! Files are read through [`rootfs::safe::Folder`]: never through a link, regular files only.

use std::collections::BTreeSet;
use std::path::Path;

use bundle::{Attestation, Bundle, BundleDir, BundleError, Manifest};

use rootfs::escape::Escaped;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::digest::{DigestOptions, ImageDigests};
use crate::verified::Verified;
use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::key::{PrivateKey, PublicKey};
use crate::statement::{
    DmVerity, Provenance, ResourceDescriptor, Statement, VerificationSummary, WaferApproval,
    PROVENANCE_V1, SUBJECT_COMPRESSED, SUBJECT_IMAGE, SUBJECT_MANIFEST, VERITY_DIGEST, VSA_V1,
};
use crate::store::{compare_versions, glob_match, TrustStore};
use crate::time::{format_rfc3339, parse_rfc3339};

/// Predicate type of a signed rollback exception.
pub const ROLLBACK_EXCEPTION_V1: &str = "https://wafer.invalid/rollback-exception/v1";
/// Allowed clock skew for `timeVerified` in the future, seconds.
pub const CLOCK_SKEW: i64 = 300;

/// Digests computed while streaming the image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Streamed {
    /// dm-verity root (computed with the manifest's salt).
    pub verity_root: Option<String>,
    /// sha256 of the raw image, if computed.
    pub image_sha256: Option<String>,
    /// sha256 of the compressed file, if computed.
    pub compressed_sha256: Option<String>,
    /// Decompressed size in bytes, when the image was streamed.
    pub image_size: Option<u64>,
    /// Why streaming failed, if it did.
    pub error: Option<String>,
}

impl From<&ImageDigests> for Streamed {
    fn from(d: &ImageDigests) -> Self {
        Streamed {
            verity_root: Some(d.verity.root_hex()),
            image_sha256: d.sha256.map(hex::encode),
            compressed_sha256: d.compressed_sha256.map(hex::encode),
            image_size: Some(d.size),
            error: None,
        }
    }
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why (for failures, the precise reason).
    pub detail: String,
}

/// The verification report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// All checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) -> bool {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
        passed
    }

    /// True if every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and details carry text from the bundle (attestation file names, the manifest's
        // name and version): escaped, so a crafted field cannot print a fake line or hide one.
        for c in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                Escaped(&c.name),
                Escaped(&c.detail)
            )?;
        }
        writeln!(
            f,
            "{}",
            if self.passed() {
                "RESULT: PASSED"
            } else {
                "RESULT: FAILED"
            }
        )
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A verified statement with the keys that signed it.
struct Signed {
    label: String,
    statement: Statement,
    keys: Vec<PublicKey>,
}

/// Verifies one envelope: signatures over the PAE first, then parses the verified payload.
/// Every signature must verify under a known, unrevoked key.
fn open_envelope(
    label: &str,
    bytes: &[u8],
    store: &TrustStore,
    report: &mut Report,
) -> Option<Signed> {
    let name = format!("attestation {label}: signature");
    let env = match Envelope::from_json(bytes) {
        Ok(e) => e,
        Err(e) => {
            report.add(name, false, e.to_string());
            return None;
        }
    };
    if env.signatures.is_empty() {
        report.add(name, false, "envelope has no signature");
        return None;
    }
    let keys = store.all_keys();
    let v = match env.verify(&[INTOTO_PAYLOAD_TYPE], &keys) {
        Ok(v) => v,
        Err(e) => {
            report.add(name, false, e.to_string());
            return None;
        }
    };
    if let Some((kid, why)) = v.failures.first() {
        let kid = if kid.is_empty() { "(none)" } else { kid };
        let detail = if why.starts_with("no trusted key") {
            format!("signed by unknown key {kid}")
        } else {
            format!("signature by key {kid} does not verify over the PAE (tampered payload or signature)")
        };
        report.add(name, false, detail);
        return None;
    }
    let signers: Vec<PublicKey> = keys
        .iter()
        .filter(|k| v.keyids.contains(&k.keyid()))
        .copied()
        .collect();
    if let Some(k) = signers.iter().find(|k| store.is_key_revoked(k)) {
        report.add(name, false, format!("signed by revoked key {}", k.keyid()));
        return None;
    }
    let statement = match Statement::from_json(v.payload) {
        Ok(s) => s,
        Err(e) => {
            report.add(
                name,
                false,
                format!("signature valid but payload is not a valid statement: {e}"),
            );
            return None;
        }
    };
    let ids: Vec<String> = signers.iter().map(|k| k.keyid()).collect();
    report.add(name, true, format!("signed by {}", ids.join(", ")));
    Some(Signed {
        label: label.to_string(),
        statement,
        keys: signers,
    })
}

/// Compares a statement's subjects with the manifest's digest and the digests the manifest states
/// (the streamed digests are then compared with the manifest: see [`check_streamed`]).
fn subject_problems(st: &Statement, manifest_sha: &str, m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    let mut cmp = |subject: &str, alg: &str, want: &str| match st
        .subject_named(subject)
        .and_then(|s| s.digest.get(alg))
    {
        None => p.push(format!("no {alg} digest for subject {subject}")),
        Some(g) if g != want => p.push(format!(
            "subject {subject} {alg} {g} does not match the bundle's {want}"
        )),
        _ => {}
    };
    cmp(SUBJECT_MANIFEST, "sha256", manifest_sha);
    cmp(SUBJECT_IMAGE, "sha256", &m.image.sha256);
    cmp(SUBJECT_COMPRESSED, "sha256", &m.compressed.sha256);
    // The dm-verity root: the subject's annotation, or the old layout's digest (and its salt
    // and parameters, when the statement carries them there).
    match st.image_verity() {
        Ok(Some(iv)) => {
            if iv.root != m.image.verity.root {
                p.push(format!(
                    "subject {SUBJECT_IMAGE} dm-verity root {} does not match the bundle's {}",
                    iv.root, m.image.verity.root
                ));
            }
            if iv
                .params
                .is_some_and(|v| !v.is_wafers_with_salt(&m.image.verity.salt))
            {
                p.push("dm-verity parameters differ from the manifest's".into());
            }
        }
        Ok(None) => p.push(format!("no dm-verity root for subject {SUBJECT_IMAGE}")),
        Err(e) => p.push(e.to_string()),
    }
    p
}

/// For a statement of the old layout (accepted, with a warning: the same signature covers the same
/// facts; see `docs/attestation.md`), a note saying what is old and what to do.
fn legacy_note(st: &Statement) -> String {
    let old = st.legacy_layout();
    if old.is_empty() {
        return String::new();
    }
    tracing::warn!(
        "attestation of the old layout ({}): accepted, but other verifiers refuse it; sign it again",
        old.join(", ")
    );
    format!(
        "; WARNING: old attestation layout ({}): other verifiers refuse it, sign it again",
        old.join(", ")
    )
}

/// Verifies a bundle's manifest and attestations against `store` at time `now` (Unix seconds),
/// given the digests streamed from its image: [`verify_metadata`], then the streamed digests
/// against the manifest.
pub fn verify_parts(
    manifest_bytes: &[u8],
    attestations: &[Attestation],
    store: &TrustStore,
    now: i64,
    streamed: &Streamed,
) -> Report {
    let (mut r, manifest) = verify_metadata(manifest_bytes, attestations, store, now);
    if let Some(m) = manifest {
        check_streamed(&mut r, &m, streamed);
    }
    r
}

/// Whether `s` is `len` lowercase hex digits (any even number when `len` is 0). Lowercase only:
/// digests are compared (and looked up in the revocation list) as strings.
fn is_hex(s: &str, len: usize) -> bool {
    (len == 0 || s.len() == len)
        && s.len() & 1 == 0
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every check that needs no decompression, cheapest first: the manifest's own sanity, every
/// envelope's signatures, the approvals' subjects (against the manifest's digests), roles,
/// expiry, threshold, revoked digests and rollback. Returns the report and the parsed manifest
/// (`None` when it does not parse: nothing else can be checked then).
pub fn verify_metadata(
    manifest_bytes: &[u8],
    attestations: &[Attestation],
    store: &TrustStore,
    now: i64,
) -> (Report, Option<Manifest>) {
    let mut r = Report::default();
    let msha = sha256_hex(manifest_bytes);
    r.add("manifest digest", true, format!("sha256 {msha}"));

    // 1. Signatures first; only verified payloads are parsed.
    let signed: Vec<Signed> = attestations
        .iter()
        .filter_map(|a| open_envelope(&a.name, &a.bytes, store, &mut r))
        .collect();

    // 2. The manifest: bound by the approvals' subject digest (checked below); parsed now.
    let manifest = match Manifest::from_json(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            r.add("manifest", false, format!("wafer.json {e}"));
            return (r, None);
        }
    };
    check_manifest(&mut r, &manifest);
    let approvers = check_attestations(&mut r, &signed, &msha, &manifest, store, now);
    check_threshold(&mut r, &approvers, store);
    check_revocation(&mut r, &msha, &manifest, store);
    check_rollback(&mut r, &manifest, store, now);
    (r, Some(manifest))
}

/// The manifest's own sanity: 4096-byte verity blocks, lowercase hex digests of the right
/// length, a salt veritysetup accepts, a non-zero image size (check `manifest`).
pub fn check_manifest(r: &mut Report, manifest: &Manifest) {
    let v = &manifest.image.verity;
    let mut sane = Vec::new();
    if v.hash_block_size != 4096 || v.data_block_size != 4096 {
        sane.push(format!(
            "verity blocks {}/{} (only 4096/4096 is supported)",
            v.data_block_size, v.hash_block_size
        ));
    }
    for (field, value, len) in [
        ("image.sha256", &manifest.image.sha256, 64),
        ("image.verity.root", &v.root, 64),
        ("compressed.sha256", &manifest.compressed.sha256, 64),
        ("image.verity.salt", &v.salt, 0),
    ] {
        if !is_hex(value, len) {
            let n = if len == 0 {
                "an even number of".to_string()
            } else {
                len.to_string()
            };
            sane.push(format!("{field} is not {n} lowercase hex digits"));
        }
    }
    if v.salt.len() > 2 * crate::digest::MAX_SALT {
        sane.push(format!(
            "image.verity.salt is longer than {} bytes",
            crate::digest::MAX_SALT
        ));
    }
    if manifest.image.size == 0 {
        sane.push("image.size is 0".into());
    }
    r.add(
        "manifest",
        sane.is_empty(),
        if sane.is_empty() {
            format!(
                "{} {} (VO {}); verity blocks {}/{}",
                manifest.name, manifest.version, manifest.vo, v.data_block_size, v.hash_block_size
            )
        } else {
            format!(
                "{} {} (VO {}): {}",
                manifest.name,
                manifest.version,
                manifest.vo,
                sane.join("; ")
            )
        },
    );
}

/// Every verified attestation by its predicate: approvals (subjects, wafer, verity parameters,
/// [`check_expiry`], a reviewer signer) and provenance (subjects, the VO administrator's role);
/// any other predicate fails. Returns the reviewer keys whose approvals passed.
fn check_attestations(
    r: &mut Report,
    signed: &[Signed],
    msha: &str,
    manifest: &Manifest,
    store: &TrustStore,
    now: i64,
) -> BTreeSet<String> {
    let v = &manifest.image.verity;
    // 3. Approvals.
    let reviewer_ids: BTreeSet<String> = store.reviewers.iter().map(|k| k.keyid()).collect();
    let mut approvers: BTreeSet<String> = BTreeSet::new();
    let max_age = i64::from(store.config.max_approval_age_days) * 86_400;
    let mut provenance_seen = false;
    for s in signed {
        match s.statement.predicate_type.as_str() {
            VSA_V1 => {
                let name = format!("attestation {}: approval", s.label);
                let vsa: VerificationSummary = match s.statement.predicate_as() {
                    Ok(p) => p,
                    Err(e) => {
                        r.add(name, false, e.to_string());
                        continue;
                    }
                };
                let mut probs = subject_problems(&s.statement, &msha, &manifest);
                let w = &vsa.wafer;
                if vsa.verification_result != "PASSED" {
                    probs.push(format!("verificationResult is {}", vsa.verification_result));
                }
                if (w.name.as_str(), w.version.as_str(), w.vo.as_str())
                    != (
                        manifest.name.as_str(),
                        manifest.version.as_str(),
                        manifest.vo.as_str(),
                    )
                {
                    probs.push(format!(
                        "approves {} {} (VO {}), not this wafer",
                        w.name, w.version, w.vo
                    ));
                }
                if w.verity
                    .as_ref()
                    .is_some_and(|p| !p.is_wafers_with_salt(&v.salt))
                {
                    probs.push("dm-verity parameters differ from the manifest's".into());
                }
                match (parse_rfc3339(&vsa.time_verified), parse_rfc3339(&w.expires)) {
                    (Some(t), Some(exp)) => {
                        if exp <= now {
                            probs.push(format!("expired at {}", w.expires));
                        }
                        if t > now + CLOCK_SKEW {
                            probs.push(format!(
                                "timeVerified {} is in the future",
                                vsa.time_verified
                            ));
                        }
                        if now - t > max_age {
                            probs.push(format!(
                                "approved at {}, older than the store's maximum age of {} days",
                                vsa.time_verified, store.config.max_approval_age_days
                            ));
                        }
                    }
                    _ => probs.push("timeVerified or expires is not an RFC 3339 time".into()),
                }
                let signer_reviewers: Vec<String> = s
                    .keys
                    .iter()
                    .map(|k| k.keyid())
                    .filter(|id| reviewer_ids.contains(id))
                    .collect();
                if signer_reviewers.is_empty() {
                    probs.push("not signed by any reviewer key".into());
                }
                if probs.is_empty() {
                    r.add(
                        name,
                        true,
                        format!("PASSED, expires {}{}", w.expires, legacy_note(&s.statement)),
                    );
                    approvers.extend(signer_reviewers);
                } else {
                    r.add(name, false, probs.join("; "));
                }
            }
            PROVENANCE_V1 => {
                provenance_seen = true;
                let name = format!("attestation {}: provenance", s.label);
                let mut probs = subject_problems(&s.statement, &msha, &manifest);
                if let Err(e) = s.statement.predicate_as::<Provenance>() {
                    probs.push(e.to_string());
                }
                for k in &s.keys {
                    let roles: Vec<_> = store
                        .vo_admins
                        .iter()
                        .filter(|(_, pk)| pk == k)
                        .map(|(a, _)| a)
                        .collect();
                    if roles.is_empty() {
                        probs.push(format!("key {} is not a VO administrator", k.keyid()));
                    } else if !roles.iter().any(|a| {
                        a.vo == manifest.vo
                            && a.wafers.iter().any(|p| glob_match(p, &manifest.name))
                    }) {
                        let vos: Vec<&str> = roles.iter().map(|a| a.vo.as_str()).collect();
                        probs.push(format!(
                            "key {} is a VO administrator of {} and may not publish {} of VO {}",
                            k.keyid(),
                            vos.join(","),
                            manifest.name,
                            manifest.vo
                        ));
                    }
                }
                r.add(
                    name,
                    probs.is_empty(),
                    if probs.is_empty() {
                        format!(
                            "signed by the VO administrator{}",
                            legacy_note(&s.statement)
                        )
                    } else {
                        probs.join("; ")
                    },
                );
            }
            other => {
                r.add(
                    format!("attestation {}", s.label),
                    false,
                    format!("unsupported predicate type {other}"),
                );
            }
        }
    }
    if store.config.require_provenance && !provenance_seen {
        r.add(
            "provenance",
            false,
            "the store requires a build provenance signed by the VO administrator; none found",
        );
    }
    approvers
}

/// The reviewer threshold over distinct reviewer keys (check `reviewer threshold`).
pub fn check_threshold(r: &mut Report, approvers: &BTreeSet<String>, store: &TrustStore) {
    // 4. Threshold over distinct reviewer keys.
    let need = store.config.reviewers.threshold as usize;
    r.add(
        "reviewer threshold",
        approvers.len() >= need,
        format!(
            "{} of {} required distinct reviewer approvals",
            approvers.len(),
            need
        ),
    );
}

/// None of the wafer's digests is revoked (check `revoked digests`).
pub fn check_revocation(r: &mut Report, msha: &str, manifest: &Manifest, store: &TrustStore) {
    let v = &manifest.image.verity;
    // 5. Revoked digests (the streamed digests must equal these, or verification fails anyway).
    let mut revoked = Vec::new();
    for (alg, d) in [
        ("sha256", msha),
        ("sha256", manifest.image.sha256.as_str()),
        ("sha256", manifest.compressed.sha256.as_str()),
        (VERITY_DIGEST, v.root.as_str()),
    ] {
        if store.is_digest_revoked(alg, d) && !revoked.contains(&format!("{alg}:{d}")) {
            revoked.push(format!("{alg}:{d}"));
        }
    }
    r.add(
        "revoked digests",
        revoked.is_empty(),
        if revoked.is_empty() {
            "none of the wafer's digests is revoked".into()
        } else {
            format!("revoked: {}", revoked.join(", "))
        },
    );
}

/// The version is not below the store's minimum, unless a signed exception allows it (check
/// `rollback`).
pub fn check_rollback(r: &mut Report, manifest: &Manifest, store: &TrustStore, now: i64) {
    // 6. Rollback.
    match store.min_version(&manifest.name) {
        Some(min) if compare_versions(&manifest.version, min) == std::cmp::Ordering::Less => {
            match rollback_exception(store, &manifest, now) {
                Ok(label) => r.add(
                    "rollback",
                    true,
                    format!(
                        "version {} is below {min}, allowed by signed exception {label}",
                        manifest.version
                    ),
                ),
                Err(why) => r.add(
                    "rollback",
                    false,
                    format!(
                        "version {} is older than the lowest allowed {min} ({why})",
                        manifest.version
                    ),
                ),
            };
        }
        Some(min) => {
            r.add(
                "rollback",
                true,
                format!("version {} >= {min}", manifest.version),
            );
        }
        None => {
            r.add("rollback", true, "no minimum version for this wafer");
        }
    }
}

/// What `disk.img.zst` says about itself without being decompressed: its length and its seek
/// table's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFacts {
    /// Length of the compressed file in bytes.
    pub file_size: u64,
    /// Total decompressed size the seek table declares.
    pub decompressed_size: u64,
    /// Number of frames.
    pub frames: usize,
}

/// Compares the seek table's totals and the file's length with the manifest, before any
/// decompression: a few-KB zstd bomb claiming tens of GB is refused here.
pub fn check_image_facts(r: &mut Report, m: &Manifest, facts: &ImageFacts) {
    let want = m.image.size;
    let got = facts.decompressed_size;
    if got != want {
        r.add(
            "image size",
            false,
            format!(
                "the seek table of disk.img.zst declares {got} bytes decompressed ({} frames), \
                 wafer.json image.size says {want}: refused before decompressing",
                facts.frames
            ),
        );
    }
    let want = m.compressed.size;
    r.add(
        "compressed size",
        facts.file_size == want,
        if facts.file_size == want {
            format!("{want} bytes")
        } else {
            format!(
                "disk.img.zst is {} bytes, wafer.json compressed.size says {want}",
                facts.file_size
            )
        },
    );
}

/// Compares the digests streamed from the image with the manifest.
pub fn check_streamed(r: &mut Report, manifest: &Manifest, streamed: &Streamed) {
    let v = &manifest.image.verity;
    if let Some(e) = &streamed.error {
        r.add("image stream", false, e.clone());
    }
    let mut digest_check = |name: &str, want: &str, got: &Option<String>, required: bool| match got
    {
        Some(g) if g == want => {
            r.add(name, true, g.clone());
        }
        Some(g) => {
            r.add(name, false, format!("computed {g}, manifest says {want}"));
        }
        None if required => {
            r.add(name, false, "not computed".to_string());
        }
        None => {}
    };
    digest_check("image dm-verity root", &v.root, &streamed.verity_root, true);
    digest_check(
        "image sha256",
        &manifest.image.sha256,
        &streamed.image_sha256,
        false,
    );
    // The dm-verity root authenticates every byte of the image that will be booted; the
    // compressed file's own sha256 adds nothing to that and costs a sequential pass, so it is
    // checked only when it was computed (`--sha256`).
    digest_check(
        "compressed sha256",
        &manifest.compressed.sha256,
        &streamed.compressed_sha256,
        false,
    );
    if let Some(got) = streamed.image_size {
        // Zero padding past the last whole block would not change the root: the size must match.
        let want = manifest.image.size;
        r.add(
            "image size",
            got == want,
            if got == want {
                format!("{got} bytes")
            } else {
                format!("decompressed {got} bytes, manifest says {want}")
            },
        );
    }
}

/// Predicate of a rollback exception.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackException {
    /// Wafer name.
    pub name: String,
    /// The exact older version allowed.
    pub version: String,
    /// Why.
    pub reason: String,
    /// End of validity (RFC 3339).
    pub expires: String,
}

/// Finds a rollback exception for this wafer signed by the reviewer threshold.
fn rollback_exception(store: &TrustStore, m: &Manifest, now: i64) -> Result<String, String> {
    let mut why = "no signed exception".to_string();
    for (label, bytes) in &store.exceptions {
        let Ok(env) = Envelope::from_json(bytes) else {
            continue;
        };
        let Ok(v) = env.verify(&[INTOTO_PAYLOAD_TYPE], &store.reviewers) else {
            continue;
        };
        let good: Vec<&String> = v
            .keyids
            .iter()
            .filter(|id| {
                !store
                    .reviewers
                    .iter()
                    .any(|k| &k.keyid() == *id && store.is_key_revoked(k))
            })
            .collect();
        let Ok(st) = Statement::from_json(v.payload) else {
            continue;
        };
        if st.predicate_type != ROLLBACK_EXCEPTION_V1 {
            continue;
        }
        let Ok(p) = st.predicate_as::<RollbackException>() else {
            continue;
        };
        if p.name != m.name || p.version != m.version {
            continue;
        }
        if st
            .subject_named(SUBJECT_IMAGE)
            .and_then(|s| s.digest.get("sha256"))
            != Some(&m.image.sha256)
        {
            why = format!("exception {label} is for another image");
            continue;
        }
        if good.len() < store.config.reviewers.threshold as usize {
            why = format!(
                "exception {label} has {} of {} reviewer signatures",
                good.len(),
                store.config.reviewers.threshold
            );
            continue;
        }
        if parse_rfc3339(&p.expires).map_or(true, |e| e <= now) {
            why = format!("exception {label} expired at {}", p.expires);
            continue;
        }
        return Ok(label.clone());
    }
    Err(why)
}

/// What an approval states; used by `wafer approve` and tests to produce the statement.
#[derive(Debug, Clone)]
pub struct ApprovalRequest<'a> {
    /// The exact wafer.json bytes.
    pub manifest_bytes: &'a [u8],
    /// The verifier id URI (who approves; `wafer approve` defaults it to
    /// [`crate::statement::default_verifier_id`]).
    pub verifier_id: String,
    /// Policy URI (`wafer approve` defaults it to [`crate::statement::default_policy_uri`], never a
    /// local path unless asked).
    pub policy_uri: String,
    /// sha256 of the policy, hex.
    pub policy_sha256: String,
    /// sha256 of the vetting report, hex.
    pub report_sha256: String,
    /// Approval time (Unix seconds).
    pub time: i64,
    /// Expiry (Unix seconds).
    pub expires: i64,
}

/// Errors building attestations.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// wafer.json does not parse.
    #[error("wafer.json: {0}")]
    Manifest(String),
}

/// The subjects every wafer attestation carries, from the manifest
/// ([`crate::statement::wafer_subjects`]: the dm-verity root is an annotation of `disk.img`).
pub fn wafer_subjects(manifest_bytes: &[u8], m: &Manifest) -> Vec<ResourceDescriptor> {
    crate::statement::wafer_subjects(
        &sha256_hex(manifest_bytes),
        &m.image.sha256,
        &DmVerity::new(&m.image.verity.root, &m.image.verity.salt),
        &m.compressed.sha256,
    )
}

/// Builds the approval statement (SLSA verification summary, result PASSED) for a manifest.
pub fn approval_statement(req: &ApprovalRequest<'_>) -> Result<Statement, ApproveError> {
    let m = Manifest::from_json(req.manifest_bytes)
        .map_err(|e| ApproveError::Manifest(e.to_string()))?;
    let vsa = VerificationSummary {
        verifier: crate::statement::Verifier {
            id: req.verifier_id.clone(),
            version: None,
        },
        time_verified: format_rfc3339(req.time),
        resource_uri: format!("wafer:{}@{}", m.name, m.version),
        policy: crate::statement::Policy {
            uri: req.policy_uri.clone(),
            digest: [("sha256".to_string(), req.policy_sha256.clone())].into(),
        },
        input_attestations: Vec::new(),
        verification_result: "PASSED".into(),
        verified_levels: vec![crate::statement::LEVEL_VETTED.into()],
        dependency_levels: None,
        slsa_version: None,
        wafer: WaferApproval {
            name: m.name.clone(),
            version: m.version.clone(),
            vo: m.vo.clone(),
            expires: format_rfc3339(req.expires),
            report_digest: [("sha256".to_string(), req.report_sha256.clone())].into(),
            verity: None,
        },
    };
    Ok(Statement::new(
        wafer_subjects(req.manifest_bytes, &m),
        VSA_V1,
        &vsa,
    ))
}

/// Signs a statement into a DSSE envelope (JSON bytes).
pub fn sign_statement(st: &Statement, key: &PrivateKey) -> Vec<u8> {
    Envelope::sign(INTOTO_PAYLOAD_TYPE, st.to_json(), key).to_json()
}

/// Options of [`verify_dir`] and [`verify_bundle`].
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Also compute the raw image's and the compressed file's plain sha256.
    pub sha256: bool,
    /// Worker threads (0 = all).
    pub threads: usize,
}

/// Largest `wafer.json` or attestation read from a bundle.
pub const MAX_JSON: u64 = bundle::MAX_JSON;
/// Most attestations read from a bundle.
pub const MAX_ATTESTATIONS: usize = bundle::MAX_ATTESTATIONS;

/// The detail of the `image digests` check when a cheap check refused the bundle.
const NOT_COMPUTED: &str =
    "not computed: the checks above refused the bundle before its image was decompressed";

fn failed(name: &str, detail: String) -> Report {
    let mut r = Report::default();
    r.add(name, false, detail);
    r
}

/// Verifies the bundle folder `dir` against `store` at time `now` (Unix seconds), cheapest
/// checks first, and returns the only value deployment accepts, [`Verified<Bundle>`], or the
/// report of every check with the failed ones. Nothing is followed through a link and only
/// regular files are opened (a FIFO named `disk.img.zst` is refused, it does not hang). Then:
///
/// 1. [`verify_metadata`]: manifest sanity, signatures, subjects, roles, expiry, threshold,
///    revocation, rollback;
/// 2. [`check_image_facts`]: the seek table's total decompressed size against `image.size` and
///    the file's length against `compressed.size`;
/// 3. only if all of that passed, the image is streamed once (dm-verity root with the manifest's
///    salt; with `opts.sha256` also the raw image's and the compressed file's sha256) and
///    [`check_streamed`] compares it with the manifest.
///
/// A bundle refused by a cheap check is never decompressed: a small zstd bomb claiming tens of GB
/// costs nothing. I/O problems become failed checks naming the file.
pub fn verify_dir(
    dir: &Path,
    store: &TrustStore,
    now: i64,
    opts: &BundleOptions,
) -> Result<Verified<Bundle>, Report> {
    let d = BundleDir::open(dir).map_err(|e| failed("bundle", e.to_string()))?;
    let manifest_bytes = d
        .read_manifest_bytes()
        .map_err(|e| failed("manifest", e.to_string()))?;
    let attestations = d
        .read_attestations()
        .map_err(|e| failed("attestations", e.to_string()))?;
    let (mut r, manifest) = verify_metadata(&manifest_bytes, &attestations, store, now);
    let Some(manifest) = manifest else {
        return Err(r);
    };
    let disk = open_disk(&d, &manifest, &mut r);
    let disk = match disk {
        Some(disk) if r.passed() => disk,
        _ => {
            r.add("image digests", false, NOT_COMPUTED);
            return Err(r);
        }
    };
    check_streamed(&mut r, &manifest, &stream(&disk, &manifest, opts));
    if !r.passed() {
        return Err(r);
    }
    match Bundle::from_parts(d, manifest_bytes, attestations, disk) {
        Ok(b) => Ok(Verified::new(b, r)),
        Err(e) => {
            r.add("bundle", false, e.to_string());
            Err(r)
        }
    }
}

/// Verifies an opened [`Bundle`] (see [`verify_dir`] for the checks and their order):
/// the bundle comes back as [`Verified<Bundle>`], or the report lists every failed check.
pub fn verify_bundle(
    bundle: Bundle,
    store: &TrustStore,
    now: i64,
    opts: &BundleOptions,
) -> Result<Verified<Bundle>, Report> {
    let (mut r, parsed) =
        verify_metadata(bundle.manifest_bytes(), bundle.attestations(), store, now);
    if parsed.is_none() {
        return Err(r);
    }
    let m = bundle.manifest();
    check_image_facts(&mut r, m, &facts(bundle.disk()));
    if !r.passed() {
        r.add("image digests", false, NOT_COMPUTED);
        return Err(r);
    }
    check_streamed(&mut r, m, &stream(bundle.disk(), m, opts));
    if r.passed() {
        Ok(Verified::new(bundle, r))
    } else {
        Err(r)
    }
}

fn facts(disk: &bundle::Disk) -> ImageFacts {
    ImageFacts {
        file_size: disk.compressed_size(),
        decompressed_size: disk.size(),
        frames: disk.frames(),
    }
}

/// The one streaming pass over the disk: the digests [`check_streamed`] compares.
fn stream(disk: &bundle::Disk, m: &Manifest, opts: &BundleOptions) -> Streamed {
    let salt = match hex::decode(&m.image.verity.salt) {
        Ok(s) => s,
        Err(e) => {
            return Streamed {
                error: Some(format!("wafer.json image.verity.salt: {e}")),
                ..Default::default()
            }
        }
    };
    let d = DigestOptions {
        salt,
        sha256: opts.sha256,
        compressed_sha256: opts.sha256,
        threads: opts.threads,
    };
    match disk.digest(&d) {
        Ok(d) => Streamed::from(&d),
        Err(e) => Streamed {
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// Opens `disk.img.zst` (a regular file, not through a link), reads its seek table and checks it
/// against the manifest with [`check_image_facts`]. Problems are added to `r` as failed checks
/// (`image file`, `image stream`); the disk is returned when it could be read.
pub fn open_disk(d: &BundleDir, manifest: &Manifest, r: &mut Report) -> Option<bundle::Disk> {
    match d.open_disk(None) {
        Ok(disk) => {
            check_image_facts(r, manifest, &facts(&disk));
            Some(disk)
        }
        Err(e @ BundleError::SeekTable { .. }) => {
            r.add("image stream", false, e.to_string());
            None
        }
        Err(e) => {
            r.add("image file", false, e.to_string());
            None
        }
    }
}

/// [`verify_dir`], the report only.
pub fn verify_bundle_dir(dir: &Path, store: &TrustStore, now: i64, opts: &BundleOptions) -> Report {
    match verify_dir(dir, store, now, opts) {
        Ok(v) => v.report().clone(),
        Err(r) => r,
    }
}
