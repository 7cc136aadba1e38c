//! gzip's CRC-32 of a body from its pieces' CRCs, one product per piece.
//!
//! For pieces A and B, crc(A ‖ B) = crc(A) · x^(8·|B|) + crc(B), modulo
//! CRC-32's polynomial (zlib's `crc32_combine`). The factor depends on
//! B's length alone, so a kept segment keeps it beside its CRC
//! ([`PieceCrc`]), and a body's CRC costs one product per piece.
//! (`crc32fast::Hasher::combine` derives the factor again at every call,
//! squaring a matrix per bit of the length: at 2,000 pieces a body, about
//! 0.4 ms of the master's time per poll.)
//!
//! Polynomials are in CRC-32's reflected order: x^0 is the top bit of a
//! `u32`, x^31 the bottom one.

/// CRC-32's polynomial (less x^32), reflected.
const POLY: u32 = 0xedb8_8320;

/// The polynomial 1 (x^0).
const ONE: u32 = 1 << 31;

/// `a · b` modulo the polynomial.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// `x^(2^k)` modulo the polynomial, for k in 0..32. The order of x divides
/// 2^32 - 1, so x^(2^32) is x again and k counts modulo 32.
const POWERS: [u32; 32] = {
    let mut powers = [0; 32];
    let mut power = ONE >> 1; // x^1
    let mut k = 0;
    while k < 32 {
        powers[k] = power;
        power = multiply(power, power);
        k += 1;
    }
    powers
};

/// `x^(8·bytes)` modulo the polynomial: the factor that shifts a CRC past
/// `bytes` more bytes.
fn shift_for(bytes: u64) -> u32 {
    let mut factor = ONE;
    let mut rest = bytes;
    // 8·bytes = bytes << 3: bit i of `bytes` is x^(2^(i + 3)).
    let mut k = 3;
    while rest != 0 {
        if rest & 1 != 0 {
            factor = multiply(POWERS[k % 32], factor);
        }
        rest >>= 1;
        k += 1;
    }
    factor
}

/// A piece's CRC-32 and the factor that shifts a CRC past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PieceCrc {
    crc: u32,
    shift: u32,
}

impl PieceCrc {
    pub(super) fn of(piece: &[u8]) -> Self {
        Self {
            crc: crc32fast::hash(piece),
            shift: shift_for(piece.len() as u64),
        }
    }
}

/// The CRC-32 of the pieces appended so far, in order.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BodyCrc(u32);

impl BodyCrc {
    pub(super) fn append(&mut self, piece: &PieceCrc) {
        self.0 = multiply(piece.shift, self.0) ^ piece.crc;
    }

    pub(super) fn value(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_empty_body_and_empty_pieces() {
        let mut body = BodyCrc::default();
        assert_eq!(body.value(), crc32fast::hash(b""));
        body.append(&PieceCrc::of(b""));
        body.append(&PieceCrc::of(b"123456789"));
        body.append(&PieceCrc::of(b""));
        // CRC-32's check value.
        assert_eq!(body.value(), 0xcbf4_3926);
    }

    #[test]
    fn the_factor_for_2_to_the_32_bytes_wraps_as_the_order_says() {
        // Lengths past 2^29 bytes use the powers past k = 31.
        let long = (1u64 << 32) + 5;
        let mut factor = shift_for(1 << 32);
        factor = multiply(factor, shift_for(5));
        assert_eq!(shift_for(long), factor);
    }

    proptest! {
        /// Appending pieces' CRCs gives the CRC of the pieces joined.
        #[test]
        fn appended_pieces_give_the_joined_crc(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        ) {
            let mut body = BodyCrc::default();
            for piece in &pieces {
                body.append(&PieceCrc::of(piece));
            }
            prop_assert_eq!(body.value(), crc32fast::hash(&pieces.concat()));
        }
    }
}
