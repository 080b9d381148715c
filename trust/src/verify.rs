//! Verification of a wafer bundle against the site trust store.
//!
//! ## What verification expects of the bundle (agreement with the builder)
//!
//! `wafer.json` must hold at least (other fields are ignored here):
//! ```json
//! { "name": "atlas-squid", "version": "3.1", "vo": "atlas",
//!   "image": { "sha256": "HEX", "size": BYTES, "verity": { "root": "HEX", "salt": "HEX",
//!              "hash_block_size": 4096, "data_block_size": 4096 } },
//!   "compressed": { "sha256": "HEX" } }
//! ```
//! `disk.img.zst` is seekable zstd; `attestations/*.json` are DSSE envelopes of in-toto
//! statements (see [`crate::statement`] for subjects and predicates).
//!
//! ## Order (fail closed)
//!
//! Every envelope's signatures are checked over the exact PAE bytes first; only the verified
//! payload bytes are then parsed, once. The manifest is bound by its sha256 subject. Every
//! attestation present must verify under a trusted, unrevoked key: a bundle carrying anything
//! unverifiable is refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::digest::{digest_seekable, DigestOptions, ImageDigests};
use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::key::{PrivateKey, PublicKey};
use crate::statement::{
    Provenance, ResourceDescriptor, Statement, VerificationSummary, VerityParams, WaferApproval,
    PROVENANCE_V1, SUBJECT_COMPRESSED, SUBJECT_IMAGE, SUBJECT_MANIFEST, VERITY_DIGEST, VSA_V1,
};
use crate::store::{compare_versions, glob_match, TrustStore};
use crate::time::{format_rfc3339, parse_rfc3339};

/// Predicate type of a signed rollback exception.
pub const ROLLBACK_EXCEPTION_V1: &str = "https://wafer.invalid/rollback-exception/v1";
/// Allowed clock skew for `timeVerified` in the future, seconds.
pub const CLOCK_SKEW: i64 = 300;

/// The manifest fields verification needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// Wafer name.
    pub name: String,
    /// Wafer version.
    pub version: String,
    /// Virtual Organisation.
    pub vo: String,
    /// Raw image digests.
    pub image: ManifestImage,
    /// Compressed file digests.
    pub compressed: ManifestCompressed,
}

/// `image` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestImage {
    /// sha256 of the raw image, hex.
    pub sha256: String,
    /// Raw image size in bytes (the decompressed stream must be exactly this long).
    pub size: u64,
    /// dm-verity parameters and root.
    pub verity: ManifestVerity,
}

/// `image.verity` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestVerity {
    /// Root hash, hex.
    pub root: String,
    /// Salt, hex.
    pub salt: String,
    /// Must be 4096.
    pub hash_block_size: u32,
    /// Must be 4096.
    pub data_block_size: u32,
}

/// `compressed` of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestCompressed {
    /// sha256 of `disk.img.zst`, hex.
    pub sha256: String,
}

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
        for c in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
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

/// Compares a statement's subjects with the manifest digest and the streamed digests.
fn subject_problems(
    st: &Statement,
    manifest_sha: &str,
    streamed: &Streamed,
    need_image: bool,
) -> Vec<String> {
    let mut p = Vec::new();
    let mut cmp = |subject: &str, alg: &str, want: Option<&String>| {
        let got = st.subject_named(subject).and_then(|s| s.digest.get(alg));
        match (got, want) {
            (None, _) => p.push(format!("no {alg} digest for subject {subject}")),
            (Some(g), Some(w)) if g != w => p.push(format!(
                "subject {subject} {alg} {g} does not match the bundle's {w}"
            )),
            _ => {}
        }
    };
    let m = manifest_sha.to_string();
    cmp(SUBJECT_MANIFEST, "sha256", Some(&m));
    if need_image {
        cmp(SUBJECT_IMAGE, VERITY_DIGEST, streamed.verity_root.as_ref());
        cmp(SUBJECT_IMAGE, "sha256", streamed.image_sha256.as_ref());
        cmp(
            SUBJECT_COMPRESSED,
            "sha256",
            streamed.compressed_sha256.as_ref(),
        );
    }
    p
}

