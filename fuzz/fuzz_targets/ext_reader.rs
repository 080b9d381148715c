//! Fuzz the ext2/3/4 reader: read_image over the input, then walk the tree and read every
//! regular file's content (capped), so content maps built from hostile extents are exercised.
#![no_main]

use std::io::Read;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rootfs::content::HashBudget;
use rootfs::ext::{read_image, ReadOptions};
use rootfs::{NodeKind, ReadAt};

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let Ok(image) = read_image(src, &ReadOptions { verify_checksums: true, strict_checksums: false }) else {
        return;
    };
    let tree = &image.tree;
    let mut budget: u64 = 4 << 20;
    // Hashing within a budget: holes (a corrupt i_size) over it are refused before any read.
    let hashing = HashBudget::new(4 << 20, 1 << 20);
    let mut hbuf = vec![0u8; 4096];
    tree.walk(|_, id| {
        if let NodeKind::Regular(c) = &tree.node(id).kind {
            let _ = c.sha256(&hashing, &mut hbuf);
            if let Ok(rd) = c.reader() {
                let mut buf = Vec::new();
                let _ = rd.take(budget.min(1 << 20)).read_to_end(&mut buf);
                budget = budget.saturating_sub(buf.len() as u64 + 1);
            }
        }
    });
});
