//! Work split across threads with the results kept in order: reading a `Packages` index is
//! tens of thousands of independent stanzas, and every build reads one.

use std::ops::Range;

/// `text` cut into at most `count` contiguous ranges of about equal length, each cut after the
/// line break before a blank line: no deb822 paragraph is split, and a byte after `\n` always
/// starts a character.
pub(crate) fn paragraph_aligned_parts(text: &str, count: usize) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for k in 1..count.max(1) {
        let target = (text.len() * k / count).max(start);
        let Some(blank) = text.as_bytes()[target..]
            .windows(2)
            .position(|pair| pair == b"\n\n")
        else {
            break;
        };
        let cut = target + blank + 1;
        parts.push(start..cut);
        start = cut;
    }
    parts.push(start..text.len());
    parts
}

/// `work` of each item, each on a thread of its own, in the items' order.
pub(crate) fn in_order<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        threads
            .into_iter()
            .map(|thread| match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Threads to split such work into: one per core.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
