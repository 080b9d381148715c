//! `wafer push`: a bundle folder to a registry or layout, and its attestations as referrers;
//! [`attach`], one attestation as a referrer of a wafer already pushed (`wafer approve --push`).

use std::io::Read;
use std::path::Path;

use crate::artifact::{
    attestation_manifest, referrers_tag, sha256_digest, wafer_manifest, Descriptor, ImageIndex,
    WaferParts, DSSE_ENVELOPE, EMPTY_CONFIG, EMPTY_CONFIG_BYTES, INDEX_ARTIFACT, INDEX_TITLE,
    OCI_INDEX, OCI_MANIFEST, WAFER_CONFIG, WAFER_DISK, WAFER_REPORT,
};
use crate::open::open_repo;
use crate::reference::{valid_digest, valid_tag, Reference};
use crate::repo::{fetch_manifest, Repo};
use crate::{Event, OciError, Progress, RegistryOptions};

/// What a push stored.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// `host/repo:tag` or `oci:PATH:tag`.
    pub reference: String,
    /// The wafer manifest's digest.
    pub digest: String,
    /// The attestations attached: (file name, referrer manifest digest).
    pub attestations: Vec<(String, String)>,
    /// How the referrers are indexed: `referrers API`, `tag schema` or `layout index`.
    pub referrers_via: &'static str,
}

fn push_bytes(
    repo: &mut dyn Repo,
    what: &str,
    desc: &Descriptor,
    bytes: &[u8],
    progress: Progress<'_>,
) -> Result<(), OciError> {
    let mut r: &[u8] = bytes;
    push_stream(repo, what, desc, &mut r, progress)
}

fn push_stream(
    repo: &mut dyn Repo,
    what: &str,
    desc: &Descriptor,
    body: &mut dyn Read,
    progress: Progress<'_>,
) -> Result<(), OciError> {
    progress(&Event::BlobStart {
        what: what.into(),
        digest: desc.digest.clone(),
        size: desc.size,
    });
    let skipped = repo.has_blob(&desc.digest)?;
    if !skipped {
        repo.push_blob(&desc.digest, desc.size, body, &mut |n| {
            progress(&Event::Bytes { n })
        })?;
    }
    progress(&Event::BlobDone {
        what: what.into(),
        digest: desc.digest.clone(),
        size: desc.size,
        skipped,
    });
    Ok(())
}

/// Attaches one DSSE envelope (file name `name`) as a referrer of the wafer manifest `subject`:
/// the envelope and the empty config as blobs, the referrer manifest by digest, and, when the
/// store does not index subjects itself (no referrers API), the `sha256-HEX` tag's index read,
/// extended and written back. Returns the referrer's digest and how it is indexed.
pub fn attach(
    repo: &mut dyn Repo,
    name: &str,
    envelope: &[u8],
    subject: &Descriptor,
    progress: Progress<'_>,
) -> Result<(String, &'static str), OciError> {
    let env = Descriptor::of(DSSE_ENVELOPE, envelope).titled(name);
    let m = attestation_manifest(&env, subject);
    attach_referrer(repo, &format!("attestations/{name}"), m, envelope, progress)
}

/// Publishes the block index of a wafer's disk (`bundle::delta`, untrusted, for delta pulls) as
/// a referrer of the wafer manifest `subject` with its own artifact type
/// ([`INDEX_ARTIFACT`]): never part of the bundle a pull writes.
pub fn attach_index(
    repo: &mut dyn Repo,
    index: &[u8],
    subject: &Descriptor,
    progress: Progress<'_>,
) -> Result<(String, &'static str), OciError> {
    let layer = Descriptor::of(bundle::delta::INDEX_MEDIA_TYPE, index).titled(INDEX_TITLE);
    let mut m = attestation_manifest(&layer, subject);
    m.artifact_type = Some(INDEX_ARTIFACT.into());
    attach_referrer(repo, INDEX_TITLE, m, index, progress)
}

fn attach_referrer(
    repo: &mut dyn Repo,
    what: &str,
    mut m: crate::artifact::ImageManifest,
    blob: &[u8],
    progress: Progress<'_>,
) -> Result<(String, &'static str), OciError> {
    let empty = Descriptor::of(EMPTY_CONFIG, EMPTY_CONFIG_BYTES);
    push_bytes(repo, "empty config", &empty, EMPTY_CONFIG_BYTES, progress)?;
    let Some(layer) = m.layers.first().cloned() else {
        return Err(OciError::Manifest {
            what: what.into(),
            why: "a referrer without a layer".into(),
        });
    };
    push_bytes(repo, what, &layer, blob, progress)?;
    if let Some(t) = layer.title() {
        m.annotations
            .insert(crate::artifact::TITLE.into(), t.to_string());
    }
    let bytes = m.to_bytes();
    let digest = sha256_digest(&bytes);
    let put = repo.put_manifest(&digest, OCI_MANIFEST, &bytes)?;
    progress(&Event::Manifest {
        what: what.to_string(),
        digest: digest.clone(),
    });
    if let Some(how) = put.subject_indexed {
        return Ok((digest, how));
    }
    // The referrers tag schema (distribution spec 1.1, for registries without the API).
    let Some(subject) = &m.subject else {
        return Err(OciError::Manifest {
            what: what.into(),
            why: "a referrer without a subject".into(),
        });
    };
    let tag = referrers_tag(&subject.digest);
    let mut ix = match fetch_manifest(repo, &tag)? {
        Some(f) => ImageIndex::parse(&format!("{}: {tag}", repo.name()), &f.bytes)?,
        None => ImageIndex::empty(),
    };
    if !ix.manifests.iter().any(|d| d.digest == digest) {
        let mut d = Descriptor::of(OCI_MANIFEST, &bytes);
        d.artifact_type = m.artifact_type.clone();
        d.annotations = m.annotations.clone();
        ix.manifests.push(d);
        let ib = ix.to_bytes();
        repo.put_manifest(&tag, OCI_INDEX, &ib)?;
        progress(&Event::Manifest {
            what: "referrers index".into(),
            digest: sha256_digest(&ib),
        });
    }
    Ok((digest, "tag schema"))
}

