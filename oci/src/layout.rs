//! [`Layout`]: an OCI image layout folder (image spec `image-layout.md`): `oci-layout`,
//! `index.json` and `blobs/sha256/HEX`, the form `skopeo copy … oci:PATH:TAG` reads and writes.
//!
//! Tags are `org.opencontainers.image.ref.name` annotations of `index.json`'s descriptors.
//! Referrers (attestations) are manifests listed in `index.json` without a tag, as ORAS stores
//! them; [`Repo::referrers`] finds them by their `subject`. Every file inside the folder is
//! opened without following links; blobs are written as temporary files renamed into place after
//! their digest was checked, and `index.json` is replaced atomically.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rootfs::safe::Folder;
use sha2::{Digest as _, Sha256};

use crate::artifact::{
    sha256_digest, Descriptor, ImageIndex, ImageManifest, MAX_MANIFEST, OCI_INDEX,
};
use crate::reference::valid_digest;
use crate::repo::{read_bounded, BlobStream, ByteRange, Fetched, PutOutcome, Repo};
use crate::OciError;

/// The tag annotation of an image layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout folder.
pub struct Layout {
    path: PathBuf,
    root: Folder,
}

fn hex_of(digest: &str) -> Result<&str, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if valid_digest(digest) => Ok(h),
        _ => Err(OciError::Manifest {
            what: digest.to_string(),
            why: "not a sha256:HEX digest".into(),
        }),
    }
}

impl Layout {
    /// Opens an existing layout (its `oci-layout` file must be there).
    pub fn open(path: &Path) -> Result<Layout, OciError> {
        let root = Folder::open(path)?;
        let marker = root.read_file(LAYOUT_FILE, 4096)?;
        let v: serde_json::Value =
            serde_json::from_slice(&marker).map_err(|e| OciError::Config {
                path: path.join(LAYOUT_FILE),
                why: format!("not an OCI layout marker: {e}"),
            })?;
        if v.get("imageLayoutVersion").and_then(|x| x.as_str()) != Some("1.0.0") {
            return Err(OciError::Config {
                path: path.join(LAYOUT_FILE),
                why: "imageLayoutVersion is not 1.0.0".into(),
            });
        }
        Ok(Layout {
            path: path.to_path_buf(),
            root,
        })
    }

    /// Opens a layout, creating an empty one (the folder, `oci-layout`, `index.json`,
    /// `blobs/sha256`) when the folder does not exist or is empty.
    pub fn create(path: &Path) -> Result<Layout, OciError> {
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(OciError::io(path)(e)),
        }
        let root = Folder::open(path)?;
        if root.open_file_if_exists(LAYOUT_FILE)?.is_none() {
            if !root.entries()?.is_empty() {
                return Err(OciError::Config {
                    path: path.to_path_buf(),
                    why: "neither an OCI image layout (no oci-layout file) nor an empty folder"
                        .into(),
                });
            }
            root.write_file(LAYOUT_FILE, LAYOUT_JSON)?;
            root.write_file("index.json", &ImageIndex::empty().to_bytes())?;
        }
        root.create_dir("blobs")?.create_dir("sha256")?;
        Layout::open(path)
    }

    fn blobs(&self) -> Result<Folder, OciError> {
        Ok(self.root.open_dir("blobs")?.open_dir("sha256")?)
    }

    fn index(&self) -> Result<ImageIndex, OciError> {
        let bytes = self.root.read_file("index.json", MAX_MANIFEST)?;
        ImageIndex::parse(&self.path.join("index.json").display().to_string(), &bytes)
    }

    fn write_index(&self, ix: &ImageIndex) -> Result<(), OciError> {
        self.root.write_file("index.json", &ix.to_bytes())?;
        Ok(())
    }

    fn read_blob_small(&self, digest: &str, max: u64) -> Result<Option<Vec<u8>>, OciError> {
        let hex = hex_of(digest)?;
        let Some(mut f) = self.blobs()?.open_file_if_exists(hex)? else {
            return Ok(None);
        };
        let what = self
            .path
            .join("blobs/sha256")
            .join(hex)
            .display()
            .to_string();
        Ok(Some(read_bounded(&mut f, max, &what)?))
    }

    fn write_blob_bytes(&self, bytes: &[u8]) -> Result<String, OciError> {
        let digest = sha256_digest(bytes);
        let hex = hex_of(&digest)?.to_string();
        let blobs = self.blobs()?;
        if blobs.open_file_if_exists(&hex)?.is_none() {
            blobs.write_file(&hex, bytes)?;
        }
        Ok(digest)
    }
}

