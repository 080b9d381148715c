//! `wafer build`: a recipe over a tar base made here becomes a bundle the real zstd reads;
//! `--json` prints the builder's events; `--sign` writes a provenance; errors name the file.

mod common;

use std::process::Command;

use common::*;

#[test]
fn build_writes_a_bundle_zstd_decompresses_to_the_manifest_digest() {
    let f = Fixture::new(|_| {});
    let recipe = f.recipe(
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let out = f.path("bundle");
    let o = ok(wafer(&["build", s(&recipe), "-o", s(&out)]));
    let text = stdout(&o);
    assert!(text.contains("built cms-squid 1.0"), "{text}");
    assert!(text.contains("step 1 copy (line "), "{text}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("wafer.json")).unwrap()).unwrap();
    assert_eq!(m["name"], "cms-squid");
    let raw = f.path("raw.img");
    run(Command::new("zstd")
        .arg("-q")
        .arg("-d")
        .arg(out.join("disk.img.zst"))
        .arg("-o")
        .arg(&raw));
    assert_eq!(sha256_hex(&raw), m["image"]["sha256"].as_str().unwrap());
    assert!(out.join("build-report.json").is_file());
}

#[test]
fn build_json_prints_progress_events_then_a_summary() {
    let f = Fixture::new(|_| {});
    let recipe = f.recipe("");
    let out = f.path("bundle");
    let o = ok(wafer(&["build", s(&recipe), "-o", s(&out), "--json"]));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let events: Vec<&str> = lines.iter().filter_map(|v| v["event"].as_str()).collect();
    assert!(events.contains(&"step_started"), "{events:?}");
    assert!(events.contains(&"phase_started"), "{events:?}");
    assert!(
        lines
            .iter()
            .any(|v| v["event"] == "phase_finished" && v["phase"] == "compress"),
        "{events:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "done");
    assert_eq!(last["name"], "cms-squid");
    assert_eq!(last["image_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn build_sign_writes_a_provenance_envelope() {
    let f = Fixture::new(|_| {});
    let keys = f.path("keys");
    ok(wafer(&["key", "generate", "cms-admin", "--dir", s(&keys)]));
    let recipe = f.recipe("");
    let out = f.path("bundle");
    let key = keys.join("cms-admin.key");
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&out),
        "--sign",
        s(&key),
    ]));
    let env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("attestations/provenance.json")).unwrap())
            .unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(
        deps.iter()
            .any(|d| d["name"] == "base:tar" && d["digest"]["sha256"] == f.base_sha.as_str()),
        "{deps:?}"
    );
}

#[test]
fn build_errors_name_the_recipe_and_the_problem() {
    let f = Fixture::new(|_| {});
    let missing = f.path("nope.toml");
    let o = wafer(&["build", s(&missing), "-o", s(&f.path("b1"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));

    let text = format!(
        "[wafer]\nname = \"x\"\nversion = \"1\"\nvo = \"cms\"\n[base]\nkind = \"tar\"\npath = \"base.tar\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    let bad = f.dir.join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let o = wafer(&["build", s(&bad), "-o", s(&f.path("b2"))]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains(&f.base_sha), "{e}");
    assert!(!f.path("b2").join("wafer.json").exists());

    let recipe = f.recipe("");
    let o = wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&f.path("b3")),
        "--sign",
        s(&f.path("no-key.pem")),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-key.pem"), "{}", stderr(&o));
    assert!(
        !f.path("b3").join("wafer.json").exists(),
        "a bad key stops before building"
    );
}

#[test]
fn build_reads_a_base_outside_the_recipe_folder_only_with_allow_host_path() {
    let f = Fixture::new(|_| {});
    let bases = f.path("bases");
    std::fs::create_dir_all(&bases).unwrap();
    std::fs::rename(f.dir.join("base.tar"), bases.join("base.tar")).unwrap();
    let text = std::fs::read_to_string(f.recipe(""))
        .unwrap()
        .replace("path = \"base.tar\"", "path = \"../bases/base.tar\"");
    let recipe = f.dir.join("recipe.toml");
    std::fs::write(&recipe, text).unwrap();
    let o = wafer(&["build", s(&recipe), "-o", s(&f.path("b1"))]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(
            "base.path '../bases/base.tar' must be a relative path inside the recipe's folder"
        ) && e.contains("--allow-host-path"),
        "{e}"
    );
    assert!(!e.contains(&f.base_sha), "no digest of a refused base: {e}");
    assert!(!f.path("b1").exists());
    let out = f.path("b2");
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&out),
        "--allow-host-path",
        s(&bases),
    ]));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("wafer.json")).unwrap()).unwrap();
    assert_eq!(m["base"]["sha256"], f.base_sha.as_str());
}

#[test]
fn build_template_budget_comes_from_the_command_line() {
    let f = Fixture::new(|_| {});
    put(
        &f.dir,
        "files/t.in",
        "{{wafer_name}}\n".repeat(100).as_bytes(),
    );
    let recipe =
        f.recipe("[[step]]\ntype = \"template\"\nsrc = \"files/t.in\"\ndest = \"/etc/t\"\n");
    let o = wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&f.path("b1")),
        "--max-template-output",
        "999",
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("template 'files/t.in': output would exceed the budget of 999 bytes per file (--max-template-output)"),
        "{e}"
    );
    ok(wafer(&[
        "build",
        s(&recipe),
        "-o",
        s(&f.path("b2")),
        "--max-template-output",
        "1000",
    ]));
}
