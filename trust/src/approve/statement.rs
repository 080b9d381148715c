//! Approving a bundle: the approval statement (SLSA verification summary) and its signature.

use bundle::Manifest;
use sha2::{Digest, Sha256};

use crate::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::key::PrivateKey;
use crate::statement::{
    DmVerity, ResourceDescriptor, Statement, VerificationSummary, WaferApproval, VSA_V1,
};
use crate::time::format_rfc3339;

use super::ApproveError;

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

/// The subjects every wafer attestation carries, from the manifest
/// ([`crate::statement::wafer_subjects`]: the dm-verity root is an annotation of `disk.img`).
pub fn wafer_subjects(manifest_bytes: &[u8], m: &Manifest) -> Vec<ResourceDescriptor> {
    crate::statement::wafer_subjects(
        &hex::encode(Sha256::digest(manifest_bytes)),
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
