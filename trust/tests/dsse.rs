//! DSSE and in-toto statements: upstream vectors, OpenSSL and python-securesystemslib as oracles.

use std::process::Command;

use trust::dsse::{pae, DsseError, Envelope, INTOTO_PAYLOAD_TYPE};
use trust::key::{PrivateKey, PublicKey};
use trust::statement::{ResourceDescriptor, Statement, StatementError};

const V: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/dsse-intoto-vectors/"
);

fn read(p: &str) -> Vec<u8> {
    std::fs::read(format!("{V}{p}")).unwrap()
}

#[test]
fn pae_matches_vectors() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        read("dsse-spec-ecdsa-p256/pae.bin")
    );
    assert_eq!(
        pae("application/vnd.dsse+json", b"test message"),
        read("go-securesystemslib-ed25519/derived_dsse_pae_test_message.bin")
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    // The spec's own envelope parses and its PAE is the vector's.
    let e = Envelope::from_json(&read("dsse-spec-ecdsa-p256/envelope.json")).unwrap();
    assert_eq!(e.pae(), read("dsse-spec-ecdsa-p256/pae.bin"));
}

#[test]
fn go_securesystemslib_envelope_verifies_and_is_reproduced() {
    let pk = PublicKey::from_pem(
        &String::from_utf8(read("go-securesystemslib-ed25519/ed25519-test-key-pem.pub")).unwrap(),
        "go",
    )
    .unwrap();
    let bytes = read("go-securesystemslib-ed25519/derived_dsse_envelope_test_message.json");
    let e = Envelope::from_json(&bytes).unwrap();
    let v = e.verify(&["application/vnd.dsse+json"], &[pk]).unwrap();
    assert_eq!(v.keyids, vec![pk.keyid()]);
    assert!(v.failures.is_empty());
    assert_eq!(v.payload, b"test message");
    // The payload type must be one we allow.
    assert!(matches!(
        e.verify(&[INTOTO_PAYLOAD_TYPE], &[pk]),
        Err(DsseError::PayloadType(_))
    ));
    // Re-signing gives the same bytes (ed25519 is deterministic).
    let sk = PrivateKey::from_pem(
        &String::from_utf8(read("go-securesystemslib-ed25519/ed25519-test-key-pem")).unwrap(),
        None,
        "go",
    )
    .unwrap();
    let ours = Envelope::sign("application/vnd.dsse+json", b"test message".to_vec(), &sk);
    assert_eq!(ours.signatures[0].sig, e.signatures[0].sig);
    // A changed payload no longer verifies.
    let mut t = e.clone();
    t.payload[0] ^= 1;
    let v = t.verify(&["application/vnd.dsse+json"], &[pk]).unwrap();
    assert!(v.keyids.is_empty());
    assert_eq!(v.failures.len(), 1);
}

