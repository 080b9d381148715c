//! CycloneDX 1.5 JSON SBOM (https://cyclonedx.org/docs/1.5/json/) from an [`Inventory`].
//!
//! * `metadata.component`: what the SBOM describes, the wafer ([`Subject`]: name, version, VO as
//!   `group`, the image's digests as `hashes` and properties), or the image's distribution when
//!   no subject is given;
//! * `components`: one `operating-system` component for the image's distribution, one `library`
//!   component per package with its purl, version, publisher and licenses (an SPDX `expression`
//!   only where the string is valid SPDX or maps exactly to it, else `license.name`; see
//!   [`crate::license`]), and one `file` component per hashed regular file with its SHA-256;
//! * `dependencies`: one entry per component; a package depends on the installed packages that
//!   satisfy its requirements (rpm: REQUIRENAME against package names, PROVIDENAME and file
//!   paths; dpkg: `Pre-Depends`/`Depends` against package names and `Provides`, the first
//!   alternative of `a | b` that is installed). Bounded: [`MAX_PROVIDERS`] per requirement,
//!   [`MAX_EDGES_PER_PACKAGE`] per package, [`MAX_EDGES`] in all (the metadata says when the graph
//!   was cut short).
//!
//! The serial number is derived from the inventory's content, so the same image always yields
//! the same SBOM.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::license::{classify, License};
use crate::packages::PackageInfo;
use crate::Inventory;

/// Most providers one requirement links to (multilib: a name provided for two architectures).
pub const MAX_PROVIDERS: usize = 8;
/// Most dependency edges from one package.
pub const MAX_EDGES_PER_PACKAGE: usize = 1024;
/// Most dependency edges in one SBOM.
pub const MAX_EDGES: usize = 1 << 20;

/// What the SBOM describes: its `metadata.component`.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    /// Name (the wafer's name).
    pub name: String,
    /// Version (the wafer's version).
    pub version: Option<String>,
    /// Group (the wafer's VO).
    pub group: Option<String>,
    /// A line of description.
    pub description: Option<String>,
    /// Digests: (CycloneDX algorithm name such as `SHA-256`, lowercase hex).
    pub hashes: Vec<(String, String)>,
    /// Further `name`/`value` properties (the verity root, the compressed file's digest).
    pub properties: Vec<(String, String)>,
}

impl Subject {
    /// What the SBOM of an opened image describes: a bundle (`manifest` given) by its name,
    /// version and VO with the digests its manifest states (`image.sha256` as the component's
    /// hash; the verity root, the compressed file's sha256 and `manifest_sha256`, the sha256 of
    /// the `wafer.json` bytes, as properties); any other image by `fallback_name`, described as a
    /// `kind` image. Digests that are not 64 lowercase hex digits are left out.
    pub fn for_image(
        manifest: Option<&bundle::Manifest>,
        manifest_sha256: Option<&str>,
        kind: &str,
        fallback_name: &str,
    ) -> Subject {
        match manifest {
            Some(m) => Subject::from_manifest(m, manifest_sha256, fallback_name),
            None => Subject {
                name: fallback_name.to_string(),
                description: Some(format!("{kind} image")),
                ..Default::default()
            },
        }
    }

