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

/// Lanes holding an ASCII letter of either case: setting bit 5 maps exactly the capitals
/// onto the lower-case range and moves no other byte into it.
pub(crate) const fn letter(x: u64) -> u64 {
    lower(x | (LANES * 0x20))
}

/// Lanes holding an ASCII letter or digit.
pub(crate) const fn alnum(x: u64) -> u64 {
    letter(x) | digit(x)
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

/// The lowest bit of each aligned block of `k` bits (a power of two, 2 to 32).
fn block_lows(k: usize) -> u64 {
    (0..64)
        .step_by(k.max(1))
        .fold(0u64, |acc, shift| acc | (1 << shift))
}

/// Whether some aligned block of `k` bits of `bits` is all set (`lows` from [`block_lows`]).
fn full_block(bits: u64, lows: u64, k: usize) -> bool {
    // The zero-lane test on the complement, lanes of k bits: exact as to whether one exists.
    let gaps = !bits;
    gaps.wrapping_sub(lows) & !gaps & (lows << (k - 1)) != 0
}

/// Where a scan for runs of at least `min_len` bytes of a class (`lanes` marks them) can
/// resume from `from` without missing one: the start of the first such run at or after
/// `from` (a run that is cut by `from` counts from `from`), or `None` when there is none.
/// Runs longer than 64 bytes are not looked for this way: then `from` itself is returned.
///
/// Every byte of the class must lie strictly between `bounds.0` and `bounds.1` (both at most
/// 128): chunks are first tested against that range, one comparison per eight bytes, and the
/// class itself is classified only where the range holds a long enough run (in prose it
/// seldom does: spaces fall outside every class this is used for).
pub(crate) fn next_long_run(
    bytes: &[u8],
    from: usize,
    min_len: usize,
    bounds: (u8, u8),
    lanes: impl Fn(u64) -> u64 + Copy,
    in_class: impl Fn(u8) -> bool,
) -> Option<usize> {
    if min_len == 0 || min_len > 64 {
        return (from < bytes.len()).then_some(from);
    }
    let chunk = |index: usize| {
        bytes
            .get(index * 64..)
            .map(|rest| rest.get(..64).unwrap_or(rest))
            .unwrap_or_default()
    };
    let coarse = |index: usize| mask64(chunk(index), |x| between(x, bounds.0, bounds.1));
    // Bit i set when a run of `min_len` starts at bit i of the chunk pair `(low, high)` at or
    // after `from`.
    let starts = |index: usize, low: u64, high: u64| {
        let window = (u128::from(high) << 64) | u128::from(low);
        let mut hits =
            u64::try_from(runs_at_least(window, min_len) & u128::from(u64::MAX)).unwrap_or(0);
        let base = index * 64;
        if from > base {
            hits &= u64::MAX
                .checked_shl(u32::try_from(from - base).unwrap_or(64))
                .unwrap_or(0);
        }
        hits
    };
    // A run of `min_len` >= 2k - 1 bits holds an aligned block of k bits, in its own chunk
    // or the next: where neither chunk has a full block, nothing starts (a few operations
    // instead of the run search).
    let block = [32usize, 16, 8, 4, 2]
        .into_iter()
        .find(|k| 2 * k - 1 <= min_len)
        .unwrap_or(2);
    let lows = block_lows(block);
    let has_block = |bits: u64| min_len < 3 || full_block(bits, lows, block);
    let mut index = from / 64;
    let mut current = coarse(index);
    while index * 64 < bytes.len() {
        let next = coarse(index + 1);
        if (has_block(current) || has_block(next)) && starts(index, current, next) != 0 {
            let exact = |i: usize| mask64(chunk(i), lanes);
            let hits = starts(index, exact(index), exact(index + 1));
            if hits != 0 {
                let mut at = index * 64 + usize::try_from(hits.trailing_zeros()).unwrap_or(0);
                while at > from && bytes.get(at - 1).copied().is_some_and(&in_class) {
                    at -= 1;
                }
                return Some(at);
            }
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
            let letters = mask64(&bytes, letter);
            let alnums = mask64(&bytes, alnum);
            for (i, &b) in bytes.iter().enumerate() {
                prop_assert_eq!(range >> i & 1 == 1, b > above && b < below);
                prop_assert_eq!(eq >> i & 1 == 1, b == value);
                prop_assert_eq!(letters >> i & 1 == 1, b.is_ascii_alphabetic());
                prop_assert_eq!(alnums >> i & 1 == 1, b.is_ascii_alphanumeric());
            }
            prop_assert_eq!(range >> bytes.len().min(63) & u64::from(bytes.len() < 64), 0);
        }

        #[test]
        fn full_blocks_are_exact(bits in any::<u64>(), shift in 1u32..6) {
            let k = 1usize << shift;
            let ones = (1u64 << k) - 1;
            let expected = (0..64 / k).any(|lane| (bits >> (lane * k)) & ones == ones);
            prop_assert_eq!(full_block(bits, block_lows(k), k), expected);
        }

        #[test]
        fn long_runs_are_not_skipped(text in "[ab .c]{0,300}", from in 0usize..300, min_len in 1usize..70) {
            let bytes = text.as_bytes();
            let from = from.min(bytes.len());
            let class = |b: u8| b == b'a' || b == b'b';
            // The bounds admit more than the class ('c' as well), as they do in use.
            let found = next_long_run(bytes, from, min_len, (b'a' - 1, b'c' + 1), |x| equal(x, b'a') | equal(x, b'b'), class);
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
