//! Keys, DSSE/in-toto attestations, the site trust store and image digests (sha256, dm-verity).
