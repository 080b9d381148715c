//! Hostile recipes: no read outside the recipe's folder (symlinks, absolute and `..` paths, a
//! base elsewhere, the digest a mismatch would print), no FIFO or device opened, bounded
//! template output and in-memory inputs. Each attack is reproduced and must be refused with a
//! clear message that shows nothing of the canary, leaving everything around the output as it
//! was.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use builder::{build, BuildOptions, NoProgress};
use common::*;

/// The secret a hostile recipe is after; it must never appear in an output or message.
const CANARY: &[u8] = b"wafer-canary-5b1e0f: root:$6$hostsecret:19000:0:99999:7:::\n";

/// A fixture plus a canary file and a canary directory outside the recipe's folder.
struct Attack {
    fx: Fixture,
    canary: PathBuf,
    canary_dir: PathBuf,
}

impl Attack {
    fn new() -> Attack {
        let fx = Fixture::new(|_| {});
        let secret = fx.tmp.path().join("secret");
        std::fs::create_dir_all(secret.join("etc")).unwrap();
        let canary = secret.join("etc/shadow");
        std::fs::write(&canary, CANARY).unwrap();
        make_root(&secret);
        Attack {
            fx,
            canary,
            canary_dir: secret,
        }
    }

    fn recipe(&self, body: &str) -> PathBuf {
        self.fx.recipe(body)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.fx.tmp.path().join("out").join(name)
    }

    /// Build, expecting a refusal; checks the message is canary-free, that no output was
    /// made, and that nothing around changed. Returns the message.
    fn refused(&self, recipe: &Path, opts: BuildOptions) -> String {
        let before = snapshot(self.fx.tmp.path());
        let e = build(recipe, &opts, &NoProgress)
            .expect_err("the hostile recipe must be refused")
            .to_string();
        assert!(
            !e.as_bytes().windows(12).any(|w| CANARY.starts_with(w)),
            "the message shows the canary: {e}"
        );
        assert!(!opts.out_dir.exists(), "{e}: an output was written");
        assert_eq!(
            snapshot(self.fx.tmp.path()),
            before,
            "{e}: something changed"
        );
        e
    }
}

/// Every entry under `dir` (type, mode, and content digest or link target), not following
/// links and never opening anything but regular files.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                todo.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                sha256_hex(&p)
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else {
                "other".to_string()
            };
            out.insert(p, format!("{:o} {what}", md.permissions().mode()));
        }
    }
    out
}

fn has_canary(bytes: &[u8]) -> bool {
    bytes.windows(CANARY.len()).any(|w| w == CANARY)
}

fn mkfifo(p: &Path) {
    run(std::process::Command::new("mkfifo").arg(p));
}

fn base_header(kind: &str, path: &str, sha: &str) -> String {
    format!(
        "[wafer]\nname = \"evil\"\nversion = \"1\"\nvo = \"cms\"\n\n[base]\nkind = \"{kind}\"\npath = \"{path}\"\nsha256 = \"{sha}\"\n[output]\nprofile = \"el5\"\n"
    )
}

#[test]
fn copy_through_a_symlink_out_of_the_folder_is_refused() {
    let a = Attack::new();
    let d = &a.fx.dir;
    // A link to a directory outside, used as a path component.
    symlink("../../secret/etc", d.join("files/etc")).unwrap();
    // An absolute link, and a relative one climbing out through an inside directory.
    symlink(&a.canary, d.join("files/abs")).unwrap();
    symlink("../files/../../secret/etc/shadow", d.join("templates/up")).unwrap();
    for (src, link) in [
        ("files/etc/shadow", "files/etc"),
        ("templates/up/x", "templates/up"),
    ] {
        let r = a.recipe(&format!(
            "\n[[step]]\ntype = \"copy\"\nsrc = \"{src}\"\ndest = \"/etc/stolen\"\n"
        ));
        let e = a.refused(&r, BuildOptions::new(a.out("o")));
        assert!(
            e.contains(&format!(
                "step 1 (copy): source '{src}': symbolic link '{link}' -> '"
            )) && e.ends_with("leads outside the recipe's folder"),
            "{e}"
        );
    }
    // `..` and absolute sources are refused before anything is looked at.
    for src in [
        "../secret/etc/shadow",
        "/etc/passwd",
        "files/../../secret/etc/shadow",
    ] {
        let r = a.recipe(&format!(
            "\n[[step]]\ntype = \"copy\"\nsrc = \"{src}\"\ndest = \"/etc/stolen\"\n"
        ));
        let e = a.refused(&r, BuildOptions::new(a.out("o")));
        assert!(
            e.ends_with(&format!(
                "source '{src}' must be a relative path inside the recipe's folder (no leading '/', no '..')"
            )),
            "{e}"
        );
    }
}