    /// What the SBOM of a bundle describes (see [`Subject::for_image`]); `fallback_name` when the
    /// manifest's name is empty.
    pub fn from_manifest(
        m: &bundle::Manifest,
        manifest_sha256: Option<&str>,
        fallback_name: &str,
    ) -> Subject {
        let text = |v: &str| Some(v.to_string()).filter(|s| !s.is_empty());
        // The manifest's digests are lowercase hex (the bundle format); anything else is left out.
        let hex = |v: &str| {
            text(v).filter(|s| {
                s.len() == 64
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
        };
        let mut hashes = Vec::new();
        if let Some(h) = hex(&m.image.sha256) {
            hashes.push(("SHA-256".to_string(), h));
        }
        let mut properties = Vec::new();
        for (name, v) in [
            ("wafer:image.verity.root", &m.image.verity.root),
            ("wafer:compressed.sha256", &m.compressed.sha256),
        ] {
            if let Some(h) = hex(v) {
                properties.push((name.to_string(), h));
            }
        }
        if let Some(h) = manifest_sha256 {
            properties.push(("wafer:manifest.sha256".to_string(), h.to_string()));
        }
        properties.push(("wafer:image.size".to_string(), m.image.size.to_string()));
        Subject {
            name: text(&m.name).unwrap_or_else(|| fallback_name.to_string()),
            version: text(&m.version),
            group: text(&m.vo),
            description: Some("wafer bundle (Xen guest image)".into()),
            hashes,
            properties,
        }
    }
}

/// Options for [`cyclonedx_with`].
#[derive(Clone, Debug)]
pub struct SbomOptions {
    /// Add a `file` component per hashed regular file. Default true.
    pub files: bool,
    /// What the SBOM describes; `None`: the image's distribution.
    pub subject: Option<Subject>,
}

impl Default for SbomOptions {
    fn default() -> Self {
        SbomOptions {
            files: true,
            subject: None,
        }
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

/// Whether a package can satisfy others' requirements (dpkg: its files are there; a
/// `config-files` or `not-installed` entry provides nothing).
fn can_provide(p: &PackageInfo) -> bool {
    match &p.status {
        Some(s) => s.state != "config-files" && s.state != "not-installed",
        None => true,
    }
}

/// For each package of `list`, the indices of the packages it depends on (sorted), and whether
/// the graph was cut at [`MAX_EDGES`]. Linear in the number of requirements: providers are
/// found through one hash map.
pub fn dependency_graph(list: &[PackageInfo]) -> (Vec<Vec<usize>>, bool) {
    let mut providers: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        if !can_provide(p) {
            continue;
        }
        let m = p.manager.as_str();
        for name in std::iter::once(&p.name).chain(p.provides.iter()) {
            let v = providers.entry((m, name.as_str())).or_default();
            if v.len() < MAX_PROVIDERS && v.last() != Some(&i) {
                v.push(i);
            }
        }
    }
    let mut total = 0usize;
    let mut truncated = false;
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let mut deps: Vec<usize> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        'rel: for alternatives in &p.requires {
            for alt in alternatives {
                let Some(found) = providers.get(&(p.manager.as_str(), alt.as_str())) else {
                    continue;
                };
                for &j in found {
                    if j == i || !seen.insert(j) {
                        continue;
                    }
                    if deps.len() >= MAX_EDGES_PER_PACKAGE || total >= MAX_EDGES {
                        truncated = true;
                        break 'rel;
                    }
                    deps.push(j);
                    total += 1;
                }
                // The first alternative that some installed package satisfies is the one used.
                continue 'rel;
            }
        }
        deps.sort_unstable();
        out.push(deps);
    }
    (out, truncated)
}

fn licenses(raw: &str) -> Option<Value> {
    Some(match classify(raw)? {
        License::Expression(e) => json!([{ "expression": e }]),
        License::Name(n) => json!([{ "license": { "name": n } }]),
    })
}

fn props(list: &[(String, String)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(n, v)| json!({ "name": n, "value": v }))
            .collect(),
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
    let mut seen_refs = HashSet::new();
    let mut pkg_refs = Vec::with_capacity(inv.packages.list.len());
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
        pkg_refs.push(r.clone());
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
        if let Some(l) = p.license.as_deref().and_then(licenses) {
            c["licenses"] = l;
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
    let mut file_refs = Vec::new();
    if opts.files {
        for (i, e) in inv.files.entries.iter().enumerate() {
            let (Some(sha), Some(path)) = (&e.sha256, e.paths.first()) else {
                continue;
            };
            seed.update(sha.as_bytes());
            seed.update(path.as_bytes());
            let r = format!("file-{i}");
            file_refs.push(r.clone());
            components.push(json!({
                "type": "file",
                "bom-ref": r,
                "name": path,
                "hashes": [{ "alg": "SHA-256", "content": sha }],
            }));
        }
    }

    let image_ref = "image";
    let mut component = match &opts.subject {
        Some(s) => {
            let mut c = json!({
                "type": "container",
                "bom-ref": image_ref,
                "name": s.name,
            });
            if let Some(v) = &s.version {
                c["version"] = json!(v);
            }
            if let Some(g) = &s.group {
                c["group"] = json!(g);
            }
            if let Some(d) = &s.description {
                c["description"] = json!(d);
            }
            if !s.hashes.is_empty() {
                c["hashes"] = Value::Array(
                    s.hashes
                        .iter()
                        .map(|(a, h)| json!({ "alg": a, "content": h }))
                        .collect(),
                );
            }
            if !s.properties.is_empty() {
                c["properties"] = props(&s.properties);
            }
            for (a, h) in &s.hashes {
                seed.update(a.as_bytes());
                seed.update(h.as_bytes());
            }
            c
        }
        None => json!({
            "type": "operating-system",
            "bom-ref": image_ref,
            "name": sys.pretty_name.clone().or(sys.distro.clone()).unwrap_or_else(|| "image".into()),
        }),
    };
    if component.get("properties").is_none() {
        if let Some(a) = &sys.arch {
            component["properties"] = json!([{ "name": "wafer:arch", "value": a }]);
        }
    }

    let (graph, truncated) = dependency_graph(&inv.packages.list);
    let mut dependencies = Vec::with_capacity(2 + pkg_refs.len() + file_refs.len());
    dependencies.push(json!({ "ref": image_ref, "dependsOn": [os_ref] }));
    dependencies.push(json!({ "ref": os_ref, "dependsOn": [] }));
    for (r, deps) in pkg_refs.iter().zip(&graph) {
        let on: Vec<&str> = deps.iter().map(|&j| pkg_refs[j].as_str()).collect();
        dependencies.push(json!({ "ref": r, "dependsOn": on }));
    }
    for r in &file_refs {
        dependencies.push(json!({ "ref": r, "dependsOn": [] }));
    }

    let mut metadata = json!({
        "tools": { "components": [{ "type": "application", "name": "wafer", "version": env!("CARGO_PKG_VERSION") }] },
        "component": component,
    });
    let mut meta_props = Vec::new();
    if let Some(a) = &sys.arch {
        meta_props.push(("wafer:arch".to_string(), a.clone()));
    }
    if truncated {
        meta_props.push((
            "wafer:dependencies-truncated".to_string(),
            format!("more than {MAX_EDGES} dependency edges or {MAX_EDGES_PER_PACKAGE} from one package; the rest are left out"),
        ));
    }
    if !meta_props.is_empty() {
        metadata["properties"] = props(&meta_props);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from(&seed.finalize())),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(manager: &str, name: &str, requires: &[&[&str]], provides: &[&str]) -> PackageInfo {
        PackageInfo {
            manager: manager.into(),
            name: name.into(),
            epoch: None,
            version: "1".into(),
            release: None,
            arch: None,
            source: None,
            vendor: None,
            license: None,
            install_time: None,
            purl: format!("pkg:generic/{name}@1"),
            files: 0,
            file_list_error: None,
            status: None,
            requires: requires
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn requirements_resolve_through_names_provides_and_alternatives() {
        let list = vec![
            pkg(
                "rpm",
                "bash",
                &[&["libc.so.6()(64bit)"], &["/bin/sh"]],
                &["/bin/sh"],
            ),
            pkg(
                "rpm",
                "glibc",
                &[&["glibc-common"]],
                &["libc.so.6()(64bit)"],
            ),
            pkg("rpm", "glibc-common", &[&["/bin/sh"], &["missing"]], &[]),
            pkg("dpkg", "debconf", &[&["perl-base"]], &["debconf-2.0"]),
            pkg(
                "dpkg",
                "x",
                &[&["nothere", "debconf-2.0", "perl-base"]],
                &[],
            ),
            pkg("dpkg", "perl-base", &[&["glibc"]], &[]),
        ];
        let (g, cut) = dependency_graph(&list);
        assert!(!cut);
        assert_eq!(g[0], vec![1], "bash: libc from glibc; /bin/sh is its own");
        assert_eq!(g[1], vec![2]);
        assert_eq!(g[2], vec![0], "file require resolved to bash");
        assert_eq!(g[3], vec![5]);
        assert_eq!(g[4], vec![3], "first installed alternative only");
        assert!(g[5].is_empty(), "no edges across package managers");
    }

    #[test]
    fn edges_are_bounded() {
        let n = 3000;
        let mut list: Vec<PackageInfo> = (0..n)
            .map(|i| pkg("rpm", &format!("p{i}"), &[], &["common"]))
            .collect();
        let reqs: Vec<Vec<String>> = (0..n).map(|i| vec![format!("p{i}")]).collect();
        for p in &mut list {
            p.requires = reqs.clone();
        }
        let (g, cut) = dependency_graph(&list[..1500]);
        assert!(cut);
        assert!(g.iter().all(|d| d.len() <= MAX_EDGES_PER_PACKAGE));
        // One hash map: a package everyone provides links to at most MAX_PROVIDERS of them.
        let one = vec![
            pkg("rpm", "q", &[&["common"]], &[]),
            list[0].clone(),
            list[1].clone(),
        ];
        let (g, _) = dependency_graph(&one);
        assert_eq!(g[0], vec![1, 2]);
    }
}