#[test]
fn strict_parsing() {
    let ok = br#"{"payload":"aGk=","payloadType":"t","signatures":[{"keyid":"","sig":"AA=="}]}"#;
    Envelope::from_json(ok).unwrap();
    for bad in [
        &br#"{"payload":"aGk","payloadType":"t","signatures":[]}"#[..], // missing padding
        br#"{"payload":"aGl=","payloadType":"t","signatures":[]}"#,     // non-zero trailing bits
        br#"{"payload":"aGk=","payloadType":"t","signatures":[],"x":1}"#, // unknown field
        br#"{"payload":"aGk=","payloadType":"t","payloadType":"u","signatures":[]}"#, // duplicate
        br#"{"payload":"aGk=","signatures":[]}"#,
        br#"{"payload":"aGk=","payloadType":"t","signatures":[{"sig":"AA==","cert":""}]}"#,
        b"[]",
        b"",
    ] {
        assert!(
            Envelope::from_json(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // URL-safe base64 is accepted as the spec requires.
    let url = br#"{"payload":"-_8=","payloadType":"t","signatures":[]}"#;
    assert_eq!(Envelope::from_json(url).unwrap().payload, vec![0xfb, 0xff]);
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    json: String,
    expected: String,
    kind: String,
}

#[test]
fn intoto_statement_cases() {
    let text = String::from_utf8(read("in-toto-attestation-statements/cases.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let c: Case = serde_json::from_str(line).unwrap();
        let got = if c.kind == "statement" {
            Statement::from_json(c.json.as_bytes()).map(|_| ())
        } else {
            serde_json::from_str::<ResourceDescriptor>(&c.json)
                .map_err(|e| StatementError::Json(e.to_string()))
                .and_then(|rd| rd.validate(0))
        };
        let name = match &got {
            Ok(()) => "valid",
            Err(StatementError::InvalidStatementType(_)) => "ErrInvalidStatementType",
            Err(StatementError::SubjectRequired) => "ErrSubjectRequired",
            Err(StatementError::RdRequiredField(_)) => "ErrRDRequiredField",
            Err(StatementError::DigestRequired(_)) => "ErrDigestRequired",
            Err(StatementError::PredicateTypeRequired) => "ErrPredicateTypeRequired",
            Err(StatementError::PredicateRequired) => "ErrPredicateRequired",
            Err(StatementError::InvalidDigestEncoding { .. }) => "ErrInvalidDigestEncoding",
            Err(StatementError::IncorrectDigestLength { .. }) => "ErrIncorrectDigestLength",
            Err(e) => panic!("{}: unexpected {e}", c.name),
        };
        if let Some(rest) = c.expected.strip_prefix("parses (content = bytes \"") {
            // The case also pins the decoded `content` field.
            use base64::Engine;
            let want = rest.trim_end_matches("\")").as_bytes();
            let rd: ResourceDescriptor = serde_json::from_str(&c.json).unwrap();
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(&rd.content)
                    .unwrap(),
                want
            );
            assert_eq!(name, "valid", "case {}", c.name);
        } else {
            assert_eq!(name, c.expected, "case {}", c.name);
        }
        n += 1;
    }
    assert_eq!(n, 18);
}

fn sample_envelope(k: &PrivateKey) -> Envelope {
    let st = Statement::new(
        vec![ResourceDescriptor::new(
            "disk.img",
            &[("sha256", "ab".repeat(32))],
        )],
        "https://example.com/test",
        &serde_json::json!({"hello": "world"}),
    );
    Envelope::sign(INTOTO_PAYLOAD_TYPE, st.to_json(), k)
}

#[test]
fn openssl_verifies_our_signature_over_pae() {
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::generate();
    let e = sample_envelope(&k);
    let (pubf, paef, sigf) = (
        dir.path().join("pub.pem"),
        dir.path().join("pae.bin"),
        dir.path().join("sig.bin"),
    );
    std::fs::write(&pubf, k.public().to_pem().unwrap()).unwrap();
    std::fs::write(&paef, e.pae()).unwrap();
    std::fs::write(&sigf, &e.signatures[0].sig).unwrap();
    let run = || {
        Command::new("openssl")
            .args([
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                pubf.to_str().unwrap(),
                "-rawin",
                "-in",
            ])
            .arg(&paef)
            .arg("-sigfile")
            .arg(&sigf)
            .output()
            .expect("`openssl` (Debian package openssl) is required by this test")
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pae_bytes = e.pae();
    pae_bytes[10] ^= 1;
    std::fs::write(&paef, pae_bytes).unwrap();
    assert!(!run().status.success(), "openssl accepted a changed PAE");
}

/// A venv with python-securesystemslib, cached under the target dir (created on first use;
/// needs python3 with venv and access to PyPI, or an existing venv at $WAFER_SSLIB_VENV).
fn sslib_python() -> std::path::PathBuf {
    let venv = std::env::var_os("WAFER_SSLIB_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sslib-venv"));
    let py = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let o = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output()
            .expect("python3 is required");
        assert!(
            o.status.success(),
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "securesystemslib",
                "cryptography",
            ])
            .output()
            .expect("pip");
        assert!(
            o.status.success(),
            "pip install securesystemslib failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::write(&ready, b"").unwrap();
    }
    py
}

const VERIFY_PY: &str = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
pem, env, want_keyid = sys.argv[1], sys.argv[2], sys.argv[3]
key = SSlibKey.from_crypto(load_pem_public_key(open(pem, "rb").read()))
assert key.keyid == want_keyid, (key.keyid, want_keyid)
e = Envelope.from_dict(json.load(open(env)))
ok = e.verify([key], 1)
assert list(ok) == [want_keyid], ok
print("verified", key.keyid)
"#;

#[test]
fn python_securesystemslib_verifies_our_envelope() {
    let py = sslib_python();
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::generate();
    let e = sample_envelope(&k);
    let (pubf, envf, script) = (
        dir.path().join("pub.pem"),
        dir.path().join("env.json"),
        dir.path().join("v.py"),
    );
    std::fs::write(&pubf, k.public().to_pem().unwrap()).unwrap();
    std::fs::write(&envf, e.to_json()).unwrap();
    std::fs::write(&script, VERIFY_PY).unwrap();
    let run = |envf: &std::path::Path| {
        Command::new(&py)
            .arg(&script)
            .arg(&pubf)
            .arg(envf)
            .arg(k.public().keyid())
            .output()
            .unwrap()
    };
    let o = run(&envf);
    assert!(
        o.status.success(),
        "securesystemslib refused: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&k.public().keyid()));
    // And refuses a tampered one.
    let mut t = e.clone();
    t.payload[3] ^= 1;
    let tf = dir.path().join("t.json");
    std::fs::write(&tf, t.to_json()).unwrap();
    assert!(
        !run(&tf).status.success(),
        "securesystemslib accepted a tampered envelope"
    );
}
