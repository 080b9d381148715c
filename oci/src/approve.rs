//! `wafer approve --push REF`: a reviewer approves a wafer already in a registry (or layout)
//! without downloading its disk. The manifest and `wafer.json` are fetched and checked
//! ([`crate::pull::resolve`]: the disk layer must be the disk `wafer.json` states); the verdict
//! (from an earlier `wafer vet --report`, which hashed the disk) must be passing, for this wafer,
//! VO and policy, and about exactly these bytes (the sha256 of this `wafer.json` and of the disk
//! layer); then the approval statement, whose subjects are the digests `wafer.json` states, is
//! signed ([`trust::approve::sign_approval`], as a local approval is) and attached as a referrer.

use trust::approve::{
    check_bound_disk, check_bound_manifest, check_verdict, sign_approval, ApproveInput,
    SignedApproval, Verdict,
};

use crate::pull::resolve;
use crate::push::attach;
use crate::{OciError, Progress, Reference, RegistryOptions};

/// An approval attached to a wafer in a store.
#[derive(Debug, Clone)]
pub struct RemoteApproval {
    /// The approved manifest.
    pub manifest: bundle::Manifest,
    /// The wafer manifest's digest.
    pub subject: String,
    /// The reviewer key's id.
    pub keyid: String,
    /// End of validity (Unix seconds).
    pub expires: i64,
    /// The envelope's file name (`approval-KEYID16.json`).
    pub name: String,
    /// The referrer manifest's digest.
    pub referrer: String,
}

/// Approves the wafer `reference` names on `verdict` (see the module's documentation).
pub fn approve_remote(
    reference: &Reference,
    ropts: &RegistryOptions,
    verdict: &Verdict,
    input: &ApproveInput<'_>,
    progress: Progress<'_>,
) -> Result<RemoteApproval, OciError> {
    let mut r = resolve(reference, ropts, true, progress)?;
    let refused = |why: String| OciError::Approval {
        reference: reference.to_string(),
        why,
    };
    // The same checks and signing as a local approval (trust::approve), on the manifest and
    // wafer.json fetched; the disk is not hashed here: `resolve` checked that the manifest's disk
    // layer is the disk wafer.json states, and the registry serves blobs by that digest.
    let m = &r.manifest;
    let refused_by = |e: trust::approve::ApproveError| refused(e.to_string());
    check_verdict(m, verdict, &input.policy, &input.policy_sha256).map_err(refused_by)?;
    let here = |file: &str| std::path::PathBuf::from(format!("{reference} ({file})"));
    let judged = check_bound_manifest(verdict, &r.manifest_bytes, &here("wafer.json"))
        .map_err(refused_by)?;
    check_bound_disk(
        verdict,
        &judged,
        &m.compressed.sha256,
        &here("disk.img.zst"),
    )
    .map_err(refused_by)?;
    let SignedApproval {
        name,
        envelope: env,
        keyid,
        expires,
    } = sign_approval(&r.manifest_bytes, verdict, input).map_err(refused_by)?;
    let (referrer, _) = attach(r.repo.as_mut(), &name, &env, &r.subject, progress)?;
    Ok(RemoteApproval {
        manifest: r.manifest.clone(),
        subject: r.subject.digest.clone(),
        keyid,
        expires,
        name,
        referrer,
    })
}
