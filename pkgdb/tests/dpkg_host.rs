//! dpkg: the host's own database against `dpkg-query`.
mod common;
use common::*;
use std::path::Path;

#[test]
fn host_status_matches_dpkg_query() {
    let pkgs = pkgdb::dpkg::read_status(Path::new("/")).unwrap();
    let mut ours: Vec<String> = pkgs
        .iter()
        .map(|p| {
            format!(
                "{}:{} {} {}",
                p.name,
                p.arch.clone().unwrap_or_default(),
                p.version,
                p.state.abbrev()
            )
        })
        .collect();
    ours.sort();
    let out = run(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\\n",
        ],
    );
    let mut want: Vec<String> = out.lines().map(String::from).collect();
    want.sort();
    assert!(want.len() > 20);
    assert_eq!(ours, want);
    // Files and md5s of a package every Debian system has.
    let dpkg = pkgs.iter().find(|p| p.name == "dpkg").unwrap();
    let files = pkgdb::dpkg::package_files(Path::new("/"), dpkg).unwrap();
    let listed = run("dpkg-query", &["-L", "dpkg"]);
    let want: Vec<&str> = listed
        .lines()
        .filter(|l| !l.is_empty() && *l != "/.")
        .collect();
    let got: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(got, want);
    let bin = files.iter().find(|f| f.path == "/usr/bin/dpkg").unwrap();
    let md5 = run("md5sum", &["/usr/bin/dpkg"]);
    assert_eq!(bin.md5.as_deref(), md5.split_whitespace().next());
}

#[test]
fn status_parse_errors_name_the_line() {
    let text =
        "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nbroken line\n";
    let err = pkgdb::dpkg::parse_status(text, "status").unwrap_err();
    assert!(err.to_string().contains("status line 6"), "{err}");
    let ok = pkgdb::dpkg::parse_status(
        "Package: a\nStatus: deinstall ok config-files\nVersion: 1\nSource: src (2)\n",
        "s",
    )
    .unwrap();
    assert!(!ok[0].is_installed());
    assert_eq!(
        (ok[0].source.as_str(), ok[0].source_version.as_str()),
        ("src", "2")
    );
}

/// Every host package's `.list` (and `.md5sums`) read as dpkg reads them: the same paths as
/// `dpkg-query -L`, in the same order, for all packages at once.
#[test]
fn host_file_lists_match_dpkg_query_l() {
    let pkgs = pkgdb::dpkg::read_status(Path::new("/")).unwrap();
    let args: Vec<String> = pkgs
        .iter()
        .map(|p| format!("{}:{}", p.name, p.arch.clone().unwrap_or_default()))
        .collect();
    let mut cmd = vec!["-L"];
    cmd.extend(args.iter().map(String::as_str));
    let out = run("dpkg-query", &cmd);
    // One block per package, separated by blank lines; diversion notes are not paths.
    let blocks: Vec<Vec<&str>> = out
        .split("\n\n")
        .map(|b| b.lines().filter(|l| l.starts_with('/')).collect())
        .collect();
    assert_eq!(blocks.len(), pkgs.len());
    let mut with_md5 = 0;
    for (p, want) in pkgs.iter().zip(&blocks) {
        let files = pkgdb::dpkg::package_files(Path::new("/"), p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let want: Vec<&str> = want.iter().copied().filter(|l| *l != "/.").collect();
        let got: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(got, want, "{}", p.name);
        with_md5 += files.iter().filter(|f| f.md5.is_some()).count();
    }
    assert!(with_md5 > 1000, "{with_md5}");
}
