//! Personal-data scanner: e-mail addresses, phone numbers, payment cards (Luhn), IBANs
//! (ISO 13616 mod-97) and national identity numbers with a checksum or a strict format
//! (US SSN, UK NINO, Spanish DNI/NIE, Taiwan ID, PRC resident ID, Korean RRN).
//!
//! Owns validation, not guessing: every number type is accepted only when its checksum or its
//! official structure holds, so dates, amounts and order numbers are not reported.
//!
//! Invariants: one linear pass per type over the bytes; spans are byte ranges on character
//! boundaries (all matched bytes are ASCII); matches never overlap.

/// One detected item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiMatch {
    /// Rule ID (`pii.<type>`).
    pub rule: &'static str,
    /// Typed placeholder name used when redacting.
    pub kind: &'static str,
    /// Byte span.
    pub start: usize,
    /// End of the span.
    pub end: usize,
}

/// Every personal-data item in `text`, in order, non-overlapping.
#[must_use]
pub fn scan(text: &str) -> Vec<PiiMatch> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    emails(bytes, &mut found);
    let starts = token_starts(bytes);
    numbers(bytes, &starts, &mut found);
    ibans(bytes, &starts, &mut found);
    letter_ids(bytes, &starts, &mut found);
    found.sort_by_key(|m| m.start);
    let mut out: Vec<PiiMatch> = Vec::with_capacity(found.len());
    for m in found {
        if out.last().is_none_or(|last| m.start >= last.end) {
            out.push(m);
        }
    }
    out
}

/// Where a number, an IBAN or a letter-led ID can start: a digit, a capital, `+` or `(` that
/// does not follow a word byte. Every other position is skipped without a look, found eight
/// bytes at a time; benign prose has few.
fn token_starts(bytes: &[u8]) -> Vec<usize> {
    use crate::swar::{digit, equal, lower, masks64, upper};
    let mut starts = Vec::new();
    let mut carry = 0u64;
    for (base, chunk) in (0..bytes.len()).step_by(64).zip(bytes.chunks(64)) {
        let [word, opens] = masks64(chunk, |x| {
            let upper_or_digit = upper(x) | digit(x);
            [
                upper_or_digit | lower(x) | equal(x, b'_'),
                upper_or_digit | equal(x, b'+') | equal(x, b'('),
            ]
        });
        let mut found = opens & !((word << 1) | carry);
        carry = word >> 63;
        while found != 0 {
            starts.push(base.saturating_add(usize::try_from(found.trailing_zeros()).unwrap_or(0)));
            // Clear the lowest set bit (`found` is not zero).
            found &= found.wrapping_sub(1);
        }
    }
    starts
}

/// A walk over [`token_starts`] that a scanner can move past the end of what it consumed.
struct Starts<'a> {
    starts: &'a [usize],
    from: usize,
}

impl<'a> Starts<'a> {
    fn new(starts: &'a [usize]) -> Self {
        Self { starts, from: 0 }
    }

    /// Skip the starts before `at`.
    fn skip_to(&mut self, at: usize) {
        self.from = self.from.max(at);
    }
}

impl Iterator for Starts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            let (&first, rest) = self.starts.split_first()?;
            self.starts = rest;
            if first >= self.from {
                self.from = first.saturating_add(1);
                return Some(first);
            }
        }
    }
}

fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// The byte before `i` (0 at the start, as [`at`] past the end).
fn before(bytes: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(0, |j| at(bytes, j))
}

/// The bytes from `i` on (none past the end), for reading at fixed offsets with [`at`].
fn from(bytes: &[u8], i: usize) -> &[u8] {
    bytes.get(i..).unwrap_or_default()
}

/// An ASCII digit's value (the callers pass digits only).
fn digit_value(c: u8) -> u32 {
    u32::from(c.wrapping_sub(b'0'))
}

