//! A real Debian root filesystem (`debootstrap --variant=minbase --include=openssh-server
//! bookworm`) through the whole model: read with `rootfs::dir::read_dir`, written as ext2, ext3
//! and ext4 by our writer and checked with the real e2fsprogs (`e2fsck -fn`, `debugfs`) against
//! the host's own view of the tree (issue 2); the ext4 image read back with our reader and
//! inventoried by the vetter, checked against `find -perm /6000`, `dpkg-query -W` and
//! `sha256sum` (issue 4).
//!
//! The tree is made once under `$CARGO_TARGET_TMPDIR/debian-bookworm` and reused by later runs
//! (see [`debian_root`]). Needs root (debootstrap), network access to deb.debian.org, and the
//! Debian packages debootstrap, e2fsprogs, dpkg, coreutils and findutils.

mod debian_rootfs {
    pub mod bootstrap;
    pub mod debugfs;
    pub mod host;
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use debian_rootfs::debugfs::{self, req};
use debian_rootfs::host::{self, show, Kind};
use rootfs::content::FileSource;
use rootfs::dir::{read_dir, DirOptions};
use rootfs::ext::{read_image, write_image, FsKind, ReadOptions, WriteOptions};
use rootfs::{Content, NodeKind, Tree};
use vetter::{inspect, InspectOptions, Inventory};

/// The suite and the command line, also recorded next to the tree.
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

/// The epoch every image is written with (SOURCE_DATE_EPOCH).
const EPOCH: i64 = 1_700_000_000;

/// The debootstrap'd root directory, made on first use.
///
/// Layout: `$CARGO_TARGET_TMPDIR/debian-bookworm/root` (the tree) and
/// `$CARGO_TARGET_TMPDIR/debian-bookworm/complete` (the completion marker: the debootstrap
/// command). Within this test binary a `OnceLock` makes the tests share one build; across
/// concurrent runs the tree is built under a private `debian-bookworm.partial-PID` directory,
/// marker included, and renamed into place in one atomic `rename(2)`: a run that loses the race
/// finds the winner's complete tree and drops its own. A directory without the marker cannot
/// appear under the final name.
///
/// A failing debootstrap fails the test with its output.
fn debian_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ROOT.get_or_init(build_debian_root) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_debian_root() -> Result<PathBuf, String> {
    debian_rootfs::bootstrap::cached(
        "debian-bookworm",
        &["--variant=minbase", "--include=openssh-server", SUITE],
        MIRROR,
    )
}

/// A scratch directory beside the build (the images are a few hundred MB: not /tmp).
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory")
}