/// Pushes the bundle at `bundle_dir` to `reference` (its tag; without one, the wafer's version):
/// `wafer.json`, `disk.img.zst` and `build-report.json` as blobs (those the target has are not
/// sent again), the wafer manifest under the tag, then every attestation as a referrer.
pub fn push(
    bundle_dir: &Path,
    reference: &Reference,
    opts: &RegistryOptions,
    progress: Progress<'_>,
) -> Result<PushOutcome, OciError> {
    let b = bundle::Bundle::open(bundle_dir)?;
    let m = b.manifest().clone();
    let folder = b.dir().folder();
    let tag = match (&reference.tag, &reference.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(_)) => {
            return Err(OciError::Reference {
                input: reference.to_string(),
                why: "push names a tag, not a digest (the digest is the result)".into(),
            })
        }
        (None, None) if valid_tag(&m.version) => m.version.clone(),
        (None, None) => {
            return Err(OciError::Reference {
                input: reference.to_string(),
                why: format!(
                    "no tag given, and the wafer's version {:?} is not a valid tag",
                    m.version
                ),
            })
        }
    };
    let disk_digest = format!("sha256:{}", m.compressed.sha256);
    if !valid_digest(&disk_digest) {
        return Err(OciError::Manifest {
            what: folder.join(bundle::MANIFEST_FILE).display().to_string(),
            why: "compressed.sha256 is not 64 lowercase hex digits".into(),
        });
    }
    let report = match folder.open_file_if_exists(bundle::REPORT_FILE)? {
        Some(_) => Some(folder.read_file(bundle::REPORT_FILE, bundle::MAX_JSON)?),
        None => None,
    };
    let parts = WaferParts {
        config: Descriptor::of(WAFER_CONFIG, b.manifest_bytes()).titled(bundle::MANIFEST_FILE),
        disk: Descriptor {
            media_type: WAFER_DISK.into(),
            digest: disk_digest,
            size: m.compressed.size,
            artifact_type: None,
            annotations: Default::default(),
        }
        .titled(bundle::DISK_FILE),
        report: report
            .as_ref()
            .map(|r| Descriptor::of(WAFER_REPORT, r).titled(bundle::REPORT_FILE)),
    };

    let mut repo = open_repo(reference, opts, true)?;
    let repo = repo.as_mut();
    push_bytes(
        repo,
        bundle::MANIFEST_FILE,
        &parts.config,
        b.manifest_bytes(),
        progress,
    )?;
    if let (Some(d), Some(r)) = (&parts.report, &report) {
        push_bytes(repo, bundle::REPORT_FILE, d, r, progress)?;
    }
    // The disk as the bundle holds it (a handle opened without following links); the target
    // checks its digest (the registry on PUT, the layout while writing).
    let mut disk = folder.open_file(bundle::DISK_FILE)?;
    push_stream(repo, bundle::DISK_FILE, &parts.disk, &mut disk, progress)?;

    let manifest = wafer_manifest(&parts, &m);
    let bytes = manifest.to_bytes();
    let digest = sha256_digest(&bytes);
    repo.put_manifest(&tag, OCI_MANIFEST, &bytes)?;
    progress(&Event::Manifest {
        what: "wafer".into(),
        digest: digest.clone(),
    });
    let subject = Descriptor::of(OCI_MANIFEST, &bytes);
    let mut attestations = Vec::new();
    let mut via = "none";
    for a in b.attestations() {
        let (d, how) = attach(repo, &a.name, &a.bytes, &subject, progress)?;
        via = how;
        attestations.push((a.name.clone(), d));
    }
    // The block index, for delta pulls of later versions (an optimisation only: untrusted).
    let index = bundle::delta::BlockIndex::compute(b.disk())?.to_bytes()?;
    attach_index(repo, &index, &subject, progress)?;
    Ok(PushOutcome {
        reference: reference.with_tag(&tag).to_string(),
        digest,
        attestations,
        referrers_via: via,
    })
}
