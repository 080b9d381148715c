//! The named checks of verification, each a small function with its own unit test (below).
//!
//! | function | check name(s) in the report | refuses |
//! |---|---|---|
//! | [`check_signature`] | `attestation F: signature` | an envelope that does not parse, has no signature, is signed by an unknown or revoked key, or whose signature does not verify over the PAE; a payload that is not a statement |
//! | [`check_manifest`] | `manifest` | verity blocks other than 4096/4096, digests that are not lowercase hex of the right length, a salt too long, `image.size` 0 |
//! | [`check_subjects`] | (part of `attestation F: approval` / `: provenance`) | a subject digest or dm-verity root that differs from the manifest's, or is missing |
//! | [`check_expiry`] | (part of `attestation F: approval`) | an expired approval, one verified in the future, one older than the store's maximum age |
//! | [`check_approval`] | `attestation F: approval` | a summary that is not PASSED, for another wafer, with other verity parameters, expired, or signed by no reviewer |
//! | [`check_provenance`] | `attestation F: provenance` | a provenance signed by a key that is not the wafer's VO administrator |
//! | [`check_attestations`] | the two above, `attestation F`, `provenance` | an unsupported predicate type; no provenance when the store requires one |
//! | [`check_threshold`] | `reviewer threshold` | fewer distinct reviewer approvals than the store's threshold |
//! | [`check_revocation`] | `revoked digests` | a manifest, image, compressed-file or dm-verity digest the store revokes |
//! | [`check_rollback`] | `rollback` | a version below the store's minimum without a valid signed exception |
//! | [`check_image_facts`] | `image size`, `compressed size` | a seek table or file length that differs from the manifest (before decompressing) |
//! | [`check_streamed`] | `image stream`, `image dm-verity root`, `image sha256`, `compressed sha256`, `image size` | streamed image digests or size that differ from the manifest |

use std::collections::BTreeSet;

use bundle::Manifest;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::digest::ImageDigests;
use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::key::PublicKey;
use crate::report::Report;
use crate::statement::{
    Provenance, Statement, VerificationSummary, PROVENANCE_V1, SUBJECT_COMPRESSED, SUBJECT_IMAGE,
    SUBJECT_MANIFEST, VERITY_DIGEST, VSA_V1,
};
use crate::store::{compare_versions, glob_match, TrustStore};
use crate::time::parse_rfc3339;

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

/// The sha256 of `b`, lowercase hex.
pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A verified statement with the keys that signed it ([`check_signature`] makes one).
#[derive(Debug, Clone)]
pub struct Signed {
    /// The attestation's file name.
    pub label: String,
    /// The statement, parsed from the verified payload only.
    pub statement: Statement,
    /// The store's keys whose signatures verified.
    pub keys: Vec<PublicKey>,
}

