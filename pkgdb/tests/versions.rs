//! Version comparison: every upstream vector, plus generated pairs checked against the real tools.
mod common;
use common::*;
use pkgdb::version::{rpmvercmp, DpkgVersion, Evr};
use std::cmp::Ordering;

fn ord(n: &str) -> Ordering {
    match n {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        o => panic!("bad expected value {o}"),
    }
}

#[test]
fn rpmvercmp_upstream_vectors() {
    let rows = csv_maps(&testdata("version-compare-rpm/rpmvercmp.csv"));
    assert_eq!(rows.len(), 91);
    for r in &rows {
        assert_eq!(
            rpmvercmp(&r["a"], &r["b"]),
            ord(&r["expected"]),
            "{} vs {}",
            r["a"],
            r["b"]
        );
    }
    // The documented oddities match rpm's actual behaviour too.
    for r in &csv_maps(&testdata(
        "version-compare-rpm/rpmvercmp_oddities_not_asserted.csv",
    )) {
        assert_eq!(
            rpmvercmp(&r["a"], &r["b"]),
            ord(&r["expected"]),
            "{} vs {}",
            r["a"],
            r["b"]
        );
    }
}

#[test]
fn rpm_evr_upstream_vectors() {
    let rows = csv_maps(&testdata("version-compare-rpm/rpm_evr_compare.csv"));
    assert_eq!(rows.len(), 12);
    for r in &rows {
        let (a, b) = (Evr::parse(&r["a"]), Evr::parse(&r["b"]));
        assert_eq!(
            a.compare(&b),
            ord(&r["expected"]),
            "{} vs {}",
            r["a"],
            r["b"]
        );
    }
}

#[test]
fn dpkg_upstream_vectors() {
    let rows = csv_maps(&testdata("version-compare-dpkg/dpkg_vercmp.csv"));
    assert_eq!(rows.len(), 51);
    for r in &rows {
        let a = DpkgVersion::parse(&r["a"]).unwrap();
        let b = DpkgVersion::parse(&r["b"]).unwrap();
        assert_eq!(
            a.compare(&b),
            ord(&r["expected"]),
            "{} vs {}",
            r["a"],
            r["b"]
        );
    }
}

#[test]
fn dpkg_parse_vectors() {
    let rows = csv_maps(&testdata("version-compare-dpkg/dpkg_version_parse.csv"));
    assert_eq!(rows.len(), 86);
    for r in &rows {
        let input = &r["input"];
        match (r["valid"].as_str(), r["invalid_severity"].as_str()) {
            ("yes", _) => {
                let v =
                    DpkgVersion::parse_strict(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
                assert_eq!(v.epoch.to_string(), r["epoch"], "{input:?}");
                assert_eq!(v.upstream, r["upstream"], "{input:?}");
                assert_eq!(v.revision, r["revision"], "{input:?}");
            }
            ("no", "error") => assert!(
                DpkgVersion::parse(input).is_err(),
                "{input:?} should be a hard error"
            ),
            ("no", "warning") => {
                assert!(DpkgVersion::parse(input).is_ok(), "{input:?} should parse");
                assert!(
                    DpkgVersion::parse_strict(input).is_err(),
                    "{input:?} should be flagged"
                );
            }
            other => panic!("bad row {other:?}"),
        }
    }
}

#[test]
fn dpkg_sort_orders() {
    let text =
        std::fs::read_to_string(testdata("version-compare-dpkg/dpkg_sort_order.txt")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 6);
    for pair in lines.chunks(2) {
        let kind = pair[0].split(']').next().unwrap();
        let input: Vec<&str> = pair[0]
            .split(": ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect();
        let want: Vec<&str> = pair[1]
            .split(": ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect();
        let mut got = input.clone();
        match kind {
            "[version_compare" => got.sort_by(|a, b| {
                DpkgVersion::parse(a)
                    .unwrap()
                    .compare(&DpkgVersion::parse(b).unwrap())
            }),
            _ => got.sort_by(|a, b| pkgdb::version::verrevcmp(a, b)),
        }
        assert_eq!(got, want, "{kind}");
    }
}

fn gen_version(rng: &mut Rng, seps: &[&str]) -> String {
    let atoms = [
        "0", "1", "2", "10", "010", "9", "a", "b", "rc", "Z", "pre", "git", "00", "999", "beta",
    ];
    let mut s = String::new();
    let n = 1 + rng.below(4);
    for i in 0..n {
        if i > 0 || rng.below(6) == 0 {
            s.push_str(rng.pick::<&str>(seps));
        }
        s.push_str(rng.pick::<&str>(&atoms[..]));
    }
    s
}

#[test]
fn rpmvercmp_matches_real_rpm_on_generated_pairs() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let seps = [".", ".", "_", "+", "~", "^", "~", "^", "-"];
    let mut pairs = Vec::new();
    for _ in 0..400 {
        let a = gen_version(&mut rng, &seps);
        let b = if rng.below(4) == 0 {
            a.clone()
        } else {
            gen_version(&mut rng, &seps)
        };
        let a = if rng.below(5) == 0 {
            format!("{}:{a}", rng.below(3))
        } else {
            a
        };
        pairs.push((a, b));
    }
    let mut lua = String::from("%{lua: ");
    for (a, b) in &pairs {
        lua.push_str(&format!("print(rpm.vercmp(\"{a}\",\"{b}\")..\",\") "));
    }
    lua.push('}');
    let out = run("rpm", &["--eval", &lua]);
    let got: Vec<&str> = out.trim().split(',').filter(|l| !l.is_empty()).collect();
    assert_eq!(got.len(), pairs.len());
    for ((a, b), r) in pairs.iter().zip(got) {
        // rpm.vercmp parses [epoch:]version[-release].
        assert_eq!(
            Evr::parse(a).compare(&Evr::parse(b)),
            ord(r),
            "rpm.vercmp({a:?}, {b:?}) = {r}"
        );
    }
}

#[test]
fn dpkg_compare_matches_real_dpkg_on_generated_pairs() {
    let mut rng = Rng(0x5eed_7777_0000_0002);
    let seps = [".", ".", "+", "~", "-", ":", "~"];
    let mut script = String::new();
    let mut pairs = Vec::new();
    while pairs.len() < 300 {
        let mut a = gen_version(&mut rng, &seps);
        let mut b = if rng.below(4) == 0 {
            a.clone()
        } else {
            gen_version(&mut rng, &seps)
        };
        // dpkg wants the upstream part to start with a digit (else it only warns); keep it valid.
        for v in [&mut a, &mut b] {
            let v: &mut String = v;
            if !v.starts_with(|c: char| c.is_ascii_digit()) {
                v.insert(0, '1');
            }
            if rng.below(5) == 0 {
                v.insert_str(0, &format!("{}:", rng.below(3)));
            }
        }
        let (Ok(pa), Ok(pb)) = (DpkgVersion::parse_strict(&a), DpkgVersion::parse_strict(&b))
        else {
            continue;
        };
        script.push_str(&format!(
            "if dpkg --compare-versions '{a}' lt '{b}'; then echo -1; elif dpkg --compare-versions '{a}' eq '{b}'; then echo 0; else echo 1; fi\n"
        ));
        pairs.push((a, b, pa, pb));
    }
    let out = run("sh", &["-c", &script]);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), pairs.len());
    for ((a, b, pa, pb), r) in pairs.iter().zip(got) {
        assert_eq!(
            pa.compare(pb),
            ord(r),
            "dpkg --compare-versions {a:?} {b:?} -> {r}"
        );
    }
}
