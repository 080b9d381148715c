//! in-toto Statement v1 (in-toto/attestation `spec/v1/statement.md`, `resource_descriptor.md`)
//! with the predicates wafer writes: the SLSA verification summary v1
//! (`https://slsa.dev/verification_summary/v1`) for approvals and SLSA provenance v1
//! (`https://slsa.dev/provenance/v1`) for builds. The format is documented for users in
//! `docs/attestation.md`.
//!
//! ## Subjects wafer uses
//!
//! | name | digest | annotations |
//! |---|---|---|
//! | `wafer.json` | `sha256` of the manifest bytes | |
//! | `disk.img` | `sha256` of the raw image | [`DM_VERITY_ANNOTATION`]: the dm-verity root hash with its salt and parameters ([`DmVerity`]) |
//! | `disk.img.zst` | `sha256` of the compressed file | |
//!
//! Digest sets hold only algorithms every consumer knows (sigstore-python's models accept
//! `sha256`, `sha384`, `sha512` and `sha3_*` and nothing else): the dm-verity root is not a digest
//! of the subject's bytes, so it travels as a ResourceDescriptor annotation, which consumers that
//! do not know it ignore. Statements written before this layout carried it as the digest
//! [`VERITY_DIGEST`]; [`Statement::image_verity`] still reads that (see `docs/attestation.md`).
//!
//! ## wafer's fields in the verification summary
//!
//! The VSA predicate keeps its standard fields (`verifier.id`, `timeVerified`, `resourceUri`,
//! `policy{uri,digest}`, `verificationResult`, `verifiedLevels`). wafer adds one extension
//! object, URI-named as the in-toto and SLSA rules ask: [`APPROVAL_EXTENSION`] =
//! `{name, version, vo, expires (RFC 3339), reportDigest {sha256}}` ([`WaferApproval`]).
//! `verifiedLevels` holds [`LEVEL_VETTED`] (custom levels must not start with `SLSA_`).
//! Every URI wafer names itself starts with [`WAFER_URI`].

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
/// The URI namespace of every name wafer defines in attestations (extension fields, annotation
/// keys, build type). `.example` is reserved (RFC 2606): nobody else can own it, so the names
/// cannot collide with another producer's.
pub const WAFER_URI: &str = "https://wafer.example/attestation/";
/// Key of wafer's extension object in the verification summary predicate.
pub const APPROVAL_EXTENSION: &str = "https://wafer.example/attestation/approval/v1";
/// Key, in the `disk.img` subject's `annotations`, of the dm-verity root and its parameters.
pub const DM_VERITY_ANNOTATION: &str = "https://wafer.example/attestation/dm-verity/v1";
/// Name of wafer's extension object in statements of the old layout (read, never written).
pub const LEGACY_APPROVAL_EXTENSION: &str = "wafer";
/// Digest name of the dm-verity root hash in statements of the old layout (read, never written;
/// still the algorithm name of dm-verity roots in the trust store's `revoked.digests`).
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
    /// A subject is malformed (e.g. its dm-verity annotation).
    #[error("statement: subject {name}: {detail}")]
    Subject { name: String, detail: String },
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
    /// wafer's own fields, under [`APPROVAL_EXTENSION`] (read also from the old layout's
    /// [`LEGACY_APPROVAL_EXTENSION`]; both at once is refused as a duplicate field).
    #[serde(
        rename = "https://wafer.example/attestation/approval/v1",
        alias = "wafer"
    )]
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
    /// dm-verity parameters of the old layout's `dm-verity-sha256` subject digest; new
    /// statements carry them with the root in the `disk.img` subject's annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<VerityParams>,
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
    /// Versions of the builder's components (wafer's own: `{"wafer": "0.1.0"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<BTreeMap<String, String>>,
}

/// Build type URI of wafer builds.
pub const WAFER_BUILD_TYPE: &str = "https://wafer.example/attestation/build/v1";
/// Build type URI of provenance written before [`WAFER_BUILD_TYPE`] (read, never written).
pub const LEGACY_BUILD_TYPE: &str = "https://wafer.invalid/build/v1";

/// The dm-verity root of `disk.img` with the parameters it was computed with: the value of the
/// subject annotation [`DM_VERITY_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DmVerity {
    /// Root hash, 64 lowercase hex digits.
    pub root_hash: String,
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

impl DmVerity {
    /// wafer's dm-verity parameters (format 1, sha256, 4096/4096) with this root and salt.
    pub fn new(root_hash: &str, salt: &str) -> Self {
        DmVerity {
            root_hash: root_hash.to_string(),
            salt: salt.to_string(),
            hash_algorithm: "sha256".into(),
            data_block_size: 4096,
            hash_block_size: 4096,
            format: 1,
        }
    }

    /// The parameters alone.
    pub fn params(&self) -> VerityParams {
        VerityParams {
            salt: self.salt.clone(),
            hash_algorithm: self.hash_algorithm.clone(),
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            format: self.format,
        }
    }
}

impl VerityParams {
    /// Whether these are wafer's parameters (format 1, sha256, 4096/4096) with `salt`.
    pub fn is_wafers_with_salt(&self, salt: &str) -> bool {
        self.salt == salt
            && self.hash_algorithm == "sha256"
            && self.data_block_size == 4096
            && self.hash_block_size == 4096
            && self.format == 1
    }
}

/// Where a statement's dm-verity root of `disk.img` was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerityLayout {
    /// In the subject annotation [`DM_VERITY_ANNOTATION`] (what wafer writes).
    Annotation,
    /// As the digest [`VERITY_DIGEST`] of the subject (the old layout, which sigstore-python's
    /// models refuse).
    LegacyDigest,
}

