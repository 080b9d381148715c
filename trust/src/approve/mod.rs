//! Approving a bundle: a reviewer's signed SLSA verification summary, written into the bundle's
//! `attestations/` (what `wafer approve` does, as a library).
//!
//! 1. [`Candidate::open`]: the bundle's `wafer.json` is read and parsed, a linked `attestations/`
//!    is refused, and `disk.img.zst`'s seek table is checked against the manifest
//!    ([`crate::verify::open_disk`]) — all before any vetting or hashing;
//! 2. [`Candidate::check_verdict`]: the verdict (plain data: trust does not know the vetter's
//!    types) is for this wafer and VO, made with this policy, and passing;
//! 3. [`Candidate::approve`]: the verdict is bound to the bytes it judged (the sha256 of
//!    `wafer.json` and `disk.img.zst`), the image is hashed once and must be what the manifest
//!    says, and the statement ([`statement`]) is signed and written through the bundle's handle
//!    (never through a link; a temporary file renamed into place).
//!
//! [`approve`] does all three in one call.

pub mod statement;

use std::path::{Path, PathBuf};

use bundle::{BundleDir, BundleError, DiskError, Manifest, ManifestError};
use rootfs::escape::Escaped;
use rootfs::safe::SafeError;
use sha2::{Digest, Sha256};

use crate::digest::DigestOptions;
use crate::key::PrivateKey;
use crate::report::Report;
use crate::verify::open_disk;

pub use statement::{approval_statement, sign_statement, wafer_subjects, ApprovalRequest};

/// Why a bundle was not approved. Messages name the bundle, the file or the verdict.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// wafer.json does not parse (building a statement from bytes).
    #[error("wafer.json: {0}")]
    Manifest(String),
    /// The bundle directory cannot be opened.
    #[error("opening the bundle")]
    Open(#[source] BundleError),
    /// wafer.json cannot be read.
    #[error(transparent)]
    ReadManifest(BundleError),
    /// wafer.json does not parse.
    #[error("parsing {path}")]
    ParseManifest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// `attestations/` is a link or not a directory, or cannot be written.
    #[error(transparent)]
    Attestations(SafeError),
    /// The image's cheap checks failed (not a regular file, seek table against the manifest).
    #[error("{}: the bundle is damaged: {problems}", bundle.display())]
    Damaged {
        /// The bundle.
        bundle: PathBuf,
        /// The failed checks, `name: detail`, joined by `; `.
        problems: String,
    },
    /// The verdict is about another wafer or VO.
    #[error(
        "{verdict}: the verdict is for wafer {} (VO {}), not this bundle's {} (VO {})",
        Escaped(wafer),
        Escaped(vo),
        Escaped(name),
        Escaped(bundle_vo)
    )]
    OtherWafer {
        /// Which verdict.
        verdict: String,
        /// The verdict's wafer.
        wafer: String,
        /// The verdict's VO.
        vo: String,
        /// The bundle's wafer.
        name: String,
        /// The bundle's VO.
        bundle_vo: String,
    },
    /// The verdict was made with another policy.
    #[error(
        "{verdict}: the verdict was made with policy digest {}, not {policy}'s {want}",
        Escaped(got)
    )]
    OtherPolicy {
        /// Which verdict.
        verdict: String,
        /// The verdict's policy digest.
        got: String,
        /// The policy (as the user named it).
        policy: String,
        /// Its digest.
        want: String,
    },
    /// The verdict does not pass.
    #[error("{verdict}: the verdict is {outcome:?}; only a passing wafer is approved")]
    NotPassing {
        /// Which verdict.
        verdict: String,
        /// Its outcome.
        outcome: String,
    },
    /// The verdict does not record the digests of the bytes it judged.
    #[error(
        "{verdict}: the verdict (of a {} image) does not record the sha256 of the wafer.json and \
             disk.img.zst it judged",
        Escaped(kind)
    )]
    UnboundKind {
        /// Which verdict.
        verdict: String,
        /// The kind of image it judged.
        kind: String,
    },
    /// The verdict does not record which bytes it judged at all.
    #[error("{verdict}: the verdict does not record which bytes it judged (no \"image\" digests; made by \
             an older wafer?)")]
    Unbound {
        /// Which verdict.
        verdict: String,
    },
    /// The verdict judged another wafer.json.
    #[error("{verdict}: the verdict judged a wafer.json with sha256 {}, but {} has sha256 \
             {actual}: it is about other bytes", Escaped(judged), path.display())]
    OtherManifest {
        /// Which verdict.
        verdict: String,
        /// The sha256 it judged.
        judged: String,
        /// wafer.json.
        path: PathBuf,
        /// Its sha256.
        actual: String,
    },
    /// The verdict judged another disk.img.zst.
    #[error("{verdict}: the verdict judged a disk.img.zst with sha256 {}, but {} has sha256 \
             {actual}: it is about other bytes", Escaped(judged), path.display())]
    OtherImage {
        /// Which verdict.
        verdict: String,
        /// The sha256 it judged.
        judged: String,
        /// disk.img.zst.
        path: PathBuf,
        /// Its sha256.
        actual: String,
    },
    /// image.verity.salt is not hex.
    #[error("{}: image.verity.salt: {message}", path.display())]
    Salt {
        /// wafer.json.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Hashing the image failed.
    #[error("hashing {}", path.display())]
    Hash {
        /// disk.img.zst.
        path: PathBuf,
        /// Why.
        #[source]
        source: DiskError,
    },
    /// The image is not what the manifest says.
    #[error("{}: {what}: the bundle is damaged", path.display())]
    ImageDiffers {
        /// disk.img.zst.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// The approval could not be written.
    #[error("writing the approval")]
    Write(#[source] SafeError),
}

impl ApproveError {
    /// Whether the verdict is about other bytes than the bundle's (or does not say which): the
    /// cure is vetting the bundle again.
    pub fn is_stale_verdict(&self) -> bool {
        matches!(
            self,
            ApproveError::UnboundKind { .. }
                | ApproveError::Unbound { .. }
                | ApproveError::OtherManifest { .. }
                | ApproveError::OtherImage { .. }
        )
    }
}

/// What trust needs of a vetting verdict, as plain data (the vetter's types are a floor above).
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// How to name the verdict in messages (its file, or "the verdict").
    pub label: String,
    /// The verdict's exact bytes: their sha256 is the approval's `reportDigest`.
    pub bytes: Vec<u8>,
    /// Its outcome; only `pass` is approved.
    pub outcome: String,
    /// The wafer it judged, when it says (must be the manifest's name).
    pub wafer: Option<String>,
    /// The VO it judged, when it says (must be the manifest's VO).
    pub vo: Option<String>,
    /// The policy digest it was made with, when it says (must be [`ApproveInput::policy_sha256`]).
    pub policy_sha256: Option<String>,
    /// Which bytes it judged (`None`: it does not say, and is refused).
    pub judged: Option<Judged>,
}

/// The bytes a verdict judged.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// The kind of image (`wafer`, `ext`, ...).
    pub kind: String,
    /// sha256 of the wafer.json it read.
    pub manifest_sha256: Option<String>,
    /// sha256 of the disk.img.zst it read.
    pub compressed_sha256: Option<String>,
}