fn lap(what: &str, t: &mut Instant) {
    eprintln!("{what}: {:.2} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

// ---------------------------------------------------------------------------------------------
// Issue 2: ext2/3/4 images of the Debian tree agree with debugfs
// ---------------------------------------------------------------------------------------------

/// Check with one batched `debugfs -f` run (plus `ea_get`s when the tree has xattrs) that the
/// image agrees with the host's view of the tree on every path.
///
/// * `ls -p DIR` of every directory: the set of names (the image may add only `/lost+found`),
///   type and permission bits, uid, gid, size, and inode numbers (hard links: equal host inodes
///   iff equal image inodes);
/// * `stat PATH` of every path: device numbers, xattr names;
/// * `rdump / OUT`: symlink targets (`readlink` of what debugfs recreated) and the sha256 of
///   every regular file's contents.
fn check_image(img: &Path, entries: &[host::Entry], want_sha: &HashMap<Vec<u8>, String>) {
    let out = scratch();
    let dump = out.path().join("rdump");
    std::fs::create_dir(&dump).expect("mkdir rdump");
    let dirs: Vec<&host::Entry> = entries
        .iter()
        .filter(|e| e.kind == Kind::Directory)
        .collect();
    let mut cmds: Vec<Vec<u8>> = dirs.iter().map(|e| req("ls -p", &e.path, "")).collect();
    cmds.extend(entries.iter().map(|e| req("stat", &e.path, "")));
    cmds.push(req("rdump", b"/", &dump.display().to_string()));
    let outs = debugfs::batch(img, &cmds);
    let (ls_outs, rest) = outs.split_at(dirs.len());
    let stat_outs = &rest[..entries.len()];

    // ls -p: every directory's entries.
    let mut image_entries: BTreeMap<Vec<u8>, debugfs::LsEntry> = BTreeMap::new();
    for (d, o) in dirs.iter().zip(ls_outs) {
        for le in debugfs::parse_ls_p(o) {
            let path = match le.name.as_str() {
                ".." => continue,
                "." => d.path.clone(),
                n => {
                    let mut p = if d.path == b"/" {
                        Vec::new()
                    } else {
                        d.path.clone()
                    };
                    p.push(b'/');
                    p.extend_from_slice(n.as_bytes());
                    p
                }
            };
            if le.name != "." || d.path == b"/" {
                image_entries.insert(path, le);
            }
        }
    }
    let host_paths: BTreeSet<&[u8]> = entries.iter().map(|e| e.path.as_slice()).collect();
    let extra: Vec<String> = image_entries
        .keys()
        .filter(|p| !host_paths.contains(p.as_slice()) && !p.starts_with(b"/lost+found"))
        .map(|p| show(p))
        .collect();
    assert!(
        extra.is_empty(),
        "{}: paths not in the source: {extra:?}",
        img.display()
    );

    let mut host_to_ino: HashMap<(u64, u64), u64> = HashMap::new();
    let mut ino_to_host: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut xattr_checks: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
    for (e, so) in entries.iter().zip(stat_outs) {
        let p = show(&e.path);
        let le = image_entries.get(&e.path).unwrap_or_else(|| {
            panic!(
                "{}: {p} missing from its directory's `ls -p`",
                img.display()
            )
        });
        assert_eq!(
            Kind::from_mode(le.mode),
            Some(e.kind),
            "{p}: type (mode {:o})",
            le.mode
        );
        assert!(
            le.mode & 0o7777 == e.perm,
            "{p}: permission bits {:o} in the image, {:o} in the source",
            le.mode & 0o7777,
            e.perm
        );
        assert_eq!((le.uid, le.gid), (e.uid, e.gid), "{p}: owner");
        if e.kind != Kind::Directory {
            assert_eq!(le.size, Some(e.size), "{p}: size");
        }
        // Hard links both ways.
        let prev_ino = *host_to_ino.entry(e.key).or_insert(le.ino);
        assert_eq!(
            prev_ino, le.ino,
            "{p}: hard link to host inode {:?} lost",
            e.key
        );
        let prev_key = *ino_to_host.entry(le.ino).or_insert(e.key);
        assert_eq!(
            prev_key, e.key,
            "{p}: image inode {} shared by different host inodes",
            le.ino
        );

        let st = debugfs::parse_stat(so);
        assert_eq!(
            st.ino, le.ino,
            "{p}: `stat` and `ls -p` disagree on the inode: {so}"
        );
        assert_eq!(st.device, e.rdev, "{p}: device numbers");
        let mut want_names: Vec<String> = e.xattrs.keys().map(|n| show(n)).collect();
        let mut got_names = st.xattr_names.clone();
        want_names.sort();
        got_names.sort();
        assert_eq!(got_names, want_names, "{p}: xattr names");
        for (n, v) in &e.xattrs {
            xattr_checks.push((e.path.clone(), n.clone(), v.clone()));
        }
    }

    // Xattr values, exactly, with ea_get (only when the tree has any).
    if !xattr_checks.is_empty() {
        let mut cmds = Vec::new();
        for (k, (path, name, _)) in xattr_checks.iter().enumerate() {
            let f = out.path().join(format!("xattr-{k}"));
            cmds.push(req(
                &format!("ea_get -f {}", f.display()),
                path,
                &show(name),
            ));
        }
        debugfs::batch(img, &cmds);
        for (k, (path, name, want)) in xattr_checks.iter().enumerate() {
            let got = std::fs::read(out.path().join(format!("xattr-{k}"))).unwrap_or_default();
            assert!(got == *want, "{}: xattr {} differs", show(path), show(name));
        }
    }

    // Symlink targets and contents from the rdump.
    for e in entries.iter().filter(|e| e.kind == Kind::Symlink) {
        let got = std::fs::read_link(dump.join(OsStr::from_bytes(&e.path[1..])))
            .unwrap_or_else(|err| panic!("{}: rdump made no symlink: {err}", show(&e.path)));
        assert_eq!(
            got.as_os_str().as_bytes(),
            e.target.as_deref().unwrap_or_default(),
            "{}: link target",
            show(&e.path)
        );
    }
    let got_sha = host::sha256_regular(entries, &dump);
    let mut differ: Vec<String> = want_sha
        .iter()
        .filter(|(p, h)| got_sha.get(*p) != Some(*h))
        .map(|(p, _)| show(p))
        .collect();
    differ.sort();
    assert!(
        differ.is_empty(),
        "{}: {} files' contents differ: {:?}",
        img.display(),
        differ.len(),
        &differ[..differ.len().min(20)]
    );
    assert_eq!(got_sha.len(), want_sha.len());
}

#[test]
fn debian_tree_as_ext2_ext3_ext4_agrees_with_debugfs() {
    let root = debian_root();
    let mut t = Instant::now();
    let entries = host::walk(root);
    let tree = read_dir(root, &DirOptions::default())
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", root.display()));
    assert_eq!(
        tree.path_count(),
        entries.len(),
        "read_dir and lstat disagree on the number of paths"
    );
    let want_sha = host::sha256_regular(&entries, root);
    lap(
        &format!("host walk + read_dir + sha256 of {} paths", entries.len()),
        &mut t,
    );
    assert!(
        entries.len() > 5000,
        "a minbase tree has thousands of paths, got {}",
        entries.len()
    );
    assert!(
        entries.iter().any(|e| matches!(e.kind, Kind::Char)),
        "debootstrap made no /dev nodes"
    );

    let plain = |fs| WriteOptions {
        epoch: EPOCH,
        ..WriteOptions::new(fs)
    };
    let variants: Vec<(&str, WriteOptions)> = vec![
        ("ext2", plain(FsKind::Ext2)),
        ("ext3", plain(FsKind::Ext3)),
        (
            "ext4",
            WriteOptions {
                metadata_csum: false,
                sixty_four_bit: false,
                ..plain(FsKind::Ext4)
            },
        ),
        (
            "ext4-csum-64bit",
            WriteOptions {
                metadata_csum: true,
                sixty_four_bit: true,
                ..plain(FsKind::Ext4)
            },
        ),
    ];
    let work = scratch();
    for (name, opts) in variants {
        let img = work.path().join(format!("{name}.img"));
        write_image(&tree, &img, &opts).unwrap_or_else(|e| panic!("write {name}: {e}"));
        lap(&format!("{name}: write"), &mut t);
        debugfs::fsck(&img);
        lap(&format!("{name}: e2fsck -fn"), &mut t);
        check_image(&img, &entries, &want_sha);
        lap(&format!("{name}: debugfs checks"), &mut t);
        std::fs::remove_file(&img).expect("remove image");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 4: the vetter on the Debian tree written as ext4 and read back
// ---------------------------------------------------------------------------------------------

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Write `tree` as ext4, read it back with our reader, inventory it.
fn inventory_via_ext4(tree: &Tree, img: &Path, opts: &InspectOptions) -> Inventory {
    write_image(
        tree,
        img,
        &WriteOptions {
            epoch: EPOCH,
            ..WriteOptions::new(FsKind::Ext4)
        },
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", img.display()));
    let src = FileSource::open(img).unwrap_or_else(|e| panic!("open {}: {e}", img.display()));
    let image = read_image(
        Arc::new(src),
        &ReadOptions {
            verify_checksums: true,
            strict_checksums: true,
        },
    )
    .unwrap_or_else(|e| panic!("read {}: {e}", img.display()));
    assert!(
        image.info.checksum_errors.is_empty(),
        "{:?}",
        image.info.checksum_errors
    );
    assert_eq!(image.info.kind, FsKind::Ext4);
    inspect(&image.tree, opts).expect("inspect")
}

/// The enabled services' (name, port, protocol, default?, port source file).
fn listening(inv: &Inventory) -> Vec<(String, u16, String, bool, String)> {
    inv.services
        .listening()
        .map(|(s, p)| {
            (
                s.name.clone(),
                p.port,
                p.protocol.clone(),
                p.default,
                p.source.file.clone(),
            )
        })
        .collect()
}

#[test]
fn debian_tree_as_ext4_inventory_matches_find_dpkg_query_sha256sum() {
    let root = debian_root();
    let mut t = Instant::now();
    let mut tree = read_dir(root, &DirOptions::default())
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", root.display()));
    let work = scratch();
    // Every file is hashed; only files up to 16 KiB (configuration files, keys) are scanned for
    // credentials: the vetter's byte-by-byte pattern search costs ~0.5 s per MB at opt-level 0,
    // which would spend a minute on the tree's 130 MB of files under the default 1 MiB limit.
    let opts = InspectOptions {
        scan_limit: 16 << 10,
        ..InspectOptions::default()
    };
    let inv = inventory_via_ext4(&tree, &work.path().join("debian.img"), &opts);
    lap("vetter: write ext4 + read back + inspect", &mut t);
    assert!(inv.files.entries.len() > 5000);

    // setuid/setgid: `find DIR -perm /6000`, as image paths.
    let found = run(Command::new("find")
        .arg(root)
        .args(["-perm", "/6000", "-print0"]));
    let want: BTreeSet<String> = found
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let rel = Path::new(OsStr::from_bytes(p))
                .strip_prefix(root)
                .expect("find prints paths under DIR");
            format!("/{}", rel.display())
        })
        .collect();
    // The inventory's `setuid`/`setgid` lists hold regular files only (docs/inventory.md);
    // `find` also prints setgid directories (/var/mail, /var/local: group inheritance, no
    // privilege), which the inventory shows as entries with their mode.
    let files: BTreeSet<String> = inv
        .files
        .setuid
        .iter()
        .chain(&inv.files.setgid)
        .cloned()
        .collect();
    let dirs: BTreeSet<String> = inv
        .files
        .entries
        .iter()
        .filter(|e| e.file_type == rootfs::FileType::Directory)
        .filter(|e| {
            u32::from_str_radix(&e.mode, 8)
                .unwrap_or_else(|_| panic!("{:?}: mode {:?}", e.paths, e.mode))
                & 0o6000
                != 0
        })
        .flat_map(|e| e.paths.iter().cloned())
        .collect();
    assert!(
        want.len() >= 10,
        "debootstrap tree has setuid/setgid files (su, passwd, ...): {want:?}"
    );
    assert!(files.is_disjoint(&dirs));
    let got: BTreeSet<String> = files.union(&dirs).cloned().collect();
    assert_eq!(
        got, want,
        "setuid/setgid files (+ setgid directories) vs find -perm /6000"
    );
    assert!(
        dirs.contains("/var/mail"),
        "/var/mail is setgid mail in Debian: {dirs:?}"
    );
    for p in ["/usr/bin/su", "/usr/bin/passwd"] {
        assert!(inv.files.setuid.contains(&p.to_string()), "{p} is setuid");
    }

    // Packages: `dpkg-query -W` of the installed ones.
    let q = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${db:Status-Status} ${Package} ${Version}\n"]));
    let want: BTreeSet<(String, String)> = String::from_utf8_lossy(&q)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            (it.next() == Some("installed")).then(|| {
                (
                    it.next().unwrap_or("").to_string(),
                    it.next().unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    let got: BTreeSet<(String, String)> = inv
        .packages
        .list
        .iter()
        .filter(|p| p.manager == "dpkg")
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(inv.packages.format.as_deref(), Some("dpkg"));
    assert!(
        want.len() > 50 && want.iter().any(|(n, _)| n == "openssh-server"),
        "dpkg-query: {want:?}"
    );
    assert_eq!(got, want, "packages vs dpkg-query -W");
    assert_eq!(
        inv.packages.list.len(),
        want.len(),
        "no other package entries"
    );

    // Hashes: every regular file's sha256 against `sha256sum` (run through xargs in one go).
    let listing = run(Command::new("find")
        .arg(root)
        .args(["-type", "f", "-print0"]));
    let list_file = work.path().join("regular-files");
    std::fs::write(&list_file, &listing).expect("write file list");
    let sums = run(Command::new("xargs")
        .arg("-0")
        .arg("-a")
        .arg(&list_file)
        .args(["sha256sum", "-z", "--"]));
    let want: BTreeMap<String, String> = sums
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (h, p) = l.split_at(64);
            let p = p
                .strip_prefix(b"  ")
                .unwrap_or_else(|| panic!("sha256sum line {:?}", show(l)));
            let rel = Path::new(OsStr::from_bytes(p))
                .strip_prefix(root)
                .expect("sha256sum names paths under DIR");
            (format!("/{}", rel.display()), show(h))
        })
        .collect();
    let mut got: BTreeMap<String, String> = BTreeMap::new();
    for e in inv
        .files
        .entries
        .iter()
        .filter(|e| e.file_type == rootfs::FileType::Regular)
    {
        let h = e
            .sha256
            .clone()
            .unwrap_or_else(|| panic!("{:?}: not hashed", e.paths));
        for p in &e.paths {
            got.insert(p.clone(), h.clone());
        }
    }
    assert!(want.len() > 3000, "sha256sum hashed {} files", want.len());
    let differ: Vec<&String> = want
        .keys()
        .filter(|p| got.get(*p) != want.get(*p))
        .collect();
    assert!(
        differ.is_empty(),
        "{} hashes differ from sha256sum, e.g. {:?}",
        differ.len(),
        &differ[..differ.len().min(20)]
    );
    assert_eq!(
        got.len(),
        want.len(),
        "regular files: inventory vs find -type f"
    );
    assert_eq!(
        inv.files.hashed as usize,
        inv.files
            .entries
            .iter()
            .filter(|e| e.sha256.is_some())
            .count()
    );
    lap("vetter: find / dpkg-query / sha256sum comparisons", &mut t);

    // The host keys openssh-server's postinst generated: found by name and by content.
    let keys: Vec<String> = run(Command::new("find").arg(root.join("etc/ssh")).args([
        "-name",
        "ssh_host_*_key",
        "-printf",
        "/etc/ssh/%f\\n",
    ]))
    .split(|&b| b == b'\n')
    .filter(|l| !l.is_empty())
    .map(show)
    .collect();
    assert!(!keys.is_empty(), "openssh-server made no host keys");
    for k in &keys {
        let kinds: BTreeSet<&str> = inv
            .credentials
            .iter()
            .filter(|c| &c.path == k)
            .map(|c| c.kind.as_str())
            .collect();
        assert!(
            kinds.contains("ssh-host-private-key") && kinds.contains("pem-private-key:OPENSSH"),
            "{k}: credentials found {kinds:?}"
        );
    }

    // Services: this tree has ssh enabled (systemd's multi-user.target.wants/ssh.service and
    // SysV rcN.d/S01ssh both exist); sshd_config leaves Port commented: 22/tcp by default.
    let ports = listening(&inv);
    let ssh = inv
        .services
        .list
        .iter()
        .find(|s| s.enabled && matches!(s.name.trim_end_matches(".service"), "ssh" | "sshd"))
        .unwrap_or_else(|| panic!("no enabled ssh service in {:#?}", inv.services));
    assert!(
        !ssh.enabled_by.is_empty(),
        "ssh: no provenance for its enablement"
    );
    for p in &ssh.enabled_by {
        assert!(
            tree.lookup(p.file.as_bytes()).is_some(),
            "ssh enabled by {} which is not in the tree",
            p.file
        );
    }
    assert_eq!(ssh.daemon.as_deref(), Some("/usr/sbin/sshd"));
    let p22: Vec<_> = ssh
        .ports
        .iter()
        .filter(|p| p.port == 22 && p.protocol == "tcp")
        .collect();
    assert!(!p22.is_empty(), "ssh ports: {:?}", ssh.ports);
    assert!(
        ssh.ports.iter().all(|p| p.port == 22),
        "ssh ports: {:?}",
        ssh.ports
    );
    assert!(
        p22.iter()
            .all(|p| p.default && p.source.file == "/etc/ssh/sshd_config"),
        "provenance: {:?}",
        ssh.ports
    );
    // Nothing else in a minbase tree listens.
    let others: Vec<_> = ports
        .iter()
        .filter(|(n, ..)| !matches!(n.trim_end_matches(".service"), "ssh" | "sshd"))
        .collect();
    assert!(others.is_empty(), "unexpected listeners: {others:?}");

    // Change the port through the Tree API; the inventory follows, with the line that sets it.
    let cfg_path = b"/etc/ssh/sshd_config";
    let id = tree.lookup(cfg_path).expect("sshd_config in the tree");
    let NodeKind::Regular(c) = &tree.node(id).kind else {
        panic!("sshd_config is not a regular file")
    };
    let text = String::from_utf8(c.read_to_vec(1 << 20).expect("read sshd_config"))
        .expect("sshd_config is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "#Port 22")
        .expect("bookworm's sshd_config has '#Port 22'");
    let mut new_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    new_lines[at] = "Port 2222".to_string();
    let new_text = new_lines.join("\n") + "\n";
    tree.node_mut(id).kind = NodeKind::Regular(Content::from_bytes(new_text.into_bytes()));
    let opts = InspectOptions {
        hash: false,
        list_files: false,
        scan_limit: 0,
        ..InspectOptions::default()
    };
    let inv2 = inventory_via_ext4(&tree, &work.path().join("debian-2222.img"), &opts);
    lap("vetter: Port 2222 image", &mut t);
    let ssh2 = inv2
        .services
        .list
        .iter()
        .find(|s| s.enabled && s.name == ssh.name)
        .unwrap_or_else(|| panic!("ssh vanished: {:#?}", inv2.services));
    let got: Vec<(u16, &str, bool, &str, Option<u32>)> = ssh2
        .ports
        .iter()
        .map(|p| {
            (
                p.port,
                p.protocol.as_str(),
                p.default,
                p.source.file.as_str(),
                p.source.line,
            )
        })
        .collect();
    let line = u32::try_from(at + 1).expect("line number");
    assert!(!got.is_empty(), "ssh ports after the change: none");
    assert!(
        got.iter()
            .all(|g| *g == (2222, "tcp", false, "/etc/ssh/sshd_config", Some(line))),
        "ssh ports after Port 2222 on line {line}: {got:?}"
    );
}
