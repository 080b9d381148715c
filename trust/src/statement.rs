//! in-toto Statement v1 (in-toto/attestation `spec/v1/statement.md`, `resource_descriptor.md`)
//! with the two predicates wafer writes: the SLSA verification summary v1
//! (`https://slsa.dev/verification_summary/v1`) for approvals and SLSA provenance v1
//! (`https://slsa.dev/provenance/v1`) for builds.
//!
//! ## Subjects wafer uses
//!
//! | name | digest keys |
//! |---|---|
//! | `wafer.json` | `sha256` of the manifest bytes |
//! | `disk.img` | `sha256` of the raw image, and [`VERITY_DIGEST`] = the dm-verity root hash (salt in the manifest and in the predicate's `wafer.verity`) |
//! | `disk.img.zst` | `sha256` of the compressed file |
//!
//! ## wafer's fields in the verification summary
//!
//! The VSA predicate keeps its standard fields (`verifier.id`, `timeVerified`, `resourceUri`,
//! `policy{uri,digest}`, `verificationResult`, `verifiedLevels`). SLSA consumers ignore unknown
//! fields, so wafer adds one object, `wafer`: `{name, version, vo, expires (RFC 3339),
//! reportDigest {sha256}, verity {salt, hashAlgorithm, dataBlockSize, hashBlockSize, format}}`.
//! `verifiedLevels` holds [`LEVEL_VETTED`] (custom levels must not start with `SLSA_`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `_type` of Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of Statement v0.1, accepted when reading (as in-toto's reference does).
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// Predicate type of the SLSA verification summary v1.
pub const VSA_V1: &str = "https://slsa.dev/verification_summary/v1";
/// Predicate type of SLSA provenance v1.
pub const PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Digest name of the dm-verity root hash (format 1, sha256, 4096/4096, salted).
pub const VERITY_DIGEST: &str = "dm-verity-sha256";
/// The level wafer's approvals record.
pub const LEVEL_VETTED: &str = "WAFER_SITE_VETTED";
/// Subject names.
pub const SUBJECT_MANIFEST: &str = "wafer.json";
/// Subject name of the raw image.
pub const SUBJECT_IMAGE: &str = "disk.img";
/// Subject name of the compressed image.
pub const SUBJECT_COMPRESSED: &str = "disk.img.zst";

/// Errors validating statements (named after in-toto's reference validation errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    /// Not JSON of the statement shape.
    #[error("statement: {0}")]
    Json(String),
    /// `_type` is not Statement v1 (or v0.1).
    #[error("statement: _type {0:?} is not https://in-toto.io/Statement/v1")]
    InvalidStatementType(String),
    /// No subject.
    #[error("statement: at least one subject is required")]
    SubjectRequired,
    /// A resource descriptor has none of name, uri, digest.
    #[error("statement: subject {0}: one of name, uri or digest is required")]
    RdRequiredField(usize),
    /// A subject has no digest.
    #[error("statement: subject {0}: a digest is required")]
    DigestRequired(usize),
    /// predicateType empty.
    #[error("statement: predicateType is required")]
    PredicateTypeRequired,
    /// predicate missing.
    #[error("statement: predicate is required")]
    PredicateRequired,
    /// A digest value is not hex.
    #[error("statement: digest {alg}: value is not lowercase hex")]
    InvalidDigestEncoding { alg: String },
    /// A digest has the wrong length for its algorithm.
    #[error("statement: digest {alg}: {len} hex characters, expected {expected}")]
    IncorrectDigestLength {
        alg: String,
        len: usize,
        expected: String,
    },
    /// The predicate does not have the shape its type requires.
    #[error("statement: predicate of type {ptype}: {detail}")]
    Predicate { ptype: String, detail: String },
}

/// A resource descriptor (subject or dependency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// URI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Digests by algorithm.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// Inline content (base64).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Download location.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub download_location: String,
    /// Media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

/// An in-toto Statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `_type`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Subjects.
    #[serde(default)]
    pub subject: Vec<ResourceDescriptor>,
    /// Predicate type URI.
    #[serde(rename = "predicateType", default)]
    pub predicate_type: String,
    /// The predicate.
    #[serde(default)]
    pub predicate: Option<Value>,
}

/// Expected hex length of known digest algorithms (in-toto `digest_set.md`).
fn digest_len(alg: &str) -> Option<&'static [usize]> {
    Some(match alg {
        "sha256" | "sha512_256" | "sha3_256" | "dm-verity-sha256" => &[64],
        "sha224" | "sha512_224" | "sha3_224" => &[56],
        "sha384" | "sha3_384" => &[96],
        "sha512" | "sha3_512" => &[128],
        "sha1" => &[40],
        "md5" => &[32],
        "gitCommit" | "gitTree" | "gitBlob" | "gitTag" => &[40, 64],
        _ => return None,
    })
}

