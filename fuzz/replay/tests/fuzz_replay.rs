//! The fuzz targets (fuzz/src/targets/) in the ordinary test run, without
//! libFuzzer or an instrumented build: every seed under fuzz/corpus/<target>/
//! and every saved crash input under fuzz/regressions/<target>/ goes through
//! the target's oracle, then a fixed number of deterministic mutations of
//! them (bit flips, byte changes, inserts, deletes, duplicated slices,
//! splices, tokens of fuzz/dict/xmpp.dict). Repeatable: the seed is fixed, so
//! this never turns red by chance. Coverage-guided fuzzing is scripts/fuzz.
//!
//! A mutation that fails is written to target/tmp/fuzz_replay/; replay it
//! with the libFuzzer binary, or save it under fuzz/regressions/<target>/
//! (fuzz/README.md). `FUZZ_REPLAY_MUTATIONS=N` sets the number of mutations
//! per target, `FUZZ_REPLAY_SEED=N` explores beyond the fixed seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use xmpp_edge_fuzz::targets;

/// The fixed seed of the CI run.
const SEED: u64 = 0x5eed_f022_2e91_a7e5;

/// Mutated inputs grow no longer than this (or the longest saved input).
const MAX_LEN: usize = 4096;

/// Failures reported per target before it stops (the first one matters).
const MAX_FAILURES: usize = 3;

// The last argument is the number of mutations: a few seconds' worth per
// target in the debug test build (bosh_body runs much faster than the rest).
#[test]
fn bosh_body() {
    replay("bosh_body", targets::bosh_body::run, 30_000);
}

#[test]
fn splitter() {
    replay("splitter", targets::splitter::run, 5_000);
}

#[test]
fn ws_message() {
    replay("ws_message", targets::ws_message::run, 10_000);
}

#[test]
fn bosh_session() {
    // What the typed libFuzzer entry point calls (fuzz_targets/bosh_session.rs).
    let _: fn(targets::bosh_session::Input) = targets::bosh_session::check;
    replay("bosh_session", targets::bosh_session::run, 5_000);
}

/// The fuzz binaries decode `arbitrary` input with fuzz/Cargo.lock's version,
/// this test with ../Cargo.lock's: the same bytes must give the same input.
#[test]
fn both_lock_files_have_the_same_arbitrary() {
    let fuzz = fuzz_dir();
    for name in ["arbitrary", "derive_arbitrary"] {
        let main = locked_version(&fuzz.join("../Cargo.lock"), name);
        let own = locked_version(&fuzz.join("Cargo.lock"), name);
        assert!(main.is_some(), "{name} not in Cargo.lock");
        assert_eq!(
            main, own,
            "{name}: Cargo.lock and fuzz/Cargo.lock disagree (cargo update -p {name} --precise ...)"
        );
    }
}

fn locked_version(lock: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).unwrap();
    let entry = format!("name = \"{name}\"\nversion = \"");
    let start = text.find(&entry)? + entry.len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string())
}

/// fuzz/ (this test's package is fuzz/replay/).
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The files of a directory, by name (hidden files are libFuzzer's own).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let name = p.strip_prefix(fuzz_dir()).unwrap().display().to_string();
            (format!("fuzz/{name}"), bytes)
        })
        .collect();
    out.sort();
    out
}

/// Runs one input; the panic message (printed by the hook) is the oracle's.
fn passes(run: fn(&[u8]), input: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| run(input))).is_ok()
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

