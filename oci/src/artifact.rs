//! The mapping of a wafer bundle onto OCI (image spec 1.1): media types, the manifests wafer
//! writes, and the checks every manifest read back passes (docs/bundle.md, "In an OCI registry").
//!
//! A wafer is one image manifest: `artifactType` [`WAFER_ARTIFACT`], `wafer.json` as the config
//! blob ([`WAFER_CONFIG`]), `disk.img.zst` as one layer ([`WAFER_DISK`], the file's bytes as they
//! are, so its seekable-zstd frames stay addressable by byte range), `build-report.json` as a
//! second, small layer ([`WAFER_REPORT`]). Each DSSE envelope of `attestations/` is a manifest of
//! its own ([`ATTESTATION_ARTIFACT`], the empty config, the envelope as its one layer
//! [`DSSE_ENVELOPE`]) whose `subject` is the wafer's manifest: an OCI referrer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::reference::valid_digest;
use crate::OciError;

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index (the referrers list).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The artifact type of a wafer.
pub const WAFER_ARTIFACT: &str = "application/vnd.wafer.bundle.v1";
/// The config blob: `wafer.json`, byte for byte.
pub const WAFER_CONFIG: &str = "application/vnd.wafer.manifest.v1+json";
/// The disk layer: `disk.img.zst`, byte for byte (seekable zstd).
pub const WAFER_DISK: &str = "application/vnd.wafer.disk.v1.zstd";
/// The build report layer: `build-report.json`, byte for byte.
pub const WAFER_REPORT: &str = "application/vnd.wafer.build-report.v1+json";
/// The artifact type of an attestation referrer.
pub const ATTESTATION_ARTIFACT: &str = "application/vnd.wafer.attestation.v1+json";
/// The artifact type of the block-index referrer (delta pulls; untrusted, never pulled into a
/// bundle).
pub const INDEX_ARTIFACT: &str = "application/vnd.wafer.block-index.v1";
/// File name (title) of the block index layer.
pub const INDEX_TITLE: &str = "block-index.zst";
/// Media type of a DSSE envelope layer.
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The empty config of image spec 1.1's artifact guidance.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
pub const EMPTY_CONFIG_BYTES: &[u8] = b"{}";
/// Largest manifest or index read.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// A layer's or config's file name.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The wafer's version (manifest annotation).
pub const VERSION: &str = "org.opencontainers.image.version";
/// The build time (manifest annotation; the wafer's SOURCE_DATE_EPOCH, so pushes are
/// reproducible).
pub const CREATED: &str = "org.opencontainers.image.created";
/// The wafer's VO (manifest annotation).
pub const VO: &str = "org.wafer.vo";

/// `sha256:HEX` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The artifact type (in an index of referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    /// With the title annotation.
    pub fn titled(mut self, title: &str) -> Descriptor {
        self.annotations.insert(TITLE.into(), title.into());
        self
    }

    /// The title annotation.
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// The artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index (here: the referrers of a manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// 2.
    pub schema_version: u32,
    /// [`OCI_INDEX`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An empty index.
    pub fn empty() -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// Parses an index (at most [`MAX_MANIFEST`] bytes, checked by the caller).
    pub fn parse(what: &str, bytes: &[u8]) -> Result<ImageIndex, OciError> {
        let ix: ImageIndex = serde_json::from_slice(bytes)
            .map_err(|e| bad(what, format!("not an image index: {e}")))?;
        if ix.schema_version != 2 || ix.media_type.as_deref().is_some_and(|m| m != OCI_INDEX) {
            return Err(bad(
                what,
                format!(
                    "not an OCI image index (schemaVersion {}, mediaType {:?})",
                    ix.schema_version,
                    ix.media_type.as_deref().unwrap_or("")
                ),
            ));
        }
        Ok(ix)
    }

    /// The compact JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn bad(what: &str, why: impl Into<String>) -> OciError {
    OciError::Manifest {
        what: what.to_string(),
        why: why.into(),
    }
}

impl ImageManifest {
    /// The compact JSON bytes pushed (deterministic: same inputs, same digest).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a manifest; checks schemaVersion, mediaType and every descriptor's digest form.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<ImageManifest, OciError> {
        let m: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| bad(what, format!("not an OCI image manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(bad(
                what,
                format!("schemaVersion {}, not 2", m.schema_version),
            ));
        }
        match m.media_type.as_deref() {
            Some(OCI_MANIFEST) => {}
            other => {
                return Err(bad(
                    what,
                    format!("mediaType {:?}, not {OCI_MANIFEST}", other.unwrap_or("")),
                ))
            }
        }
        for d in std::iter::once(&m.config)
            .chain(&m.layers)
            .chain(m.subject.as_ref())
        {
            if !valid_digest(&d.digest) {
                return Err(bad(
                    what,
                    format!("descriptor digest {:?} is not sha256:HEX", d.digest),
                ));
            }
        }
        Ok(m)
    }
}