/// Who approves, under which policy, for how long.
#[derive(Debug, Clone)]
pub struct ApproveInput<'a> {
    /// The reviewer's key.
    pub key: &'a PrivateKey,
    /// How to name the policy in messages (its path).
    pub policy: String,
    /// sha256 of the policy, hex.
    pub policy_sha256: String,
    /// The policy URI of the approval.
    pub policy_uri: String,
    /// The verifier id URI; `None`: [`crate::statement::default_verifier_id`] of the key.
    pub verifier_id: Option<String>,
    /// Approval time (Unix seconds).
    pub now: i64,
    /// Validity, seconds from `now`.
    pub valid_for: i64,
    /// Worker threads for hashing the image (0: all).
    pub threads: usize,
}

/// A written approval.
#[derive(Debug, Clone)]
pub struct ApprovalOutcome {
    /// The approved manifest.
    pub manifest: Manifest,
    /// The reviewer key's id.
    pub keyid: String,
    /// End of validity (Unix seconds).
    pub expires: i64,
    /// The envelope written (`BUNDLE/attestations/approval-KEYID16.json`).
    pub path: PathBuf,
}

/// A bundle opened for approval, its cheap checks passed (see the module's documentation).
pub struct Candidate {
    path: PathBuf,
    dir: BundleDir,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    disk: bundle::Disk,
}

