//! DSSE v1 envelopes (secure-systems-lab/dsse `envelope.md`, `protocol.md`).
//!
//! The signature covers the pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN being the decimal
//! byte length without leading zeros. Parsing is strict: unknown JSON fields are refused, duplicate
//! fields are refused, base64 must be canonical (standard alphabet with padding, or the URL-safe
//! alphabet, which the spec requires readers to accept), and the payload type must be one the
//! caller allows.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::key::{PrivateKey, PublicKey};

/// The payload type of in-toto statements.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Largest envelope we parse (16 MiB): attestations are small.
pub const MAX_ENVELOPE: usize = 16 << 20;
/// Largest number of signatures in one envelope.
pub const MAX_SIGNATURES: usize = 64;

/// Errors about envelopes.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// The envelope is not valid JSON of the envelope shape.
    #[error("DSSE envelope: {0}")]
    Json(String),
    /// A base64 field does not decode.
    #[error("DSSE envelope: field {field}: invalid base64: {detail}")]
    Base64 { field: String, detail: String },
    /// The payload type is not allowed.
    #[error("DSSE envelope: payloadType {0:?} is not accepted here")]
    PayloadType(String),
    /// Limits exceeded.
    #[error("DSSE envelope: {0}")]
    Limit(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<RawSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The key id hint (may be empty).
    pub keyid: String,
    /// The raw signature bytes.
    pub sig: Vec<u8>,
}

/// A DSSE envelope with decoded payload and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The payload type.
    pub payload_type: String,
    /// The payload bytes (NOT to be trusted before [`Envelope::verify`] succeeds).
    pub payload: Vec<u8>,
    /// The signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

/// The pre-authentication encoding of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

fn b64decode(field: &str, s: &str) -> Result<Vec<u8>, DsseError> {
    STANDARD.decode(s).or_else(|e| {
        if s.contains(['-', '_']) {
            URL_SAFE.decode(s).map_err(|e| DsseError::Base64 {
                field: field.into(),
                detail: e.to_string(),
            })
        } else {
            Err(DsseError::Base64 {
                field: field.into(),
                detail: e.to_string(),
            })
        }
    })
}

/// The result of verifying an envelope: which keys signed it.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// The payload bytes, which the signatures cover.
    pub payload: &'a [u8],
    /// Key ids (current form) of the distinct keys whose signature verified.
    pub keyids: Vec<String>,
    /// For each signature that did not verify under any given key: its key id hint and why.
    pub failures: Vec<(String, String)>,
}

impl Envelope {
    /// Parses envelope JSON strictly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DsseError> {
        if bytes.len() > MAX_ENVELOPE {
            return Err(DsseError::Limit(format!(
                "{} bytes exceeds the limit {MAX_ENVELOPE}",
                bytes.len()
            )));
        }
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| {
            DsseError::Json(format!("line {} column {}: {e}", e.line(), e.column()))
        })?;
        if raw.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::Limit(format!(
                "{} signatures exceeds the limit {MAX_SIGNATURES}",
                raw.signatures.len()
            )));
        }
        let payload = b64decode("payload", &raw.payload)?;
        let signatures = raw
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(EnvelopeSignature {
                    keyid: s.keyid.clone(),
                    sig: b64decode(&format!("signatures[{i}].sig"), &s.sig)?,
                })
            })
            .collect::<Result<Vec<_>, DsseError>>()?;
        Ok(Envelope {
            payload_type: raw.payload_type,
            payload,
            signatures,
        })
    }

    /// Serializes as pretty JSON (standard base64).
    pub fn to_json(&self) -> Vec<u8> {
        let raw = RawEnvelope {
            payload: STANDARD.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| RawSignature {
                    keyid: s.keyid.clone(),
                    sig: STANDARD.encode(&s.sig),
                })
                .collect(),
        };
        let mut v = serde_json::to_vec_pretty(&raw).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// A new envelope signed by `key` (key id: securesystemslib's current form).
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &PrivateKey) -> Self {
        let mut e = Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures: Vec::new(),
        };
        e.add_signature(key);
        e
    }

    /// Adds a signature by `key` over the PAE.
    pub fn add_signature(&mut self, key: &PrivateKey) {
        let sig = key.sign(&pae(&self.payload_type, &self.payload));
        self.signatures.push(EnvelopeSignature {
            keyid: key.public().keyid(),
            sig: sig.to_vec(),
        });
    }

    /// The PAE bytes the signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// Checks the payload type against `allowed`, then every signature against `keys`: a
    /// signature with a key id is tried only with the keys it names (current or legacy id);
    /// one without a key id is tried with all. Returns the payload with the distinct keys that
    /// signed it; the caller decides what count is enough.
    pub fn verify<'a>(
        &'a self,
        allowed: &[&str],
        keys: &[PublicKey],
    ) -> Result<Verified<'a>, DsseError> {
        if !allowed.contains(&self.payload_type.as_str()) {
            return Err(DsseError::PayloadType(self.payload_type.clone()));
        }
        let msg = self.pae();
        let mut keyids: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        for s in &self.signatures {
            let candidates: Vec<&PublicKey> = keys
                .iter()
                .filter(|k| s.keyid.is_empty() || k.has_keyid(&s.keyid))
                .collect();
            if candidates.is_empty() {
                failures.push((
                    s.keyid.clone(),
                    "no trusted key has this key id".to_string(),
                ));
                continue;
            }
            match candidates.iter().find(|k| k.verify(&msg, &s.sig).is_ok()) {
                Some(k) => {
                    let id = k.keyid();
                    if !keyids.contains(&id) {
                        keyids.push(id);
                    }
                }
                None => failures.push((
                    s.keyid.clone(),
                    "signature does not verify over the PAE".to_string(),
                )),
            }
        }
        Ok(Verified {
            payload: &self.payload,
            keyids,
            failures,
        })
    }
}
