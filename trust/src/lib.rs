//! Keys, DSSE/in-toto attestations, the site trust store and image digests (sha256, dm-verity).
//!
//! * [`digest`]: dm-verity root hash and sha256 (re-exported from the `bundle` crate, floor 2);
//! * [`key`]: ed25519 keys (PKCS#8 / SPKI PEM, optional passphrase), securesystemslib key ids, strict verification;
//! * [`dsse`]: DSSE v1 envelopes and PAE;
//! * [`statement`]: in-toto Statement v1 with the SLSA verification-summary and provenance predicates;
//! * [`store`]: the site trust store (`trust.toml` + public keys);
//! * [`approve`]: a reviewer's approval of a bundle (what `wafer approve` does), with the approval
//!   statement builder;
//! * [`report`]: the verification report, one line per named check;
//! * [`verify`](mod@verify): verification (small named checks in `verify/checks.rs`, listed in
//!   `keys/README.md`) of a bundle's manifest, attestations and image against the store,
//!   which alone produces a [`Verified<bundle::Bundle>`] ([`verified`]): the only value `deploy`
//!   accepts.
//!
//! Floor 3: imports `rootfs` and `bundle`, never `builder`, `vetter` or `deploy`.

pub mod approve;
pub mod digest;
pub mod dsse;
pub mod key;
pub mod provenance;
pub mod report;
pub mod statement;
pub mod store;
pub mod time;
pub mod verified;
pub mod verify;

pub use verified::Verified;
pub use verify::{verify_bundle as verify, verify_dir, Report as VerifyReport};
