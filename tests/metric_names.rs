//! The README's metrics table, the docs, the Helm chart's dashboard and
//! autoscaling metric, and the soak test's checks name only metrics that
//! xmpp-edge registers, so a renamed metric cannot leave a dead panel, a
//! scaler without input or a wrong row behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// Every `xmpp_edge_*` token in `text`.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("xmpp_edge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The names registered in src/metrics.rs (its string literals).
fn registered(root: &Path) -> BTreeSet<String> {
    let source = std::fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("xmpp_edge_"))
        .map(str::to_owned)
        .collect()
}

/// A histogram's series carry suffixes; the README writes `a` / `_b` for two names.
fn known(name: &str, names: &BTreeSet<String>) -> bool {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    names.contains(name) || names.contains(base)
}

#[test]
fn docs_chart_and_soak_name_only_registered_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = registered(root);
    assert!(names.len() > 20, "found only {names:?}");
    for file in [
        "helm/xmpp-edge/dashboards/xmpp-edge.json",
        "helm/xmpp-edge/values.yaml",
        "README.md",
        "docs/cluster.md",
        "docs/kubernetes.md",
        "loadtest/src/soak.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used = metric_tokens(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = used.iter().filter(|n| !known(n, &names)).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics that src/metrics.rs does not register: {unknown:?}"
        );
    }
}
