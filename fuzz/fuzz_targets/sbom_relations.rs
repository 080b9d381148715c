#![no_main]
//! The SBOM's inputs from hostile text: license strings to SPDX (`vetter::license::classify`:
//! never panics, an expression it returns is valid SPDX), dpkg relation fields, and the
//! dependency graph built from them (bounded: no package links more than the cap).
use libfuzzer_sys::fuzz_target;
use vetter::license::{classify, is_spdx_expression, License};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(License::Expression(e)) = classify(s) {
        assert!(is_spdx_expression(&e), "{e:?}");
    }
    let rels = pkgdb::dpkg::relations(s);
    assert!(rels.len() <= pkgdb::dpkg::MAX_RELATIONS);
    // A small package set whose requirements and provides come from the input.
    let words: Vec<String> = s.split_whitespace().take(64).map(str::to_string).collect();
    let list: Vec<vetter::packages::PackageInfo> = (0..8)
        .map(|i| vetter::packages::PackageInfo {
            manager: "dpkg".into(),
            name: words.get(i).cloned().unwrap_or_default(),
            epoch: None,
            version: "1".into(),
            release: None,
            arch: None,
            source: None,
            vendor: None,
            license: None,
            install_time: None,
            purl: format!("pkg:deb/debian/p{i}@1"),
            files: 0,
            file_list_error: None,
            status: None,
            requires: rels.clone(),
            provides: words.iter().skip(8 + i).step_by(8).cloned().collect(),
        })
        .collect();
    let (g, _) = vetter::sbom::dependency_graph(&list);
    assert_eq!(g.len(), list.len());
    assert!(g
        .iter()
        .all(|d| d.len() <= vetter::sbom::MAX_EDGES_PER_PACKAGE));
});
