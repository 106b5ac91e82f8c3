//! The fast path sixteen bytes at a time, for inputs of 8 to 64 bytes: nearly
//! every address a person types.
//!
//! Each 16-byte chunk is classified with a handful of vector compares (SSE2 on
//! x86-64, NEON on AArch64, plain arrays elsewhere, through `wide`, so this
//! crate stays free of `unsafe`), and the classes become one bit per input
//! byte in `u64` masks. Every rule of the fast path is then a few bit
//! operations on those masks, with no loop over windows and no branch per
//! byte. Longer inputs keep the eight-byte windows of `swar_local` and
//! `swar_domain`, which are also the reference this is tested against.

use wide::u8x16;

use super::{CLASS, EmailRules, Fallback, MAX_LABEL_LEN, MAX_LOCAL_PART_LEN, SYM};

/// Inputs of this many bytes or fewer go through [`scan`].
pub(super) const MAX_LEN: usize = 64;

// So short an input has a local part and a domain within their limits (the
// domain is a single label at most that long): [`scan`] need not check them.
const _: () = assert!(MAX_LEN - 1 <= MAX_LOCAL_PART_LEN && MAX_LEN - 2 <= MAX_LABEL_LEN);

/// One bit per input byte (bit `i` for byte `i`) for each class the fast path
/// looks at.
#[derive(Clone, Copy, Default)]
struct Masks {
    /// `@`.
    at: u64,
    /// `.`
    dot: u64,
    /// `-`
    hyphen: u64,
    /// `A`–`Z`, `a`–`z`, `0`–`9` or `-`.
    ldh: u64,
    /// `A`–`Z`.
    upper: u64,
    /// Bytes of non-ASCII characters.
    high: u64,
}

/// The lanes of `v` in `lo..=hi`: wrapping subtraction puts the range at
/// `0..=hi - lo`, and an unsigned minimum tests it (SSE2 has no unsigned
/// compare).
#[inline(always)]
fn in_range(v: u8x16, lo: u8, hi: u8) -> u8x16 {
    let shifted = v - u8x16::splat(lo);
    shifted.min(u8x16::splat(hi - lo)).simd_eq(shifted)
}

impl Masks {
    /// Adds the classes of `v`, sixteen input bytes: `place` turns a lane mask
    /// (bit `j` for lane `j`) into input positions (every lane is an input byte;
    /// the chunks overlap rather than run past the end).
    #[inline(always)]
    fn add(&mut self, v: u8x16, place: impl Fn(u32) -> u64) {
        let letter = in_range(v | u8x16::splat(0x20), b'a', b'z');
        let digit = in_range(v, b'0', b'9');
        let hyphen = v.simd_eq(u8x16::splat(b'-'));
        let upper = letter & (v & u8x16::splat(0x20)).simd_eq(u8x16::splat(0));
        self.at |= place(v.simd_eq(u8x16::splat(b'@')).to_bitmask());
        self.dot |= place(v.simd_eq(u8x16::splat(b'.')).to_bitmask());
        self.hyphen |= place(hyphen.to_bitmask());
        self.ldh |= place((letter | digit | hyphen).to_bitmask());
        self.upper |= place(upper.to_bitmask());
        // The sign bit of each lane: set exactly for bytes >= 0x80.
        self.high |= place(v.to_bitmask());
    }
}

fn chunk(bytes: &[u8], at: usize) -> u8x16 {
    let mut lanes = [0; 16];
    lanes.copy_from_slice(&bytes[at..at + 16]);
    u8x16::from(lanes)
}

/// The classes of every byte of `bytes` (`8 <= len <= 64`).
#[inline(always)]
fn classify(bytes: &[u8]) -> Masks {
    let n = bytes.len();
    let mut m = Masks::default();
    if n < 16 {
        // The first eight bytes and the last eight, overlapping: lanes 8..16
        // are bytes `n - 8..n`.
        let mut lanes = [0; 16];
        lanes[..8].copy_from_slice(&bytes[..8]);
        lanes[8..].copy_from_slice(&bytes[n - 8..]);
        m.add(u8x16::from(lanes), |bits| {
            u64::from(bits & 0xFF) | (u64::from(bits >> 8) << (n - 8))
        });
        return m;
    }
    // Whole chunks from the start, then the last sixteen bytes (overlapping
    // bytes get the same bits twice, which changes nothing).
    let mut offset = 0;
    while offset + 16 < n {
        m.add(chunk(bytes, offset), |bits| u64::from(bits) << offset);
        offset += 16;
    }
    m.add(chunk(bytes, n - 16), |bits| u64::from(bits) << (n - 16));
    m
}

/// The fast path's checks for an input of 8 to [`MAX_LEN`] bytes: the index
/// of the first `@` and whether the local part and the domain have uppercase
/// letters, or what was learned of the `@` when the input is declined.
///
/// Accepts exactly what `swar_local` and `swar_domain` accept: an ASCII
/// dot-atom local part of at most 64 bytes without leading, trailing or
/// double dots, and a domain of letters, digits, hyphens and dots (so no
/// second `@`) without two separators in a row or at its start, ending in a
/// letter, with a dot unless single-label domains are allowed, and not under a
/// special-use TLD unless allowed. Since the `@` is found exactly in every
/// case (it is ASCII, never part of a multi-byte character), a declined
/// input always answers [`Fallback::At`] or [`Fallback::NoAt`].
#[inline(always)]
pub(super) fn scan(bytes: &[u8], rules: &EmailRules) -> Result<(usize, bool, bool), Fallback> {
    let n = bytes.len();
    debug_assert!((8..=MAX_LEN).contains(&n));
    let m = classify(bytes);
    if m.at == 0 {
        return Err(Fallback::NoAt);
    }
    let at = m.at.trailing_zeros() as usize;
    let declined = Err(Fallback::At(at));
    // `at < n <= 64`: both shifts are in range.
    let local = (1u64 << at) - 1;
    let domain = (u64::MAX >> (64 - n)) & !local & !(1u64 << at);
    let local_dots = m.dot & local;
    if m.high != 0
        || at == 0
        || at + 1 == n
        // Leading, trailing or double dot in the local part.
        || local_dots & 1 != 0
        || local_dots >> (at - 1) != 0
        || local_dots & (local_dots >> 1) != 0
    {
        return declined;
    }
    // Local-part bytes that are neither letters, digits, hyphens nor dots:
    // rare, so checked one by one against the atext symbols.
    let mut other = local & !(m.ldh | m.dot);
    while other != 0 {
        if CLASS[usize::from(bytes[other.trailing_zeros() as usize])] != SYM {
            return declined;
        }
        other &= other - 1;
    }
    let separators = (m.dot | m.hyphen) & domain;
    if domain & !(m.ldh | m.dot) != 0
        || separators & (1u64 << (at + 1)) != 0
        || separators & (separators >> 1) != 0
        || !bytes[n - 1].is_ascii_alphabetic()
    {
        return declined;
    }
    let domain_dots = m.dot & domain;
    let tld_start = if domain_dots != 0 {
        64 - domain_dots.leading_zeros() as usize
    } else if rules.allow_single_label_domain {
        at + 1
    } else {
        return declined;
    };
    if !rules.allow_special_use_domains && super::is_special_use_tld(&bytes[tld_start..]) {
        return declined;
    }
    Ok((at, m.upper & local != 0, m.upper & domain != 0))
}
