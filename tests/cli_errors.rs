//! Error messages name the file once and say the cause once: a library's typed error shows its
//! source in its own text and also returns it as its `source()`, and the command's context often
//! names the same path; the printed chain must not repeat either.

mod common;

use common::*;

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn missing_policy_file_is_named_once_with_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("root");
    make_root(&image);
    let policy = tmp.path().join("no-such-policy.toml");
    let o = wafer(&["vet", s(&image), "--policy", s(&policy)]);
    assert_eq!(o.status.code(), Some(2), "could not vet: {}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(count(&e, "No such file or directory"), 1, "{e}");
    assert_eq!(count(&e, s(&policy)), 1, "{e}");
    assert!(
        e.contains(&format!(
            "loading policy {}: No such file or directory",
            s(&policy)
        )),
        "{e}"
    );
}

#[test]
fn missing_recipe_is_named_once_with_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("no-such-recipe.toml");
    let out = tmp.path().join("d");
    let o = wafer(&["build", s(&recipe), "-o", s(&out)]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(count(&e, "No such file or directory"), 1, "{e}");
    assert_eq!(count(&e, s(&recipe)), 1, "{e}");
    assert!(e.starts_with("wafer: error: "), "{e}");
    assert!(!out.exists(), "nothing written on error");
}
