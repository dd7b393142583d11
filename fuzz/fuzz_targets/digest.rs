#![no_main]
//! See `kage::fuzzing::digest` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kage::fuzzing::digest(data));