fn replay(target: &str, run: fn(&[u8]), mutations: u64) {
    let fuzz = fuzz_dir();
    let corpus = files(&fuzz.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "no seeds in fuzz/corpus/{target}/: the test would check nothing"
    );
    let inputs: Vec<_> = corpus
        .into_iter()
        .chain(files(&fuzz.join("regressions").join(target)))
        .collect();
    let started = Instant::now();
    let mut failures = Vec::new();
    for (name, bytes) in &inputs {
        if !passes(run, bytes) {
            failures.push(format!("{name} fails"));
        }
    }

    let dict = dictionary(&fuzz.join("dict/xmpp.dict"));
    let max_len = inputs
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap_or(0)
        .max(MAX_LEN);
    let mutations = env_number("FUZZ_REPLAY_MUTATIONS").unwrap_or(mutations);
    let base_seed = env_number("FUZZ_REPLAY_SEED").unwrap_or(SEED);
    let seed = base_seed ^ fnv1a(target.as_bytes());
    for i in 0..mutations {
        if failures.len() >= MAX_FAILURES {
            break;
        }
        // A stream of its own per mutation, so that each can be replayed alone.
        let mut rng = Rng(Rng(seed.wrapping_add(i)).next());
        let base = rng.below(inputs.len());
        let mut data = inputs[base].1.clone();
        let steps = 1 + rng.below(4);
        for _ in 0..steps {
            mutate(&mut data, &mut rng, &inputs, &dict, max_len);
        }
        if !passes(run, &data) {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz_replay");
            std::fs::create_dir_all(&dir).unwrap();
            let saved = dir.join(format!("{target}-{base_seed:x}-{i}"));
            std::fs::write(&saved, &data).unwrap();
            failures.push(format!(
                "mutation {i} (FUZZ_REPLAY_SEED={base_seed:#x}) of {} fails; input saved as {} ({:?})",
                inputs[base].0,
                saved.display(),
                String::from_utf8_lossy(&data[..data.len().min(300)]),
            ));
        }
    }
    println!(
        "{target}: {} saved inputs and {mutations} mutations in {:.1?}",
        inputs.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "fuzz target {target} (panic messages above):\n{}",
        failures.join("\n")
    );
}

/// One byte-level mutation, in the spirit of libFuzzer's own.
fn mutate(
    data: &mut Vec<u8>,
    rng: &mut Rng,
    inputs: &[(String, Vec<u8>)],
    dict: &[Vec<u8>],
    max_len: usize,
) {
    // Bytes that matter to XML, the ws_message script (NUL) and bosh_session
    // markers (~), plus the edges of signed and unsigned bytes.
    const INTERESTING: &[u8] = b"\0\x01\x7f\x80\xff<>/&;#'\"=: \t\r\n~]0x";
    let len = data.len();
    match rng.below(9) {
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            };
        }
        2 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(4);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            data.drain(at..at + n);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let slice = data[from..from + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, slice);
        }
        5 => {
            let other = &inputs[rng.below(inputs.len())].1;
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 if !dict.is_empty() => {
            let token = &dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, token.iter().copied());
        }
        7 if !dict.is_empty() && len > 0 => {
            let token = &dict[rng.below(dict.len())];
            let at = rng.below(len);
            let end = (at + token.len()).min(len);
            data.splice(at..end, token.iter().copied());
        }
        8 if len > 0 => data.truncate(rng.below(len)),
        _ => data.push(rng.byte()),
    }
    data.truncate(max_len);
}

/// The tokens of a libFuzzer dictionary (`"..."` or `name="..."` lines, with
/// `\\`, `\"` and `\xNN` escapes).
fn dictionary(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            panic!("{}: bad line {line:?}", path.display());
        };
        assert!(open < close, "{}: bad line {line:?}", path.display());
        let quoted = &line.as_bytes()[open + 1..close];
        let mut token = Vec::new();
        let mut i = 0;
        while i < quoted.len() {
            match (quoted[i], quoted.get(i + 1)) {
                (b'\\', Some(b'x')) => {
                    let hex = std::str::from_utf8(&quoted[i + 2..i + 4]).unwrap();
                    token.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
                (b'\\', Some(&c)) => {
                    token.push(c);
                    i += 2;
                }
                (c, _) => {
                    token.push(c);
                    i += 1;
                }
            }
        }
        out.push(token);
    }
    assert!(out.len() > 10, "{}: too few tokens", path.display());
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: tiny, and every seed (0 included) gives a good stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}
