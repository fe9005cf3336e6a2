//! Sequence-numbered chat messages: the test suites' proof that nothing was
//! lost, duplicated or reordered (UP-60).

/// The sequence numbers of the `<body>tag-N</body>` messages in `text`.
pub fn numbers(text: &str, tag: &str) -> Vec<u64> {
    let needle = format!("<body>{tag}-");
    text.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &text[at + needle.len()..];
            rest[..rest.find('<')?].parse().ok()
        })
        .collect()
}

/// A chat message to `to` whose body is `tag-n`.
pub fn numbered(to: &str, tag: &str, n: u64) -> String {
    format!("<message to='{to}' type='chat' xmlns='jabber:client'><body>{tag}-{n}</body></message>")
}

/// Panics unless `seen` is exactly `0..count` (lost, duplicated or reordered otherwise).
pub fn assert_exactly_once_in_order(who: &str, seen: &[u64], count: u64) {
    if seen.len() as u64 == count && seen.iter().copied().eq(0..count) {
        return;
    }
    let mut sorted = seen.to_vec();
    sorted.sort_unstable();
    let dups = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    let missing = (0..count)
        .filter(|n| sorted.binary_search(n).is_err())
        .count();
    let first_bad = seen
        .iter()
        .enumerate()
        .find(|(i, n)| **n != *i as u64)
        .map(|(i, n)| (i, *n));
    panic!(
        "{who}: {} received, {dups} duplicated, {missing} missing, first out of place {first_bad:?}",
        seen.len()
    );
}
