//! Fuzz the tar reader: any bytes must give a tree or a typed error, never a panic, hang or
//! unbounded allocation; every regular file of a read tree must be readable within the input.
#![no_main]

use std::io::Read;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rootfs::content::HashBudget;
use rootfs::tar::{read_tar, TarOptions};
use rootfs::{NodeKind, ReadAt};

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn ReadAt> = Arc::new(data.to_vec());
    let opts = TarOptions { max_header_bytes: 64 * 1024, ..TarOptions::default() };
    if let Ok((tree, _)) = read_tar(src, &opts) {
        // Hashing within a budget: holes over it are refused before any read.
        let hashing = HashBudget::new(4 << 20, 1 << 20);
        let mut hbuf = vec![0u8; 4096];
        let mut budget: u64 = 16 << 20;
        tree.walk(|_, id| {
            if let NodeKind::Regular(c) = &tree.node(id).kind {
                let _ = c.sha256(&hashing, &mut hbuf);
                // Extents must lie inside the archive.
                for e in c.extents() {
                    assert!(e.physical + e.len <= data.len() as u64);
                }
                if c.size() <= budget {
                    budget -= c.size();
                    let mut v = Vec::new();
                    let _ = c.reader().map(|mut r| r.read_to_end(&mut v));
                }
            }
        });
    }
});