/// The parts of a wafer bundle to push, as descriptors.
#[derive(Debug, Clone)]
pub struct WaferParts {
    /// `wafer.json`.
    pub config: Descriptor,
    /// `disk.img.zst`.
    pub disk: Descriptor,
    /// `build-report.json`, when the bundle has one.
    pub report: Option<Descriptor>,
}

/// The image manifest of a wafer.
pub fn wafer_manifest(parts: &WaferParts, m: &bundle::Manifest) -> ImageManifest {
    let mut layers = vec![parts.disk.clone()];
    layers.extend(parts.report.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert(TITLE.to_string(), m.name.clone());
    annotations.insert(VERSION.to_string(), m.version.clone());
    annotations.insert(VO.to_string(), m.vo.clone());
    annotations.insert(
        CREATED.to_string(),
        trust::time::format_rfc3339(m.source_date_epoch),
    );
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(WAFER_ARTIFACT.into()),
        config: parts.config.clone(),
        layers,
        subject: None,
        annotations,
    }
}

/// A pulled wafer manifest, checked: which descriptor is which.
#[derive(Debug, Clone)]
pub struct WaferLayers {
    /// `wafer.json`.
    pub config: Descriptor,
    /// `disk.img.zst`.
    pub disk: Descriptor,
    /// `build-report.json`.
    pub report: Option<Descriptor>,
}

/// Checks a manifest is a wafer as wafer pushes it: artifactType, config media type and size
/// (at most `bundle::MAX_JSON`), one disk layer, at most one build report (at most
/// `bundle::MAX_JSON`); any other layer media type is refused.
pub fn check_wafer(what: &str, m: &ImageManifest) -> Result<WaferLayers, OciError> {
    if m.artifact_type.as_deref() != Some(WAFER_ARTIFACT) {
        return Err(bad(
            what,
            format!(
                "artifactType {:?}, not {WAFER_ARTIFACT}: not a wafer",
                m.artifact_type.as_deref().unwrap_or("")
            ),
        ));
    }
    if m.config.media_type != WAFER_CONFIG {
        return Err(bad(
            what,
            format!(
                "config mediaType {:?}, not {WAFER_CONFIG}",
                m.config.media_type
            ),
        ));
    }
    if m.config.size > bundle::MAX_JSON {
        return Err(bad(
            what,
            format!(
                "config (wafer.json) declares {} bytes, more than {}",
                m.config.size,
                bundle::MAX_JSON
            ),
        ));
    }
    let mut disk = None;
    let mut report = None;
    for l in &m.layers {
        let slot = match l.media_type.as_str() {
            WAFER_DISK => &mut disk,
            WAFER_REPORT => {
                if l.size > bundle::MAX_JSON {
                    return Err(bad(
                        what,
                        format!(
                            "build report layer declares {} bytes, more than {}",
                            l.size,
                            bundle::MAX_JSON
                        ),
                    ));
                }
                &mut report
            }
            other => {
                return Err(bad(
                    what,
                    format!("layer of unknown mediaType {other:?}: refused"),
                ))
            }
        };
        if slot.replace(l.clone()).is_some() {
            return Err(bad(
                what,
                format!("two layers of mediaType {}", l.media_type),
            ));
        }
    }
    let Some(disk) = disk else {
        return Err(bad(what, format!("no layer of mediaType {WAFER_DISK}")));
    };
    if disk.size == 0 {
        return Err(bad(what, "the disk layer declares 0 bytes"));
    }
    Ok(WaferLayers {
        config: m.config.clone(),
        disk,
        report,
    })
}

/// The referrer manifest of one attestation (its envelope's descriptor `env`, titled with its
/// file name) for the wafer manifest `subject`.
pub fn attestation_manifest(env: &Descriptor, subject: &Descriptor) -> ImageManifest {
    ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: Some(ATTESTATION_ARTIFACT.into()),
        config: Descriptor::of(EMPTY_CONFIG, EMPTY_CONFIG_BYTES),
        layers: vec![env.clone()],
        subject: Some(Descriptor {
            media_type: subject.media_type.clone(),
            digest: subject.digest.clone(),
            size: subject.size,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }),
        annotations: BTreeMap::new(),
    }
}

