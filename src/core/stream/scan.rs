//! A validating JSON skimmer over bytes: it walks a line's structure without building
//! anything, and skips strings 64 bytes at a time.
//!
//! It accepts exactly what `serde_json` accepts when it deserializes into `IgnoredAny`
//! (the JSON grammar; strings without raw control bytes and with valid escapes, `\u`
//! followed by four hex digits; UTF-8 is not checked). Anything it is not sure of
//! returns [`Bail`]: the caller then asks `serde_json`, which gives the real answer (and
//! the error message). So a `Bail` is never wrong, only slower; an `Ok` must always be
//! what `serde_json` would say (tests below check both against it).
//!
//! Strings are where a stream-json line spends its bytes (tool output, file contents),
//! so [`skip_str`] finds quotes, backslashes and control bytes 64 bytes at a time — with
//! AVX2 when the CPU has it (detected at run time), SSE2 otherwise on x86_64, a portable
//! byte loop elsewhere — and resolves backslash runs with carry arithmetic on 64-bit
//! masks, as simdjson does, instead of stopping at every escape. With AVX2 the escaped
//! bytes are checked by a table lookup on their nibbles too; only `\u` (four hex digits
//! to check) and invalid escapes are looked at one by one. All backends are tested
//! against the portable one on every x86_64 test run.

/// The fast path gives up here; the caller falls back to `serde_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

pub type Scan<T> = Result<T, Bail>;

/// Containers deeper than this are left to `serde_json`.
const MAX_DEPTH: u32 = 128;

/// Index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
pub fn ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// The byte at `i`, or `Bail` past the end.
#[inline]
fn at(s: &[u8], i: usize) -> Scan<u8> {
    s.get(i).copied().ok_or(Bail)
}

/// Whole-line check: one JSON value and nothing but whitespace after it.
pub fn validate(s: &[u8]) -> Scan<()> {
    let end = skip_value(s, ws(s, 0))?;
    if ws(s, end) == s.len() {
        Ok(())
    } else {
        Err(Bail)
    }
}

/// Skips the value starting at `i` (no leading whitespace); returns the index after it.
pub fn skip_value(s: &[u8], mut i: usize) -> Scan<usize> {
    // One bit per open container: 1 = object, 0 = array.
    let mut stack = [0u64; (MAX_DEPTH / 64) as usize];
    let mut depth: u32 = 0;
    loop {
        // A value starts at `i`.
        match at(s, i)? {
            b'"' => i = skip_str(s, i + 1)?.0,
            b'{' => {
                i = ws(s, i + 1);
                if at(s, i)? == b'}' {
                    i += 1;
                } else {
                    if depth == MAX_DEPTH {
                        return Err(Bail);
                    }
                    stack[(depth / 64) as usize] |= 1 << (depth % 64);
                    depth += 1;
                    i = key_colon(s, i)?;
                    continue;
                }
            }
            b'[' => {
                i = ws(s, i + 1);
                if at(s, i)? == b']' {
                    i += 1;
                } else {
                    if depth == MAX_DEPTH {
                        return Err(Bail);
                    }
                    stack[(depth / 64) as usize] &= !(1 << (depth % 64));
                    depth += 1;
                    continue;
                }
            }
            _ => i = skip_scalar(s, i)?,
        }
        // After a value: close containers until one continues with a comma.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            let object = stack[((depth - 1) / 64) as usize] & (1 << ((depth - 1) % 64)) != 0;
            i = ws(s, i);
            match at(s, i)? {
                b',' => {
                    i = ws(s, i + 1);
                    if object {
                        i = key_colon(s, i)?;
                    }
                    break;
                }
                b'}' if object => {
                    i += 1;
                    depth -= 1;
                }
                b']' if !object => {
                    i += 1;
                    depth -= 1;
                }
                _ => return Err(Bail),
            }
        }
    }
}