/// Σ value × weight, pairwise; `None` on overflow (which the callers' fixed lengths rule out).
fn weighted_sum(
    values: impl IntoIterator<Item = u32>,
    weights: impl IntoIterator<Item = u32>,
) -> Option<u32> {
    values
        .into_iter()
        .zip(weights)
        .try_fold(0u32, |sum, (v, w)| sum.checked_add(v.checked_mul(w)?))
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn emails(bytes: &[u8], found: &mut Vec<PiiMatch>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    let alnum = |b: &&u8| b.is_ascii_alphanumeric();
    for at_sign in memchr::memchr_iter(b'@', bytes).take(4096) {
        // The local part: up to 64 local bytes back from the '@', less leading punctuation.
        let before_at = bytes.get(..at_sign).unwrap_or_default();
        let local_len = before_at
            .iter()
            .rev()
            .take(64)
            .take_while(|&&b| local(b))
            .count();
        let mut start = at_sign.saturating_sub(local_len);
        start = start.saturating_add(
            bytes
                .get(start..at_sign)
                .unwrap_or_default()
                .iter()
                .take_while(|b| !alnum(b))
                .count(),
        );
        // The domain: up to 252 domain bytes after it, less trailing punctuation.
        let after = at_sign.saturating_add(1);
        let mut end = after.saturating_add(
            from(bytes, after)
                .iter()
                .take(252)
                .take_while(|&&b| domain(b))
                .count(),
        );
        end = end.saturating_sub(
            bytes
                .get(after..end)
                .unwrap_or_default()
                .iter()
                .rev()
                .take_while(|b| !alnum(b))
                .count(),
        );
        if start == at_sign || end <= after {
            continue;
        }
        let dom = bytes.get(after..end).unwrap_or_default();
        let Some(dot) = dom.iter().rposition(|&b| b == b'.') else {
            continue;
        };
        let tld = dom.get(dot.saturating_add(1)..).unwrap_or_default();
        if tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && dot > 0 {
            found.push(PiiMatch {
                rule: "pii.email",
                kind: "email",
                start,
                end,
            });
        }
    }
}

/// Luhn checksum over ASCII digits.
#[must_use]
pub fn luhn(digits: &[u8]) -> bool {
    // The sum is kept modulo 10 (all the check needs), so no length of input overflows it.
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = digit_value(d);
        if i % 2 == 1 {
            // At most 2 × 255: neither operation can overflow or underflow.
            v = v.saturating_mul(2);
            if v > 9 {
                v = v.saturating_sub(9);
            }
        }
        sum = sum.saturating_add(v) % 10;
    }
    !digits.is_empty() && sum == 0
}

