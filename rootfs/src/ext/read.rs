//! placeholder
use super::*;
pub(super) fn read_image(_src: Arc<dyn ReadAt>, _opts: &ReadOptions) -> Result<ExtImage, ExtError> {
    Err(ExtError::Unsupported { feature: "reader".into(), why: "in progress" })
}
