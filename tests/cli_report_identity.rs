//! Reports name what they judged: the HTML title and header and the JSON verdict carry the wafer's
//! name, version and VO, the image, manifest and compressed digests (those of the bundle on disk),
//! the policy digest, the time and wafer's version; two versions of a wafer get different titles;
//! zero counts are neutral (no alarm colour).

mod common;

use common::*;

const POLICY: &str = "[policy]\nname = \"test site\"\nfail_on = \"medium\"\n\n[[privileged]]\nid = \"priv.allowlist\"\nseverity = \"high\"\ncheck = [\"setuid\", \"setgid\", \"capabilities\"]\nallow = []\n";

fn between<'a>(h: &'a str, a: &str, b: &str) -> &'a str {
    let i = h.find(a).unwrap_or_else(|| panic!("no {a}")) + a.len();
    let j = h[i..].find(b).unwrap_or_else(|| panic!("no {b}")) + i;
    &h[i..j]
}

#[test]
fn html_and_json_reports_name_the_wafer_its_digests_and_the_policy() {
    let f = Fixture::new(|_| {});
    let r1 = f.recipe_named("r1.toml", "cms-squid", "1.0", "");
    let r2 = f.recipe_named(
        "r2.toml",
        "cms-squid",
        "1.1",
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let b1 = f.build(&r1, "b1");
    let b2 = f.build(&r2, "b2");
    let policy = f.path("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let mut titles = Vec::new();
    for (b, version) in [(&b1, "1.0"), (&b2, "1.1")] {
        let html = f.path(&format!("{version}.html"));
        let json = f.path(&format!("{version}.json"));
        let o = wafer(&[
            "vet",
            s(b),
            "--policy",
            s(&policy),
            "--html",
            s(&html),
            "--report",
            s(&json),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // The terminal line names the version and the VO too.
        assert!(
            stdout(&o).contains(&format!("wafer cms-squid {version} (VO cms)")),
            "{}",
            stdout(&o)
        );
        let manifest = std::fs::read(b.join("wafer.json")).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let image_sha = m["image"]["sha256"].as_str().unwrap().to_string();
        let manifest_sha = sha256_hex(&b.join("wafer.json"));
        let zst_sha = sha256_hex(&b.join("disk.img.zst"));

        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["wafer"], "cms-squid");
        assert_eq!(v["wafer_version"], version);
        assert_eq!(v["vo"], "cms");
        assert_eq!(v["tool"], format!("wafer {}", env!("CARGO_PKG_VERSION")));
        assert_eq!(v["image"]["image_sha256"], image_sha.as_str());
        assert_eq!(v["image"]["manifest_sha256"], manifest_sha.as_str());
        assert_eq!(v["image"]["compressed_sha256"], zst_sha.as_str());
        let policy_digest = v["policy_digest"].as_str().unwrap().to_string();
        assert_eq!(policy_digest.len(), 64);
        assert!(v["evaluated_at"].as_i64().unwrap() > 1_700_000_000);

        let h = std::fs::read_to_string(&html).unwrap();
        let title = between(&h, "<title>", "</title>").to_string();
        for want in [
            "PASS",
            "cms-squid",
            version,
            "VO cms",
            &image_sha[..12],
            "test site",
        ] {
            assert!(title.contains(want), "title {title:?} lacks {want:?}");
        }
        let header = between(&h, "<header", "</header>");
        let tool = format!("wafer {}", env!("CARGO_PKG_VERSION"));
        for want in [
            image_sha.as_str(),
            manifest_sha.as_str(),
            zst_sha.as_str(),
            policy_digest.as_str(),
            tool.as_str(),
            " UTC",
            "VO cms",
        ] {
            assert!(header.contains(want), "header lacks {want:?}:\n{header}");
        }
        // A PASS with nothing found: every severity count is zero and neutral.
        let summary = between(&h, "<section id=\"summary\">", "</table>");
        assert!(
            !summary.contains("tot sev-"),
            "alarm colour on a zero count:\n{summary}"
        );
        assert_eq!(
            summary.matches("class=\"tot zero\"").count(),
            5,
            "{summary}"
        );
        titles.push(title);
    }
    assert_ne!(titles[0], titles[1], "two versions share a report title");
}
