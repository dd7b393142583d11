#![no_main]
//! See `kage::fuzzing::compare` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kage::fuzzing::compare(data));