/// At a key's opening quote: skips `"key"` and `:` and the whitespace after it.
#[inline]
fn key_colon(s: &[u8], i: usize) -> Scan<usize> {
    if at(s, i)? != b'"' {
        return Err(Bail);
    }
    let i = ws(s, skip_str(s, i + 1)?.0);
    if at(s, i)? != b':' {
        return Err(Bail);
    }
    Ok(ws(s, i + 1))
}

/// A number, `true`, `false` or `null` at `i`; the index after it.
#[inline]
pub fn skip_scalar(s: &[u8], i: usize) -> Scan<usize> {
    match at(s, i)? {
        b't' => literal(s, i, b"true"),
        b'f' => literal(s, i, b"false"),
        b'n' => literal(s, i, b"null"),
        b'-' | b'0'..=b'9' => skip_number(s, i),
        _ => Err(Bail),
    }
}

fn literal(s: &[u8], i: usize, word: &[u8]) -> Scan<usize> {
    match s.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => Err(Bail),
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as serde_json's `ignore_integer`.
fn skip_number(s: &[u8], mut i: usize) -> Scan<usize> {
    let digits = |s: &[u8], mut i: usize| {
        while let Some(b'0'..=b'9') = s.get(i) {
            i += 1;
        }
        i
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match at(s, i)? {
        b'0' => {
            i += 1;
            if let Some(b'0'..=b'9') = s.get(i) {
                return Err(Bail);
            }
        }
        b'1'..=b'9' => i = digits(s, i + 1),
        _ => return Err(Bail),
    }
    if s.get(i) == Some(&b'.') {
        let j = digits(s, i + 1);
        if j == i + 1 {
            return Err(Bail);
        }
        i = j;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        let j = digits(s, i);
        if j == i {
            return Err(Bail);
        }
        i = j;
    }
    Ok(i)
}

/// Bytes allowed after a backslash.
const ESCAPE_OK: [bool; 256] = {
    let mut t = [false; 256];
    t[b'u' as usize] = true;
    let mut k = 0;
    while k < SIMPLE_ESCAPES.len() {
        t[SIMPLE_ESCAPES[k] as usize] = true;
        k += 1;
    }
    t
};

/// Checks the escape whose letter is at `k` (`\u` needs four hex digits after it).
#[inline]
fn escape_ok(s: &[u8], k: usize) -> Scan<()> {
    let c = at(s, k)?;
    if !ESCAPE_OK[usize::from(c)] {
        return Err(Bail);
    }
    if c == b'u' {
        match s.get(k + 1..k + 5) {
            Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {}
            _ => return Err(Bail),
        }
    }
    Ok(())
}

const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// Given the backslashes of a 64-byte block and whether its first byte is escaped by a
/// run that ended the block before, the bytes that are escaped (follow an odd run of
/// backslashes) and whether the next block's first byte is. simdjson's
/// `json_escape_scanner`: adding a run's start to the run carries across it, which tells
/// odd runs from even ones without a loop.
#[inline]
pub fn escaped(backslash: u64, prev_escaped: u64) -> (u64, u64) {
    // (With no backslash this gives `(prev_escaped, 0)`: no branch needed.)
    let potential = backslash & !prev_escaped;
    let maybe_escaped = potential << 1;
    let codes = (maybe_escaped | ODD_BITS).wrapping_sub(potential) ^ ODD_BITS;
    let escaped = codes ^ (backslash | prev_escaped);
    let escape = codes & backslash;
    (escaped, escape >> 63)
}

/// One 64-byte block of a string, one bit per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Classes {
    quote: u64,
    backslash: u64,
    /// Bytes below 0x20, which JSON strings may not hold raw.
    control: u64,
}

/// Bytes that may follow a backslash with nothing more to check: `"\/bfnrt`. (`u` is
/// not among them: it needs four hex digits, which [`escape_ok`] checks.)
const SIMPLE_ESCAPES: &[u8] = b"\"\\/bfnrt";

/// The portable classification, byte by byte: what non-x86 targets use, and what the
/// vector versions are tested against.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod portable {
    use super::{Classes, SIMPLE_ESCAPES};

    pub fn classes(b: &[u8; 64]) -> Classes {
        let mut c = Classes {
            quote: 0,
            backslash: 0,
            control: 0,
        };
        for (k, &x) in b.iter().enumerate() {
            c.quote |= u64::from(x == b'"') << k;
            c.backslash |= u64::from(x == b'\\') << k;
            c.control |= u64::from(x < 0x20) << k;
        }
        c
    }

    pub fn simple_escapes(b: &[u8; 64]) -> u64 {
        b.iter().enumerate().fold(0, |m, (k, x)| {
            m | (u64::from(SIMPLE_ESCAPES.contains(x)) << k)
        })
    }
}