#[test]
fn a_copied_tree_keeps_its_links_as_links_and_reads_nothing_outside() {
    let a = Attack::new();
    let d = &a.fx.dir;
    symlink(&a.canary, d.join("files/abs")).unwrap();
    symlink("../../secret/etc/shadow", d.join("files/rel")).unwrap();
    let r = a.recipe("\n[[step]]\ntype = \"copy\"\nsrc = \"files\"\ndest = \"/srv/files\"\n");
    let out = a.out("tree");
    let before = snapshot(a.fx.tmp.path());
    build(&r, &BuildOptions::new(&out), &NoProgress).unwrap();
    let work = a.fx.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&out, &work);
    // The links are in the image as links (their targets are text of the recipe)...
    let st = debugfs(&img, "stat /srv/files/rel");
    assert!(st.contains("Type: symlink"), "{st}");
    assert_eq!(
        debugfs(&img, "cat /srv/files/squid.conf"),
        "http_port 3128\ncache_mem 256 MB\n"
    );
    // ...and the canary they point at is nowhere in the image or the bundle.
    assert!(!has_canary(&std::fs::read(&img).unwrap()));
    for f in ["wafer.json", "build-report.json"] {
        assert!(!has_canary(&std::fs::read(out.join(f)).unwrap()));
    }
    // Only the output and the work folder are new.
    let mut after = snapshot(a.fx.tmp.path());
    after.retain(|p, _| !p.starts_with(a.fx.tmp.path().join("out")) && !p.starts_with(&work));
    let mut before = before;
    before.retain(|p, _| !p.starts_with(a.fx.tmp.path().join("out")));
    assert_eq!(after, before);
}

#[test]
fn template_and_rpm_through_a_symlink_out_of_the_folder_are_refused() {
    let a = Attack::new();
    let d = &a.fx.dir;
    symlink(&a.canary, d.join("templates/abs.in")).unwrap();
    symlink("../../secret/etc/shadow", d.join("templates/rel.in")).unwrap();
    std::fs::create_dir_all(d.join("rpms")).unwrap();
    symlink("../../secret/etc/shadow", d.join("rpms/evil.rpm")).unwrap();
    let cases = [
        (
            "template",
            "src = \"templates/abs.in\"\ndest = \"/etc/motd\"",
            "templates/abs.in",
        ),
        (
            "template",
            "src = \"templates/rel.in\"\ndest = \"/etc/motd\"",
            "templates/rel.in",
        ),
        ("rpm", "packages = [\"rpms/evil.rpm\"]", "rpms/evil.rpm"),
    ];
    for (kind, keys, link) in cases {
        let r = a.recipe(&format!("\n[[step]]\ntype = \"{kind}\"\n{keys}\n"));
        let e = a.refused(&r, BuildOptions::new(a.out("o")));
        assert!(
            e.contains(&format!(
                "step 1 ({kind}): source '{link}': symbolic link '{link}' -> '"
            )) && e.ends_with("' leads outside the recipe's folder"),
            "{e}"
        );
    }
}