impl Candidate {
    /// Opens the bundle at `bundle_dir`: reads and parses `wafer.json`, refuses a linked
    /// `attestations/`, and checks `disk.img.zst`'s seek table against the manifest (a small
    /// zstd bomb claiming tens of GB stops here).
    pub fn open(bundle_dir: &Path) -> Result<Candidate, ApproveError> {
        // Everything in the bundle is read and written through a handle that never follows a link.
        let dir = BundleDir::open(bundle_dir).map_err(ApproveError::Open)?;
        let manifest_bytes = dir
            .read_manifest_bytes()
            .map_err(ApproveError::ReadManifest)?;
        let manifest =
            Manifest::from_json(&manifest_bytes).map_err(|source| ApproveError::ParseManifest {
                path: dir.folder().join("wafer.json"),
                source,
            })?;
        // A linked attestations/ is refused now, before any work.
        dir.folder()
            .open_dir_if_exists("attestations")
            .map_err(ApproveError::Attestations)?;
        let mut facts = Report::default();
        let image = open_disk(&dir, &manifest, &mut facts);
        let problems: Vec<String> = facts
            .failures()
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let disk = match image {
            Some(i) if problems.is_empty() => i,
            _ => {
                return Err(ApproveError::Damaged {
                    bundle: bundle_dir.to_path_buf(),
                    problems: problems.join("; "),
                })
            }
        };
        Ok(Candidate {
            path: bundle_dir.to_path_buf(),
            dir,
            manifest_bytes,
            manifest,
            disk,
        })
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact wafer.json bytes.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The verdict is for this wafer and VO, made with the policy of digest `policy_sha256`
    /// (named `policy` in messages), and passing — in that order ([`check_verdict`]).
    pub fn check_verdict(
        &self,
        v: &Verdict,
        policy: &str,
        policy_sha256: &str,
    ) -> Result<(), ApproveError> {
        check_verdict(&self.manifest, v, policy, policy_sha256)
    }

    /// Approves the bundle on `verdict`: [`Candidate::check_verdict`], the verdict bound to the
    /// bytes it judged, the image hashed once and checked against the manifest (dm-verity root,
    /// size, compressed sha256), then the approval statement signed with `input.key` and written
    /// as `attestations/approval-KEYID16.json`.
    pub fn approve(
        self,
        verdict: &Verdict,
        input: &ApproveInput<'_>,
    ) -> Result<ApprovalOutcome, ApproveError> {
        self.check_verdict(verdict, &input.policy, &input.policy_sha256)?;
        let m = &self.manifest;
        let folder = self.dir.folder();
        let mpath = folder.join("wafer.json");
        // The verdict must be about these bytes: the wafer.json being signed and the
        // disk.img.zst hashed below, exactly as the vetting read them.
        let judged_zst = check_bound_manifest(verdict, &self.manifest_bytes, &mpath)?;

        // The bundle must be what its manifest says before anyone signs the manifest.
        let salt = hex::decode(&m.image.verity.salt).map_err(|e| ApproveError::Salt {
            path: mpath.clone(),
            message: e.to_string(),
        })?;
        let zst = folder.join("disk.img.zst");
        let d = self
            .disk
            .digest(&DigestOptions {
                salt,
                sha256: false,
                compressed_sha256: true,
                threads: input.threads,
            })
            .map_err(|source| ApproveError::Hash {
                path: zst.clone(),
                source,
            })?;
        let differs = |what: String| ApproveError::ImageDiffers {
            path: zst.clone(),
            what,
        };
        let root = d.verity.root_hex();
        if root != m.image.verity.root {
            return Err(differs(format!(
                "dm-verity root {root} differs from wafer.json's {}",
                Escaped(&m.image.verity.root)
            )));
        }
        if d.size != m.image.size {
            return Err(differs(format!(
                "decompressed {} bytes, wafer.json's image.size says {}",
                d.size, m.image.size
            )));
        }
        let csha = d.compressed_sha256.map(hex::encode).unwrap_or_default();
        if csha != m.compressed.sha256 {
            return Err(differs(format!(
                "sha256 {csha} differs from wafer.json's {}",
                Escaped(&m.compressed.sha256)
            )));
        }
        check_bound_disk(verdict, &judged_zst, &csha, &zst)?;

        let SignedApproval {
            name,
            envelope: env,
            keyid,
            expires,
        } = sign_approval(&self.manifest_bytes, verdict, input)?;
        // Created and written relative to the bundle's handle, never through a link: a temporary
        // file renamed into place; a linked attestations/ or approval file is refused.
        let path = folder
            .create_dir("attestations")
            .and_then(|dir| dir.write_file(&name, &env))
            .map_err(ApproveError::Write)?;
        tracing::info!(bundle = %self.path.display(), %keyid, "approved");
        Ok(ApprovalOutcome {
            manifest: self.manifest,
            keyid,
            expires,
            path,
        })
    }
}

/// The verdict checks every approval goes through, wherever the wafer lies (a bundle folder, a
/// registry): the verdict is for this wafer and VO (`manifest`), made with the policy of digest
/// `policy_sha256` (named `policy` in messages), and passing — in that order.
pub fn check_verdict(
    manifest: &Manifest,
    v: &Verdict,
    policy: &str,
    policy_sha256: &str,
) -> Result<(), ApproveError> {
    if v.wafer.as_ref().is_some_and(|w| *w != manifest.name)
        || v.vo.as_ref().is_some_and(|vo| *vo != manifest.vo)
    {
        return Err(ApproveError::OtherWafer {
            verdict: v.label.clone(),
            wafer: v.wafer.clone().unwrap_or_default(),
            vo: v.vo.clone().unwrap_or_default(),
            name: manifest.name.clone(),
            bundle_vo: manifest.vo.clone(),
        });
    }
    if let Some(got) = v.policy_sha256.as_ref().filter(|d| *d != policy_sha256) {
        return Err(ApproveError::OtherPolicy {
            verdict: v.label.clone(),
            got: got.clone(),
            policy: policy.to_string(),
            want: policy_sha256.to_string(),
        });
    }
    if v.outcome != "pass" {
        return Err(ApproveError::NotPassing {
            verdict: v.label.clone(),
            outcome: v.outcome.clone(),
        });
    }
    Ok(())
}

/// The verdict is bound to exactly `manifest_bytes` (the wafer.json about to be signed, at
/// `manifest_path` for messages): it records the sha256 of the wafer.json and of the
/// disk.img.zst it judged, and the first is these bytes'. Returns the judged disk.img.zst's
/// sha256, for [`check_bound_disk`].
pub fn check_bound_manifest(
    verdict: &Verdict,
    manifest_bytes: &[u8],
    manifest_path: &Path,
) -> Result<String, ApproveError> {
    let label = || verdict.label.clone();
    let (judged_manifest, judged_zst) = match &verdict.judged {
        Some(Judged {
            manifest_sha256: Some(m),
            compressed_sha256: Some(z),
            ..
        }) => (m, z),
        Some(j) => {
            return Err(ApproveError::UnboundKind {
                verdict: label(),
                kind: j.kind.clone(),
            })
        }
        None => return Err(ApproveError::Unbound { verdict: label() }),
    };
    let manifest_sha = hex::encode(Sha256::digest(manifest_bytes));
    if !judged_manifest.eq_ignore_ascii_case(&manifest_sha) {
        return Err(ApproveError::OtherManifest {
            verdict: label(),
            judged: judged_manifest.clone(),
            path: manifest_path.to_path_buf(),
            actual: manifest_sha,
        });
    }
    Ok(judged_zst.clone())
}

/// The disk the verdict judged (`judged`, from [`check_bound_manifest`]) is the disk being
/// approved, of sha256 `actual` (hashed here, or stated by a registry that checked it), at
/// `disk_path` for messages.
pub fn check_bound_disk(
    verdict: &Verdict,
    judged: &str,
    actual: &str,
    disk_path: &Path,
) -> Result<(), ApproveError> {
    if !judged.eq_ignore_ascii_case(actual) {
        return Err(ApproveError::OtherImage {
            verdict: verdict.label.clone(),
            judged: judged.to_string(),
            path: disk_path.to_path_buf(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// A signed approval, not yet stored.
#[derive(Debug, Clone)]
pub struct SignedApproval {
    /// Its file name (`approval-KEYID16.json`).
    pub name: String,
    /// The DSSE envelope's bytes.
    pub envelope: Vec<u8>,
    /// The reviewer key's id.
    pub keyid: String,
    /// End of validity (Unix seconds).
    pub expires: i64,
}

/// Signs the approval statement of `manifest_bytes` on `verdict` with `input.key` (valid from
/// `input.now` for `input.valid_for`). Call it only after [`check_verdict`],
/// [`check_bound_manifest`] and [`check_bound_disk`] passed.
pub fn sign_approval(
    manifest_bytes: &[u8],
    verdict: &Verdict,
    input: &ApproveInput<'_>,
) -> Result<SignedApproval, ApproveError> {
    let keyid = input.key.public().keyid();
    let expires = input.now + input.valid_for;
    let req = ApprovalRequest {
        manifest_bytes,
        verifier_id: input
            .verifier_id
            .clone()
            .unwrap_or_else(|| crate::statement::default_verifier_id(&keyid)),
        policy_uri: input.policy_uri.clone(),
        policy_sha256: input.policy_sha256.clone(),
        report_sha256: hex::encode(Sha256::digest(&verdict.bytes)),
        time: input.now,
        expires,
    };
    let envelope = sign_statement(&approval_statement(&req)?, input.key);
    let name = format!("approval-{}.json", keyid.get(..16).unwrap_or(&keyid));
    Ok(SignedApproval {
        name,
        envelope,
        keyid,
        expires,
    })
}

/// Approves the bundle at `bundle_dir` on `verdict` in one call: [`Candidate::open`], then
/// [`Candidate::approve`].
pub fn approve(
    bundle_dir: &Path,
    verdict: &Verdict,
    input: &ApproveInput<'_>,
) -> Result<ApprovalOutcome, ApproveError> {
    Candidate::open(bundle_dir)?.approve(verdict, input)
}
