//! ed25519 keys: public test vectors, securesystemslib key ids, and OpenSSL reading our PEM files.

use std::process::Command;

use trust::key::{KeyError, PrivateKey, PublicKey};

const ED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/ed25519-vectors/");
const DSSE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/dsse-intoto-vectors/"
);

fn seed(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

#[test]
fn rfc8032_vectors() {
    let text = std::fs::read_to_string(format!("{ED}rfc8032_ed25519.csv")).unwrap();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let k = PrivateKey::from_seed(&seed(f[1]));
        assert_eq!(k.public().hex(), f[2], "{}", f[0]);
        let msg = hex::decode(f[3]).unwrap();
        let sig = k.sign(&msg);
        assert_eq!(hex::encode(sig), f[4], "{}", f[0]);
        k.public().verify(&msg, &sig).unwrap();
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn supercop_sign_input() {
    let text = std::fs::read_to_string(format!("{ED}supercop_sign.input")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let sk = hex::decode(f[0]).unwrap();
        let k = PrivateKey::from_seed(&sk[..32].try_into().unwrap());
        assert_eq!(k.public().hex(), f[1]);
        assert_eq!(&sk[32..], k.public().as_bytes());
        let msg = hex::decode(f[2]).unwrap();
        let sig = k.sign(&msg);
        assert_eq!(hex::encode(sig) + f[2], f[3], "line {n}");
        k.public().verify(&msg, &sig).unwrap();
        if !msg.is_empty() {
            let mut bad = msg.clone();
            bad[0] ^= 1;
            assert!(k.public().verify(&bad, &sig).is_err());
        }
        n += 1;
    }
    assert_eq!(n, 1024);
}

/// Every Wycheproof case: our strict verifier accepts exactly the `valid` ones.
/// (A key that fails to load -- bad encoding or small order -- counts as a rejection.)
#[test]
fn wycheproof_all_cases() {
    let text = std::fs::read_to_string(format!("{ED}wycheproof_ed25519_flat.csv")).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(7, ',').collect();
        let accepted = match PublicKey::from_bytes(&hex::decode(f[1]).unwrap(), "wycheproof") {
            Ok(pk) => pk
                .verify(&hex::decode(f[2]).unwrap(), &hex::decode(f[3]).unwrap())
                .is_ok(),
            Err(_) => false,
        };
        match f[4] {
            "valid" => {
                valid += 1;
                assert!(accepted, "tcId {} ({}) should verify", f[0], f[6]);
            }
            "invalid" => {
                invalid += 1;
                assert!(!accepted, "tcId {} ({}) must be rejected", f[0], f[6]);
            }
            other => panic!("unexpected result {other}"),
        }
    }
    assert_eq!((valid, invalid), (88, 63));
}

#[test]
fn securesystemslib_key_ids() {
    // go-securesystemslib's test key: the legacy id (with keyid_hash_algorithms).
    let pk = PublicKey::from_pem(
        &std::fs::read_to_string(format!(
            "{DSSE}go-securesystemslib-ed25519/ed25519-test-key-pem.pub"
        ))
        .unwrap(),
        "go",
    )
    .unwrap();
    assert_eq!(
        pk.hex(),
        "3f586ce67329419fb0081bd995914e866a7205da463d593b3b490eab2b27fd3f"
    );
    assert_eq!(
        pk.legacy_keyid(),
        "52e3b8e73279d6ebdd62a5016e2725ff284f569665eb92ccb145d83817a02997"
    );
    let sk = PrivateKey::from_pem(
        &std::fs::read_to_string(format!(
            "{DSSE}go-securesystemslib-ed25519/ed25519-test-key-pem"
        ))
        .unwrap(),
        None,
        "go",
    )
    .unwrap();
    assert_eq!(sk.public(), pk);
    let sig = sk.sign(b"test message");
    assert_eq!(hex::encode(sig), "8072b431c5a37e0cf391220360bf92a446318483f13103dcbc056fab84e4dce9f51ca9b395a5a016d3aa4de7deafc25e1e9a9dc8b25c1c68f728b4014d9fc804");
    assert!(pk.verify(b"corrupted message", &sig).is_err());
    // python-securesystemslib's test PEMs: the current id (no keyid_hash_algorithms).
    let pk = PublicKey::from_pem(
        &std::fs::read_to_string(format!("{DSSE}securesystemslib-pems/ed25519_public.pem"))
            .unwrap(),
        "py",
    )
    .unwrap();
    assert_eq!(
        pk.keyid(),
        "c6d8bf2e4f48b41ac2ce8eca21415ca8ef68c133b47fc33df03d4070a7e1e9cc"
    );
    let sk = PrivateKey::from_pem(
        &std::fs::read_to_string(format!("{DSSE}securesystemslib-pems/ed25519_private.pem"))
            .unwrap(),
        None,
        "py",
    )
    .unwrap();
    assert_eq!(sk.public(), pk);
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("`openssl` (Debian package openssl) is required by this test")
}

#[test]
fn openssl_reads_our_keys_and_we_read_openssls() {
    let dir = tempfile::tempdir().unwrap();
    let k = PrivateKey::generate();
    let plain = dir.path().join("k.pem");
    let enc = dir.path().join("k.enc.pem");
    let public = dir.path().join("k.pub");
    k.save(&plain, None).unwrap();
    k.save(&enc, Some(b"correct horse")).unwrap();
    std::fs::write(&public, k.public().to_pem().unwrap()).unwrap();
    assert!(
        matches!(k.save(&plain, None), Err(KeyError::Io { .. })),
        "must not overwrite"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let o = openssl(&["pkey", "-in", plain.to_str().unwrap(), "-noout"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openssl(&["pkey", "-pubin", "-in", public.to_str().unwrap(), "-noout"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openssl(&[
        "pkey",
        "-in",
        enc.to_str().unwrap(),
        "-passin",
        "pass:correct horse",
        "-pubout",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        k.public().to_pem().unwrap()
    );
    let o = openssl(&[
        "pkey",
        "-in",
        enc.to_str().unwrap(),
        "-passin",
        "pass:wrong",
        "-noout",
    ]);
    assert!(
        !o.status.success(),
        "openssl decrypted with a wrong passphrase"
    );

    // We load ours back.
    assert_eq!(
        PrivateKey::load(&enc, Some(b"correct horse"))
            .unwrap()
            .public(),
        k.public()
    );
    assert!(matches!(
        PrivateKey::load(&enc, Some(b"wrong")),
        Err(KeyError::Decrypt(_))
    ));
    assert!(matches!(
        PrivateKey::load(&enc, None),
        Err(KeyError::NeedPassphrase(_))
    ));
    assert_eq!(PublicKey::load(&public).unwrap(), k.public());

    // We read what openssl generates, encrypted (its default PBES2) or not.
    let theirs = dir.path().join("o.pem");
    let o = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-aes256",
        "-pass",
        "pass:pw",
        "-out",
        theirs.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openssl(&[
        "pkey",
        "-in",
        theirs.to_str().unwrap(),
        "-passin",
        "pass:pw",
        "-pubout",
    ]);
    let their_pub = PublicKey::from_pem(&String::from_utf8(o.stdout).unwrap(), "openssl").unwrap();
    assert_eq!(
        PrivateKey::load(&theirs, Some(b"pw")).unwrap().public(),
        their_pub
    );

    // A signature of ours verifies with openssl (raw ed25519 over a message).
    let msg = dir.path().join("m");
    let sigf = dir.path().join("s");
    std::fs::write(&msg, b"hello wafer").unwrap();
    std::fs::write(&sigf, k.sign(b"hello wafer")).unwrap();
    let o = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        public.to_str().unwrap(),
        "-rawin",
        "-in",
        msg.to_str().unwrap(),
        "-sigfile",
        sigf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_key_inputs_are_typed_errors() {
    assert!(matches!(
        PublicKey::from_pem("garbage", "x"),
        Err(KeyError::Parse { .. })
    ));
    assert!(matches!(
        PrivateKey::from_pem("garbage", None, "x"),
        Err(KeyError::Parse { .. })
    ));
    // The identity point (small order) is refused as a key.
    let mut ident = [0u8; 32];
    ident[0] = 1;
    assert!(matches!(
        PublicKey::from_bytes(&ident, "x"),
        Err(KeyError::WeakKey(_))
    ));
    assert!(matches!(
        PublicKey::from_bytes(&[0u8; 31], "x"),
        Err(KeyError::Parse { .. })
    ));
    let k = PrivateKey::generate();
    assert!(matches!(
        k.public().verify(b"m", &[0u8; 63]),
        Err(KeyError::SignatureLength(63))
    ));
}
