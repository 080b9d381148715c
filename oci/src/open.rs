//! [`open_repo`]: the store a reference names (a registry repository or a layout folder).

use crate::reference::{Location, Reference};
use crate::repo::Repo;
use crate::{Layout, OciError, Registry, RegistryOptions};

/// Opens the store a reference names.
pub fn open_repo(
    r: &Reference,
    opts: &RegistryOptions,
    for_push: bool,
) -> Result<Box<dyn Repo>, OciError> {
    Ok(match &r.location {
        Location::Registry { host, repo } => Box::new(Registry::open(host, repo, opts, for_push)?),
        Location::Layout { path } => Box::new(if for_push {
            Layout::create(path)?
        } else {
            Layout::open(path)?
        }),
    })
}
