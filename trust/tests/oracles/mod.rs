//! Three independent python verifiers of wafer's DSSE envelopes, run from one venv: the models
//! of sigstore-python (`sigstore.dsse`), python in-toto-attestation (the v1 Statement protos, with
//! the SLSA predicates), and python-securesystemslib (`securesystemslib.dsse`). Shared by
//! `trust/tests/attest_oracles.rs` and the command's `tests/cli_attest_oracles.rs`.
//!
//! The venv is made once under `CARGO_TARGET_TMPDIR/attest-oracles-venv` from PyPI with pinned
//! versions ([`PINS`]): built in a private folder and renamed into place, so concurrent test
//! threads (a `OnceLock`) and test binaries (the atomic rename) never see half a venv. Set
//! `WAFER_ATTEST_VENV` to use an existing venv instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The exact versions the oracles are run with.
pub const PINS: &[&str] = &[
    "sigstore==4.5.1",
    "in-toto-attestation==0.9.3",
    "securesystemslib==1.6.0",
];

/// The three verifiers, by the name [`ORACLES_PY`] takes.
pub const ORACLES: &[&str] = &["sigstore", "in-toto-attestation", "securesystemslib"];

/// The python that has the three libraries.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("WAFER_ATTEST_VENV") {
        return PathBuf::from(v).join("bin/python");
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.join("attest-oracles-venv");
    let stamp = PINS.join(" ");
    if std::fs::read_to_string(venv.join(".ready")).ok().as_deref() == Some(stamp.as_str()) {
        return venv.join("bin/python");
    }
    let work = tmp.join(format!("attest-oracles-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let o = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&work)
        .output()
        .expect("python3 is required by this test (Debian packages python3, python3-venv)");
    assert!(
        o.status.success(),
        "python3 -m venv failed (Debian package python3-venv): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(work.join("bin/python"))
        .args(["-m", "pip", "install", "-q"])
        .args(PINS)
        .output()
        .expect("pip");
    assert!(
        o.status.success(),
        "pip install {} failed (PyPI must be reachable): {}",
        PINS.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(work.join(".ready"), &stamp).unwrap();
    // Atomic: the first to finish wins, the others use its venv and drop theirs. A stale venv of
    // other pins is moved away first.
    if venv.exists()
        && std::fs::read_to_string(venv.join(".ready")).ok().as_deref() != Some(stamp.as_str())
    {
        let old = tmp.join(format!("attest-oracles-venv.old.{}", std::process::id()));
        if std::fs::rename(&venv, &old).is_ok() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    if std::fs::rename(&work, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    assert!(
        venv.join(".ready").exists(),
        "{}: no venv after installing",
        venv.display()
    );
    venv.join("bin/python")
}

/// The verifier: `python ORACLES_PY LIBRARY PUBKEY.pem ENVELOPE.json [SHA256]` exits 0 and prints
/// `accepted by LIBRARY` when LIBRARY accepts the envelope signed by the key (and, with SHA256,
/// finds a subject with that sha256); otherwise it exits non-zero naming why.
///
/// * sigstore: `sigstore.dsse.Envelope` (its model: one signature, base64) and
///   `sigstore.dsse.Statement` (Statement v1; subject digest sets of sha256/sha384/sha512/sha3_*
///   only), the subject found by `Statement._matches_digest`. sigstore-python verifies DSSE
///   signatures only with ECDSA P-256 keys (`sigstore.dsse._verify`), so the ed25519 signature is
///   checked with `cryptography` over sigstore's own PAE bytes (`Envelope.pae()`).
/// * in-toto-attestation: the envelope verified by securesystemslib (the DSSE code python in-toto
///   uses); the payload parsed strictly into the `in_toto_attestation.v1` Statement proto and
///   `Statement.validate()`d; a SLSA provenance v1 predicate parsed strictly into its proto, a VSA
///   v1 predicate into its proto ignoring extension fields, as the spec tells consumers to (its
///   `verifiedLevels` is checked to be a list of strings apart: the 0.9.3 proto declares a single
///   string, against the SLSA spec, in-toto/attestation issue 425); every field the predicate's
///   spec does not define must be URI-named.
/// * securesystemslib: `securesystemslib.dsse.Envelope.verify` with the key as
///   `SSlibKey.from_crypto` makes it (the key id must be the one in the envelope), the payload a
///   JSON Statement v1.
pub const ORACLES_PY: &str = r#"
import base64, json, sys
lib, pem, envf = sys.argv[1], sys.argv[2], sys.argv[3]
want_sha = sys.argv[4] if len(sys.argv) > 4 else None
raw = open(envf, "rb").read()
from cryptography.hazmat.primitives.serialization import load_pem_public_key
pub = load_pem_public_key(open(pem, "rb").read())

def fail(msg):
    print(f"refused by {lib}: {msg}", file=sys.stderr)
    sys.exit(1)

def has_sha(payload):
    return any(s.get("digest", {}).get("sha256") == want_sha for s in json.loads(payload)["subject"])

VSA = "https://slsa.dev/verification_summary/v1"
PROV = "https://slsa.dev/provenance/v1"
SPEC_FIELDS = {
    VSA: {"verifier", "timeVerified", "resourceUri", "policy", "inputAttestations",
          "verificationResult", "verifiedLevels", "dependencyLevels", "slsaVersion"},
    PROV: {"buildDefinition", "runDetails"},
}

def sslib_verified_payload():
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey
    key = SSlibKey.from_crypto(pub)
    e = Envelope.from_dict(json.loads(raw))
    if e.payload_type != "application/vnd.in-toto+json":
        fail(f"payloadType {e.payload_type}")
    try:
        ok = e.verify([key], 1)
    except Exception as x:
        fail(f"{type(x).__name__}: {x}")
    if list(ok) != [key.keyid]:
        fail(f"verified keys {list(ok)}, expected {key.keyid}")
    return e.payload

try:
    if lib == "sigstore":
        from sigstore.dsse import Envelope, Statement
        from sigstore.hashes import Hashed
        from sigstore_models.common.v1 import HashAlgorithm
        try:
            env = Envelope._from_json(raw)
        except Exception as x:
            fail(f"envelope: {type(x).__name__}: {x}")
        if env._inner.payload_type != Envelope._TYPE:
            fail(f"payloadType {env._inner.payload_type}")
        from cryptography.exceptions import InvalidSignature
        try:
            pub.verify(env.signature, env.pae())
        except InvalidSignature:
            fail("ed25519 signature does not verify over sigstore's PAE")
        try:
            st = Statement(env._inner.payload)
        except Exception as x:
            fail(f"statement: {x}")
        if want_sha and not st._matches_digest(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(want_sha))):
            fail(f"no subject with sha256 {want_sha}")
    elif lib == "in-toto-attestation":
        payload = sslib_verified_payload()
        from google.protobuf import json_format
        from in_toto_attestation.v1 import statement_pb2
        from in_toto_attestation.v1.statement import Statement
        from in_toto_attestation.predicates.vsa.v1 import vsa_pb2
        from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
        try:
            pb = json_format.Parse(payload, statement_pb2.Statement())
            Statement.copy_from_pb(pb).validate()
        except Exception as x:
            fail(f"statement: {type(x).__name__}: {x}")
        doc = json.loads(payload)
        ptype, pred = doc["predicateType"], dict(doc["predicate"])
        for k in set(pred) - SPEC_FIELDS.get(ptype, set(pred)):
            if "://" not in k:
                fail(f"extension field {k!r} of {ptype} is not URI-named")
        try:
            if ptype == VSA:
                levels = pred.pop("verifiedLevels", [])
                if not (isinstance(levels, list) and all(isinstance(l, str) for l in levels)):
                    fail("verifiedLevels is not a list of strings")
                json_format.ParseDict(pred, vsa_pb2.VerificationSummary(), ignore_unknown_fields=True)
            elif ptype == PROV:
                json_format.ParseDict(pred, provenance_pb2.Provenance())
        except json_format.ParseError as x:
            fail(f"predicate {ptype}: {x}")
        if want_sha and not has_sha(payload):
            fail(f"no subject with sha256 {want_sha}")
    elif lib == "securesystemslib":
        payload = sslib_verified_payload()
        doc = json.loads(payload)
        if doc.get("_type") != "https://in-toto.io/Statement/v1":
            fail(f"_type {doc.get('_type')}")
        if want_sha and not has_sha(payload):
            fail(f"no subject with sha256 {want_sha}")
    else:
        fail("unknown library")
except SystemExit:
    raise
except Exception as x:
    fail(f"{type(x).__name__}: {x}")
print(f"accepted by {lib}")
"#;

/// [`ORACLES_PY`] in a file, written once per test binary.
fn script() -> PathBuf {
    static SCRIPT: OnceLock<PathBuf> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            // One name for every test binary: each writes the same text and renames it into
            // place whole, so a reader always sees a complete script.
            let p = tmp.join("attest-oracles.py");
            let w = tmp.join(format!("attest-oracles-{}.py.tmp", std::process::id()));
            std::fs::write(&w, ORACLES_PY).unwrap();
            std::fs::rename(&w, &p).unwrap();
            p
        })
        .clone()
}

/// Runs one oracle: `Ok(stdout)` if it accepted, `Err(stderr)` if it refused.
pub fn check(
    lib: &str,
    pubkey: &Path,
    envelope: &Path,
    sha256: Option<&str>,
) -> Result<String, String> {
    let py = python();
    let script = script();
    let mut c = Command::new(&py);
    c.arg(&script).arg(lib).arg(pubkey).arg(envelope);
    if let Some(s) = sha256 {
        c.arg(s);
    }
    let o = c.output().expect("run the venv's python");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        assert!(out.contains(&format!("accepted by {lib}")), "{out}");
        Ok(out)
    } else {
        assert!(
            err.contains(&format!("refused by {lib}")),
            "{lib} crashed instead of refusing: {err}"
        );
        Err(err)
    }
}

/// Asserts every oracle accepts `envelope` signed by `pubkey` (with a subject of `sha256`).
pub fn assert_accepted(pubkey: &Path, envelope: &Path, sha256: Option<&str>) {
    for lib in ORACLES {
        if let Err(e) = check(lib, pubkey, envelope, sha256) {
            panic!(
                "{lib} refused {}: {e}\npayload: {}",
                envelope.display(),
                String::from_utf8_lossy(&payload(&std::fs::read(envelope).unwrap()))
            );
        }
    }
}

/// Asserts every oracle refuses `envelope`; returns their reasons.
pub fn assert_refused(pubkey: &Path, envelope: &Path) -> Vec<String> {
    ORACLES
        .iter()
        .map(|lib| match check(lib, pubkey, envelope, None) {
            Ok(out) => panic!("{lib} accepted {}: {out}", envelope.display()),
            Err(e) => e,
        })
        .collect()
}

fn envelope_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("envelope JSON")
}

