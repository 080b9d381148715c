//! Every envelope `wafer build --sign` and `wafer approve` write is accepted by sigstore-python,
//! python in-toto-attestation and python-securesystemslib, and a copy with one payload byte or one
//! signature bit changed is refused by each (the oracles: `trust/tests/oracles/mod.rs`). The
//! statements name who signed by URI (defaults, or the flags), carry no local path, and `wafer
//! verify` passes them; an approval of the old layout is still verified, with a warning.

mod common;
#[path = "../trust/tests/oracles/mod.rs"]
mod oracles;

use std::path::{Path, PathBuf};

use common::*;
use trust::statement::{APPROVAL_EXTENSION, DM_VERITY_ANNOTATION};

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

fn keyid(pubkey: &Path) -> String {
    trust::key::PublicKey::load(pubkey).unwrap().keyid()
}

fn statement(env: &Path) -> serde_json::Value {
    serde_json::from_slice(&oracles::payload(&std::fs::read(env).unwrap())).unwrap()
}

fn approval_file(b: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(b.join("attestations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("approval-")
        })
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

/// A bundle built and signed by the VO admin, approved by alice, with extra flags for each.
fn build_and_approve(
    f: &Fixture,
    name: &str,
    build_flags: &[&str],
    approve_flags: &[&str],
) -> PathBuf {
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let recipe = f.recipe("");
    let b = f.path(name);
    let admin = f.path("keys/cms-admin.key");
    let mut args = vec!["build", s(&recipe), "-o", s(&b), "--sign", s(&admin)];
    args.extend_from_slice(build_flags);
    ok(wafer(&args));
    let key = f.path("keys/alice.key");
    let mut args = vec!["approve", s(&b), "--key", s(&key), "--policy", s(&policy)];
    args.extend_from_slice(approve_flags);
    ok(wafer(&args));
    b
}

#[test]
fn build_and_approve_envelopes_are_accepted_by_every_oracle_and_tampering_refused() {
    let f = Fixture::new(|_| {});
    let (store, _, _) = site_trust_store(&f);
    let b = build_and_approve(&f, "bundle", &[], &[]);
    let o = ok(wafer(&["verify", s(&b), "--trust", s(&store)]));
    assert!(stdout(&o).contains("RESULT: PASSED"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("WARNING"), "{}", stdout(&o));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("wafer.json")).unwrap()).unwrap();
    let image_sha = manifest["image"]["sha256"].as_str().unwrap().to_string();
    let root = manifest["image"]["verity"]["root"].as_str().unwrap();
    let alice = f.path("keys/alice.pub");
    let admin = f.path("keys/cms-admin.pub");
    let prov = b.join("attestations/provenance.json");
    let appr = approval_file(&b);

    // What they say: who by URI (the defaults), the dm-verity root as an annotation, no path.
    let p = statement(&prov);
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["id"],
        format!("wafer:builder:cms:{}", keyid(&admin))
    );
    assert_eq!(
        p["predicate"]["buildDefinition"]["buildType"],
        trust::statement::WAFER_BUILD_TYPE
    );
    let a = statement(&appr);
    assert_eq!(
        a["predicate"]["verifier"]["id"],
        format!("wafer:reviewer:{}", keyid(&alice))
    );
    assert_eq!(a["predicate"]["policy"]["uri"], "wafer:policy:test%20site");
    assert_eq!(a["predicate"][APPROVAL_EXTENSION]["name"], "cms-squid");
    for st in [&p, &a] {
        let img = &st["subject"][1];
        assert_eq!(img["name"], "disk.img");
        assert_eq!(img["digest"], serde_json::json!({ "sha256": image_sha }));
        assert_eq!(img["annotations"][DM_VERITY_ANNOTATION]["rootHash"], root);
        let text = st.to_string();
        for bad in ["file:", ".invalid", "dm-verity-sha256", "\"wafer\":{"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
        assert!(!text.contains(s(&f.path(""))), "a local path in {text}");
    }

    oracles::assert_accepted_and_tamper_refused(&admin, &prov, Some(&image_sha));
    oracles::assert_accepted_and_tamper_refused(&alice, &appr, Some(&image_sha));

    // wafer refuses the same tampered copies.
    for (what, bytes) in [
        (
            "payload",
            oracles::tamper_payload(&std::fs::read(&appr).unwrap()),
        ),
        (
            "signature",
            oracles::tamper_signature(&std::fs::read(&appr).unwrap()),
        ),
    ] {
        let t = f.path(&format!("tampered-{what}"));
        copy_dir(&b, &t);
        std::fs::write(
            t.join("attestations").join(appr.file_name().unwrap()),
            bytes,
        )
        .unwrap();
        let o = wafer(&["verify", s(&t), "--trust", s(&store)]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stdout(&o));
        assert!(
            stdout(&o).contains("does not verify over the PAE"),
            "{what}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn ids_and_policy_uri_from_flags_and_bad_uris_refused() {
    let f = Fixture::new(|_| {});
    let (store, alice, admin) = site_trust_store(&f);
    let b = build_and_approve(
        &f,
        "bundle",
        &["--builder-id", "https://cms.example.org/wafer-builder"],
        &[
            "--verifier-id",
            "https://grid.example.org/security",
            "--policy-uri",
            "https://grid.example.org/policy/v3.toml",
        ],
    );
    ok(wafer(&["verify", s(&b), "--trust", s(&store)]));
    let p = statement(&b.join("attestations/provenance.json"));
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["id"],
        "https://cms.example.org/wafer-builder"
    );
    let appr = approval_file(&b);
    let a = statement(&appr);
    assert_eq!(
        a["predicate"]["verifier"]["id"],
        "https://grid.example.org/security"
    );
    assert_eq!(
        a["predicate"]["policy"]["uri"],
        "https://grid.example.org/policy/v3.toml"
    );
    assert_eq!(
        a["predicate"]["policy"]["digest"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    oracles::assert_accepted(&f.path("keys/alice.pub"), &appr, None);

    // Not URIs: refused before anything is signed.
    let o = wafer(&[
        "approve",
        s(&b),
        "--key",
        s(&alice),
        "--policy",
        s(&f.path("policy.toml")),
        "--verifier-id",
        "alice at the site",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--verifier-id") && stderr(&o).contains("not a URI"),
        "{}",
        stderr(&o)
    );
    let o = wafer(&[
        "build",
        s(&f.recipe("")),
        "-o",
        s(&f.path("b2")),
        "--sign",
        s(&admin),
        "--builder-id",
        "cms builder",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--builder-id") && stderr(&o).contains("not a URI"),
        "{}",
        stderr(&o)
    );
    assert!(!f.path("b2").join("wafer.json").exists());

    // The recipe's `[wafer] builder_id` names the builder when no --builder-id is given; the flag
    // wins over it; a recipe's non-URI is refused naming the recipe key.
    let base_recipe = f.recipe("");
    let text = std::fs::read_to_string(&base_recipe).unwrap();
    let with_id = |id: &str| {
        // Beside the fixture's recipe: its base is found relative to the recipe's folder.
        let p = base_recipe.with_file_name(format!("recipe-{}.toml", id.len()));
        std::fs::write(
            &p,
            text.replacen(
                "vo = \"cms\"\n",
                &format!("vo = \"cms\"\nbuilder_id = \"{id}\"\n"),
                1,
            ),
        )
        .unwrap();
        p
    };
    let r = with_id("https://cms.example.org/recipe-builder");
    ok(wafer(&[
        "build",
        s(&r),
        "-o",
        s(&f.path("b3")),
        "--sign",
        s(&admin),
    ]));
    let p = statement(&f.path("b3/attestations/provenance.json"));
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["id"],
        "https://cms.example.org/recipe-builder"
    );
    ok(wafer(&[
        "build",
        s(&r),
        "-o",
        s(&f.path("b4")),
        "--sign",
        s(&admin),
        "--builder-id",
        "https://cms.example.org/flag-builder",
    ]));
    let p = statement(&f.path("b4/attestations/provenance.json"));
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["id"],
        "https://cms.example.org/flag-builder"
    );
    let o = wafer(&[
        "build",
        s(&with_id("cms builder")),
        "-o",
        s(&f.path("b5")),
        "--sign",
        s(&admin),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("wafer.builder_id") && stderr(&o).contains("not a URI"),
        "{}",
        stderr(&o)
    );
    assert!(!f.path("b5").join("wafer.json").exists());
}

/// An approval of the old layout (root as a `dm-verity-sha256` digest, extension `wafer`), as
/// wafer wrote it before, signed by the same reviewer: sigstore-python refuses it; wafer verify
/// still accepts it and warns.
#[test]
fn old_layout_approval_is_verified_with_a_warning() {
    let f = Fixture::new(|_| {});
    let (store, alice, _) = site_trust_store(&f);
    let b = build_and_approve(&f, "bundle", &[], &[]);
    let appr = approval_file(&b);
    let mut st = statement(&appr);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("wafer.json")).unwrap()).unwrap();
    let pred = st["predicate"].as_object_mut().unwrap();
    let mut ext = pred.remove(APPROVAL_EXTENSION).unwrap();
    ext["verity"] = serde_json::json!({"salt": manifest["image"]["verity"]["salt"],
        "hashAlgorithm": "sha256", "dataBlockSize": 4096, "hashBlockSize": 4096, "format": 1});
    pred.insert("wafer".into(), ext);
    st["subject"][1]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    st["subject"][1]["digest"]["dm-verity-sha256"] = manifest["image"]["verity"]["root"].clone();
    let key = trust::key::PrivateKey::load(&alice, None).unwrap();
    let env = trust::dsse::Envelope::sign(
        trust::dsse::INTOTO_PAYLOAD_TYPE,
        serde_json::to_vec(&st).unwrap(),
        &key,
    );
    std::fs::write(&appr, env.to_json()).unwrap();

    let e = oracles::check("sigstore", &f.path("keys/alice.pub"), &appr, None).unwrap_err();
    assert!(e.contains("dm-verity-sha256"), "{e}");
    let o = ok(wafer(&["verify", s(&b), "--trust", s(&store)]));
    let text = stdout(&o);
    assert!(
        text.contains("RESULT: PASSED") && text.contains("WARNING: old attestation layout"),
        "{text}"
    );

    // The old layout's dm-verity root is still compared with the bundle's.
    st["subject"][1]["digest"]["dm-verity-sha256"] = "ab".repeat(32).into();
    let env = trust::dsse::Envelope::sign(
        trust::dsse::INTOTO_PAYLOAD_TYPE,
        serde_json::to_vec(&st).unwrap(),
        &key,
    );
    std::fs::write(&appr, env.to_json()).unwrap();
    let o = wafer(&["verify", s(&b), "--trust", s(&store)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("dm-verity root") && stdout(&o).contains("does not match"),
        "{}",
        stdout(&o)
    );
}
