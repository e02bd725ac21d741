//! Byte classification eight bytes at a time in a `u64` ("SIMD within a register"), for the
//! scanners' skip loops over benign text. Safe code only: the crate forbids `unsafe`, and these
//! plain integer operations compile to a handful of instructions per eight bytes.
//!
//! Invariant: every function is exact per byte lane (no carry or borrow crosses lanes).

/// Byte lanes of a word, for the eight-bytes-at-a-time classification.
pub(crate) const LANES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;
/// The low seven bits of every lane.
const LOW7: u64 = LANES * 0x7f;

/// The high bit of each byte lane of `x` holding an ASCII byte strictly between `above` and
/// `below` (both at most 128). Exact per lane: no carry crosses lanes.
///
/// Lane arithmetic: `wrapping_*` because the word is eight independent lanes, not a number.
/// With both bounds at most 128 no lane over- or underflows, so the word never wraps either.
pub(crate) const fn between(x: u64, above: u8, below: u8) -> u64 {
    let low7 = x & LOW7;
    let under = LANES
        .wrapping_mul(127u64.wrapping_add(below as u64))
        .wrapping_sub(low7);
    let over = low7.wrapping_add(LANES.wrapping_mul(127u64.wrapping_sub(above as u64)));
    under & over & !x & HIGH
}

/// The high bit of each byte lane of `x` equal to `value` (exact per lane).
pub(crate) const fn equal(x: u64, value: u8) -> u64 {
    // `value` in every lane; then a lane of `y` is zero exactly where `x` holds `value`, and
    // adding 0x7f to its low seven bits carries into its high bit unless they are all zero.
    let y = x ^ u64::from_ne_bytes([value; 8]);
    !((y & LOW7).wrapping_add(LOW7) | y | LOW7)
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
    for (shift, word) in (0..64).step_by(8).zip(bytes.chunks(8)) {
        let lanes = classify(key8(word));
        for (mask, lane) in masks.iter_mut().zip(lanes) {
            *mask |= pack(lane) << shift;
        }
    }
    if bytes.len() < 64 {
        // The low `bytes.len()` bits.
        for mask in &mut masks {
            *mask &= !(u64::MAX << bytes.len());
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
    // which spans to chain. Shifts of 128 or more clear the word, so `offset` and `width` may
    // saturate without changing the result.
    let mut acc = !0u128;
    let mut offset = 0u32;
    let mut span = bits;
    let mut width = 1u32;
    let mut rest = len;
    while rest > 0 {
        if rest & 1 == 1 {
            acc &= span.checked_shr(offset).unwrap_or(0);
            offset = offset.saturating_add(width);
        }
        span &= span.checked_shr(width).unwrap_or(0);
        width = width.saturating_mul(2);
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
    gaps.wrapping_sub(lows) & !gaps & (lows << k.saturating_sub(1)) != 0
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
    // Chunks are named by the offset of their first byte (a multiple of 64); offsets past
    // the end (even a saturated one) name an empty chunk.
    let chunk = |base: usize| {
        bytes
            .get(base..)
            .map(|rest| rest.get(..64).unwrap_or(rest))
            .unwrap_or_default()
    };
    let coarse = |base: usize| mask64(chunk(base), |x| between(x, bounds.0, bounds.1));
    // Bit i set when a run of `min_len` starts at bit i of the chunk pair `(low, high)` at or
    // after `from`.
    let starts = |base: usize, low: u64, high: u64| {
        let window = (u128::from(high) << 64) | u128::from(low);
        let hits =
            u64::try_from(runs_at_least(window, min_len) & u128::from(u64::MAX)).unwrap_or(0);
        // The bits before `from` cleared (none when the chunk starts at or after it).
        let cut = u32::try_from(from.saturating_sub(base)).unwrap_or(64);
        hits & u64::MAX.checked_shl(cut).unwrap_or(0)
    };
    // A run of `min_len` >= 2k - 1 bits holds an aligned block of k bits, in its own chunk
    // or the next: where neither chunk has a full block, nothing starts (a few operations
    // instead of the run search). Pairs of (k, 2k - 1).
    let block = [(32usize, 63usize), (16, 31), (8, 15), (4, 7), (2, 3)]
        .into_iter()
        .find_map(|(k, need)| (need <= min_len).then_some(k))
        .unwrap_or(2);
    let lows = block_lows(block);
    let has_block = |bits: u64| min_len < 3 || full_block(bits, lows, block);
    // `from` rounded down to a multiple of 64.
    let mut base = from & !63;
    let mut current = coarse(base);
    while base < bytes.len() {
        let next_base = base.saturating_add(64);
        let next = coarse(next_base);
        if (has_block(current) || has_block(next)) && starts(base, current, next) != 0 {
            let exact = |at: usize| mask64(chunk(at), lanes);
            let hits = starts(base, exact(base), exact(next_base));
            if hits != 0 {
                let at = base.saturating_add(usize::try_from(hits.trailing_zeros()).unwrap_or(0));
                // Back to the start of the run, but not before `from`.
                let back = bytes
                    .get(from..at)
                    .unwrap_or_default()
                    .iter()
                    .rev()
                    .take_while(|&&b| in_class(b))
                    .count();
                return Some(at.saturating_sub(back));
            }
        }
        current = next;
        base = next_base;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        reason = "test code: naive reference implementations over small inputs"
    )]

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
