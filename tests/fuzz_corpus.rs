//! Replays the committed fuzz corpus (and any saved crash) through the fuzz
//! targets on stable Rust, so CI keeps every input the fuzzer ever found
//! interesting without needing nightly.

use std::path::Path;

#[test]
fn corpus_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in tlsfront::fuzzing::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                // A fuzzer running beside the tests may remove files as it goes.
                let Ok(data) = std::fs::read(&path) else {
                    continue;
                };
                let result = std::panic::catch_unwind(|| target(&data));
                assert!(
                    result.is_ok(),
                    "{name}: {} breaks an invariant",
                    path.display()
                );
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no corpus for fuzz target {name}");
        replayed += inputs;
    }
    println!("replayed {replayed} fuzz inputs");
}
