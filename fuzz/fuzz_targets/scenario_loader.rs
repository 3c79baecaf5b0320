//! Any bytes given to the scenario loader produce a scenario or diagnostics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let dir = Path::new("/nonexistent-vdrill-fuzz");
    match vdrill::scenario::load_bytes(&dir.join("fuzz.yaml"), dir, data) {
        Ok(file) => assert!(!file.cells.is_empty()),
        Err(diags) => assert!(!diags.is_empty()),
    }
});
