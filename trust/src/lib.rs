//! Keys, DSSE/in-toto attestations, the site trust store and image digests (sha256, dm-verity).
//!
//! * [`digest`]: dm-verity root hash and sha256, one streaming parallel pass over a seekable zstd image;
//! * [`key`]: ed25519 keys (PKCS#8 / SPKI PEM, optional passphrase), securesystemslib key ids, strict verification;
//! * [`dsse`]: DSSE v1 envelopes and PAE;
//! * [`statement`]: in-toto Statement v1 with the SLSA verification-summary and provenance predicates;
//! * [`store`]: the site trust store (`trust.toml` + public keys);
//! * [`verify`]: verification of a bundle's manifest and attestations against the store.

pub mod digest;
pub mod dsse;
pub mod key;
pub mod statement;
pub mod store;
pub mod time;
pub mod verify;