/// The dm-verity root a statement states for `disk.img`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVerity {
    /// Root hash, hex.
    pub root: String,
    /// The parameters, when the statement carries them with the root (the old layout carried
    /// them in the VSA's `wafer.verity`, and not at all in provenance).
    pub params: Option<VerityParams>,
    /// Where it was found.
    pub layout: VerityLayout,
}

impl Statement {
    /// The dm-verity root (and parameters) this statement states for the `disk.img` subject:
    /// from its annotation [`DM_VERITY_ANNOTATION`], or from the old layout's digest
    /// [`VERITY_DIGEST`]. `Ok(None)` if it states none; an error if the annotation is malformed,
    /// the root is not 64 lowercase hex digits, or the two places disagree.
    pub fn image_verity(&self) -> Result<Option<ImageVerity>, StatementError> {
        let Some(s) = self.subject_named(SUBJECT_IMAGE) else {
            return Ok(None);
        };
        let bad = |detail: String| StatementError::Subject {
            name: SUBJECT_IMAGE.into(),
            detail,
        };
        let legacy = s.digest.get(VERITY_DIGEST);
        let annotated = match s
            .annotations
            .as_ref()
            .and_then(|a| a.get(DM_VERITY_ANNOTATION))
        {
            None => None,
            Some(v) => Some(
                DmVerity::deserialize(v)
                    .map_err(|e| bad(format!("annotation {DM_VERITY_ANNOTATION}: {e}")))?,
            ),
        };
        let iv = match (annotated, legacy) {
            (Some(a), l) => {
                if l.is_some_and(|l| *l != a.root_hash) {
                    return Err(bad(format!(
                        "the {VERITY_DIGEST} digest differs from the root in annotation \
                         {DM_VERITY_ANNOTATION}"
                    )));
                }
                ImageVerity {
                    params: Some(a.params()),
                    root: a.root_hash,
                    layout: VerityLayout::Annotation,
                }
            }
            (None, Some(l)) => ImageVerity {
                root: l.clone(),
                params: None,
                layout: VerityLayout::LegacyDigest,
            },
            (None, None) => return Ok(None),
        };
        if iv.root.len() != 64
            || !iv
                .root
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad(
                "the dm-verity root is not 64 lowercase hex digits".into()
            ));
        }
        Ok(Some(iv))
    }

    /// What of the old layout this statement uses (empty for statements wafer writes now):
    /// other verifiers refuse or misread these, wafer reads them with a warning.
    pub fn legacy_layout(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self
            .subject
            .iter()
            .any(|s| s.digest.contains_key(VERITY_DIGEST))
        {
            v.push("a dm-verity-sha256 subject digest (sigstore-python refuses it)");
        }
        let pred = self.predicate.as_ref();
        if pred
            .and_then(|p| p.get(LEGACY_APPROVAL_EXTENSION))
            .is_some()
        {
            v.push("the extension field `wafer` (not URI-named)");
        }
        if pred
            .and_then(|p| p.pointer("/buildDefinition/buildType"))
            .and_then(Value::as_str)
            == Some(LEGACY_BUILD_TYPE)
        {
            v.push("the build type https://wafer.invalid/build/v1");
        }
        v
    }
}

/// The subjects every wafer attestation carries: the manifest's sha256, the raw image's sha256
/// with its dm-verity root as annotation, the compressed file's sha256.
pub fn wafer_subjects(
    manifest_sha256: &str,
    image_sha256: &str,
    verity: &DmVerity,
    compressed_sha256: &str,
) -> Vec<ResourceDescriptor> {
    let mut image = ResourceDescriptor::new(SUBJECT_IMAGE, &[("sha256", image_sha256.into())]);
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        DM_VERITY_ANNOTATION.to_string(),
        serde_json::to_value(verity).unwrap_or(Value::Null),
    );
    image.annotations = Some(Value::Object(annotations));
    vec![
        ResourceDescriptor::new(SUBJECT_MANIFEST, &[("sha256", manifest_sha256.into())]),
        image,
        ResourceDescriptor::new(SUBJECT_COMPRESSED, &[("sha256", compressed_sha256.into())]),
    ]
}

/// Whether `s` is an absolute URI as RFC 3986 defines its scheme (`ALPHA *( ALPHA / DIGIT / "+"
/// / "-" / "." ) ":"`), followed by something, with no whitespace or control characters: what
/// `verifier.id`, `builder.id` and `policy.uri` must be.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut b = scheme.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any text can be a URI
/// segment.
pub fn uri_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The default `verifier.id` of an approval: `wafer:reviewer:KEYID` (the reviewer's key id, the
/// one `wafer key id` prints and the trust store lists).
pub fn default_verifier_id(keyid: &str) -> String {
    format!("wafer:reviewer:{}", uri_segment(keyid))
}

/// The default `builder.id` of a provenance: `wafer:builder:VO:KEYID` (the wafer's VO and the
/// VO administrator's key id).
pub fn default_builder_id(vo: &str, keyid: &str) -> String {
    format!("wafer:builder:{}:{}", uri_segment(vo), uri_segment(keyid))
}

/// The default `policy.uri` of an approval: `wafer:policy:NAME` (the policy's `[policy] name`),
/// or `wafer:policy:sha256:DIGEST` for an unnamed policy. Never a local path: the policy's
/// digest is what binds it.
pub fn default_policy_uri(name: &str, sha256: &str) -> String {
    if name.trim().is_empty() {
        format!("wafer:policy:sha256:{}", uri_segment(sha256))
    } else {
        format!("wafer:policy:{}", uri_segment(name.trim()))
    }
}