/// SSE2, part of the x86_64 baseline: always available there.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Classes;
    use std::arch::x86_64::*;

    #[inline]
    pub fn classes(b: &[u8; 64]) -> Classes {
        let mut c = Classes {
            quote: 0,
            backslash: 0,
            control: 0,
        };
        for k in 0..4 {
            // SAFETY: SSE2 is part of the x86_64 baseline; the load reads 16 bytes that are
            // inside `b` (k * 16 + 16 <= 64) and needs no alignment.
            let (mq, mb, mc) = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(k * 16).cast::<__m128i>());
                let mq = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)));
                let mb = _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)));
                // v <= 0x1f, unsigned: min(v, 0x1f) == v.
                let low = _mm_min_epu8(v, _mm_set1_epi8(0x1f));
                let mc = _mm_movemask_epi8(_mm_cmpeq_epi8(low, v));
                (mq, mb, mc)
            };
            // movemask sets only the low 16 bits.
            c.quote |= u64::from(mq as u16) << (k * 16);
            c.backslash |= u64::from(mb as u16) << (k * 16);
            c.control |= u64::from(mc as u16) << (k * 16);
        }
        c
    }
}

/// AVX2, when the CPU has it (checked at run time by [`skip_str_blocks`]).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Classes;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn classes(b: &[u8; 64]) -> Classes {
        // SAFETY: the caller guarantees AVX2; each load reads 32 bytes inside `b` (offsets
        // 0 and 32 of 64) and needs no alignment.
        unsafe {
            let lo = _mm256_loadu_si256(b.as_ptr().cast::<__m256i>());
            let hi = _mm256_loadu_si256(b.as_ptr().add(32).cast::<__m256i>());
            let mask = |eq_lo: __m256i, eq_hi: __m256i| {
                // movemask sets all 32 bits of its i32.
                u64::from(_mm256_movemask_epi8(eq_lo) as u32)
                    | u64::from(_mm256_movemask_epi8(eq_hi) as u32) << 32
            };
            let quote = _mm256_set1_epi8(b'"' as i8);
            let backslash = _mm256_set1_epi8(b'\\' as i8);
            let low = _mm256_set1_epi8(0x1f);
            Classes {
                quote: mask(_mm256_cmpeq_epi8(lo, quote), _mm256_cmpeq_epi8(hi, quote)),
                backslash: mask(
                    _mm256_cmpeq_epi8(lo, backslash),
                    _mm256_cmpeq_epi8(hi, backslash),
                ),
                // v <= 0x1f, unsigned: min(v, 0x1f) == v.
                control: mask(
                    _mm256_cmpeq_epi8(_mm256_min_epu8(lo, low), lo),
                    _mm256_cmpeq_epi8(_mm256_min_epu8(hi, low), hi),
                ),
            }
        }
    }

    /// [`super::SIMPLE_ESCAPES`] by two table lookups on the byte's nibbles: each high
    /// nibble that occurs in the set has a bit, and the low-nibble table says for which high
    /// nibbles the low nibble completes a member. A byte is in the set when the two share a
    /// bit.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn simple_escapes(b: &[u8; 64]) -> u64 {
        // High nibble 2 → bit 0 (`"` `/`), 5 → bit 1 (`\`), 6 → bit 2 (`b` `f` `n`),
        // 7 → bit 3 (`r` `t`); every other high nibble (8 to F too) → none.
        #[rustfmt::skip]
        const HIGH: [i8; 16] = [0, 0, 1, 0, 0, 2, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        // Low nibble 2: `"` `b` `r`; 4: `t`; 6: `f`; C: `\`; E: `n`; F: `/`.
        #[rustfmt::skip]
        const LOW: [i8; 16] = [0, 0, 1 | 4 | 8, 0, 8, 0, 4, 0, 0, 0, 0, 0, 2, 0, 4, 1];
        // SAFETY: the caller guarantees AVX2; each load reads 32 bytes inside `b` (offsets
        // 0 and 32 of 64) and needs no alignment; the tables are read whole by value.
        unsafe {
            let table = |t: &[i8; 16]| {
                let x = _mm_loadu_si128(t.as_ptr().cast::<__m128i>());
                _mm256_broadcastsi128_si256(x)
            };
            let (high, low) = (table(&HIGH), table(&LOW));
            let nibble = _mm256_set1_epi8(0x0f);
            let zero = _mm256_setzero_si256();
            let members = |v: __m256i| {
                let h = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
                let l = _mm256_and_si256(v, nibble);
                let both =
                    _mm256_and_si256(_mm256_shuffle_epi8(high, h), _mm256_shuffle_epi8(low, l));
                // Bits set where `both` is zero: the byte is not a member.
                !(_mm256_movemask_epi8(_mm256_cmpeq_epi8(both, zero)) as u32)
            };
            let lo = _mm256_loadu_si256(b.as_ptr().cast::<__m256i>());
            let hi = _mm256_loadu_si256(b.as_ptr().add(32).cast::<__m256i>());
            u64::from(members(lo)) | u64::from(members(hi)) << 32
        }
    }
}

