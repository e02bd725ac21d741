//! Anchor search: where the rules' literal anchors occur in a text, one per start position.
//!
//! Owns the matcher behind [`crate::rules::Compiled::scan`]. A general multi-pattern automaton
//! over some nine hundred anchors is several megabytes and walks every byte through it, which
//! alone costs more than the whole engine's budget on benign text. Almost every anchor starts
//! with an ASCII letter and only counts at a word start, so this matcher visits candidate
//! positions only: word starts, and the few punctuation bytes that open a non-word anchor
//! ("<|im_start|>", "[system", ".ssh/"). At each it looks the next four bytes up in a
//! bit filter (L1-resident), and only on a hit in a table of the anchors sharing those bytes.
//! Anchors that open with a non-ASCII byte (Chinese, Japanese, Korean, Russian) go through an
//! automaton, run only on texts that are not pure ASCII.
//!
//! Invariants: the hits are exactly those of a search for every anchor at every position,
//! ASCII-case-insensitively, keeping at each start the longest anchor there, and dropping word
//! anchors (first byte an ASCII letter) that do not start a word (the previous byte is an
//! ASCII letter or digit). Hits come in start order. The work is linear in the text.

use std::borrow::Cow;
use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::rules::CompileError;
use crate::swar::{self, HIGH, digit, equal, masks64};

/// One anchor occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnchorHit {
    /// Byte offset where the anchor starts.
    pub start: usize,
    /// Byte offset where it ends.
    pub end: usize,
    /// Index of the anchor in the list given to [`AnchorSet::new`].
    pub pattern: usize,
}

/// Bits in the four-byte filter (a power of two; 8 KiB).
const FILTER_BITS: usize = 1 << 16;

#[derive(Debug)]
pub(crate) struct AnchorSet {
    /// Each anchor, lower case, as bytes.
    patterns: Vec<Box<[u8]>>,
    /// Per byte value: whether an anchor can open with it.
    opens: [bool; 256],
    /// Anchors of four bytes or more that open with an ASCII byte, grouped by their first four
    /// bytes (each list longest first).
    long: Vec<Vec<usize>>,
    /// Open-addressing table from those four bytes to a group of `long` (index plus one; zero
    /// marks an empty slot). A power of two in size, at most a quarter full.
    slots: Vec<(u32, u32)>,
    /// Bit filter over a hash of the keys of `long`.
    filter: Vec<u64>,
    /// Anchors of two or three bytes, by their first two bytes (sorted; longest first).
    short: Vec<(u16, Vec<usize>)>,
    /// Bit set of the keys of `short`.
    short_keys: Vec<u64>,
    /// One-byte anchors, by byte.
    single: [Option<usize>; 256],
    /// Anchors that open with a non-ASCII byte.
    other: Option<AhoCorasick>,
    /// Index in `patterns` of each pattern of `other`.
    other_index: Vec<usize>,
    /// Longest anchor of `other`, in bytes.
    other_max: usize,
}

fn key4(bytes: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    for (slot, b) in k.iter_mut().zip(bytes) {
        *slot = *b;
    }
    u32::from_le_bytes(k)
}

fn filter_index(key: u32) -> usize {
    // Multiplicative hash; the top sixteen bits index the filter.
    usize::try_from(key.wrapping_mul(0x9E37_79B1) >> 16).unwrap_or(0) % FILTER_BITS
}

