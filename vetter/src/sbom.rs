//! CycloneDX 1.5 JSON SBOM (https://cyclonedx.org/docs/1.5/json/) from an [`Inventory`]:
//! one `operating-system` component for the image's distribution, one `library`/`application`
//! component per package with its purl, and one `file` component per hashed regular file with
//! its SHA-256. The serial number is derived from the inventory's content, so the same image
//! always yields the same SBOM.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Inventory;

/// Options for [`cyclonedx_with`].
#[derive(Clone, Debug)]
pub struct SbomOptions {
    /// Add a `file` component per hashed regular file. Default true.
    pub files: bool,
}

impl Default for SbomOptions {
    fn default() -> Self {
        SbomOptions { files: true }
    }
}

/// A CycloneDX 1.5 SBOM of the inventory with default options.
pub fn cyclonedx(inv: &Inventory) -> Value {
    cyclonedx_with(inv, &SbomOptions::default())
}

fn uuid_from(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // version 5-style (name-based)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// A CycloneDX 1.5 SBOM of the inventory.
pub fn cyclonedx_with(inv: &Inventory, opts: &SbomOptions) -> Value {
    let mut components = Vec::new();
    let mut seed = Sha256::new();
    let sys = &inv.system;
    let os_ref = "os".to_string();
    let mut os = json!({
        "type": "operating-system",
        "bom-ref": os_ref,
        "name": sys.distro.clone().unwrap_or_else(|| "unknown".into()),
    });
    if let Some(r) = &sys.release {
        os["version"] = json!(r);
    }
    if let Some(p) = &sys.pretty_name {
        os["description"] = json!(p);
    }
    seed.update(os.to_string().as_bytes());
    components.push(os);
    let mut seen_refs = std::collections::HashSet::new();
    for p in &inv.packages.list {
        let version = match &p.release {
            Some(r) => match p.epoch {
                Some(e) => format!("{e}:{}-{r}", p.version),
                None => format!("{}-{r}", p.version),
            },
            None => p.version.clone(),
        };
        let mut r = p.purl.clone();
        let mut n = 1;
        while !seen_refs.insert(r.clone()) {
            n += 1;
            r = format!("{}#{n}", p.purl);
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": r,
            "name": p.name,
            "version": version,
            "purl": p.purl,
        });
        if let Some(v) = &p.vendor {
            c["publisher"] = json!(v);
        }
        if let Some(l) = &p.license {
            c["licenses"] = json!([{ "expression": l }]);
        }
        let mut props = vec![json!({"name": "wafer:package-manager", "value": p.manager})];
        if let Some(s) = &p.source {
            props.push(json!({"name": "wafer:source-package", "value": s}));
        }
        if let Some(a) = &p.arch {
            props.push(json!({"name": "wafer:arch", "value": a}));
        }
        c["properties"] = json!(props);
        seed.update(p.purl.as_bytes());
        components.push(c);
    }
    if opts.files {
        for (i, e) in inv.files.entries.iter().enumerate() {
            let (Some(sha), Some(path)) = (&e.sha256, e.paths.first()) else {
                continue;
            };
            seed.update(sha.as_bytes());
            seed.update(path.as_bytes());
            components.push(json!({
                "type": "file",
                "bom-ref": format!("file-{i}"),
                "name": path,
                "hashes": [{ "alg": "SHA-256", "content": sha }],
            }));
        }
    }
    let mut metadata = json!({
        "tools": { "components": [{ "type": "application", "name": "wafer", "version": env!("CARGO_PKG_VERSION") }] },
        "component": { "type": "operating-system", "bom-ref": "image", "name": sys.pretty_name.clone().or(sys.distro.clone()).unwrap_or_else(|| "image".into()) },
    });
    if let Some(a) = &sys.arch {
        metadata["properties"] = json!([{ "name": "wafer:arch", "value": a }]);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from(&seed.finalize())),
        "version": 1,
        "metadata": metadata,
        "components": components,
    })
}
