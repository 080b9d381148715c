//! The VO administrator's signed build record: a SLSA provenance v1 Statement about a bundle's
//! digests, in a DSSE envelope written to `attestations/provenance.json` (docs/attestation.md).

use std::path::{Path, PathBuf};

use bundle::{Manifest, ManifestError};
use rootfs::safe::{Folder, SafeError};
use serde_json::json;

use crate::key::PrivateKey;
use crate::statement::{
    default_builder_id, BuildDefinition, Builder, Provenance, ResourceDescriptor, RunDetails,
    Statement, PROVENANCE_V1, WAFER_BUILD_TYPE,
};
use crate::verify::{sign_statement, wafer_subjects, MAX_JSON};

/// Why a provenance could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The bundle folder or its wafer.json cannot be read.
    #[error("{}: reading wafer.json", dir.display())]
    Read {
        /// The bundle.
        dir: PathBuf,
        /// Why.
        #[source]
        source: SafeError,
    },
    /// wafer.json does not parse.
    #[error("{}: parsing wafer.json", dir.display())]
    Manifest {
        /// The bundle.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// `attestations/provenance.json` cannot be written (a link, a full disk, ...).
    #[error("{}: writing attestations/provenance.json", dir.display())]
    Write {
        /// The bundle.
        dir: PathBuf,
        /// Why.
        #[source]
        source: SafeError,
    },
}

/// The provenance Statement of the bundle whose `wafer.json` is `manifest_bytes`: its subjects
/// are the bundle's digests; the recipe, its inputs and the base are the resolved dependencies.
/// `builder_id` is `builder.id` (default [`default_builder_id`] of the VO and `key`'s id);
/// `tool_version` is recorded as `builder.version.wafer`.
pub fn provenance_statement(
    manifest_bytes: &[u8],
    m: &Manifest,
    key: &PrivateKey,
    builder_id: Option<&str>,
    tool_version: &str,
) -> Statement {
    let mut deps = Vec::new();
    if !m.recipe.sha256.is_empty() {
        deps.push(ResourceDescriptor::new(
            "recipe",
            &[("sha256", m.recipe.sha256.clone())],
        ));
    }
    if !m.recipe.inputs_sha256.is_empty() {
        deps.push(ResourceDescriptor::new(
            "recipe-inputs",
            &[("sha256", m.recipe.inputs_sha256.clone())],
        ));
    }
    if !m.base.sha256.is_empty() {
        deps.push(ResourceDescriptor::new(
            &format!("base:{}", m.base.kind),
            &[("sha256", m.base.sha256.clone())],
        ));
    }
    let prov = Provenance {
        build_definition: BuildDefinition {
            build_type: WAFER_BUILD_TYPE.to_string(),
            external_parameters: json!({ "name": m.name, "version": m.version, "vo": m.vo }),
            internal_parameters: Some(json!({ "source_date_epoch": m.source_date_epoch })),
            resolved_dependencies: deps,
        },
        run_details: RunDetails {
            builder: Builder {
                id: builder_id
                    .map(str::to_string)
                    .unwrap_or_else(|| default_builder_id(&m.vo, &key.public().keyid())),
                version: Some([("wafer".to_string(), tool_version.to_string())].into()),
            },
            metadata: None,
        },
    };
    Statement::new(wafer_subjects(manifest_bytes, m), PROVENANCE_V1, &prov)
}

/// Signs the provenance of the bundle in `dir` with `key` and writes it to
/// `attestations/provenance.json`, never through a link (created relative to the bundle's handle,
/// a temporary file renamed into place). Returns the file's path.
pub fn sign_bundle(
    dir: &Path,
    key: &PrivateKey,
    builder_id: Option<&str>,
    tool_version: &str,
) -> Result<PathBuf, ProvenanceError> {
    let read = |source| ProvenanceError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let folder = Folder::open(dir).map_err(read)?;
    let manifest_bytes = folder.read_file("wafer.json", MAX_JSON).map_err(read)?;
    let m = Manifest::from_json(&manifest_bytes).map_err(|source| ProvenanceError::Manifest {
        dir: dir.to_path_buf(),
        source,
    })?;
    let st = provenance_statement(&manifest_bytes, &m, key, builder_id, tool_version);
    let env = sign_statement(&st, key);
    folder
        .create_dir("attestations")
        .and_then(|d| d.write_file("provenance.json", &env))
        .map_err(|source| ProvenanceError::Write {
            dir: dir.to_path_buf(),
            source,
        })
}
