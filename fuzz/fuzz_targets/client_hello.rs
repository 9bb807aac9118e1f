#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tlsfront::fuzzing::client_hello(data));