#[test]
fn base_paths_outside_the_folder_are_refused_without_a_digest() {
    let a = Attack::new();
    let d = &a.fx.dir;
    // The canary directory's real digest: a mismatch message would have handed it out.
    let tree = rootfs::dir::read_dir(&a.canary_dir, &Default::default()).unwrap();
    let real = builder::tree_digest(&tree).unwrap();
    let zero = "0".repeat(64);
    let abs = a.canary_dir.display().to_string();
    symlink("../secret", d.join("base-link")).unwrap();
    let cases = [
        (
            abs.as_str(),
            "must be a relative path inside the recipe's folder",
        ),
        (
            "../secret",
            "must be a relative path inside the recipe's folder",
        ),
        (
            "files/../../secret",
            "must be a relative path inside the recipe's folder",
        ),
        (
            "base-link",
            "symbolic link 'base-link' -> '../secret' leads outside",
        ),
    ];
    for (path, want) in cases {
        let r = d.join("evil.toml");
        std::fs::write(&r, base_header("dir", path, &zero)).unwrap();
        let e = a.refused(&r, BuildOptions::new(a.out("o")));
        assert!(e.contains(want), "{path}: {e}");
        assert!(e.starts_with(&format!("{}:8: ", r.display())), "{e}");
        assert!(!e.contains(&real), "{path}: the digest leaked: {e}");
        assert!(!e.contains("sha256 mismatch"), "{e}");
    }
    // The same with a tar base elsewhere: refused before it is hashed.
    let outside = a.fx.tmp.path().join("outside.tar");
    std::fs::copy(d.join("base.tar"), &outside).unwrap();
    let r = d.join("evil.toml");
    std::fs::write(
        &r,
        base_header("tar", &outside.display().to_string(), &zero),
    )
    .unwrap();
    let e = a.refused(&r, BuildOptions::new(a.out("o")));
    assert!(!e.contains(&a.fx.base_sha), "{e}");
    // An allowed host path that does not hold the base allows nothing.
    let mut opts = BuildOptions::new(a.out("o"));
    opts.allow_host_paths = vec![a.fx.tmp.path().join("root")];
    let e = a.refused(&r, opts);
    assert!(e.contains("not within any --allow-host-path"), "{e}");
    assert!(!e.contains(&a.fx.base_sha), "{e}");
}

#[test]
fn allow_host_path_lets_the_operator_name_a_base_elsewhere() {
    let a = Attack::new();
    let d = &a.fx.dir;
    let bases = a.fx.tmp.path().join("bases");
    std::fs::create_dir_all(&bases).unwrap();
    std::fs::copy(d.join("base.tar"), bases.join("sl5.tar")).unwrap();
    let r = d.join("host.toml");
    for path in [
        bases.join("sl5.tar").display().to_string(),
        "../bases/sl5.tar".into(),
    ] {
        std::fs::write(&r, base_header("tar", &path, &a.fx.base_sha)).unwrap();
        // Without the operator's word: refused.
        a.refused(&r, BuildOptions::new(a.out("no")));
        // Allowed as the folder holding it, or as the file itself.
        for allow in [bases.clone(), bases.join("sl5.tar")] {
            let out = a.out(&format!("yes-{}", rand_suffix()));
            let mut opts = BuildOptions::new(&out);
            opts.allow_host_paths = vec![a.fx.tmp.path().join("nothing-here-yet"), allow];
            // A missing allowed path is an error naming it...
            let e = build(&r, &opts, &NoProgress).unwrap_err().to_string();
            assert!(e.starts_with("--allow-host-path "), "{e}");
            opts.allow_host_paths.remove(0);
            // ...and the right one builds.
            build(&r, &opts, &NoProgress).unwrap();
            assert_eq!(manifest(&out)["base"]["sha256"], a.fx.base_sha.as_str());
        }
    }
    // Even an allowed root confines: a link inside it leading out is refused.
    symlink(&a.canary, bases.join("evil.tar")).unwrap();
    std::fs::write(
        &r,
        base_header(
            "tar",
            &bases.join("evil.tar").display().to_string(),
            &a.fx.base_sha,
        ),
    )
    .unwrap();
    let mut opts = BuildOptions::new(a.out("o"));
    opts.allow_host_paths = vec![bases.clone()];
    let e = a.refused(&r, opts);
    assert!(e.contains("leads outside the allowed host path"), "{e}");
}