fn card_prefix(d: &[u8]) -> bool {
    let n = |k: usize| -> u32 {
        d.get(..k)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let len = d.len();
    match at(d, 0) {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&n(2)) && len == 16,
        b'2' => (2221..=2720).contains(&n(4)) && len == 16,
        b'3' => {
            (matches!(n(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&n(4)) && (16..=19).contains(&len))
                || (matches!(n(2), 36 | 38 | 39 | 30) && (14..=19).contains(&len))
        }
        b'6' => {
            (n(4) == 6011 || n(2) == 65 || (644..=649).contains(&n(3)) || n(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// Digit clusters: runs of digits joined by single separators.
fn numbers(bytes: &[u8], starts: &[usize], found: &mut Vec<PiiMatch>) {
    let mut starts = Starts::new(starts);
    // Reused for every number: allocating per start showed as a tenth of benign-text time.
    let mut digits: Vec<u8> = Vec::new();
    let mut groups: Vec<usize> = Vec::new();
    let mut seps: Vec<u8> = Vec::new();
    while let Some(i) = starts.next() {
        let b = at(bytes, i);
        let plus = b == b'+' && at(from(bytes, i), 1).is_ascii_digit();
        let paren = b == b'(' && at(from(bytes, i), 1).is_ascii_digit();
        let prev = before(bytes, i);
        if !(b.is_ascii_digit() || plus || paren) || word_byte(prev) || prev == b'.' {
            continue;
        }
        let start = i;
        digits.clear();
        groups.clear();
        seps.clear();
        // Positions stay within the text (every step moves over bytes that are there), so
        // the saturating steps below never saturate.
        let mut j = i.saturating_add(usize::from(plus || paren));
        let mut group = 0usize;
        loop {
            let ahead = from(bytes, j);
            let c = at(ahead, 0);
            if c.is_ascii_digit() {
                digits.push(c);
                group = group.saturating_add(1);
                j = j.saturating_add(1);
            } else if matches!(c, b' ' | b'-' | b'.' | b')')
                && group > 0
                && at(ahead, 1).is_ascii_digit()
                && digits.len() < 24
            {
                groups.push(group);
                seps.push(c);
                group = 0;
                j = j.saturating_add(1);
            } else if c == b')' && at(ahead, 1) == b' ' && at(ahead, 2).is_ascii_digit() {
                groups.push(group);
                seps.push(c);
                group = 0;
                j = j.saturating_add(2);
            } else {
                break;
            }
            if digits.len() > 24 {
                break;
            }
        }
        groups.push(group);
        let end = j;
        let after_end = end.saturating_add(1);
        starts.skip_to(end.max(i.saturating_add(1)));
        if word_byte(at(bytes, end)) && !at(bytes, end).is_ascii_uppercase() {
            continue;
        }
        let d = digits.len();
        let uniform_sep = seps.windows(2).all(|w| w.first() == w.get(1));
        // PRC resident ID: 17 digits + check character.
        if d == 17
            && matches!(at(bytes, end), b'X' | b'x')
            && prc_id(&digits, b'X')
            && !word_byte(at(bytes, after_end))
        {
            found.push(PiiMatch {
                rule: "pii.national_id.cn",
                kind: "national_id",
                start,
                end: after_end,
            });
            continue;
        }
        if word_byte(at(bytes, end)) {
            // A digit run glued to letters: Spanish DNI (8 digits + letter).
            if d == 8
                && groups.len() == 1
                && dni(&digits, at(bytes, end))
                && !word_byte(at(bytes, after_end))
            {
                found.push(PiiMatch {
                    rule: "pii.national_id.es",
                    kind: "national_id",
                    start,
                    end: after_end,
                });
            }
            continue;
        }
        if d == 18
            && groups.len() == 1
            && prc_id(digits.get(..17).unwrap_or_default(), at(&digits, 17))
        {
            found.push(PiiMatch {
                rule: "pii.national_id.cn",
                kind: "national_id",
                start,
                end,
            });
        } else if (13..=19).contains(&d)
            && !plus
            && uniform_sep
            && luhn(&digits)
            && card_prefix(&digits)
            && groups.iter().all(|&g| g >= 4 || groups.len() == 1)
        {
            found.push(PiiMatch {
                rule: "pii.payment_card",
                kind: "payment_card",
                start,
                end,
            });
        } else if d == 9
            && groups == [3, 2, 4]
            && seps.iter().all(|&s| s == b'-' || s == b' ')
            && ssn(&digits)
        {
            found.push(PiiMatch {
                rule: "pii.national_id.us_ssn",
                kind: "national_id",
                start,
                end,
            });
        } else if d == 13 && groups == [6, 7] && seps == [b'-'] && rrn(&digits) {
            found.push(PiiMatch {
                rule: "pii.national_id.kr_rrn",
                kind: "national_id",
                start,
                end,
            });
        } else if (plus
            && (8..=15).contains(&d)
            && (groups.len() >= 2 || d >= 10)
            && at(&digits, 0) != b'0')
            || (d == 10 && !plus && nanp(&groups, &seps, paren))
        {
            found.push(PiiMatch {
                rule: "pii.phone",
                kind: "phone",
                start,
                end,
            });
        }
    }
}

fn nanp(groups: &[usize], seps: &[u8], paren: bool) -> bool {
    groups == [3, 3, 4]
        && (paren && seps.first() == Some(&b')')
            || (!paren
                && seps.iter().all(|&s| s == b'-' || s == b'.' || s == b' ')
                && seps.first() == seps.get(1)))
}

fn ssn(d: &[u8]) -> bool {
    let area = d.get(..3).unwrap_or_default();
    let group = d.get(3..5).unwrap_or_default();
    let serial = d.get(5..9).unwrap_or_default();
    area != b"000" && area != b"666" && at(area, 0) != b'9' && group != b"00" && serial != b"0000"
}

fn dni(d: &[u8], letter: u8) -> bool {
    const LETTERS: &[u8] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    // Eight or nine digits: far from overflowing; a number that did is no DNI.
    let n = d.iter().try_fold(0u64, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u64::from(digit_value(c)))
    });
    n.and_then(|n| usize::try_from(n % 23).ok())
        .and_then(|i| LETTERS.get(i))
        .is_some_and(|&l| l == letter.to_ascii_uppercase())
}

fn prc_id(d17: &[u8], check: u8) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const C: &[u8] = b"10X98765432";
    if d17.len() != 17 {
        return false;
    }
    let Some(sum) = weighted_sum(d17.iter().map(|&c| digit_value(c)), W) else {
        return false;
    };
    // Birth date plausibility (YYYYMMDD at 6..14).
    let year = d17
        .get(6..10)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    let month = d17
        .get(10..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    (1900..=2100).contains(&year)
        && (1..=12).contains(&month)
        && usize::try_from(sum % 11)
            .ok()
            .and_then(|i| C.get(i))
            .is_some_and(|&c| c == check.to_ascii_uppercase())
}

fn rrn(d: &[u8]) -> bool {
    const W: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];
    let Some(sum) = weighted_sum(d.iter().map(|&c| digit_value(c)), W) else {
        return false;
    };
    // `sum % 11` is at most 10.
    let check = 11u32.saturating_sub(sum % 11) % 10;
    let month = weighted_sum([digit_value(at(d, 2)), digit_value(at(d, 3))], [10, 1]);
    month.is_some_and(|month| (1..=12).contains(&month)) && digit_value(at(d, 12)) == check
}

/// IBAN: country code, two check digits, 11-30 alphanumerics (optionally in groups of four).
fn ibans(bytes: &[u8], starts: &[usize], found: &mut Vec<PiiMatch>) {
    let mut starts = Starts::new(starts);
    while let Some(i) = starts
        .next()
        .filter(|&i| bytes.len().saturating_sub(i) >= 4)
    {
        let Some(head) = from(bytes, i).first_chunk::<4>() else {
            continue;
        };
        let [a, b, c, d] = *head;
        let lead = a.is_ascii_uppercase()
            && b.is_ascii_uppercase()
            && c.is_ascii_digit()
            && d.is_ascii_digit();
        if !lead || word_byte(before(bytes, i)) {
            continue;
        }
        let mut chars: Vec<u8> = head.to_vec();
        // Steps over bytes that are there: `j` stays within the text.
        let mut j = i.saturating_add(4);
        while chars.len() < 34 {
            let ahead = from(bytes, j);
            let c = at(ahead, 0);
            if c.is_ascii_digit() || c.is_ascii_uppercase() {
                chars.push(c);
                j = j.saturating_add(1);
            } else if c == b' '
                && (at(ahead, 1).is_ascii_digit() || at(ahead, 1).is_ascii_uppercase())
                && chars.len().is_multiple_of(4)
            {
                j = j.saturating_add(1);
            } else {
                break;
            }
        }
        if (15..=34).contains(&chars.len()) && !word_byte(at(bytes, j)) && iban_valid(&chars) {
            found.push(PiiMatch {
                rule: "pii.iban",
                kind: "iban",
                start: i,
                end: j,
            });
            starts.skip_to(j);
        }
    }
}

/// ISO 13616 mod-97 check.
#[must_use]
pub fn iban_valid(chars: &[u8]) -> bool {
    if chars.len() < 15 {
        return false;
    }
    let mut rotated = chars.iter().skip(4).chain(chars.iter().take(4));
    // Digits are worth 0-9 and capitals 10-35 (base 36); the remainder stays below 97, so
    // the checked steps never fail: only a byte of neither kind stops the fold.
    let rem = rotated.try_fold(0u32, |rem, &c| {
        let v = (c.is_ascii_digit() || c.is_ascii_uppercase())
            .then(|| char::from(c).to_digit(36))
            .flatten()?;
        let scale = if v >= 10 { 100 } else { 10 };
        Some(rem.checked_mul(scale)?.checked_add(v)? % 97)
    });
    rem == Some(1)
}

/// IDs that start with letters: UK NINO, Taiwan ID, Spanish NIE.
fn letter_ids(bytes: &[u8], starts: &[usize], found: &mut Vec<PiiMatch>) {
    let mut starts = Starts::new(starts);
    while let Some(i) = starts
        .next()
        .filter(|&i| bytes.len().saturating_sub(i) >= 9)
    {
        // At least nine bytes from `i` on: the fixed offsets below are read from `rest`, and
        // `i` plus at most 10 stays within a byte of the text.
        let rest = from(bytes, i);
        if !at(rest, 0).is_ascii_uppercase() || word_byte(before(bytes, i)) {
            continue;
        }
        // Taiwan: letter, 1 or 2, eight digits.
        let tw = rest.get(..10).filter(|s| {
            s.len() == 10
                && matches!(at(s, 1), b'1' | b'2')
                && s.iter().skip(1).all(u8::is_ascii_digit)
        });
        if let Some(id) = tw
            && !word_byte(at(rest, 10))
            && taiwan(id)
        {
            let end = i.saturating_add(10);
            found.push(PiiMatch {
                rule: "pii.national_id.tw",
                kind: "national_id",
                start: i,
                end,
            });
            starts.skip_to(end);
            continue;
        }
        // UK NINO: two letters, six digits (optionally paired), suffix A-D.
        // (Checked only when a second capital and a digit follow: most capitals start words.)
        let nino_shape = at(rest, 1).is_ascii_uppercase()
            && (at(rest, 2).is_ascii_digit()
                || (at(rest, 2) == b' ' && at(rest, 3).is_ascii_digit()));
        let compact: Vec<(u8, usize)> = if !nino_shape {
            Vec::new()
        } else {
            bytes
                .iter()
                .enumerate()
                .skip(i)
                .take(13)
                .filter(|(_, b)| **b != b' ')
                .map(|(k, &b)| (b, k))
                .take(9)
                .collect()
        };
        if compact.len() == 9 {
            let c = |k: usize| compact.get(k).map_or(0, |p| p.0);
            let prefix_ok =
                b"ABCEGHJKLMNOPRSTWXYZ".contains(&c(0)) && b"ABCEGHJKLMNPRSTWXYZ".contains(&c(1));
            let end = compact.get(8).map_or(i, |p| p.1.saturating_add(1));
            if prefix_ok
                && (2..8).all(|k| c(k).is_ascii_digit())
                && matches!(c(8), b'A'..=b'D')
                && !word_byte(at(bytes, end))
                && !matches!(
                    &[c(0), c(1)],
                    b"BG" | b"GB" | b"NK" | b"KN" | b"TN" | b"NT" | b"ZZ"
                )
            {
                found.push(PiiMatch {
                    rule: "pii.national_id.uk_nino",
                    kind: "national_id",
                    start: i,
                    end,
                });
                starts.skip_to(end);
                continue;
            }
        }
        // Spanish NIE: X/Y/Z, seven digits, letter.
        if matches!(at(rest, 0), b'X' | b'Y' | b'Z')
            && rest
                .get(1..8)
                .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
            && at(rest, 8).is_ascii_uppercase()
            && !word_byte(at(rest, 9))
        {
            let lead = match at(rest, 0) {
                b'X' => b'0',
                b'Y' => b'1',
                _ => b'2',
            };
            let mut digits = vec![lead];
            digits.extend_from_slice(rest.get(1..8).unwrap_or_default());
            if dni(&digits, at(rest, 8)) {
                let end = i.saturating_add(9);
                found.push(PiiMatch {
                    rule: "pii.national_id.es",
                    kind: "national_id",
                    start: i,
                    end,
                });
                starts.skip_to(end);
                continue;
            }
        }
    }
}

fn taiwan(id: &[u8]) -> bool {
    const CODES: &[u8] = b"ABCDEFGHJKLMNPQRSTUVXYWZIO";
    let Some(pos) = CODES.iter().position(|&c| c == at(id, 0)) else {
        return false;
    };
    // The letter's two-digit code (10-35), its digits weighted 1 and 9; then the eight
    // digits weighted 8 down to 1, and the check digit.
    let n = u32::try_from(pos).unwrap_or(0).saturating_add(10);
    let code = weighted_sum([n / 10, n % 10], [1, 9]);
    let body = weighted_sum(
        id.iter().skip(1).take(8).map(|&c| digit_value(c)),
        [8, 7, 6, 5, 4, 3, 2, 1],
    );
    let check = digit_value(at(id, 9));
    code.zip(body)
        .and_then(|(code, body)| code.checked_add(body)?.checked_add(check))
        .is_some_and(|sum| sum % 10 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<&'static str> {
        scan(text).iter().map(|m| m.rule).collect()
    }

    #[test]
    fn valid_items_are_found() {
        let cases = [
            ("mail alice.smith+x@example.co.uk now", "pii.email"),
            ("card 4111 1111 1111 1111 exp", "pii.payment_card"),
            ("card 5500-0000-0000-0004.", "pii.payment_card"),
            ("amex 378282246310005", "pii.payment_card"),
            ("IBAN DE89 3704 0044 0532 0130 00 thanks", "pii.iban"),
            ("GB82WEST12345698765432", "pii.iban"),
            ("SSN 123-45-6789", "pii.national_id.us_ssn"),
            ("call +1 415 555 2671 today", "pii.phone"),
            ("call (415) 555-2671", "pii.phone"),
            ("NINO AB 12 34 56 C", "pii.national_id.uk_nino"),
            ("DNI 12345678Z", "pii.national_id.es"),
            ("ID A123456789", "pii.national_id.tw"),
            ("身份证 11010519491231002X", "pii.national_id.cn"),
        ];
        for (text, rule) in cases {
            assert!(kinds(text).contains(&rule), "{text:?}: {:?}", kinds(text));
        }
    }

    #[test]
    fn numbers_that_fail_checks_are_not_found() {
        for text in [
            "card 4111 1111 1111 1112",
            "IBAN DE89 3704 0044 0532 0130 01",
            "order 1234567890123",
            "2024-05-19 23:50:00",
            "version 1.2.3.4",
            "SSN 000-12-3456",
            "US133000000121212121212",
            "DNI 12345678A",
            "x@y",
            "price 1,234,567.89",
        ] {
            assert!(kinds(text).is_empty(), "{text:?}: {:?}", kinds(text));
        }
    }
}