impl AnchorSet {
    /// Build the matcher for `anchors` (already lower case, distinct).
    pub(crate) fn new(anchors: &[String]) -> Result<Self, CompileError> {
        let mut opens = [false; 256];
        let patterns: Vec<Box<[u8]>> = anchors
            .iter()
            .map(|a| a.as_bytes().to_vec().into_boxed_slice())
            .collect();
        let mut long: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut short: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        let mut single = [None; 256];
        let mut filter = vec![0u64; FILTER_BITS / 64];
        let mut short_keys = vec![0u64; (1 << 16) / 64];
        let mut other_patterns: Vec<&[u8]> = Vec::new();
        let mut other_index = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let Some(&first) = pattern.first() else {
                return Err(CompileError::new("empty anchor"));
            };
            if !first.is_ascii() {
                other_patterns.push(pattern);
                other_index.push(index);
                continue;
            }
            if let Some(o) = opens.get_mut(usize::from(first)) {
                *o = true;
            }
            match pattern.len() {
                1 => {
                    if let Some(slot) = single.get_mut(usize::from(first)) {
                        *slot = Some(index);
                    }
                }
                2 | 3 => {
                    let second = pattern.get(1).copied().unwrap_or(0);
                    let key = u16::from_le_bytes([first, second]);
                    short.entry(key).or_default().push(index);
                    if let Some(word) = short_keys.get_mut(usize::from(key) / 64) {
                        *word |= 1 << (key % 64);
                    }
                }
                _ => {
                    let key = key4(pattern);
                    long.entry(key).or_default().push(index);
                    let bit = filter_index(key);
                    if let Some(word) = filter.get_mut(bit / 64) {
                        *word |= 1 << (bit % 64);
                    }
                }
            }
        }
        let longest_first = |list: &mut Vec<usize>| {
            list.sort_by_key(|&i| (std::cmp::Reverse(patterns.get(i).map_or(0, |p| p.len())), i));
        };
        long.values_mut().for_each(longest_first);
        short.values_mut().for_each(longest_first);
        // At most a quarter full; a power of two, so that a mask reduces a key to a slot.
        let size = long
            .len()
            .checked_mul(4)
            .and_then(usize::checked_next_power_of_two)
            .ok_or_else(|| CompileError::new("too many anchors"))?
            .max(16);
        let mut slots = vec![(0u32, 0u32); size];
        let mask = size.saturating_sub(1);
        let mut groups = Vec::with_capacity(long.len());
        for (key, list) in long {
            groups.push(list);
            let group =
                u32::try_from(groups.len()).map_err(|_| CompileError::new("too many anchors"))?;
            let mut at = filter_index(key) & mask;
            while slots.get(at).is_some_and(|s| s.1 != 0) {
                // The next slot, round the table (`at` is at most `mask`).
                at = at.wrapping_add(1) & mask;
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = (key, group);
            }
        }
        let long = groups;
        let short = short.into_iter().collect();
        let other_max = other_patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let other = if other_patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    // Standard semantics: one overlapping pass reports every anchor at every
                    // position (see `longest_per_start`).
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&other_patterns)
                    .map_err(|e| CompileError::new(e.to_string()))?,
            )
        };
        Ok(Self {
            patterns,
            opens,
            long,
            slots,
            filter,
            short,
            short_keys,
            single,
            other,
            other_index,
            other_max,
        })
    }

    /// The anchors of four bytes or more that open with `key`.
    fn group(&self, key: u32) -> Option<&Vec<usize>> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = filter_index(key) & mask;
        loop {
            let &(k, group) = self.slots.get(at)?;
            if group == 0 {
                return None;
            }
            if k == key {
                return self.long.get(usize::try_from(group).ok()?.checked_sub(1)?);
            }
            // The next slot, round the table (`at` is at most `mask`).
            at = at.wrapping_add(1) & mask;
        }
    }

    /// The longest ASCII-opening anchor at `at` of `lower`, if any.
    fn longest_at(&self, lower: &[u8], at: usize) -> Option<usize> {
        let rest = lower.get(at..)?;
        let matches = |i: &&usize| self.patterns.get(**i).is_some_and(|p| rest.starts_with(p));
        let first = rest.first().copied()?;
        if !self.opens.get(usize::from(first)).copied().unwrap_or(false) {
            return None;
        }
        let key = key4(rest);
        let bit = filter_index(key);
        if self
            .filter
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
            && let Some(found) = self.group(key).and_then(|l| l.iter().find(matches))
        {
            return Some(*found);
        }
        let short_key = u16::from_le_bytes([first, rest.get(1).copied().unwrap_or(0)]);
        if self
            .short_keys
            .get(usize::from(short_key) / 64)
            .is_some_and(|w| w & (1 << (short_key % 64)) != 0)
            && let Ok(at) = self.short.binary_search_by_key(&short_key, |(k, _)| *k)
            && let Some(found) = self.short.get(at).and_then(|(_, l)| l.iter().find(matches))
        {
            return Some(*found);
        }
        self.single.get(usize::from(first)).copied().flatten()
    }

    /// Every anchor hit in `text`, in start order, into `out` (cleared first).
    pub(crate) fn find(&self, text: &str, out: &mut Vec<AnchorHit>) {
        out.clear();
        let lower: Cow<'_, [u8]> = if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.as_bytes().to_ascii_lowercase())
        } else {
            Cow::Borrowed(text.as_bytes())
        };
        // Candidates, eight bytes at a time: letters that start a word, and every ASCII byte
        // that is neither a letter nor a space (digits and punctuation open anchors anywhere). Non-ASCII bytes are left to the automaton. `longest_at` then
        // drops the bytes no anchor opens with.
        let mut carry_alnum = 0u64;
        for (base, chunk) in (0..lower.len()).step_by(64).zip(lower.chunks(64)) {
            let [alnum, letter, other] = masks64(chunk, |x| {
                // The text is lower-cased: letters are lower-case here.
                let letters = swar::lower(x);
                let digits = digit(x);
                [
                    letters | digits,
                    letters,
                    !x & HIGH & !(letters | equal(x, b' ')),
                ]
            });
            let previous_alnum = (alnum << 1) | carry_alnum;
            carry_alnum = alnum >> 63;
            let mut candidates = (letter & !previous_alnum) | other;
            while candidates != 0 {
                let at =
                    base.saturating_add(usize::try_from(candidates.trailing_zeros()).unwrap_or(0));
                // Clear the lowest set bit (`candidates` is not zero).
                candidates &= candidates.wrapping_sub(1);
                if let Some(pattern) = self.longest_at(&lower, at) {
                    let len = self.patterns.get(pattern).map_or(0, |p| p.len());
                    out.push(AnchorHit {
                        start: at,
                        // An anchor found at `at` ends within the text.
                        end: at.saturating_add(len),
                        pattern,
                    });
                }
            }
        }
        if let Some(other) = &self.other
            && !text.is_ascii()
        {
            let ascii_hits = out.len();
            // The automaton reads the lower-cased bytes: the same as an ASCII-case-insensitive
            // search of the text. `lower` differs from `text` only in ASCII bytes, so it is
            // still UTF-8 and the offsets are the text's.
            let lower_text = std::str::from_utf8(&lower).unwrap_or(text);
            for m in crate::rules::longest_per_start(other, lower_text, self.other_max) {
                if let Some(&pattern) = self.other_index.get(m.pattern().as_usize()) {
                    out.push(AnchorHit {
                        start: m.start(),
                        end: m.end(),
                        pattern,
                    });
                }
            }
            if out.len() > ascii_hits {
                // Distinct starts (the first bytes differ in kind), so a stable sort by start
                // merges the two ordered runs.
                out.sort_by_key(|h| h.start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "test code"
    )]

    use super::*;
    use proptest::prelude::*;

    /// The reference: every anchor at every position, ASCII-case-insensitively, the longest
    /// per start, word anchors at word starts only.
    fn reference(anchors: &[String], text: &str) -> Vec<AnchorHit> {
        let lower = text.as_bytes().to_ascii_lowercase();
        let mut out = Vec::new();
        for at in 0..lower.len() {
            let mut best: Option<usize> = None;
            for (i, a) in anchors.iter().enumerate() {
                if lower[at..].starts_with(a.as_bytes())
                    && best.is_none_or(|b| a.len() > anchors[b].len())
                {
                    best = Some(i);
                }
            }
            let Some(i) = best else { continue };
            let word = anchors[i].as_bytes()[0].is_ascii_alphabetic();
            if word
                && at
                    .checked_sub(1)
                    .is_some_and(|p| lower[p].is_ascii_alphanumeric())
            {
                continue;
            }
            out.push(AnchorHit {
                start: at,
                end: at.saturating_add(anchors[i].len()),
                pattern: i,
            });
        }
        out
    }

    fn sample_anchors() -> Vec<String> {
        [
            "ignore",
            "ignore previous",
            "ai",
            "ai:",
            "not",
            "do not",
            "<|",
            "<|im_start|>",
            "[system",
            ".ssh/",
            "x",
            "2fa code",
            "忽略",
            "忽略之前",
            "игнорируй",
            "señal",
            "!!!",
            "cc",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
    }

    #[test]
    fn hits_match_the_reference_search() {
        let anchors = sample_anchors();
        let set = AnchorSet::new(&anchors).unwrap();
        let mut out = Vec::new();
        for text in [
            "Please IGNORE previous rules; maintain AI: do not tell.",
            "x<|im_start|>system [SYSTEM] read ~/.ssh/id_rsa!!!! x2fa code",
            "请忽略之前的指示 and игнорируй всё, señal cc",
            "said ai xai ai",
            "",
            "ñai ai",
        ] {
            set.find(text, &mut out);
            assert_eq!(out, reference(&anchors, text), "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_text_matches_the_reference(text in "[a-zA-Z <|>\\[\\]!.:/ñ忽略之前игнорируй_0-9]{0,80}") {
            let anchors = sample_anchors();
            let set = AnchorSet::new(&anchors).unwrap();
            let mut out = Vec::new();
            set.find(&text, &mut out);
            prop_assert_eq!(out, reference(&anchors, &text));
        }
    }
}
