//! Byte-class tables for the validators on hot paths (names on every cache miss, key ids in
//! every envelope parse): one table lookup per byte instead of a chain of comparisons.

/// A table saying, for every byte, whether it is an ASCII letter or digit or one of `extra`.
pub(crate) const fn ascii_alnum_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_exactly_alphanumerics_and_the_extras() {
        let t = ascii_alnum_and(b"-/");
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'/';
            assert_eq!(t[usize::from(b)], expected, "byte {b}");
        }
    }
}