/// The decoded payload of an envelope.
pub fn payload(env: &[u8]) -> Vec<u8> {
    let v = envelope_json(env);
    STANDARD
        .decode(v["payload"].as_str().expect("payload"))
        .expect("payload base64")
}

/// The envelope with its payload replaced (signatures kept).
pub fn with_payload(env: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = envelope_json(env);
    v["payload"] = STANDARD.encode(payload).into();
    serde_json::to_vec_pretty(&v).unwrap()
}

/// The envelope with one byte of its payload changed: one hex digit of the first sha256 digest,
/// so the payload stays a valid statement and only the signature can tell.
pub fn tamper_payload(env: &[u8]) -> Vec<u8> {
    let mut p = payload(env);
    let key = b"\"sha256\":\"";
    let at = p
        .windows(key.len())
        .position(|w| w == key)
        .expect("a sha256 digest in the payload")
        + key.len();
    p[at] = if p[at] == b'0' { b'1' } else { b'0' };
    with_payload(env, &p)
}

/// The envelope with one bit of its first signature flipped.
pub fn tamper_signature(env: &[u8]) -> Vec<u8> {
    let mut v = envelope_json(env);
    let mut sig = STANDARD
        .decode(v["signatures"][0]["sig"].as_str().expect("sig"))
        .expect("sig base64");
    sig[7] ^= 0x10;
    v["signatures"][0]["sig"] = STANDARD.encode(sig).into();
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Asserts the envelope at `path` is accepted by every oracle and that its payload-tampered and
/// signature-tampered copies are refused by every one.
pub fn assert_accepted_and_tamper_refused(pubkey: &Path, path: &Path, sha256: Option<&str>) {
    assert_accepted(pubkey, path, sha256);
    let bytes = std::fs::read(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (what, t) in [
        ("payload", tamper_payload(&bytes)),
        ("signature", tamper_signature(&bytes)),
    ] {
        let tp = dir.path().join(format!("tampered-{what}.json"));
        std::fs::write(&tp, t).unwrap();
        let why = assert_refused(pubkey, &tp);
        for w in &why {
            assert!(
                w.contains("signature") || w.contains("Verification") || w.contains("verif"),
                "a {what}-tampered envelope should be refused for its signature: {w}"
            );
        }
    }
}
