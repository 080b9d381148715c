//! ed25519 keys: generation, PKCS#8 / SPKI PEM (RFC 8410, RFC 5958, RFC 5208), optional
//! passphrase encryption (PKCS#5 v2.1 PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC, the scheme
//! `openssl genpkey -aes256` writes and `openssl pkey -passin` reads), securesystemslib key ids
//! and strict verification.
//!
//! Verification is strict ([`ed25519_dalek::VerifyingKey::verify_strict`]): besides RFC 8032's
//! checks (canonical S < L, well-formed point encodings) it rejects small-order public keys and
//! small-order R. Loading a public key rejects small-order (weak) keys outright.

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use pkcs8::der::pem::LineEnding;
use pkcs8::{EncodePrivateKey, EncryptedPrivateKeyInfo, PrivateKeyInfo};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// PBKDF2-HMAC-SHA256 iterations for encrypted private keys (OWASP 2023 recommendation).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Errors about keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM text is not a key of the expected kind.
    #[error("{what}: {detail}")]
    Parse { what: String, detail: String },
    /// The private key is encrypted and no passphrase was given.
    #[error("{0}: the private key is encrypted; a passphrase is required")]
    NeedPassphrase(String),
    /// Decryption failed (wrong passphrase or damaged file).
    #[error("{0}: cannot decrypt the private key (wrong passphrase?)")]
    Decrypt(String),
    /// The public key is a small-order point, which strict verification never accepts.
    #[error("{0}: weak (small-order) ed25519 public key")]
    WeakKey(String),
    /// A signature does not have 64 bytes.
    #[error("signature has {0} bytes, expected 64")]
    SignatureLength(usize),
    /// A signature does not verify.
    #[error("signature does not verify under key {keyid}")]
    BadSignature { keyid: String },
    /// Encoding failed.
    #[error("cannot encode key: {0}")]
    Encode(String),
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// An ed25519 private key.
pub struct PrivateKey {
    inner: SigningKey,
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    inner: VerifyingKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public().keyid())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.keyid())
    }
}

