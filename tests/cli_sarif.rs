//! `wafer vet --sarif`: the log the real command writes validates against the OASIS SARIF 2.1.0
//! schema (python3-jsonschema, offline copy in testdata/sarif-2.1.0-schema); every rule has a
//! `helpUri` into docs/policy.md at an anchor that exists there, the driver an
//! `informationUri`; and every piece of evidence whose line the verdict knows is a location
//! with a `region.startLine` (an empty password in /etc/shadow: the shadow line).
//!
//! Debian packages: python3-jsonschema, e2fsprogs.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const POLICY: &str = r#"[policy]
name = "test site"
fail_on = "medium"

[[privileged]]
id = "priv.allowlist"
severity = "high"
check = ["setuid", "setgid", "capabilities"]
allow = []

[[files]]
id = "files.empty-passwords"
severity = "critical"
check = "empty-passwords"

[[ports]]
id = "net.listeners"
severity = "high"
allow = []
"#;

#[test]
fn sarif_from_wafer_vet_validates_with_help_uris_and_regions() {
    let f = Fixture::new(|r| {
        put(r, "usr/bin/evil", &fake_elf());
        // bin has an empty password field on line 2 of /etc/shadow.
        put(
            r,
            "etc/shadow",
            b"root:*:15000:0:99999:7:::\nbin::15000:0:99999:7:::\nsquid:!!:15000::::::\n",
        );
    });
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let b = f.build(
        &f.recipe("[[step]]\ntype = \"chmod\"\npaths = [\"/usr/bin/evil\"]\nmode = \"4755\"\n"),
        "bundle",
    );
    let sarif = f.path("vet.sarif");
    let o = wafer(&[
        "vet",
        s(&b),
        "--policy",
        s(&policy),
        "--json",
        "--sarif",
        s(&sarif),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let verdict: Value = serde_json::from_slice(&o.stdout).expect("verdict JSON");

    let v = run(std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/sarif-2.1.0-schema/validate.py"
        ))
        .arg(&sarif));
    assert!(v.contains("VALID"), "{v}");

    let log: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let run0 = &log["runs"][0];
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy.md")).unwrap();
    let driver = &run0["tool"]["driver"];
    assert!(driver["informationUri"]
        .as_str()
        .unwrap()
        .ends_with("/docs/policy.md"));
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 3);
    for r in rules {
        let uri = r["helpUri"].as_str().unwrap_or_else(|| panic!("{r}"));
        let (page, anchor) = uri.split_once('#').unwrap();
        assert!(
            page.starts_with("https://") && page.ends_with("/docs/policy.md"),
            "{uri}"
        );
        assert_eq!(
            anchor,
            format!("rule-kind-{}", r["properties"]["kind"].as_str().unwrap())
        );
        assert!(
            docs.contains(&format!("<a id=\"{anchor}\"></a>")),
            "docs/policy.md has no anchor {anchor}"
        );
    }

    // Every (path, line) the verdict's evidence names is a SARIF location with that region.
    let results = run0["results"].as_array().unwrap();
    let findings = verdict["findings"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    let mut lines_seen = 0;
    for (f, r) in findings.iter().zip(results) {
        let locs: BTreeSet<(String, Option<u64>)> = r["locations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let p = &l["physicalLocation"];
                (
                    p["artifactLocation"]["uri"].as_str().unwrap().to_string(),
                    p["region"]["startLine"].as_u64(),
                )
            })
            .collect();
        for e in f["evidence"].as_array().unwrap() {
            let path = e["path"].as_str().or(e["file"].as_str());
            if let (Some(path), Some(line)) = (path, e["line"].as_u64()) {
                lines_seen += 1;
                let uri = path.trim_start_matches('/').to_string();
                assert!(
                    locs.contains(&(uri.clone(), Some(line))),
                    "{uri}:{line} has no region in {locs:?}"
                );
                assert!(
                    !locs.contains(&(uri.clone(), None)),
                    "{uri} also without a region: {locs:?}"
                );
            }
        }
    }
    assert!(lines_seen >= 2, "{verdict}");
    let empty = results
        .iter()
        .find(|r| r["ruleId"] == "files.empty-passwords")
        .expect("empty-password result");
    let shadow = empty["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["physicalLocation"]["artifactLocation"]["uri"] == "etc/shadow")
        .expect("an /etc/shadow location");
    assert_eq!(shadow["physicalLocation"]["region"]["startLine"], 2);
}