/// Verifies a bundle's manifest and attestations against `store` at time `now` (Unix seconds),
/// given the digests streamed from its image.
pub fn verify(
    manifest_bytes: &[u8],
    attestations: &[(String, Vec<u8>)],
    store: &TrustStore,
    now: i64,
    streamed: &Streamed,
) -> Report {
    let mut r = Report::default();
    let msha = sha256_hex(manifest_bytes);
    r.add("manifest digest", true, format!("sha256 {msha}"));

    // 1. Signatures first; only verified payloads are parsed.
    let signed: Vec<Signed> = attestations
        .iter()
        .filter_map(|(label, bytes)| open_envelope(label, bytes, store, &mut r))
        .collect();

    // 2. The manifest: bound by the approvals' subject digest (checked below); parsed now.
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            r.add(
                "manifest",
                false,
                format!("wafer.json line {} column {}: {e}", e.line(), e.column()),
            );
            return r;
        }
    };
    let v = &manifest.image.verity;
    r.add(
        "manifest",
        v.hash_block_size == 4096 && v.data_block_size == 4096,
        format!(
            "{} {} (VO {}); verity blocks {}/{}",
            manifest.name, manifest.version, manifest.vo, v.data_block_size, v.hash_block_size
        ),
    );

    // 3. The image as streamed against the manifest.
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

    // 4. Approvals.
    let reviewer_ids: BTreeSet<String> = store.reviewers.iter().map(|k| k.keyid()).collect();
    let mut approvers: BTreeSet<String> = BTreeSet::new();
    let max_age = i64::from(store.config.max_approval_age_days) * 86_400;
    let mut provenance_seen = false;
    for s in &signed {
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
                let mut probs = subject_problems(&s.statement, &msha, streamed, true);
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
                if w.verity.salt != v.salt
                    || w.verity.format != 1
                    || w.verity.hash_algorithm != "sha256"
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
                    r.add(name, true, format!("PASSED, expires {}", w.expires));
                    approvers.extend(signer_reviewers);
                } else {
                    r.add(name, false, probs.join("; "));
                }
            }
            PROVENANCE_V1 => {
                provenance_seen = true;
                let name = format!("attestation {}: provenance", s.label);
                let mut probs = subject_problems(&s.statement, &msha, streamed, true);
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
                        "signed by the VO administrator".into()
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

    // 5. Threshold over distinct reviewer keys.
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

    // 6. Revoked digests.
    let mut revoked = Vec::new();
    for (alg, d) in [
        ("sha256", Some(&msha)),
        ("sha256", Some(&manifest.image.sha256)),
        ("sha256", Some(&manifest.compressed.sha256)),
        (VERITY_DIGEST, Some(&v.root)),
    ]
    .into_iter()
    .chain([
        ("sha256", streamed.image_sha256.as_ref()),
        ("sha256", streamed.compressed_sha256.as_ref()),
        (VERITY_DIGEST, streamed.verity_root.as_ref()),
    ]) {
        if let Some(d) = d {
            if store.is_digest_revoked(alg, d) && !revoked.contains(&format!("{alg}:{d}")) {
                revoked.push(format!("{alg}:{d}"));
            }
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

    // 7. Rollback.
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
    r
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
    /// The verifier id URI (who approves).
    pub verifier_id: String,
    /// Policy URI and its sha256.
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

/// The subjects every wafer attestation carries, from the manifest.
pub fn wafer_subjects(manifest_bytes: &[u8], m: &Manifest) -> Vec<ResourceDescriptor> {
    vec![
        ResourceDescriptor::new(SUBJECT_MANIFEST, &[("sha256", sha256_hex(manifest_bytes))]),
        ResourceDescriptor::new(
            SUBJECT_IMAGE,
            &[
                ("sha256", m.image.sha256.clone()),
                (VERITY_DIGEST, m.image.verity.root.clone()),
            ],
        ),
        ResourceDescriptor::new(
            SUBJECT_COMPRESSED,
            &[("sha256", m.compressed.sha256.clone())],
        ),
    ]
}

/// Builds the approval statement (SLSA verification summary, result PASSED) for a manifest.
pub fn approval_statement(req: &ApprovalRequest<'_>) -> Result<Statement, ApproveError> {
    let m: Manifest = serde_json::from_slice(req.manifest_bytes)
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
            verity: VerityParams {
                salt: m.image.verity.salt.clone(),
                hash_algorithm: "sha256".into(),
                data_block_size: 4096,
                hash_block_size: 4096,
                format: 1,
            },
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

/// Options of [`verify_bundle_dir`].
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Also compute the raw image's and the compressed file's plain sha256.
    pub sha256: bool,
    /// Worker threads (0 = all).
    pub threads: usize,
}

/// Verifies a bundle directory (`wafer.json`, `disk.img.zst`, `attestations/*.json`): streams the
/// image once (dm-verity root with the manifest's salt and size; with `opts.sha256` also the
/// raw image's and the compressed file's sha256),
/// then runs [`verify`]. I/O problems become failed checks.
pub fn verify_bundle_dir(dir: &Path, store: &TrustStore, now: i64, opts: &BundleOptions) -> Report {
    let fail = |name: &str, detail: String| {
        let mut r = Report::default();
        r.add(name, false, detail);
        r
    };
    let manifest_bytes = match std::fs::read(dir.join("wafer.json")) {
        Ok(b) if b.len() <= 16 << 20 => b,
        Ok(_) => return fail("manifest", "wafer.json larger than 16 MiB".into()),
        Err(e) => {
            return fail(
                "manifest",
                format!("{}: {e}", dir.join("wafer.json").display()),
            )
        }
    };
    let mut attestations = Vec::new();
    let adir = dir.join("attestations");
    if let Ok(rd) = std::fs::read_dir(&adir) {
        let mut names: Vec<_> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for p in names {
            let label = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match std::fs::read(&p) {
                Ok(b) => attestations.push((label, b)),
                Err(e) => return fail("attestations", format!("{}: {e}", p.display())),
            }
        }
    }
    // The salt is needed before the manifest is verified; a changed salt changes the manifest's
    // sha256, which the approvals bind, so this is safe.
    let salt = serde_json::from_slice::<Manifest>(&manifest_bytes)
        .ok()
        .and_then(|m| hex::decode(m.image.verity.salt).ok());
    let streamed = match (salt, std::fs::File::open(dir.join("disk.img.zst"))) {
        (Some(salt), Ok(f)) => {
            let d = DigestOptions {
                salt,
                sha256: opts.sha256,
                compressed_sha256: opts.sha256,
                threads: opts.threads,
            };
            match digest_seekable(std::io::BufReader::with_capacity(1 << 20, f), &d) {
                Ok(d) => Streamed::from(&d),
                Err(e) => Streamed {
                    error: Some(format!("disk.img.zst: {e}")),
                    ..Default::default()
                },
            }
        }
        (None, _) => Streamed {
            error: Some("wafer.json has no valid image.verity.salt".into()),
            ..Default::default()
        },
        (_, Err(e)) => Streamed {
            error: Some(format!("disk.img.zst: {e}")),
            ..Default::default()
        },
    };
    verify(&manifest_bytes, &attestations, store, now, &streamed)
}