impl ResourceDescriptor {
    /// Validates as in-toto's reference does (`index` names the subject in errors).
    pub fn validate(&self, index: usize) -> Result<(), StatementError> {
        if self.name.is_empty() && self.uri.is_empty() && self.digest.is_empty() {
            return Err(StatementError::RdRequiredField(index));
        }
        for (alg, v) in &self.digest {
            if let Some(lens) = digest_len(alg) {
                if !v
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(StatementError::InvalidDigestEncoding { alg: alg.clone() });
                }
                if !lens.contains(&v.len()) {
                    return Err(StatementError::IncorrectDigestLength {
                        alg: alg.clone(),
                        len: v.len(),
                        expected: lens
                            .iter()
                            .map(|l| l.to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                    });
                }
            }
        }
        Ok(())
    }

    /// A subject with a name and digests.
    pub fn new(name: &str, digest: &[(&str, String)]) -> Self {
        ResourceDescriptor {
            name: name.to_string(),
            digest: digest
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }
}

impl Statement {
    /// Parses and validates a statement (`_type`, subjects with digests, predicate present).
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatementError> {
        let s: Statement = serde_json::from_slice(bytes).map_err(|e| {
            StatementError::Json(format!("line {} column {}: {e}", e.line(), e.column()))
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Validation as in-toto's reference `Statement.Validate`.
    pub fn validate(&self) -> Result<(), StatementError> {
        if self.type_ != STATEMENT_V1 && self.type_ != STATEMENT_V01 {
            return Err(StatementError::InvalidStatementType(self.type_.clone()));
        }
        if self.subject.is_empty() {
            return Err(StatementError::SubjectRequired);
        }
        for (i, s) in self.subject.iter().enumerate() {
            s.validate(i)?;
            if s.digest.is_empty() {
                return Err(StatementError::DigestRequired(i));
            }
        }
        if self.predicate_type.is_empty() {
            return Err(StatementError::PredicateTypeRequired);
        }
        match &self.predicate {
            None | Some(Value::Null) => Err(StatementError::PredicateRequired),
            Some(_) => Ok(()),
        }
    }

    /// A v1 statement with `predicate` serialized from `p`.
    pub fn new<P: Serialize>(
        subject: Vec<ResourceDescriptor>,
        predicate_type: &str,
        p: &P,
    ) -> Self {
        Statement {
            type_: STATEMENT_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate: Some(serde_json::to_value(p).unwrap_or(Value::Null)),
        }
    }

    /// Compact JSON bytes (the DSSE payload).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The subject named `name`, if any.
    pub fn subject_named(&self, name: &str) -> Option<&ResourceDescriptor> {
        self.subject.iter().find(|s| s.name == name)
    }

    /// The predicate as `P`, strictly.
    pub fn predicate_as<P: for<'de> Deserialize<'de>>(&self) -> Result<P, StatementError> {
        let v = self.predicate.clone().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| StatementError::Predicate {
            ptype: self.predicate_type.clone(),
            detail: e.to_string(),
        })
    }
}

/// SLSA verification summary v1 predicate, plus wafer's `wafer` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// Who verified.
    pub verifier: Verifier,
    /// When (RFC 3339, UTC).
    pub time_verified: String,
    /// What was verified (e.g. `wafer:NAME@VERSION`).
    pub resource_uri: String,
    /// The policy applied.
    pub policy: Policy,
    /// Attestations used as input (optional in the spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_attestations: Vec<ResourceDescriptor>,
    /// `PASSED` or `FAILED`.
    pub verification_result: String,
    /// Levels verified.
    #[serde(default)]
    pub verified_levels: Vec<String>,
    /// Dependency levels (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_levels: Option<BTreeMap<String, u64>>,
    /// SLSA version (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slsa_version: Option<String>,
    /// wafer's own fields.
    pub wafer: WaferApproval,
}

/// VSA `verifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    /// Verifier identity URI.
    pub id: String,
    /// Component versions (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<BTreeMap<String, String>>,
}

/// VSA `policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Policy URI.
    pub uri: String,
    /// Policy digests.
    pub digest: BTreeMap<String, String>,
}

/// wafer's fields inside the verification summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaferApproval {
    /// Wafer name.
    pub name: String,
    /// Wafer version.
    pub version: String,
    /// Virtual Organisation.
    pub vo: String,
    /// End of validity (RFC 3339, UTC).
    pub expires: String,
    /// Digest of the vetting report.
    pub report_digest: BTreeMap<String, String>,
    /// dm-verity parameters of the `dm-verity-sha256` subject digest.
    pub verity: VerityParams,
}

/// dm-verity parameters recorded with the root hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerityParams {
    /// Salt, hex.
    pub salt: String,
    /// Always `sha256`.
    pub hash_algorithm: String,
    /// Always 4096.
    pub data_block_size: u32,
    /// Always 4096.
    pub hash_block_size: u32,
    /// dm-verity format version, always 1.
    pub format: u32,
}

/// SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// How it was built.
    pub build_definition: BuildDefinition,
    /// Who built it.
    pub run_details: RunDetails,
}

/// Provenance `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// Build type URI.
    pub build_type: String,
    /// External parameters (the recipe reference).
    pub external_parameters: Value,
    /// Internal parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_parameters: Option<Value>,
    /// Recipe and base images with their digests.
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// Provenance `runDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// Builder identity.
    pub builder: Builder,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Provenance `runDetails.builder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    /// Builder id URI.
    pub id: String,
}

/// Build type URI of wafer builds.
pub const WAFER_BUILD_TYPE: &str = "https://wafer.invalid/build/v1";
