//! `wafer approve --push REF`: a reviewer approves a wafer already in a registry (or layout)
//! without downloading its disk. The manifest and `wafer.json` are fetched and checked
//! ([`crate::pull::resolve`]: the disk layer must be the disk `wafer.json` states); the verdict
//! (from an earlier `wafer vet --report`, which hashed the disk) must be passing, for this wafer,
//! VO and policy, and about exactly these bytes (the sha256 of this `wafer.json` and of the disk
//! layer); then the approval statement, whose subjects are the digests `wafer.json` states, is
//! signed ([`trust::approve::approval_statement`]) and attached as a referrer.

use sha2::{Digest as _, Sha256};
use trust::approve::{approval_statement, sign_statement, ApprovalRequest, ApproveInput, Verdict};

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
    let m = &r.manifest;
    if verdict.wafer.as_ref().is_some_and(|w| *w != m.name)
        || verdict.vo.as_ref().is_some_and(|vo| *vo != m.vo)
    {
        return Err(refused(format!(
            "{} is for wafer {:?} of VO {:?}, this is {:?} of VO {:?}",
            verdict.label,
            verdict.wafer.as_deref().unwrap_or(""),
            verdict.vo.as_deref().unwrap_or(""),
            m.name,
            m.vo
        )));
    }
    if let Some(p) = verdict
        .policy_sha256
        .as_ref()
        .filter(|d| **d != input.policy_sha256)
    {
        return Err(refused(format!(
            "{} was made with policy sha256 {p}, not {}'s {}",
            verdict.label, input.policy, input.policy_sha256
        )));
    }
    if verdict.outcome != "pass" {
        return Err(refused(format!(
            "{} is {:?}, not pass",
            verdict.label, verdict.outcome
        )));
    }
    let manifest_sha = hex::encode(Sha256::digest(&r.manifest_bytes));
    let (jm, jz) = match &verdict.judged {
        Some(j) => (j.manifest_sha256.as_deref(), j.compressed_sha256.as_deref()),
        None => (None, None),
    };
    match (jm, jz) {
        (Some(jm), Some(jz))
            if jm.eq_ignore_ascii_case(&manifest_sha)
                && jz.eq_ignore_ascii_case(&m.compressed.sha256) => {}
        (Some(jm), Some(jz)) => {
            return Err(refused(format!(
                "{} judged wafer.json {jm} and disk {jz}; the store holds wafer.json {manifest_sha} and disk {}: vet this wafer again",
                verdict.label, m.compressed.sha256
            )))
        }
        _ => {
            return Err(refused(format!(
                "{} does not say which wafer.json and disk it judged (vet a bundle: wafer vet BUNDLE --report FILE)",
                verdict.label
            )))
        }
    }
    let keyid = input.key.public().keyid();
    let expires = input.now + input.valid_for;
    let req = ApprovalRequest {
        manifest_bytes: &r.manifest_bytes,
        verifier_id: input
            .verifier_id
            .clone()
            .unwrap_or_else(|| trust::statement::default_verifier_id(&keyid)),
        policy_uri: input.policy_uri.clone(),
        policy_sha256: input.policy_sha256.clone(),
        report_sha256: hex::encode(Sha256::digest(&verdict.bytes)),
        time: input.now,
        expires,
    };
    let st = approval_statement(&req).map_err(|e| refused(e.to_string()))?;
    let env = sign_statement(&st, input.key);
    let name = format!("approval-{}.json", keyid.get(..16).unwrap_or(&keyid));
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