/// Skips a string whose opening quote is just before `i`: returns the index after the
/// closing quote and whether the string has any escape.
#[inline]
pub fn skip_str(s: &[u8], i: usize) -> Scan<(usize, bool)> {
    // Most strings (keys, ids, short values) end within a few 16-byte steps and before
    // any escape: look for the first quote, backslash or control byte 16 at a time.
    let mut j = i;
    while let Some(chunk) = s.get(j..j + 16) {
        let chunk: &[u8; 16] = chunk.try_into().map_err(|_| Bail)?;
        let (quotes, m) = special16(chunk);
        if m == 0 {
            j += 16;
            if j - i >= 64 {
                return skip_str_blocks(s, j);
            }
            continue;
        }
        let first = m & m.wrapping_neg();
        return if quotes & first != 0 {
            Ok((j + first.trailing_zeros() as usize + 1, false))
        } else {
            // A backslash (or a control byte, which the block loop refuses) before any
            // quote: nothing before it in this chunk matters, so start the blocks here.
            skip_str_blocks(s, j)
        };
    }
    skip_str_blocks(s, j)
}

/// Bits k set when byte k of `b` is a quote, and when it is a quote, a backslash or
/// below 0x20.
#[inline]
fn special16(b: &[u8; 16]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; the load reads the 16 bytes of `b`
        // and needs no alignment.
        let m = unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
            let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let bs = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            (
                _mm_movemask_epi8(q),
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, bs), low)),
            )
        };
        // movemask sets only the low 16 bits.
        (m.0 as u32, m.1 as u32)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        b.iter().enumerate().fold((0, 0), |(q, m), (k, &c)| {
            (
                q | (u32::from(c == b'"') << k),
                m | (u32::from(c == b'"' || c == b'\\' || c < 0x20) << k),
            )
        })
    }
}

/// [`skip_str`] from `i`, inside the string, 64 bytes at a time: with AVX2 when the CPU
/// has it, SSE2 otherwise on x86_64, byte by byte elsewhere.
fn skip_str_blocks(s: &[u8], i: usize) -> Scan<(usize, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { skip_str_blocks_avx2(s, i) };
        }
        blocks(s, i, sse2::classes, scalar_escapes)
    }
    #[cfg(not(target_arch = "x86_64"))]
    blocks(s, i, portable::classes, scalar_escapes)
}

