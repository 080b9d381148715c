//! [`Repo`]: what push and pull need of a place holding blobs and manifests (a registry
//! repository, or an OCI image layout folder), and the range-fetch seam ([`ByteRange`]).

use std::io::Read;

use crate::artifact::{sha256_digest, ImageIndex, MAX_MANIFEST};
use crate::reference::valid_digest;
use crate::OciError;

/// Bytes `start..end` of a blob (`end` exclusive; `None`: to the end). `ByteRange::ALL` is the
/// whole blob; `ByteRange::from(n)` resumes at byte `n` (HTTP `Range: bytes=n-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte, or `None` for the end of the blob.
    pub end: Option<u64>,
}

impl ByteRange {
    /// The whole blob.
    pub const ALL: ByteRange = ByteRange {
        start: 0,
        end: None,
    };

    /// From `start` to the end.
    pub fn from(start: u64) -> ByteRange {
        ByteRange { start, end: None }
    }

    /// The HTTP `Range` header value, `None` for the whole blob.
    pub fn header(&self) -> Option<String> {
        match (self.start, self.end) {
            (0, None) => None,
            (s, None) => Some(format!("bytes={s}-")),
            (s, Some(e)) => Some(format!("bytes={s}-{}", e.saturating_sub(1))),
        }
    }

    /// How many bytes the range holds, when it has an end.
    pub fn len(&self) -> Option<u64> {
        self.end.map(|e| e.saturating_sub(self.start))
    }

    /// True for an empty bounded range.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// The bytes of a blob (or of a range of it), as they arrive: unchecked; the caller hashes them
/// ([`crate::transfer`]).
pub struct BlobStream<'a> {
    /// The bytes.
    pub reader: Box<dyn Read + 'a>,
    /// How many bytes the stream says it will yield, when known (Content-Length).
    pub len: Option<u64>,
}

/// A manifest (or index) as fetched: at most [`MAX_MANIFEST`] bytes.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The media type the store gave (Content-Type, or the layout index's descriptor).
    pub media_type: Option<String>,
    /// `sha256:HEX` of `bytes`, computed here.
    pub digest: String,
}

/// What happened when a manifest was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// How the store indexed the manifest's `subject` itself (`"referrers API"`: the
    /// `OCI-Subject` header; `"layout index"`); `None`: the pusher maintains the referrers tag
    /// schema.
    pub subject_indexed: Option<&'static str>,
}

/// A store of blobs and manifests: one registry repository or one OCI image layout.
pub trait Repo {
    /// For messages: `host/repo` or `oci:PATH`.
    fn name(&self) -> String;
    /// True when the store holds the blob.
    fn has_blob(&mut self, digest: &str) -> Result<bool, OciError>;
    /// Stores a blob of `size` bytes and `digest` read from `body`; `progress` gets the byte
    /// counts sent. The store (or this function) checks the digest.
    fn push_blob(
        &mut self,
        digest: &str,
        size: u64,
        body: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OciError>;
    /// The bytes of `range` of a blob (the seam for resumed and delta downloads: a registry sends
    /// `Range: bytes=S-E` and requires 206 for anything but the whole blob).
    fn fetch_blob(&mut self, digest: &str, range: ByteRange) -> Result<BlobStream<'_>, OciError>;
    /// A manifest by tag or digest (at most `max` bytes), `None` when it does not exist.
    fn get_manifest(&mut self, reference: &str, max: u64) -> Result<Option<Fetched>, OciError>;
    /// Stores a manifest under a tag or its digest.
    fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<PutOutcome, OciError>;
    /// The referrers of `digest` of `artifact_type`, from the referrers API (or the layout's
    /// index); `None` when the store has no such API (then use the tag schema).
    fn referrers(
        &mut self,
        digest: &str,
        artifact_type: &str,
    ) -> Result<Option<ImageIndex>, OciError>;
}

/// Fetches a manifest by tag or digest and checks it: at most [`MAX_MANIFEST`] bytes, and, when
/// asked for by digest, exactly those bytes. `None` when it does not exist.
pub fn fetch_manifest(repo: &mut dyn Repo, reference: &str) -> Result<Option<Fetched>, OciError> {
    let Some(f) = repo.get_manifest(reference, MAX_MANIFEST)? else {
        return Ok(None);
    };
    if valid_digest(reference) && f.digest != reference {
        return Err(OciError::Digest {
            what: format!("{}: manifest {reference}", repo.name()),
            expected: reference.to_string(),
            actual: f.digest,
        });
    }
    debug_assert_eq!(f.digest, sha256_digest(&f.bytes));
    Ok(Some(f))
}

/// Reads at most `max` bytes from `r`; more is [`OciError::Size`] naming `what`.
pub fn read_bounded(r: &mut dyn Read, max: u64, what: &str) -> Result<Vec<u8>, OciError> {
    let mut v = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| OciError::Size {
            what: what.to_string(),
            why: format!("reading failed: {e}"),
        })?;
    if v.len() as u64 > max {
        return Err(OciError::Size {
            what: what.to_string(),
            why: format!("more than {max} bytes: refused"),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(ByteRange::ALL.header(), None);
        assert_eq!(ByteRange::from(10).header().as_deref(), Some("bytes=10-"));
        let r = ByteRange {
            start: 10,
            end: Some(20),
        };
        assert_eq!(r.header().as_deref(), Some("bytes=10-19"));
        assert_eq!(r.len(), Some(10));
        assert!(!r.is_empty());
    }
}
