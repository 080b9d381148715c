//! Wafer bundles and their attestations as OCI artifacts (docs/bundle.md, "In an OCI registry").
//!
//! | module | does |
//! |---|---|
//! | [`reference`] | `host[:port]/repo[:tag][@sha256:…]` and `oci:PATH[:tag]` |
//! | [`artifact`] | the mapping: media types, the image manifest of a wafer and of an attestation, and the strict checks a pulled manifest passes |
//! | [`repo`] | [`Repo`], what push and pull need of a store of blobs and manifests; [`ByteRange`], the range-fetch seam |
//! | [`registry`] | [`Registry`], a [`Repo`] over the OCI distribution spec (HTTP, auth, TLS) |
//! | [`layout`] | [`Layout`], a [`Repo`] over an OCI image layout folder |
//! | [`auth`] | credentials (containers-auth.json, docker config) and the registry auth challenge |
//! | [`transfer`] | blob download checked by digest and size as it streams, resumable with `Range` |
//! | [`push`], [`pull`] | the two operations |
//! | [`approve`] | a reviewer's approval of a wafer in a store, without its disk |
//!
//! Why a small blocking client over `ureq` rather than `oci-client`: wafer is synchronous
//! throughout (rayon, no async runtime); `oci-client` needs tokio and reqwest, pulls in a large
//! dependency tree, and hides the byte stream of a blob behind its own buffering, while pull must
//! hash every byte as it arrives, bound every size, and fetch byte ranges of the disk layer
//! (resume, and the delta pulls that seek-table frames make possible). The distribution spec
//! part wafer needs (HEAD/GET blob, POST+PUT upload, GET/PUT manifest, referrers, the token
//! dance) is a few hundred lines.

pub mod approve;
pub mod artifact;
pub mod auth;
mod error;
mod fetch;
pub mod layout;
mod open;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod repo;
pub mod transfer;

pub use error::OciError;
pub use layout::Layout;
pub use open::open_repo;
pub use reference::Reference;
pub use registry::{Registry, RegistryOptions};
pub use repo::{BlobStream, ByteRange, Fetched, PutOutcome, Repo};

/// Progress events of a push or a pull (the command draws bars from them, or prints them as JSON
/// lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A blob transfer starts (`skipped`: the target already has it).
    BlobStart {
        /// What it is (`wafer.json`, `disk.img.zst`, `attestations/NAME`).
        what: String,
        /// `sha256:HEX`.
        digest: String,
        /// Its size in bytes.
        size: u64,
    },
    /// More bytes of the current blob moved.
    Bytes {
        /// How many more.
        n: u64,
    },
    /// A blob is done (checked by its digest when downloaded).
    BlobDone {
        /// What it is.
        what: String,
        /// `sha256:HEX`.
        digest: String,
        /// Its size.
        size: u64,
        /// It was already there: nothing was sent.
        skipped: bool,
    },
    /// A manifest was written (push) or read (pull).
    Manifest {
        /// What it is (`wafer`, `attestations/NAME`, `referrers index`).
        what: String,
        /// `sha256:HEX`.
        digest: String,
    },
}

/// Receives [`Event`]s.
pub type Progress<'a> = &'a mut dyn FnMut(&Event);