impl Repo for Layout {
    fn name(&self) -> String {
        format!("oci:{}", self.path.display())
    }

    fn has_blob(&mut self, digest: &str) -> Result<bool, OciError> {
        Ok(self
            .blobs()?
            .open_file_if_exists(hex_of(digest)?)?
            .is_some())
    }

    fn push_blob(
        &mut self,
        digest: &str,
        size: u64,
        body: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OciError> {
        let hex = hex_of(digest)?.to_string();
        // blobs/ and blobs/sha256/ must be real folders (a planted link is refused here).
        self.blobs()?;
        let dir = self.path.join("blobs/sha256");
        let tmp = dir.join(format!(".{hex}.tmp-{}", std::process::id()));
        let _reg = rootfs::atomic::register(&tmp, &dir.join(&hex), false);
        let written = (|| -> Result<(), OciError> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(OciError::io(&tmp))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut n_total = 0u64;
            loop {
                let n = body.read(&mut buf).map_err(OciError::io(&tmp))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(OciError::io(&tmp))?;
                n_total += n as u64;
                progress(n as u64);
            }
            let actual = format!("sha256:{}", hex::encode(h.finalize()));
            if actual != digest || n_total != size {
                return Err(OciError::Digest {
                    what: format!("blob for {}", self.name()),
                    expected: format!("{digest} ({size} bytes)"),
                    actual: format!("{actual} ({n_total} bytes)"),
                });
            }
            f.sync_all().map_err(OciError::io(&tmp))?;
            std::fs::rename(&tmp, dir.join(&hex)).map_err(OciError::io(dir.join(&hex)))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn fetch_blob(&mut self, digest: &str, range: ByteRange) -> Result<BlobStream<'_>, OciError> {
        let hex = hex_of(digest)?;
        let Some(mut f): Option<File> = self.blobs()?.open_file_if_exists(hex)? else {
            return Err(OciError::NotFound {
                what: digest.to_string(),
                repo: self.name(),
            });
        };
        let path = self.path.join("blobs/sha256").join(hex);
        f.seek(SeekFrom::Start(range.start))
            .map_err(OciError::io(&path))?;
        let len = f.metadata().map_err(OciError::io(&path))?.len();
        let end = range.end.unwrap_or(len).min(len);
        let n = end.saturating_sub(range.start);
        Ok(BlobStream {
            reader: Box::new(f.take(n)),
            len: Some(n),
        })
    }

    fn get_manifest(&mut self, reference: &str, max: u64) -> Result<Option<Fetched>, OciError> {
        let ix = self.index()?;
        let desc = if valid_digest(reference) {
            ix.manifests.iter().find(|d| d.digest == reference).cloned()
        } else {
            ix.manifests
                .iter()
                .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(reference))
                .cloned()
        };
        let digest = match (&desc, valid_digest(reference)) {
            (Some(d), _) => d.digest.clone(),
            (None, true) => reference.to_string(),
            (None, false) => return Ok(None),
        };
        let Some(bytes) = self.read_blob_small(&digest, max)? else {
            return Ok(None);
        };
        let media_type = desc.map(|d| d.media_type).or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(String::from))
        });
        Ok(Some(Fetched {
            digest: sha256_digest(&bytes),
            bytes,
            media_type,
        }))
    }

    fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, OciError> {
        let digest = self.write_blob_bytes(bytes)?;
        let artifact_type = serde_json::from_slice::<ImageManifest>(bytes)
            .ok()
            .and_then(|m| m.artifact_type);
        let mut ix = self.index()?;
        let mut d = Descriptor {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: bytes.len() as u64,
            artifact_type,
            annotations: Default::default(),
        };
        if valid_digest(reference) {
            if !ix.manifests.iter().any(|m| m.digest == digest) {
                ix.manifests.push(d);
            }
        } else {
            ix.manifests
                .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(reference));
            d.annotations.insert(REF_NAME.into(), reference.into());
            ix.manifests.push(d);
        }
        self.write_index(&ix)?;
        Ok(PutOutcome {
            subject_indexed: Some("layout index"),
        })
    }

    fn referrers(
        &mut self,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Option<ImageIndex>, OciError> {
        let ix = self.index()?;
        let mut out = ImageIndex::empty();
        for d in &ix.manifests {
            if d.media_type == OCI_INDEX || d.artifact_type.as_deref() != Some(artifact_type) {
                continue;
            }
            let Some(bytes) = self.read_blob_small(&d.digest, MAX_MANIFEST)? else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            if m.subject.as_ref().is_some_and(|s| s.digest == digest) {
                out.manifests.push(Descriptor {
                    annotations: m.annotations.clone(),
                    ..d.clone()
                });
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_tags_and_links() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lay");
        let mut l = Layout::create(&p).unwrap();
        let blob = b"hello wafer".to_vec();
        let digest = sha256_digest(&blob);
        assert!(!l.has_blob(&digest).unwrap());
        l.push_blob(&digest, blob.len() as u64, &mut &blob[..], &mut |_| {})
            .unwrap();
        assert!(l.has_blob(&digest).unwrap());
        let mut got = Vec::new();
        {
            let mut s = l
                .fetch_blob(
                    &digest,
                    ByteRange {
                        start: 6,
                        end: Some(9),
                    },
                )
                .unwrap();
            s.reader.read_to_end(&mut got).unwrap();
        }
        assert_eq!(got, b"waf");
        // Wrong bytes for a digest are refused, and leave nothing.
        let other = sha256_digest(b"other");
        assert!(l
            .push_blob(&other, 5, &mut &b"wrong"[..], &mut |_| {})
            .is_err());
        assert!(!l.has_blob(&other).unwrap());
        assert_eq!(
            std::fs::read_dir(p.join("blobs/sha256")).unwrap().count(),
            1
        );
        // Tags move; a manifest by digest is kept untagged.
        l.put_manifest(
            "1.0",
            "application/vnd.oci.image.manifest.v1+json",
            br#"{"a":1}"#,
        )
        .unwrap();
        l.put_manifest(
            "1.0",
            "application/vnd.oci.image.manifest.v1+json",
            br#"{"a":2}"#,
        )
        .unwrap();
        assert_eq!(
            l.get_manifest("1.0", 1024).unwrap().unwrap().bytes,
            br#"{"a":2}"#
        );
        assert!(l.get_manifest("2.0", 1024).unwrap().is_none());
        // Not a layout, and a planted link instead of blobs/sha256.
        let plain = d.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        std::fs::write(plain.join("x"), b"x").unwrap();
        assert!(Layout::open(&plain).is_err());
        assert!(Layout::create(&plain).is_err());
        let evil = d.path().join("evil");
        let mut e = Layout::create(&evil).unwrap();
        std::fs::remove_dir(evil.join("blobs/sha256")).unwrap();
        std::os::unix::fs::symlink(d.path(), evil.join("blobs/sha256")).unwrap();
        assert!(e
            .push_blob(&digest, blob.len() as u64, &mut &blob[..], &mut |_| {})
            .is_err());
        assert!(!d.path().join(digest.trim_start_matches("sha256:")).exists());
    }
}
