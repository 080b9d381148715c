//! The door at library level: a wafer built with the builder library, approved with the trust
//! library, verified by `trust::verify_dir` (the only maker of a `Verified<Bundle>`), deployed by
//! `deploy::deployment::deploy` (which takes nothing else) with a fake hypervisor into a
//! temporary site. The disk, kernel, initrd and xl.cfg land in storage; a tampered bundle never
//! yields a `Verified`.

mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use common::*;
use deploy::deployment::{deploy, DeployError, DeployOptions, Hypervisor, Launch};
use deploy::site::Site;
use trust::key::PrivateKey;
use trust::store::TrustStore;
use trust::verify::{approval_statement, sign_statement, ApprovalRequest, BundleOptions};

/// A hypervisor that starts nothing: it records the configurations it was asked to create.
#[derive(Default)]
struct FakeXen {
    created: RefCell<Vec<PathBuf>>,
}

impl Hypervisor for FakeXen {
    fn launches(&self) -> bool {
        false
    }
    fn domains(&self) -> Result<Option<Vec<deploy::xl::Domain>>, DeployError> {
        Ok(Some(Vec::new()))
    }
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        self.created.borrow_mut().push(cfg.to_path_buf());
        Ok(Launch::Printed(format!("xl create {}", cfg.display())))
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        Ok(Launch::Printed(format!("xl destroy {name}")))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A trust store in `dir`: one reviewer (threshold 1) and the cms VO administrator.
fn store(dir: &Path, reviewer: &PrivateKey, admin: &PrivateKey) -> TrustStore {
    std::fs::create_dir_all(dir.join("reviewers")).unwrap();
    std::fs::create_dir_all(dir.join("vo")).unwrap();
    std::fs::write(
        dir.join("reviewers/alice.pub"),
        reviewer.public().to_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("vo/cms-admin.pub"),
        admin.public().to_pem().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("trust.toml"),
        "format = 1\nmax_approval_age_days = 30\n\n[reviewers]\nthreshold = 1\nkeys = [\"reviewers/alice.pub\"]\n\n[[vo_admins]]\nvo = \"cms\"\nkey = \"vo/cms-admin.pub\"\nwafers = [\"cms-*\"]\n",
    )
    .unwrap();
    TrustStore::load(dir).unwrap()
}

/// Alice's approval of the bundle in `b`, written into its attestations.
fn approve(b: &Path, reviewer: &PrivateKey, now: i64) {
    let m = std::fs::read(b.join("wafer.json")).unwrap();
    let st = approval_statement(&ApprovalRequest {
        manifest_bytes: &m,
        verifier_id: "https://site.example/reviewers".into(),
        policy_uri: "https://site.example/policy.toml".into(),
        policy_sha256: "11".repeat(32),
        report_sha256: "22".repeat(32),
        time: now - 60,
        expires: now + 7 * 86_400,
    })
    .unwrap();
    std::fs::write(
        b.join("attestations/approval-alice.json"),
        sign_statement(&st, reviewer),
    )
    .unwrap();
}

fn site(f: &Fixture, trust: &Path) -> Site {
    let (storage, state) = (f.path("storage"), f.path("state"));
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let text = format!(
        r#"name = "test-edge"
[host]
memory_mib = 4096
vcpus = 4
disk_mib = 409600
[xen]
version = "4.17"
guest_types = ["pv", "pvh"]
[paths]
storage_dir = "{}"
state_dir = "{}"
trust_store = "{}"
[[slot]]
name = "edge1"
memory_mib = 1024
vcpus = 1
disk_mib = 4096
arch = "x86_64"
vos = ["cms"]
networks = ["public"]
[[network]]
name = "public"
bridge = "xenbr0"
kind = "public"
gateway = "192.0.2.1"
prefix = 24
dns = ["192.0.2.53"]
domain = "edge.example.org"
mac_prefix = "02:16:3e"
ranges = ["192.0.2.16/29"]
"#,
        storage.display(),
        state.display(),
        trust.display()
    );
    Site::from_toml_str(&text, "site.toml", None).unwrap()
}

/// Flips one bit of `path` at `offset` (same length).
fn flip(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn built_approved_verified_deployed_and_tampered_never_verified() {
    let f = Fixture::new(|_| {});
    let recipe = f.recipe_named(
        "door.toml",
        "cms-squid",
        "1.0",
        "[[step]]\ntype = \"copy\"\nsrc = \"files/squid.conf\"\ndest = \"/etc/squid/squid.conf\"\n",
    );
    let out = f.path("bundle");
    let report = builder::build(
        &recipe,
        &builder::BuildOptions::new(&out),
        &builder::NoProgress,
    )
    .unwrap();
    let built = report.manifest.clone().expect("a manifest");

    let reviewer = PrivateKey::from_seed(&[1; 32]);
    let admin = PrivateKey::from_seed(&[2; 32]);
    let trust_dir = f.path("trust");
    let store = store(&trust_dir, &reviewer, &admin);
    let now = now();
    let opts = BundleOptions {
        sha256: true,
        threads: 0,
    };

    // Unapproved: no Verified.
    let r = trust::verify_dir(&out, &store, now, &opts).unwrap_err();
    assert!(!r.passed(), "{r}");

    approve(&out, &reviewer, now);
    let verified = match trust::verify_dir(&out, &store, now, &opts) {
        Ok(v) => v,
        Err(r) => panic!("the approved bundle was refused:\n{r}"),
    };
    assert_eq!(verified.manifest(), &built);
    assert!(verified.report().passed());

    // Tampered copies never yield a Verified: a bit of the disk, a bit of the manifest, an
    // approval by a key the store does not know.
    let zst_len = std::fs::metadata(out.join("disk.img.zst")).unwrap().len() as usize;
    let cases: Vec<(&str, Box<dyn Fn(&Path)>)> = vec![
        (
            "disk",
            Box::new(move |b: &Path| flip(&b.join("disk.img.zst"), zst_len / 3)),
        ),
        (
            "manifest",
            Box::new(|b: &Path| {
                let p = b.join("wafer.json");
                let t = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, t.replace("\"memory_mib\": 256", "\"memory_mib\": 257"))
                    .unwrap();
            }),
        ),
        (
            "approval by an unknown key",
            Box::new(move |b: &Path| approve(b, &PrivateKey::from_seed(&[9; 32]), now)),
        ),
    ];
    for (what, tamper) in &cases {
        let copy = f.path(&format!("tampered-{}", what.replace(' ', "-")));
        copy_dir(&out, &copy);
        let before = std::fs::read(copy.join("wafer.json")).unwrap();
        tamper(&copy);
        if *what == "manifest" {
            assert_ne!(before, std::fs::read(copy.join("wafer.json")).unwrap());
        }
        match trust::verify_dir(&copy, &store, now, &opts) {
            Ok(_) => panic!("tampered ({what}): verified"),
            Err(r) => assert!(!r.passed() && !r.failures().is_empty(), "{what}: {r}"),
        }
    }

    // Deploy: only a Verified<Bundle> goes in.
    let site = site(&f, &trust_dir);
    let hv = FakeXen::default();
    let rec = deploy(
        &site,
        &verified,
        &DeployOptions {
            name: None,
            slot: None,
            user_data: None,
            ttl: None,
            now: now as u64,
        },
        &hv,
    )
    .unwrap();
    assert_eq!(rec.name, "cms-cms-squid");
    assert_eq!(rec.slot, "edge1");
    let dir = f.path("storage").join(&rec.name);
    let disk = dir.join("disk.img");
    let (kernel, initrd, cfg) = (dir.join("kernel"), dir.join("initrd"), dir.join("xl.cfg"));
    for p in [&disk, &kernel, &initrd, &cfg, &dir.join("cidata.img")] {
        assert!(
            rec.files.contains(p),
            "{} not recorded: {:?}",
            p.display(),
            rec.files
        );
    }
    // The disk is the verified image, byte for byte, and a clean ext filesystem.
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), built.image.size);
    assert_eq!(sha256_hex(&disk), built.image.sha256);
    run(std::process::Command::new("e2fsck").arg("-fn").arg(&disk));
    // The kernel and initrd are the image's.
    assert_eq!(
        std::fs::read(&kernel).unwrap(),
        b"KERNEL-IMAGE-BYTES xen pv kernel"
    );
    assert_eq!(std::fs::read(&initrd).unwrap(), b"INITRD-BYTES");
    // xl.cfg names them and the slot's resources; the fake hypervisor was asked to create it.
    let xl = std::fs::read_to_string(&cfg).unwrap();
    for want in [
        format!("name = \"{}\"", rec.name),
        format!("kernel = \"{}\"", kernel.display()),
        format!("ramdisk = \"{}\"", initrd.display()),
        "memory = 1024".to_string(),
        disk.display().to_string(),
        "xenbr0".to_string(),
    ] {
        assert!(xl.contains(&want), "xl.cfg lacks {want:?}:\n{xl}");
    }
    assert_eq!(*hv.created.borrow(), vec![cfg.clone()]);
}
