//! The module rules of DEVELOPERS.md, checked: protocol cores are sans-IO.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Files and folders that must not do I/O or read the clock themselves.
const PURE: &[&str] = &[
    "src/xml",
    "src/bosh",
    "src/websocket",
    "src/stanza.rs",
    "src/upstream/mod.rs",
    "src/upstream/negotiate.rs",
];

const FORBIDDEN: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "std::net",
    "Instant::now",
    "SystemTime",
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn protocol_cores_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for pure in PURE {
        rust_files(&root.join(pure), &mut files);
    }
    assert!(
        files.len() >= 10,
        "expected the pure modules, found {files:?}"
    );
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O in a pure module:\n{}",
        violations.join("\n")
    );
}
