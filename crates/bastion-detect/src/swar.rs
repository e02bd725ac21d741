//! Byte classification eight bytes at a time in a `u64` ("SIMD within a register"), for the
//! scanners' skip loops over benign text. Safe code only: the crate forbids `unsafe`, and these
//! plain integer operations compile to a handful of instructions per eight bytes.
//!
//! Invariant: every function is exact per byte lane (no carry or borrow crosses lanes).

/// Byte lanes of a word, for the eight-bytes-at-a-time classification.
pub(crate) const LANES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte lane of `x` holding an ASCII byte strictly between `above` and
/// `below` (both at most 128). Exact per lane: no carry crosses lanes.
pub(crate) const fn between(x: u64, above: u8, below: u8) -> u64 {
    let low7 = x & (LANES * 0x7f);
    let under = (LANES * (127 + below as u64)) - low7;
    let over = low7 + LANES * (127 - above as u64);
    under & over & !x & HIGH
}

/// The high bit of each byte lane of `x` equal to `value` (exact per lane).
pub(crate) const fn equal(x: u64, value: u8) -> u64 {
    let y = x ^ (LANES * value as u64);
    !(((y & (LANES * 0x7f)) + LANES * 0x7f) | y | (LANES * 0x7f))
}

/// Lanes holding an ASCII lower-case letter.
pub(crate) const fn lower(x: u64) -> u64 {
    between(x, b'a' - 1, b'z' + 1)
}

/// Lanes holding an ASCII capital.
pub(crate) const fn upper(x: u64) -> u64 {
    between(x, b'A' - 1, b'Z' + 1)
}

/// Lanes holding an ASCII digit.
pub(crate) const fn digit(x: u64) -> u64 {
    between(x, b'0' - 1, b'9' + 1)
}

/// Lanes holding an ASCII letter or digit.
pub(crate) const fn alnum(x: u64) -> u64 {
    lower(x) | upper(x) | digit(x)
}

/// Lane high bits to a byte mask (lane k to bit k).
pub(crate) const fn pack(lanes: u64) -> u64 {
    (lanes >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Eight bytes as a little-endian word (zero-padded past the end of `bytes`).
#[inline]
pub(crate) fn key8(bytes: &[u8]) -> u64 {
    if let Some(Ok(full)) = bytes.get(..8).map(<[u8; 8]>::try_from) {
        return u64::from_le_bytes(full);
    }
    let mut k = [0u8; 8];
    for (slot, b) in k.iter_mut().zip(bytes) {
        *slot = *b;
    }
    u64::from_le_bytes(k)
}

/// For each of `N` classes, bit k set when byte k of `bytes` (at most 64 of them) is in a lane
/// that `classify` marks for that class.
#[inline]
pub(crate) fn masks64<const N: usize>(
    bytes: &[u8],
    classify: impl Fn(u64) -> [u64; N],
) -> [u64; N] {
    let mut masks = [0u64; N];
    for (index, word) in bytes.chunks(8).enumerate() {
        let lanes = classify(key8(word));
        for (mask, lane) in masks.iter_mut().zip(lanes) {
            *mask |= pack(lane) << (index * 8);
        }
    }
    if bytes.len() < 64 {
        for mask in &mut masks {
            *mask &= (1u64 << bytes.len()) - 1;
        }
    }
    masks
}

/// [`masks64`] for one class.
#[inline]
pub(crate) fn mask64(bytes: &[u8], classify: impl Fn(u64) -> u64) -> u64 {
    let [mask] = masks64(bytes, |x| [classify(x)]);
    mask
}

/// Bit i set when bits i..i+len of `bits` are all set.
fn runs_at_least(bits: u128, len: usize) -> u128 {
    // Doubling: `span` holds "the next `width` bits are set"; the binary digits of `len` pick
    // which spans to chain.
    let mut acc = !0u128;
    let mut offset = 0;
    let mut span = bits;
    let mut width = 1;
    let mut rest = len;
    while rest > 0 {
        if rest & 1 == 1 {
            acc &= span.checked_shr(offset).unwrap_or(0);
            offset += width;
        }
        span &= span.checked_shr(width).unwrap_or(0);
        width *= 2;
        rest >>= 1;
    }
    acc
}

/// Where a scan for runs of at least `min_len` bytes of a class (`lanes` marks them) can
/// resume from `from` without missing one: the start of the first such run at or after
/// `from` (a run that is cut by `from` counts from `from`), or `None` when there is none.
/// Runs longer than 64 bytes are not looked for this way: then `from` itself is returned.
pub(crate) fn next_long_run(
    bytes: &[u8],
    from: usize,
    min_len: usize,
    lanes: impl Fn(u64) -> u64 + Copy,
    in_class: impl Fn(u8) -> bool,
) -> Option<usize> {
    if min_len == 0 || min_len > 64 {
        return (from < bytes.len()).then_some(from);
    }
    let chunk_mask = |index: usize| {
        bytes
            .get(index * 64..)
            .map_or(0, |rest| mask64(rest.get(..64).unwrap_or(rest), lanes))
    };
    let mut index = from / 64;
    let mut current = chunk_mask(index);
    while index * 64 < bytes.len() {
        let next = chunk_mask(index + 1);
        let window = (u128::from(next) << 64) | u128::from(current);
        let mut hits =
            u64::try_from(runs_at_least(window, min_len) & u128::from(u64::MAX)).unwrap_or(0);
        let base = index * 64;
        if from > base {
            hits &= u64::MAX
                .checked_shl(u32::try_from(from - base).unwrap_or(64))
                .unwrap_or(0);
        }
        if hits != 0 {
            let mut at = base + usize::try_from(hits.trailing_zeros()).unwrap_or(0);
            while at > from && bytes.get(at - 1).copied().is_some_and(&in_class) {
                at -= 1;
            }
            return Some(at);
        }
        current = next;
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, reason = "test code")]

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lanes_are_exact(bytes in proptest::collection::vec(any::<u8>(), 0..64), above in 0u8..128, width in 1u8..64, value in any::<u8>()) {
            let below = above.saturating_add(width).min(128);
            let range = mask64(&bytes, |x| between(x, above, below));
            let eq = mask64(&bytes, |x| equal(x, value));
            for (i, &b) in bytes.iter().enumerate() {
                prop_assert_eq!(range >> i & 1 == 1, b > above && b < below);
                prop_assert_eq!(eq >> i & 1 == 1, b == value);
            }
            prop_assert_eq!(range >> bytes.len().min(63) & u64::from(bytes.len() < 64), 0);
        }

        #[test]
        fn long_runs_are_not_skipped(text in "[ab .]{0,300}", from in 0usize..300, min_len in 1usize..70) {
            let bytes = text.as_bytes();
            let from = from.min(bytes.len());
            let class = |b: u8| b == b'a' || b == b'b';
            let found = next_long_run(bytes, from, min_len, |x| equal(x, b'a') | equal(x, b'b'), class);
            // Reference: the first maximal run (cut at `from`) of at least `min_len`.
            let mut expected = None;
            let mut i = from;
            while i < bytes.len() {
                if !class(bytes[i]) { i += 1; continue; }
                let start = i;
                while i < bytes.len() && class(bytes[i]) { i += 1; }
                if i - start >= min_len { expected = Some(start); break; }
            }
            if min_len > 64 {
                prop_assert_eq!(found, (from < bytes.len()).then_some(from));
            } else {
                prop_assert_eq!(found, expected);
            }
        }
    }
}
