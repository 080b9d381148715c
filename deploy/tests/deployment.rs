//! End-to-end deploy with a fake hypervisor and a fake verified image: files land in the
//! storage directory, leases and slots are accounted, refusals leave no trace, stop frees all.

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

use deploy::deployment::{
    deploy, ps, stop, DeployError, DeployOptions, Hypervisor, Launch, State, Verified,
    VerifiedImage, XlTool,
};
use deploy::fit::Requirements;
use deploy::site::{GuestType, Site};
use deploy::xl::{GuestConfig, XlConfig};

struct FakeWafer {
    name: &'static str,
    vo: &'static str,
    memory: u64,
}

impl VerifiedImage for FakeWafer {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> &str {
        "1.0"
    }
    fn vo(&self) -> &str {
        self.vo
    }
    fn requirements(&self) -> Requirements {
        Requirements {
            memory_mib: self.memory,
            vcpus: 1,
            disk_mib: 1000,
            arch: "x86_64".into(),
            guest_types: vec![GuestType::Pvh, GuestType::Pv],
            min_xen: None,
        }
    }
    fn cmdline(&self) -> Option<String> {
        Some("root=/dev/xvda ro".into())
    }
    fn write_disk(&self, dest: &mut std::fs::File) -> std::io::Result<u64> {
        dest.write_all(b"disk bytes")?;
        Ok(10)
    }
    fn kernel(&self) -> std::io::Result<Vec<u8>> {
        Ok(b"kernel".to_vec())
    }
    fn initrd(&self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(Some(b"initrd".to_vec()))
    }
}

#[derive(Default)]
struct FakeXen {
    calls: RefCell<Vec<String>>,
}

impl Hypervisor for FakeXen {
    fn create(&self, cfg: &Path) -> Result<Launch, DeployError> {
        self.calls
            .borrow_mut()
            .push(format!("create {}", cfg.display()));
        Ok(Launch::Ran(format!("xl create {}", cfg.display())))
    }
    fn destroy(&self, name: &str) -> Result<Launch, DeployError> {
        self.calls.borrow_mut().push(format!("destroy {name}"));
        Ok(Launch::Ran(format!("xl destroy {name}")))
    }
}

fn site(dir: &Path) -> Site {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/site.toml"))
        .unwrap()
        .replace(
            "/var/lib/wafer/storage",
            &format!("{}/storage", dir.display()),
        )
        .replace("/var/lib/wafer/state", &format!("{}/state", dir.display()));
    Site::from_toml_str(&text, "site.toml", None).unwrap()
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                out.extend(tree(&e.path()));
            }
        }
    }
    out.sort();
    out
}

fn opts(now: u64) -> DeployOptions {
    DeployOptions {
        name: None,
        slot: None,
        user_data: None,
        ttl: Some(3600),
        now,
    }
}

#[test]
fn deploy_several_vos_refuse_one_then_stop() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xen = FakeXen::default();
    let cms = Verified::after_verification(FakeWafer {
        name: "squid",
        vo: "cms",
        memory: 3000,
    });
    let r = deploy(&s, &cms, &opts(100), &xen).unwrap();
    assert_eq!(
        (r.name.as_str(), r.slot.as_str(), r.state),
        ("cms-squid", "edge1", State::Running)
    );
    assert_eq!(r.leases.len(), 2);
    assert!(r.leases.iter().all(|l| l.committed));
    let cfg_path = d.path().join("storage/cms-squid/xl.cfg");
    let g = GuestConfig::from_config(
        &XlConfig::parse(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (g.guest_type, g.memory_mib, g.vcpus, g.cpu_weight),
        (GuestType::Pvh, 4096, 2, Some(512))
    );
    assert_eq!(g.vifs.len(), 2);
    assert_eq!(g.vifs[0].mac.as_deref(), Some(r.leases[0].mac.as_str()));
    assert_eq!(g.vifs[0].bridge.as_deref(), Some("xenbr0"));
    assert!(!g.disks[1].readwrite && g.disks[0].readwrite);
    for f in ["disk.img", "kernel", "initrd", "cidata.img", "xl.cfg"] {
        assert!(d.path().join("storage/cms-squid").join(f).is_file(), "{f}");
    }
    assert_eq!(
        xen.calls.borrow()[0],
        format!("create {}", cfg_path.display())
    );

    let atlas = Verified::after_verification(FakeWafer {
        name: "frontier",
        vo: "atlas",
        memory: 6000,
    });
    let r2 = deploy(&s, &atlas, &opts(101), &xen).unwrap();
    assert_eq!(r2.slot, "edge3");

    // a third wafer that no free slot can take: refused with reasons, nothing written
    let before = (
        tree(&d.path().join("storage")),
        tree(&d.path().join("state")),
    );
    let big = Verified::after_verification(FakeWafer {
        name: "dash",
        vo: "cms",
        memory: 2000,
    });
    let e = deploy(&s, &big, &opts(102), &xen).unwrap_err().to_string();
    assert!(e.contains("slot edge1: in use by cms-squid"), "{e}");
    assert!(e.contains("slot edge2: VO cms not allowed"), "{e}");
    assert!(e.contains("slot edge3: in use by atlas-frontier"), "{e}");
    assert_eq!(
        before,
        (
            tree(&d.path().join("storage")),
            tree(&d.path().join("state"))
        )
    );

    let st = ps(&s).unwrap();
    assert_eq!(st.deployments.len(), 2);
    assert_eq!(st.leases.len(), 3);
    assert_eq!((st.used.memory_mib, st.used.vcpus), (4096 + 8192, 6));

    let (_, launch) = stop(&s, "cms-squid", true, &xen).unwrap();
    assert_eq!(launch, Launch::Ran("xl destroy cms-squid".into()));
    assert!(d.path().join("storage/cms-squid/disk.img").is_file());
    assert!(!d.path().join("storage/cms-squid/xl.cfg").exists());
    let st = ps(&s).unwrap();
    assert_eq!(st.deployments.len(), 1);
    assert_eq!(st.leases.len(), 1);
    // the slot is free again
    assert_eq!(deploy(&s, &big, &opts(103), &xen).unwrap().slot, "edge1");
}

#[test]
fn dry_run_prints_the_command_and_writes_everything() {
    let d = tempfile::tempdir().unwrap();
    let s = site(d.path());
    let xl = XlTool {
        xl: None,
        dry_run: true,
    };
    let w = Verified::after_verification(FakeWafer {
        name: "squid",
        vo: "cdf",
        memory: 1000,
    });
    let r = deploy(&s, &w, &opts(5), &xl).unwrap();
    assert_eq!(r.state, State::Printed);
    assert_eq!(
        r.launch,
        Some(Launch::Printed(format!(
            "xl create {}/storage/cdf-squid/xl.cfg",
            d.path().display()
        )))
    );
    assert!(d.path().join("storage/cdf-squid/cidata.img").is_file());
    let (_, l) = stop(&s, "cdf-squid", false, &xl).unwrap();
    assert_eq!(l, Launch::Printed("xl destroy cdf-squid".into()));
    assert!(!d.path().join("storage/cdf-squid").exists());
}