impl PrivateKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let k = Self::from_seed(&seed);
        seed.fill(0);
        k
    }

    /// The key whose RFC 8032 secret (seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        PrivateKey {
            inner: SigningKey::from_bytes(seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// Signs `msg` (pure ed25519, RFC 8032 section 5.1.6).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }

    /// PKCS#8 v1 PEM ("PRIVATE KEY", RFC 8410 section 7), or with a passphrase an
    /// "ENCRYPTED PRIVATE KEY" (PBES2 with PBKDF2-HMAC-SHA256, [`PBKDF2_ITERATIONS`], AES-256-CBC).
    pub fn to_pem(&self, passphrase: Option<&[u8]>) -> Result<String, KeyError> {
        let kp = KeypairBytes {
            secret_key: self.inner.to_bytes(),
            public_key: None,
        };
        let der = kp
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let enc = |e: &dyn std::fmt::Display| KeyError::Encode(e.to_string());
        match passphrase {
            None => Ok(der
                .to_pem("PRIVATE KEY", LineEnding::LF)
                .map_err(|e| enc(&e))?
                .to_string()),
            Some(pw) => {
                let mut salt = [0u8; 16];
                let mut iv = [0u8; 16];
                OsRng.fill_bytes(&mut salt);
                OsRng.fill_bytes(&mut iv);
                let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
                    PBKDF2_ITERATIONS,
                    &salt,
                    &iv,
                )
                .map_err(|e| enc(&e))?;
                let info = PrivateKeyInfo::try_from(der.as_bytes()).map_err(|e| enc(&e))?;
                let doc = info.encrypt_with_params(params, pw).map_err(|e| enc(&e))?;
                Ok(doc
                    .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
                    .map_err(|e| enc(&e))?
                    .to_string())
            }
        }
    }

    /// Parses a PKCS#8 PEM private key, encrypted or not; `what` names the source in errors.
    /// Accepts PKCS#8 v1 and v2 (with the public key, which must then match).
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>, what: &str) -> Result<Self, KeyError> {
        let parse = |detail: String| KeyError::Parse {
            what: what.to_string(),
            detail,
        };
        let label = pem
            .lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
            })
            .ok_or_else(|| parse("no PEM \"-----BEGIN\" line".into()))?;
        let inner = match label {
            "PRIVATE KEY" => SigningKey::from_pkcs8_pem(pem)
                .map_err(|e| parse(format!("not an ed25519 PKCS#8 key: {e}")))?,
            "ENCRYPTED PRIVATE KEY" => {
                let pw = passphrase.ok_or_else(|| KeyError::NeedPassphrase(what.to_string()))?;
                let (_, doc) = pkcs8::SecretDocument::from_pem(pem)
                    .map_err(|e| parse(format!("bad PEM: {e}")))?;
                let epki = EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
                    .map_err(|e| parse(format!("bad EncryptedPrivateKeyInfo: {e}")))?;
                let plain = epki
                    .decrypt(pw)
                    .map_err(|_| KeyError::Decrypt(what.to_string()))?;
                SigningKey::from_pkcs8_der(plain.as_bytes())
                    .map_err(|e| parse(format!("not an ed25519 PKCS#8 key: {e}")))?
            }
            other => {
                return Err(parse(format!(
                    "PEM label {other:?}, expected \"PRIVATE KEY\" or \"ENCRYPTED PRIVATE KEY\""
                )))
            }
        };
        Ok(PrivateKey { inner })
    }

    /// Loads a private key file.
    pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text, passphrase, &path.display().to_string())
    }

    /// Writes the private key PEM to a new file readable only by its owner (mode 0600);
    /// refuses to overwrite.
    pub fn save(&self, path: &Path, passphrase: Option<&[u8]>) -> Result<(), KeyError> {
        use std::io::Write;
        let pem = self.to_pem(passphrase)?;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(pem.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

impl PublicKey {
    /// From the 32-byte RFC 8032 encoding; rejects invalid encodings and small-order keys.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self, KeyError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Parse {
            what: what.to_string(),
            detail: format!("ed25519 public key has {} bytes, expected 32", bytes.len()),
        })?;
        let inner = VerifyingKey::from_bytes(&arr).map_err(|e| KeyError::Parse {
            what: what.to_string(),
            detail: format!("invalid ed25519 point: {e}"),
        })?;
        if inner.is_weak() {
            return Err(KeyError::WeakKey(what.to_string()));
        }
        Ok(PublicKey { inner })
    }

    /// Parses an SPKI PEM ("PUBLIC KEY", RFC 8410 section 4).
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, KeyError> {
        let inner = VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::Parse {
            what: what.to_string(),
            detail: format!("not an ed25519 SPKI PEM public key: {e}"),
        })?;
        Self::from_bytes(inner.as_bytes(), what)
    }

    /// Loads a public key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }

    /// Lowercase hex of the raw key, as in securesystemslib's `keyval.public`.
    pub fn hex(&self) -> String {
        hex::encode(self.inner.as_bytes())
    }

    /// The key id as python-securesystemslib (>= 0.26, `SSlibKey`) computes it: the sha256 of
    /// the canonical JSON `{"keytype":"ed25519","keyval":{"public":HEX},"scheme":"ed25519"}`.
    pub fn keyid(&self) -> String {
        let canon = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            self.hex()
        );
        hex::encode(Sha256::digest(canon.as_bytes()))
    }

    /// The legacy key id (older securesystemslib, go-securesystemslib, in-toto): the canonical
    /// JSON also holds `"keyid_hash_algorithms":["sha256","sha512"]`. Accepted when matching
    /// signatures, never written.
    pub fn legacy_keyid(&self) -> String {
        let canon = format!(
            r#"{{"keyid_hash_algorithms":["sha256","sha512"],"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            self.hex()
        );
        hex::encode(Sha256::digest(canon.as_bytes()))
    }

    /// Whether `id` names this key (current or legacy key id).
    pub fn has_keyid(&self, id: &str) -> bool {
        id == self.keyid() || id == self.legacy_keyid()
    }

    /// Strict verification of a 64-byte signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let arr: [u8; 64] = sig
            .try_into()
            .map_err(|_| KeyError::SignatureLength(sig.len()))?;
        let sig = Signature::from_bytes(&arr);
        self.inner
            .verify_strict(msg, &sig)
            .map_err(|_| KeyError::BadSignature {
                keyid: self.keyid(),
            })
    }
}
