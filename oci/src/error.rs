//! [`OciError`]: every failure of a push or a pull, naming the reference, URL, blob or file.

use std::path::PathBuf;

/// Why a push or a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A reference that does not parse.
    #[error("{input}: not a reference: {why}")]
    Reference {
        /// As given (escaped when shown by the command).
        input: String,
        /// Why.
        why: String,
    },
    /// The network or TLS failed.
    #[error("{url}{hint}: {source}")]
    Http {
        /// The request's URL.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
        /// What to try (may be empty).
        hint: &'static str,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: {what}: HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// The request's URL.
        url: String,
        /// What was asked.
        what: String,
        /// The status.
        status: u16,
        /// The start of the registry's answer (its error JSON), escaped.
        detail: String,
    },
    /// Authentication failed or was refused.
    #[error("{registry}: authentication failed: {detail}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why (never a credential).
        detail: String,
    },
    /// A manifest, tag or blob does not exist.
    #[error("{what}: not found in {repo}")]
    NotFound {
        /// The manifest reference or blob digest.
        what: String,
        /// The repository.
        repo: String,
    },
    /// Bytes whose digest is not the one stated.
    #[error("{what}: digest {actual}, but {expected} was stated: refused (tampered with, or another blob)")]
    Digest {
        /// The blob or manifest.
        what: String,
        /// Stated digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// More (or fewer) bytes than stated or allowed.
    #[error("{what}: {why}")]
    Size {
        /// The blob or manifest.
        what: String,
        /// Declared and actual sizes.
        why: String,
    },
    /// A manifest or index that is not what wafer pushes (media type, artifact type, layers).
    #[error("{what}: {why}")]
    Manifest {
        /// Which manifest (reference or digest).
        what: String,
        /// Why it is refused.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configuration file (auth file, CA file) that cannot be used.
    #[error("{path}: {why}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A file of a layout or a bundle that is a link, not a regular file, too large, or unreadable.
    #[error(transparent)]
    Safe(#[from] rootfs::safe::SafeError),
    /// The bundle to push is not a complete bundle.
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// Writing the pulled bundle failed (destination exists, rename, I/O).
    #[error(transparent)]
    Writer(#[from] bundle::WriterError),
    /// The disk layer as it streamed is not the disk the signed `wafer.json` states, or its
    /// partial file cannot be used; or a delta pull failed.
    #[error(transparent)]
    Delta(#[from] bundle::delta::DeltaError),
    /// The disk layer of a pull failed: transport, or bytes that are not the signed disk.
    #[error("{what}: {source}")]
    DiskLayer {
        /// The store, `disk.img.zst` and its digest.
        what: String,
        /// Why.
        source: bundle::delta::DeltaError,
    },
    /// The partial disk file cannot be opened or resumed.
    #[error(transparent)]
    Stream(#[from] bundle::stream::StreamError),
    /// An approval of a wafer in a store was refused (the verdict is for other bytes, another
    /// wafer or policy, or not passing).
    #[error("{reference}: not approved: {why}")]
    Approval {
        /// The reference.
        reference: String,
        /// Why.
        why: String,
    },
    /// The pulled bundle fails verification against the trust store: nothing was written under
    /// the destination.
    #[error("{reference}: verification against the trust store failed, nothing written to {dest}: {failures}")]
    Verify {
        /// The reference pulled.
        reference: String,
        /// The destination left untouched.
        dest: PathBuf,
        /// The failed checks, `name: detail; ...`, escaped.
        failures: String,
    },
}

impl OciError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Io { path, source }
    }
}
