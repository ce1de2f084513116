//! Lower-case hex, as hashes, keys and signatures are shown to people and in exports.

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Each byte's value as a hex digit, or 0xff (a table: decoding hashes is on the
/// audit verifier's hot path).
const DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn digit(c: u8) -> Option<u8> {
    let d = DIGIT[usize::from(c)];
    (d != 0xff).then_some(d)
}

/// Decodes hex (either case) into exactly `out`; false if `text` is not
/// `2 * out.len()` hex digits.
pub fn decode_into(text: &[u8], out: &mut [u8]) -> bool {
    let bytes = text;
    if bytes.len() != out.len() * 2 {
        return false;
    }
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (h, l) = (DIGIT[usize::from(pair[0])], DIGIT[usize::from(pair[1])]);
        bad |= (h | l) & 0xf0;
        *o = h << 4 | (l & 0xf);
    }
    bad == 0
}

/// Decodes hex (either case); `None` if it is not an even number of hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_non_hex() {
        assert_eq!(super::encode(&[0xab, 0x01]), "ab01");
        assert_eq!(super::decode("ab01"), Some(vec![0xab, 0x01]));
        assert_eq!(super::decode("AB"), Some(vec![0xab]));
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
        assert_eq!(super::decode("+a"), None);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::decode(&super::encode(&all)), Some(all));
    }
}