#[test]
fn fifos_are_never_opened_or_waited_on() {
    let a = Attack::new();
    let d = &a.fx.dir;
    mkfifo(&d.join("files/fifo"));
    mkfifo(&d.join("templates/fifo.in"));
    symlink("fifo", d.join("files/to-fifo")).unwrap();
    let cases = [
        (
            "copy",
            "src = \"files/fifo\"\ndest = \"/x\"",
            "'files/fifo' is a FIFO: only files, directories and symlinks can be copied",
        ),
        (
            "copy",
            "src = \"files\"\ndest = \"/x\"",
            "'files/fifo' is a FIFO: only files, directories and symlinks can be copied",
        ),
        (
            "template",
            "src = \"templates/fifo.in\"\ndest = \"/x\"",
            "'templates/fifo.in' is a FIFO, not a regular file",
        ),
        (
            "template",
            "src = \"files/to-fifo\"\ndest = \"/x\"",
            "'files/to-fifo' is a FIFO, not a regular file",
        ),
        (
            "rpm",
            "packages = [\"files/fifo\"]",
            "'files/fifo' is a FIFO, not a regular file",
        ),
    ];
    for (kind, keys, want) in cases {
        let r = a.recipe(&format!("\n[[step]]\ntype = \"{kind}\"\n{keys}\n"));
        let e = a.refused(&r, BuildOptions::new(a.out("o")));
        assert!(
            e.contains(&format!("step 1 ({kind}): source {want}")),
            "{e}"
        );
    }
    // A FIFO as the base, and as the recipe itself.
    mkfifo(&d.join("base.fifo"));
    let r = d.join("fifo-base.toml");
    std::fs::write(&r, base_header("tar", "base.fifo", &a.fx.base_sha)).unwrap();
    let e = a.refused(&r, BuildOptions::new(a.out("o")));
    assert!(
        e.ends_with("base: 'base.fifo' is a FIFO, not a regular file"),
        "{e}"
    );
    let fifo_recipe = d.join("recipe.fifo");
    mkfifo(&fifo_recipe);
    let e = a.refused(&fifo_recipe, BuildOptions::new(a.out("o")));
    assert!(e.ends_with("a recipe must be a regular file"), "{e}");
}

#[test]
fn a_template_bomb_stops_at_the_budget() {
    let a = Attack::new();
    let d = &a.fx.dir;
    // 2,000 uses of a 1 MiB variable would write 2 GB.
    std::fs::write(d.join("templates/bomb.in"), "{{big}}".repeat(2000)).unwrap();
    let big = "x".repeat(1 << 20);
    let r = a.recipe(&format!(
        "\n[vars]\nbig = \"{big}\"\n\n[[step]]\ntype = \"template\"\nsrc = \"templates/bomb.in\"\ndest = \"/etc/bomb\"\n"
    ));
    let e = a.refused(&r, BuildOptions::new(a.out("o")));
    assert!(
        e.ends_with("step 1 (template): template 'templates/bomb.in': output would exceed the budget of 16777216 bytes per file (--max-template-output)"),
        "{e}"
    );
    // The budget is the operator's: raised, the same template of 10 uses passes...
    std::fs::write(d.join("templates/ten.in"), "{{big}}".repeat(10)).unwrap();
    let two = format!(
        "\n[vars]\nbig = \"{big}\"\n\n[[step]]\ntype = \"template\"\nsrc = \"templates/ten.in\"\ndest = \"/etc/a\"\n\n[[step]]\ntype = \"template\"\nsrc = \"templates/ten.in\"\ndest = \"/etc/b\"\n"
    );
    let r = a.recipe(&two);
    let mut opts = BuildOptions::new(a.out("o"));
    opts.limits.template_file = 8 << 20;
    let e = a.refused(&r, opts.clone());
    assert!(e.contains("step 1 (template): template 'templates/ten.in': output would exceed the budget of 8388608 bytes per file"), "{e}");
    // ...and the total across templates is bounded too.
    opts.limits.template_file = 16 << 20;
    opts.limits.template_total = 15 << 20;
    let e = a.refused(&r, opts);
    assert!(
        e.ends_with("step 2 (template): template 'templates/ten.in': output of all templates would exceed the budget of 15728640 bytes per build (--max-template-total)"),
        "{e}"
    );
}