/// [`blocks`] with AVX2 classification and escape checks.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn skip_str_blocks_avx2(s: &[u8], i: usize) -> Scan<(usize, bool)> {
    blocks(
        s,
        i,
        // SAFETY: this function runs only where AVX2 is supported (its own contract).
        |b| unsafe { avx2::classes(b) },
        // SAFETY: as above.
        |b, escaped| escaped & !unsafe { avx2::simple_escapes(b) },
    )
}

/// The escaped bytes of `b` that need a closer look, when the escapes are checked one by
/// one: all of them.
#[inline(always)]
fn scalar_escapes(_b: &[u8; 64], escaped: u64) -> u64 {
    escaped
}

/// The block loop of [`skip_str_blocks`], given how to classify a block and which of its
/// escaped bytes (`escaped`, a mask) still need [`escape_ok`].
#[inline(always)]
fn blocks(
    s: &[u8],
    mut i: usize,
    classes: impl Fn(&[u8; 64]) -> Classes,
    unchecked_escapes: impl Fn(&[u8; 64], u64) -> u64,
) -> Scan<(usize, bool)> {
    let mut prev: u64 = 0;
    let mut any_escape = false;
    while let Some(block) = s.get(i..i + 64) {
        let block: &[u8; 64] = block.try_into().map_err(|_| Bail)?;
        let c = classes(block);
        let (esc, next) = escaped(c.backslash, prev);
        let quote = c.quote & !esc;
        // The bytes before the closing quote (all of them when there is none).
        let before = quote.wrapping_sub(1) & !quote;
        if c.control & before != 0 {
            return Err(Bail);
        }
        let e = esc & before;
        if e != 0 {
            any_escape = true;
            let mut e = unchecked_escapes(block, e);
            while e != 0 {
                escape_ok(s, i + e.trailing_zeros() as usize)?;
                e &= e - 1;
            }
        }
        if quote != 0 {
            return Ok((i + quote.trailing_zeros() as usize + 1, any_escape));
        }
        prev = next;
        i += 64;
    }
    // The tail, byte by byte, carrying the escape state.
    let mut escaped_next = prev != 0;
    while i < s.len() {
        let c = s[i];
        if escaped_next {
            escape_ok(s, i)?;
            any_escape = true;
            escaped_next = false;
        } else if c == b'"' {
            return Ok((i + 1, any_escape));
        } else if c == b'\\' {
            escaped_next = true;
        } else if c < 0x20 {
            return Err(Bail);
        }
        i += 1;
    }
    Err(Bail)
}

/// Calls `f(key, value_start)` for each entry of the object at `i` (at its `{`); `f`
/// reads or skips the value and returns the index after it. Returns the index after the
/// object. A key with an escape is left to `serde_json` (it compares decoded keys).
#[inline]
pub fn object<'a>(
    s: &'a [u8],
    i: usize,
    mut f: impl FnMut(&'a [u8], usize) -> Scan<usize>,
) -> Scan<usize> {
    if at(s, i)? != b'{' {
        return Err(Bail);
    }
    let mut i = ws(s, i + 1);
    if at(s, i)? == b'}' {
        return Ok(i + 1);
    }
    loop {
        if at(s, i)? != b'"' {
            return Err(Bail);
        }
        let (end, esc) = skip_str(s, i + 1)?;
        if esc {
            return Err(Bail);
        }
        let key = &s[i + 1..end - 1];
        i = ws(s, end);
        if at(s, i)? != b':' {
            return Err(Bail);
        }
        i = ws(s, f(key, ws(s, i + 1))?);
        match at(s, i)? {
            b',' => i = ws(s, i + 1),
            b'}' => return Ok(i + 1),
            _ => return Err(Bail),
        }
    }
}