/// Checks a referrer is an attestation of `subject_digest` as wafer pushes it; returns the
/// envelope's descriptor (size at most `bundle::MAX_JSON`).
pub fn check_attestation(
    what: &str,
    m: &ImageManifest,
    subject_digest: &str,
) -> Result<Descriptor, OciError> {
    if m.artifact_type.as_deref() != Some(ATTESTATION_ARTIFACT) {
        return Err(bad(
            what,
            format!(
                "artifactType {:?}, not {ATTESTATION_ARTIFACT}",
                m.artifact_type.as_deref().unwrap_or("")
            ),
        ));
    }
    match &m.subject {
        Some(s) if s.digest == subject_digest => {}
        Some(s) => {
            return Err(bad(
                what,
                format!(
                    "its subject is {}, not the wafer {subject_digest}",
                    s.digest
                ),
            ))
        }
        None => return Err(bad(what, "no subject")),
    }
    match m.layers.as_slice() {
        [l] if l.media_type == DSSE_ENVELOPE && l.size <= bundle::MAX_JSON => Ok(l.clone()),
        [l] if l.media_type == DSSE_ENVELOPE => Err(bad(
            what,
            format!(
                "the envelope declares {} bytes, more than {}",
                l.size,
                bundle::MAX_JSON
            ),
        )),
        _ => Err(bad(
            what,
            format!("not one layer of mediaType {DSSE_ENVELOPE}"),
        )),
    }
}

/// The file name an attestation gets in `attestations/`: its title when that is a plain
/// `NAME.json` (letters, digits, `.`, `_`, `-`, not starting with a dot), else
/// `referrer-HEX16.json` from the referrer's digest.
pub fn attestation_name(title: Option<&str>, referrer_digest: &str) -> String {
    match title {
        Some(t)
            if t.len() <= 128
                && t.ends_with(".json")
                && t.len() > 5
                && !t.starts_with('.')
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')) =>
        {
            t.to_string()
        }
        _ => {
            let hex = referrer_digest
                .strip_prefix("sha256:")
                .unwrap_or(referrer_digest);
            format!("referrer-{}.json", hex.get(..16).unwrap_or(hex))
        }
    }
}

/// The tag of the referrers tag schema for a digest: `sha256-HEX`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wafer() -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(WAFER_ARTIFACT.into()),
            config: Descriptor::of(WAFER_CONFIG, b"{}"),
            layers: vec![
                Descriptor::of(WAFER_DISK, b"zst"),
                Descriptor::of(WAFER_REPORT, b"{}"),
            ],
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn wafer_manifest_checks() {
        let m = wafer();
        let back = ImageManifest::parse("m", &m.to_bytes()).unwrap();
        assert_eq!(back, m);
        let l = check_wafer("m", &back).unwrap();
        assert_eq!(l.disk.media_type, WAFER_DISK);
        assert!(l.report.is_some());

        let mut x = wafer();
        x.layers.push(Descriptor::of(
            "application/vnd.oci.image.layer.v1.tar",
            b"x",
        ));
        assert!(check_wafer("m", &x)
            .unwrap_err()
            .to_string()
            .contains("unknown mediaType"));
        let mut x = wafer();
        x.artifact_type = Some("application/vnd.other".into());
        assert!(check_wafer("m", &x).is_err());
        let mut x = wafer();
        x.config.size = bundle::MAX_JSON + 1;
        assert!(check_wafer("m", &x).is_err());
        let mut x = wafer();
        x.layers.remove(0);
        assert!(check_wafer("m", &x).is_err());
        let mut x = wafer();
        x.layers.push(x.layers[0].clone());
        assert!(check_wafer("m", &x).is_err());
        let mut x = wafer();
        x.media_type = Some(OCI_INDEX.into());
        assert!(ImageManifest::parse("m", &x.to_bytes()).is_err());
        let mut x = wafer();
        x.config.digest = "sha512:00".into();
        assert!(ImageManifest::parse("m", &x.to_bytes()).is_err());
        assert!(ImageManifest::parse("m", b"\xff garbage").is_err());
    }

    #[test]
    fn attestation_referrers() {
        let subject = Descriptor::of(OCI_MANIFEST, &wafer().to_bytes());
        let env = Descriptor::of(DSSE_ENVELOPE, b"{\"payload\":\"\"}").titled("approval-ab.json");
        let r = attestation_manifest(&env, &subject);
        assert_eq!(check_attestation("r", &r, &subject.digest).unwrap(), env);
        assert!(check_attestation("r", &r, &sha256_digest(b"other")).is_err());
        assert_eq!(
            attestation_name(env.title(), "sha256:00"),
            "approval-ab.json"
        );
        let d = sha256_digest(b"x");
        for t in [
            None,
            Some("../x.json"),
            Some(".json"),
            Some("a/b.json"),
            Some(".hidden.json"),
            Some("x.txt"),
        ] {
            assert_eq!(
                attestation_name(t, &d),
                format!("referrer-{}.json", &d[7..23])
            );
        }
        assert_eq!(referrers_tag("sha256:ab"), "sha256-ab");
    }
}
