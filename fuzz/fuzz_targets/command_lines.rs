#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tlsfront::fuzzing::command_lines(data));