#[test]
fn recipe_files_held_in_memory_are_budgeted() {
    let a = Attack::new();
    let r = a.recipe("\n[[step]]\ntype = \"copy\"\nsrc = \"files\"\ndest = \"/srv\"\n");
    let mut opts = BuildOptions::new(a.out("o"));
    opts.limits.input_memory = 20;
    let e = a.refused(&r, opts);
    assert!(
        e.ends_with("source 'files/squid.conf': recipe files held in memory would exceed the budget of 20 bytes per build (--max-input-memory)"),
        "{e}"
    );
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn ext_and_wafer_bases_are_read_through_the_confined_file() {
    let a = Attack::new();
    let d = &a.fx.dir;
    let first = a.out("first");
    let mut opts = BuildOptions::new(&first);
    opts.keep_raw = true;
    build(&a.recipe(""), &opts, &NoProgress).unwrap();
    // The first bundle, inside the recipe's folder, as a wafer base; its raw image as an ext base.
    let prev = d.join("prev");
    std::fs::create_dir_all(&prev).unwrap();
    for f in ["wafer.json", "disk.img.zst"] {
        std::fs::copy(first.join(f), prev.join(f)).unwrap();
    }
    std::fs::copy(first.join("disk.img"), d.join("base.img")).unwrap();
    let zst_sha = sha256_hex(&prev.join("disk.img.zst"));
    let img_sha = sha256_hex(&d.join("base.img"));
    let r = d.join("again.toml");
    for (kind, path, sha) in [("wafer", "prev", &zst_sha), ("ext", "base.img", &img_sha)] {
        std::fs::write(&r, base_header(kind, path, sha)).unwrap();
        let out = a.out(&format!("from-{kind}"));
        build(&r, &BuildOptions::new(&out), &NoProgress).unwrap();
        assert_eq!(manifest(&out)["base"]["sha256"], sha.as_str());
        assert_eq!(manifest(&out)["os"]["version"], "5.11");
    }
    // A bundle whose disk.img.zst leads outside is refused, without the digest of what it names.
    let evil = d.join("evil-prev");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::copy(first.join("wafer.json"), evil.join("wafer.json")).unwrap();
    let outside = a.fx.tmp.path().join("outside.zst");
    std::fs::copy(first.join("disk.img.zst"), &outside).unwrap();
    symlink(&outside, evil.join("disk.img.zst")).unwrap();
    std::fs::write(&r, base_header("wafer", "evil-prev", &"0".repeat(64))).unwrap();
    let e = a.refused(&r, BuildOptions::new(a.out("o")));
    assert!(
        e.contains("base.kind is Wafer but evil-prev holds Directory"),
        "{e}"
    );
    assert!(!e.contains(&zst_sha), "{e}");
}

#[test]
fn a_large_copied_file_is_read_from_the_open_file() {
    let a = Attack::new();
    // Above the 16 MiB kept in memory: referenced by its open descriptor, hashed for the report.
    let big: Vec<u8> = (0..(16u32 << 20) + 4099).map(|i| (i % 251) as u8).collect();
    std::fs::write(a.fx.dir.join("files/big.bin"), &big).unwrap();
    let r =
        a.recipe("\n[[step]]\ntype = \"copy\"\nsrc = \"files/big.bin\"\ndest = \"/srv/big.bin\"\n");
    let out = a.out("big");
    let report = build(&r, &BuildOptions::new(&out), &NoProgress).unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(&big));
    assert_eq!(report.inputs["files/big.bin"], want);
    let work = a.fx.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let img = unpack(&out, &work);
    let dumped = work.join("big.out");
    debugfs(&img, &format!("dump /srv/big.bin {}", dumped.display()));
    assert_eq!(sha256_hex(&dumped), want);
}