/// Calls `f(value_start)` for each element of the array at `i` (at its `[`).
#[inline]
pub fn array(s: &[u8], i: usize, mut f: impl FnMut(usize) -> Scan<usize>) -> Scan<usize> {
    if at(s, i)? != b'[' {
        return Err(Bail);
    }
    let mut i = ws(s, i + 1);
    if at(s, i)? == b']' {
        return Ok(i + 1);
    }
    loop {
        i = ws(s, f(i)?);
        match at(s, i)? {
            b',' => i = ws(s, i + 1),
            b']' => return Ok(i + 1),
            _ => return Err(Bail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_ok(s: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(s).is_ok()
    }

    /// Escaped bytes by walking the block one byte at a time.
    fn escaped_slow(bs: u64, prev: u64) -> (u64, u64) {
        let mut out = 0u64;
        let mut esc = prev != 0;
        for k in 0..64 {
            if esc {
                out |= 1 << k;
                esc = false;
            } else if bs & (1 << k) != 0 {
                esc = true;
            }
        }
        (out, u64::from(esc))
    }

    #[test]
    fn escape_runs_match_a_byte_walk() {
        let cases = [
            0u64,
            1,
            3,
            7,
            u64::MAX,
            1 << 63,
            3 << 62,
            0x5555_5555_5555_5555,
            ODD_BITS,
            0x0F0F_0F0F_F0F0_F0F0,
        ];
        for &bs in &cases {
            for prev in [0, 1] {
                assert_eq!(escaped(bs, prev), escaped_slow(bs, prev), "{bs:#x} {prev}");
            }
        }
    }

    /// Every way [`skip_str_blocks`] can run on this machine.
    type Backend = fn(&[u8], usize) -> Scan<(usize, bool)>;
    fn backends() -> Vec<(&'static str, Backend)> {
        let portable: (&'static str, Backend) = ("portable", |s, i| {
            blocks(s, i, portable::classes, scalar_escapes)
        });
        #[cfg(not(target_arch = "x86_64"))]
        return vec![portable];
        #[cfg(target_arch = "x86_64")]
        {
            let mut v = vec![portable];
            v.push(("sse2", |s, i| blocks(s, i, sse2::classes, scalar_escapes)));
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected just above.
                v.push(("avx2", |s, i| unsafe { skip_str_blocks_avx2(s, i) }));
            } else {
                eprintln!("no AVX2 on this CPU: its string scanner is not tested");
            }
            v
        }
    }

    /// Bytes that matter to strings, and some that do not.
    fn string_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'a'),
            Just(b'"'),
            Just(b'\\'),
            Just(b'n'),
            Just(b'u'),
            Just(b'0'),
            Just(b'F'),
            Just(0x1f),
            Just(b'\t'),
            Just(0xc3),
            Just(b'/'),
            Just(b'x'),
            Just(0x7f),
            Just(0x80),
            Just(0xff),
            Just(b'b'),
            Just(b'r'),
            Just(b'"' | 0x80),
            Just(b'\\' | 0x80),
            Just(b'n' - 0x10),
            any::<u8>(),
        ]
    }

    #[test]
    fn every_byte_is_classified_as_the_portable_code_does() {
        for x in 0..=255u8 {
            let b = [x; 64];
            let c = portable::classes(&b);
            let all = |yes: bool| if yes { u64::MAX } else { 0 };
            assert_eq!(c.quote, all(x == b'"'));
            assert_eq!(c.backslash, all(x == b'\\'));
            assert_eq!(c.control, all(x < 0x20));
            assert_eq!(
                portable::simple_escapes(&b),
                all(b"\"\\/bfnrt".contains(&x)),
                "{x:#x}"
            );
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(sse2::classes(&b), c, "{x:#x}");
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was detected just above.
                    let (ac, ae) = unsafe { (avx2::classes(&b), avx2::simple_escapes(&b)) };
                    assert_eq!(ac, c, "{x:#x}");
                    assert_eq!(ae, portable::simple_escapes(&b), "{x:#x}");
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        /// The vector classifications agree with the portable one, byte for byte.
        #[test]
        fn blocks_are_classified_alike(bytes in proptest::collection::vec(string_byte(), 64)) {
            let b: &[u8; 64] = bytes.as_slice().try_into().expect("64 bytes");
            prop_assert_eq!(sse2::classes(b), portable::classes(b));
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected just above.
                let (c, e) = unsafe { (avx2::classes(b), avx2::simple_escapes(b)) };
                prop_assert_eq!(c, portable::classes(b));
                prop_assert_eq!(e, portable::simple_escapes(b));
            }
        }
    }

    proptest! {
        /// Long strings through every backend: the same answer as serde_json, and the
        /// same end and escape flag from each.
        #[test]
        fn string_backends_agree(
            body in proptest::collection::vec(string_byte(), 0..300),
            pad in 0usize..70,
        ) {
            let mut line = b"[".to_vec();
            line.extend(std::iter::repeat_n(b' ', pad));
            line.push(b'"');
            let start = line.len();
            line.extend(&body);
            line.extend(b"\"]");
            let backends = backends();
            let (_, first) = backends[0];
            let want = first(&line, start);
            for (name, f) in &backends {
                prop_assert_eq!(f(&line, start), want, "{} on {:?}", name, String::from_utf8_lossy(&line));
            }
            if let Ok((end, _)) = want {
                let s = &line[start - 1..end];
                prop_assert!(serde_json::from_slice::<serde::de::IgnoredAny>(s).is_ok(), "{:?}", String::from_utf8_lossy(s));
            }
        }

        #[test]
        fn escape_runs_match_a_byte_walk_random(bs in any::<u64>(), prev in 0u64..2) {
            prop_assert_eq!(escaped(bs, prev), escaped_slow(bs, prev));
        }

        /// Strings made of the bytes that matter, at lengths around the block size.
        #[test]
        fn strings_agree_with_serde(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'a'), Just(b'"'), Just(b'\\'), Just(b'n'), Just(b'u'), Just(b'0'),
                    Just(b'F'), Just(0x1f), Just(b'\t'), Just(0xc3), Just(b'/'), Just(b'x'),
                ],
                0..200,
            ),
            pad in 0usize..70,
        ) {
            let mut line = b"[".to_vec();
            line.extend(std::iter::repeat_n(b' ', pad));
            line.push(b'"');
            line.extend(&body);
            line.extend(b"\"]");
            prop_assert_eq!(validate(&line).is_ok(), serde_ok(&line), "{:?}", String::from_utf8_lossy(&line));
        }

        /// Random structure: what we accept, serde accepts, and the other way round.
        #[test]
        fn documents_agree_with_serde(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"),
                    Just("\"k\""), Just("\"a\\\"b\""), Just("1"), Just("-0.5e+3"), Just("01"),
                    Just("1."), Just("true"), Just("nul"), Just("null"), Just(" "), Just("\n"),
                    Just("\"\\u12G4\""), Just("\"\\u00e9\""),
                ],
                0..24,
            ),
        ) {
            let line: String = parts.concat();
            prop_assert_eq!(
                validate(line.as_bytes()).is_ok(),
                serde_ok(line.as_bytes()),
                "{}", line
            );
        }
    }

    #[test]
    fn real_lines_and_their_damage_agree_with_serde() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                assert!(validate(line).is_ok(), "{}", String::from_utf8_lossy(line));
                // Every truncation of a (short) line, and a few byte changes.
                let cut = line.len().min(400);
                for k in 0..cut {
                    let t = &line[..k];
                    assert_eq!(validate(t).is_ok(), serde_ok(t));
                    let mut m = line.to_vec();
                    m[k] = [b'"', b'\\', b'}', 0x01][k % 4];
                    assert_eq!(
                        validate(&m).is_ok(),
                        serde_ok(&m),
                        "{}",
                        String::from_utf8_lossy(&m)
                    );
                }
                n += 1;
            }
        }
        assert!(n > 50, "{n} lines");
    }

    #[test]
    fn deep_nesting_is_left_to_serde() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(validate(deep.as_bytes()), Err(Bail));
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(validate(ok.as_bytes()), Ok(()));
    }
}
