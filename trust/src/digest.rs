//! Image digests (sha256, dm-verity). They belong to the bundle format and live in
//! [`bundle::digest`] (floor 2); re-exported here so `trust::digest::*` keeps working.

pub use bundle::digest::*;