/// Check `attestation LABEL: signature`: verifies one envelope, signatures over the PAE first,
/// then parses the verified payload. Every signature must verify under a known, unrevoked key.
pub fn check_signature(
    report: &mut Report,
    label: &str,
    bytes: &[u8],
    store: &TrustStore,
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

/// Subjects (part of the `attestation F: approval` and `: provenance` checks): compares a
/// statement's subjects with the manifest's digest `manifest_sha` and the digests the manifest
/// states, returning the problems (the streamed digests are then compared with the manifest: see
/// [`check_streamed`]).
pub fn check_subjects(st: &Statement, manifest_sha: &str, m: &Manifest) -> Vec<String> {
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

/// Whether `s` is `len` lowercase hex digits (any even number when `len` is 0). Lowercase only:
/// digests are compared (and looked up in the revocation list) as strings.
fn is_hex(s: &str, len: usize) -> bool {
    (len == 0 || s.len() == len)
        && s.len() & 1 == 0
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

/// Check `attestation F: approval` and `attestation F: provenance`, by predicate: every verified
/// attestation goes to [`check_approval`] or [`check_provenance`]; any other predicate fails
/// (check `attestation F`), and a store with `require_provenance` needs one (check
/// `provenance`). Returns the reviewer keys whose approvals passed.
pub fn check_attestations(
    r: &mut Report,
    signed: &[Signed],
    msha: &str,
    manifest: &Manifest,
    store: &TrustStore,
    now: i64,
) -> BTreeSet<String> {
    let mut approvers: BTreeSet<String> = BTreeSet::new();
    let mut provenance_seen = false;
    for s in signed {
        match s.statement.predicate_type.as_str() {
            VSA_V1 => approvers.extend(check_approval(r, s, msha, manifest, store, now)),
            PROVENANCE_V1 => {
                provenance_seen = true;
                check_provenance(r, s, msha, manifest, store);
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

/// Expiry (part of the `attestation F: approval` check): the approval's `expires` is after `now`,
/// its `timeVerified` is not in the future (beyond [`CLOCK_SKEW`]) and not older than the store's
/// `max_approval_age_days`. Returns the problems.
pub fn check_expiry(vsa: &VerificationSummary, store: &TrustStore, now: i64) -> Vec<String> {
    let mut probs = Vec::new();
    let max_age = i64::from(store.config.max_approval_age_days) * 86_400;
    let w = &vsa.wafer;
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
    probs
}

/// Check `attestation F: approval`: a SLSA verification summary that says PASSED, with
/// [`check_subjects`], for this wafer's name, version and VO, with the manifest's verity
/// parameters, within [`check_expiry`], signed by a reviewer key. Returns the reviewer key ids
/// that signed it when it passed (none otherwise).
pub fn check_approval(
    r: &mut Report,
    s: &Signed,
    msha: &str,
    manifest: &Manifest,
    store: &TrustStore,
    now: i64,
) -> Vec<String> {
    let name = format!("attestation {}: approval", s.label);
    let vsa: VerificationSummary = match s.statement.predicate_as() {
        Ok(p) => p,
        Err(e) => {
            r.add(name, false, e.to_string());
            return Vec::new();
        }
    };
    let mut probs = check_subjects(&s.statement, msha, manifest);
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
        .is_some_and(|p| !p.is_wafers_with_salt(&manifest.image.verity.salt))
    {
        probs.push("dm-verity parameters differ from the manifest's".into());
    }
    probs.extend(check_expiry(&vsa, store, now));
    let signer_reviewers: Vec<String> = s
        .keys
        .iter()
        .map(|k| k.keyid())
        .filter(|id| store.reviewers.iter().any(|k| &k.keyid() == id))
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
        signer_reviewers
    } else {
        r.add(name, false, probs.join("; "));
        Vec::new()
    }
}

/// Check `attestation F: provenance`: a SLSA provenance with [`check_subjects`], signed only by
/// VO administrators of the wafer's VO whose `wafers` patterns match its name.
pub fn check_provenance(
    r: &mut Report,
    s: &Signed,
    msha: &str,
    manifest: &Manifest,
    store: &TrustStore,
) {
    let name = format!("attestation {}: provenance", s.label);
    let mut probs = check_subjects(&s.statement, msha, manifest);
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
        } else if !roles
            .iter()
            .any(|a| a.vo == manifest.vo && a.wafers.iter().any(|p| glob_match(p, &manifest.name)))
        {
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
            match rollback_exception(store, manifest, now) {
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
        if parse_rfc3339(&p.expires).is_none_or(|e| e <= now) {
            why = format!("exception {label} expired at {}", p.expires);
            continue;
        }
        return Ok(label.clone());
    }
    Err(why)
}

/// One test per named check: the case it passes and the refusal it exists for, by check name and
/// message.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::approve::statement::{
        approval_statement, sign_statement, wafer_subjects, ApprovalRequest,
    };
    use crate::key::PrivateKey;
    use crate::store::TrustConfig;

    const NOW: i64 = 1_750_000_000;
    const DAY: i64 = 86_400;
    const ROOT: &str = "4b6a3f0c1e2d5a6978877665544332211000ffeeddccbbaa9988776655443322";

    fn manifest_bytes(version: &str, size: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": "wafer-bundle/1",
            "name": "cms-squid", "version": version, "vo": "cms",
            "os": {"id": "centos", "version": "5", "name": "CentOS 5"}, "arch": "x86_64",
            "filesystem": {"type": "ext3", "profile": "el5", "size": 4096},
            "requirements": {"memory_mib": 256, "vcpus": 1, "disk_mib": 1, "arch": "x86_64", "guest_types": ["pv"], "min_xen": null},
            "boot": null,
            "image": {"sha256": "11".repeat(32), "size": size,
                      "verity": {"root": ROOT, "salt": "0a0b", "hash_algorithm": "sha256", "hash_block_size": 4096, "data_block_size": 4096, "format": 1}},
            "compressed": {"file": "disk.img.zst", "sha256": "22".repeat(32), "size": 100, "frame_size": 4096, "level": 3, "frames": 1},
            "recipe": {"sha256": "33".repeat(32), "inputs_sha256": "55".repeat(32)},
            "base": {"kind": "tar", "sha256": "44".repeat(32)},
            "packages": null,
            "source_date_epoch": 0
        }))
        .unwrap()
    }

    fn manifest() -> (Vec<u8>, Manifest) {
        let b = manifest_bytes("1.0", 4096);
        let m = Manifest::from_json(&b).unwrap();
        (b, m)
    }

    fn reviewer() -> PrivateKey {
        PrivateKey::from_seed(&[1; 32])
    }
    fn admin() -> PrivateKey {
        PrivateKey::from_seed(&[2; 32])
    }
    fn outsider() -> PrivateKey {
        PrivateKey::from_seed(&[3; 32])
    }

    /// A store with one reviewer (threshold 1) and the cms VO administrator; `top` goes before
    /// the tables, `extra` after them.
    fn store(top: &str, extra: &str) -> TrustStore {
        let text = format!(
            "format = 1\nmax_approval_age_days = 90\n{top}\n[reviewers]\nthreshold = 1\n\
             keys = [\"r.pub\"]\n\n[[vo_admins]]\nvo = \"cms\"\nkey = \"cms.pub\"\n\
             wafers = [\"cms-*\"]\n\n{extra}"
        );
        let config = TrustConfig::from_toml(&text, "trust.toml").unwrap();
        let vo_admins = config
            .vo_admins
            .iter()
            .map(|v| (v.clone(), admin().public()))
            .collect();
        TrustStore {
            config,
            reviewers: vec![reviewer().public()],
            vo_admins,
            exceptions: Vec::new(),
        }
    }

    /// An approval of `manifest` made at `time`, valid for `valid` seconds, signed by `key`.
    fn approval(manifest: &[u8], time: i64, valid: i64, key: &PrivateKey) -> Vec<u8> {
        let st = approval_statement(&ApprovalRequest {
            manifest_bytes: manifest,
            verifier_id: "wafer:reviewer:test".into(),
            policy_uri: "wafer:policy:test".into(),
            policy_sha256: "aa".repeat(32),
            report_sha256: "bb".repeat(32),
            time,
            expires: time + valid,
        })
        .unwrap();
        sign_statement(&st, key)
    }

    fn provenance(manifest: &[u8], key: &PrivateKey) -> Vec<u8> {
        let m = Manifest::from_json(manifest).unwrap();
        let pred = serde_json::json!({
            "buildDefinition": {"buildType": crate::statement::WAFER_BUILD_TYPE,
                "externalParameters": {"name": "cms-squid"},
                "resolvedDependencies": [{"name": "recipe", "digest": {"sha256": "33".repeat(32)}}]},
            "runDetails": {"builder": {"id": "https://cms.example/wafer-build"}}
        });
        let st = Statement::new(wafer_subjects(manifest, &m), PROVENANCE_V1, &pred);
        sign_statement(&st, key)
    }

    /// The envelope's verified statement, as [`check_signature`] gives it to the later checks.
    fn signed(label: &str, envelope: &[u8], store: &TrustStore) -> Signed {
        check_signature(&mut Report::default(), label, envelope, store).unwrap()
    }

    /// The one check named `name` in `r`.
    fn check<'a>(r: &'a Report, name: &str) -> &'a crate::report::Check {
        let found: Vec<_> = r.checks.iter().filter(|c| c.name == name).collect();
        assert_eq!(found.len(), 1, "one check {name:?} in {r}");
        found[0]
    }

    #[test]
    fn signature() {
        let (mb, _) = manifest();
        let s = store("", "");
        let env = approval(&mb, NOW, 30 * DAY, &reviewer());
        let mut r = Report::default();
        let got = check_signature(&mut r, "a.json", &env, &s).unwrap();
        let c = check(&r, "attestation a.json: signature");
        assert!(c.passed);
        assert_eq!(
            c.detail,
            format!("signed by {}", reviewer().public().keyid())
        );
        assert_eq!(got.keys, vec![reviewer().public()]);
        assert_eq!(got.statement.predicate_type, VSA_V1);

        // Refused: an unknown signer.
        let mut r = Report::default();
        let env = approval(&mb, NOW, 30 * DAY, &outsider());
        assert!(check_signature(&mut r, "a.json", &env, &s).is_none());
        let c = check(&r, "attestation a.json: signature");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            format!("signed by unknown key {}", outsider().public().keyid())
        );

        // Refused: one payload byte changed.
        let mut v: serde_json::Value =
            serde_json::from_slice(&approval(&mb, NOW, 30 * DAY, &reviewer())).unwrap();
        let mut payload = v["payload"].as_str().unwrap().to_string();
        payload.replace_range(10..11, if &payload[10..11] == "A" { "B" } else { "A" });
        v["payload"] = payload.into();
        let mut r = Report::default();
        assert!(check_signature(&mut r, "a.json", &serde_json::to_vec(&v).unwrap(), &s).is_none());
        let d = &check(&r, "attestation a.json: signature").detail;
        assert!(d.contains("does not verify over the PAE"), "{d}");

        // Refused: a revoked key.
        let revoked = store(
            "",
            &format!("[revoked]\nkeys = [\"{}\"]\n", reviewer().public().keyid()),
        );
        let mut r = Report::default();
        let env = approval(&mb, NOW, 30 * DAY, &reviewer());
        assert!(check_signature(&mut r, "a.json", &env, &revoked).is_none());
        assert_eq!(
            check(&r, "attestation a.json: signature").detail,
            format!("signed by revoked key {}", reviewer().public().keyid())
        );
    }

    #[test]
    fn manifest_sanity() {
        let (_, m) = manifest();
        let mut r = Report::default();
        check_manifest(&mut r, &m);
        let c = check(&r, "manifest");
        assert!(c.passed);
        assert_eq!(c.detail, "cms-squid 1.0 (VO cms); verity blocks 4096/4096");

        let mut bad = m.clone();
        bad.image.size = 0;
        bad.image.sha256 = "AB".repeat(32);
        let mut r = Report::default();
        check_manifest(&mut r, &bad);
        let c = check(&r, "manifest");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            "cms-squid 1.0 (VO cms): image.sha256 is not 64 lowercase hex digits; image.size is 0"
        );
    }

    #[test]
    fn subjects() {
        let (mb, m) = manifest();
        let s = store("", "");
        let ok = signed("a.json", &approval(&mb, NOW, DAY, &reviewer()), &s);
        assert_eq!(
            check_subjects(&ok.statement, &sha256_hex(&mb), &m),
            Vec::<String>::new()
        );

        // Refused: an approval of other wafer.json bytes (another version).
        let other = manifest_bytes("0.9", 4096);
        let st = signed("a.json", &approval(&other, NOW, DAY, &reviewer()), &s);
        assert_eq!(
            check_subjects(&st.statement, &sha256_hex(&mb), &m),
            vec![format!(
                "subject wafer.json sha256 {} does not match the bundle's {}",
                sha256_hex(&other),
                sha256_hex(&mb)
            )]
        );
        // Refused: a manifest whose dm-verity root differs from the signed one.
        let mut moved = m.clone();
        moved.image.verity.root = "00".repeat(32);
        assert_eq!(
            check_subjects(&ok.statement, &sha256_hex(&mb), &moved),
            vec![format!(
                "subject disk.img dm-verity root {ROOT} does not match the bundle's {}",
                "00".repeat(32)
            )]
        );
    }

    #[test]
    fn expiry() {
        let (mb, _) = manifest();
        let s = store("", "");
        let vsa = |time: i64, valid: i64| -> VerificationSummary {
            signed("a.json", &approval(&mb, time, valid, &reviewer()), &s)
                .statement
                .predicate_as()
                .unwrap()
        };
        assert_eq!(
            check_expiry(&vsa(NOW - DAY, 30 * DAY), &s, NOW),
            Vec::<String>::new()
        );
        // Refused: expired.
        let v = vsa(NOW - 10 * DAY, 5 * DAY);
        assert_eq!(
            check_expiry(&v, &s, NOW),
            vec![format!("expired at {}", v.wafer.expires)]
        );
        // Refused: verified in the future (beyond the clock skew).
        let v = vsa(NOW + CLOCK_SKEW + 60, 30 * DAY);
        assert_eq!(
            check_expiry(&v, &s, NOW),
            vec![format!("timeVerified {} is in the future", v.time_verified)]
        );
        // Refused: older than the store's maximum age, though not expired.
        let v = vsa(NOW - 100 * DAY, 365 * DAY);
        assert_eq!(
            check_expiry(&v, &s, NOW),
            vec![format!(
                "approved at {}, older than the store's maximum age of 90 days",
                v.time_verified
            )]
        );
    }

    #[test]
    fn approval_check() {
        let (mb, m) = manifest();
        let s = store("", "");
        let msha = sha256_hex(&mb);
        let mut r = Report::default();
        let a = signed("a.json", &approval(&mb, NOW, 30 * DAY, &reviewer()), &s);
        assert_eq!(
            check_approval(&mut r, &a, &msha, &m, &s, NOW),
            vec![reviewer().public().keyid()]
        );
        let c = check(&r, "attestation a.json: approval");
        assert!(
            c.passed && c.detail.starts_with("PASSED, expires "),
            "{c:?}"
        );

        // Refused: expired (the expiry check's message in the approval's check).
        let mut r = Report::default();
        let a = signed(
            "a.json",
            &approval(&mb, NOW - 10 * DAY, 5 * DAY, &reviewer()),
            &s,
        );
        assert!(check_approval(&mut r, &a, &msha, &m, &s, NOW).is_empty());
        let c = check(&r, "attestation a.json: approval");
        assert!(!c.passed && c.detail.starts_with("expired at "), "{c:?}");

        // Refused: signed by a key of the store that is not a reviewer's.
        let mut r = Report::default();
        let a = signed("a.json", &approval(&mb, NOW, 30 * DAY, &admin()), &s);
        assert!(check_approval(&mut r, &a, &msha, &m, &s, NOW).is_empty());
        let c = check(&r, "attestation a.json: approval");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (false, "not signed by any reviewer key")
        );
    }

    #[test]
    fn provenance_check() {
        let (mb, m) = manifest();
        let s = store("", "");
        let msha = sha256_hex(&mb);
        let mut r = Report::default();
        check_provenance(
            &mut r,
            &signed("p.json", &provenance(&mb, &admin()), &s),
            &msha,
            &m,
            &s,
        );
        let c = check(&r, "attestation p.json: provenance");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (true, "signed by the VO administrator")
        );

        // Refused: signed by a reviewer, who is no VO administrator.
        let mut r = Report::default();
        let p = signed("p.json", &provenance(&mb, &reviewer()), &s);
        check_provenance(&mut r, &p, &msha, &m, &s);
        let c = check(&r, "attestation p.json: provenance");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            format!(
                "key {} is not a VO administrator",
                reviewer().public().keyid()
            )
        );

        // Refused: the cms administrator publishing a wafer its patterns do not cover.
        let mut other = m.clone();
        other.name = "frontier".into();
        let mut r = Report::default();
        let p = signed("p.json", &provenance(&mb, &admin()), &s);
        check_provenance(&mut r, &p, &msha, &other, &s);
        let d = &check(&r, "attestation p.json: provenance").detail;
        assert!(
            d.ends_with(&format!(
                "key {} is a VO administrator of cms and may not publish frontier of VO cms",
                admin().public().keyid()
            )),
            "{d}"
        );
    }

    #[test]
    fn attestations_by_predicate() {
        let (mb, m) = manifest();
        let msha = sha256_hex(&mb);
        let s = store("require_provenance = true", "");
        let a = signed("a.json", &approval(&mb, NOW, 30 * DAY, &reviewer()), &s);
        let mut r = Report::default();
        let approvers = check_attestations(&mut r, std::slice::from_ref(&a), &msha, &m, &s, NOW);
        assert_eq!(approvers.len(), 1);
        // Refused: the store requires a provenance and there is none.
        let c = check(&r, "provenance");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            "the store requires a build provenance signed by the VO administrator; none found"
        );
        // Refused: a predicate verification does not know.
        let mut odd = a;
        odd.statement.predicate_type = "https://example.org/other/v1".into();
        let mut r = Report::default();
        assert!(check_attestations(&mut r, &[odd], &msha, &m, &store("", ""), NOW).is_empty());
        let c = check(&r, "attestation a.json");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (
                false,
                "unsupported predicate type https://example.org/other/v1"
            )
        );
    }

    #[test]
    fn threshold() {
        let s = store("", "");
        let mut r = Report::default();
        check_threshold(&mut r, &[reviewer().public().keyid()].into(), &s);
        let c = check(&r, "reviewer threshold");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (true, "1 of 1 required distinct reviewer approvals")
        );
        let mut r = Report::default();
        check_threshold(&mut r, &BTreeSet::new(), &s);
        let c = check(&r, "reviewer threshold");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (false, "0 of 1 required distinct reviewer approvals")
        );
    }

    #[test]
    fn revocation() {
        let (mb, m) = manifest();
        let msha = sha256_hex(&mb);
        let mut r = Report::default();
        check_revocation(&mut r, &msha, &m, &store("", ""));
        let c = check(&r, "revoked digests");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (true, "none of the wafer's digests is revoked")
        );
        let s = store(
            "",
            &format!(
                "[revoked]\ndigests = [\"sha256:{}\", \"dm-verity-sha256:{ROOT}\"]\n",
                "22".repeat(32)
            ),
        );
        let mut r = Report::default();
        check_revocation(&mut r, &msha, &m, &s);
        let c = check(&r, "revoked digests");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            format!(
                "revoked: sha256:{}, dm-verity-sha256:{ROOT}",
                "22".repeat(32)
            )
        );
    }

    #[test]
    fn rollback() {
        let (_, m) = manifest();
        let mut r = Report::default();
        check_rollback(&mut r, &m, &store("", ""), NOW);
        let c = check(&r, "rollback");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (true, "no minimum version for this wafer")
        );
        let min = |v: &str| {
            store(
                "",
                &format!("[[min_versions]]\nwafer = \"cms-squid\"\nversion = \"{v}\"\n"),
            )
        };
        let mut r = Report::default();
        check_rollback(&mut r, &m, &min("1.0"), NOW);
        let c = check(&r, "rollback");
        assert_eq!((c.passed, c.detail.as_str()), (true, "version 1.0 >= 1.0"));
        // Refused: below the minimum, with no signed exception.
        let mut r = Report::default();
        check_rollback(&mut r, &m, &min("1.10"), NOW);
        let c = check(&r, "rollback");
        assert_eq!(
            (c.passed, c.detail.as_str()),
            (
                false,
                "version 1.0 is older than the lowest allowed 1.10 (no signed exception)"
            )
        );
    }

    #[test]
    fn image_facts() {
        let (_, m) = manifest();
        let facts = ImageFacts {
            file_size: 100,
            decompressed_size: 4096,
            frames: 1,
        };
        let mut r = Report::default();
        check_image_facts(&mut r, &m, &facts);
        assert!(r.passed(), "{r}");
        assert_eq!(check(&r, "compressed size").detail, "100 bytes");
        // Refused before decompressing: a seek table claiming far more than the manifest.
        let bomb = ImageFacts {
            decompressed_size: 40 << 30,
            frames: 10_000,
            ..facts
        };
        let mut r = Report::default();
        check_image_facts(&mut r, &m, &bomb);
        let c = check(&r, "image size");
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            format!(
                "the seek table of disk.img.zst declares {} bytes decompressed (10000 frames), \
                 wafer.json image.size says 4096: refused before decompressing",
                40u64 << 30
            )
        );
    }

    #[test]
    fn image_digests() {
        let (_, m) = manifest();
        let good = Streamed {
            verity_root: Some(ROOT.into()),
            image_size: Some(4096),
            ..Default::default()
        };
        let mut r = Report::default();
        check_streamed(&mut r, &m, &good);
        assert!(r.passed(), "{r}");
        assert_eq!(check(&r, "image dm-verity root").detail, ROOT);
        // Refused: the streamed root differs from the manifest's.
        let bad = Streamed {
            verity_root: Some("00".repeat(32)),
            ..good.clone()
        };
        let mut r = Report::default();
        check_streamed(&mut r, &m, &bad);
        let c = check(&r, "image dm-verity root");
        assert_eq!(
            (c.passed, c.detail.clone()),
            (
                false,
                format!("computed {}, manifest says {ROOT}", "00".repeat(32))
            )
        );
        // Refused: the stream failed, so no root was computed.
        let failed = Streamed {
            error: Some("disk.img.zst: frame 3 is corrupt".into()),
            ..Default::default()
        };
        let mut r = Report::default();
        check_streamed(&mut r, &m, &failed);
        assert_eq!(
            check(&r, "image stream").detail,
            "disk.img.zst: frame 3 is corrupt"
        );
        let c = check(&r, "image dm-verity root");
        assert_eq!((c.passed, c.detail.as_str()), (false, "not computed"));
    }
}
