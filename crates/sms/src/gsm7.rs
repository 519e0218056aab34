//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 §6.2.1), and the
//! packing of septets into octets (TS 23.040 §9.2.3.24 with fill bits after a user data header).

/// The default alphabet: septet value → character. 0x1B is the escape to the extension table.
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: septet after ESC → character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The escape to the extension table: always followed by one more septet.
pub(crate) const ESC: u8 = 0x1B;

/// The septets of `text`, or the first character the alphabet cannot carry.
pub fn encode(text: &str) -> Result<Vec<u8>, char> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c != '\u{1B}'
            && let Some(i) = DEFAULT.iter().position(|&d| d == c)
        {
            out.push(i as u8);
        } else if let Some(&(s, _)) = EXTENSION.iter().find(|&&(_, e)| e == c) {
            out.extend([ESC, s]);
        } else {
            return Err(c);
        }
    }
    Ok(out)
}

/// Whether every character of `text` is in the default alphabet or its extension.
pub fn can_encode(text: &str) -> bool {
    encode(text).is_ok()
}

/// The text of `septets`. An escape followed by a septet the extension table lacks reads as
/// that septet's default character (TS 23.038 §6.2.1.1); a trailing escape as a space.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut it = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = it.next() {
        if s == ESC {
            match it.next() {
                Some(e) => out.push(EXTENSION.iter().find(|&&(x, _)| x == e).map_or(DEFAULT[e as usize], |&(_, c)| c)),
                None => out.push(' '),
            }
        } else {
            out.push(DEFAULT[s as usize]);
        }
    }
    out
}

/// An octet above 0x7F where SMPP carries the default alphabet one septet an octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("octet {octet:#04x} at offset {offset} is no GSM 7-bit septet")]
pub struct NotASeptet {
    pub offset: usize,
    pub octet: u8,
}

/// Checks that `octets` are septets: the unpacked form of the default alphabet that SMPP's
/// data_coding 0 carries.
pub fn check_unpacked(octets: &[u8]) -> Result<(), NotASeptet> {
    match octets.iter().position(|&o| o > 0x7F) {
        Some(offset) => Err(NotASeptet { offset, octet: octets[offset] }),
        None => Ok(()),
    }
}

/// The septets of Latin-1 `octets`, or the first character the alphabet cannot carry.
pub fn from_latin1(octets: &[u8]) -> Result<Vec<u8>, char> {
    encode(&octets.iter().map(|&b| char::from(b)).collect::<String>())
}

/// The Latin-1 octets of `septets`, or the first character Latin-1 lacks (the Greek
/// capitals, `€`).
pub fn to_latin1(septets: &[u8]) -> Result<Vec<u8>, char> {
    decode(septets).chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| c)).collect()
}

/// Packs septets into octets, starting after `fill` zero bits (0–6): the padding that puts
/// the first septet on a septet boundary after a user data header.
pub fn pack(septets: &[u8], fill: usize) -> Vec<u8> {
    let bits = fill + septets.len() * 7;
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = ((s & 0x7F) as u16) << shift;
        out[byte] |= v as u8;
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` septets from `octets`, skipping `fill` bits first; `None` if the octets
/// hold fewer.
pub fn unpack(octets: &[u8], count: usize, fill: usize) -> Option<Vec<u8>> {
    if (fill + count * 7).div_ceil(8) > octets.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let lo = octets[byte] as u16;
        let hi = octets.get(byte + 1).copied().unwrap_or(0) as u16;
        out.push((((hi << 8 | lo) >> shift) & 0x7F) as u8);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellohello_packs_as_in_the_classic_example() {
        let septets = encode("hellohello").unwrap();
        assert_eq!(hex::encode_upper(pack(&septets, 0)), "E8329BFD4697D9EC37");
        assert_eq!(decode(&unpack(&pack(&septets, 0), 10, 0).unwrap()), "hellohello");
    }

    #[test]
    fn extension_and_unencodable() {
        assert_eq!(encode("€[]").unwrap(), vec![ESC, 0x65, ESC, 0x3C, ESC, 0x3E]);
        assert_eq!(decode(&encode("{a|b}^~\\€").unwrap()), "{a|b}^~\\€");
        assert_eq!(encode("日本"), Err('日'));
        assert_eq!(decode(&[ESC, 0x41]), "A", "unknown extension reads as the default character");
    }

    #[test]
    fn smpp_unpacked_text_both_ways() {
        let text = "@£$_{}[]~€ éüÑÅ";
        let septets = encode(text).unwrap();
        assert_eq!(check_unpacked(&septets), Ok(()));
        assert_eq!(&septets[..4], &[0x00, 0x01, 0x02, 0x11]);
        assert_eq!(decode(&septets), text);
        let latin1 = to_latin1(&encode("@£$_{}[]~ éüÑÅ").unwrap()).unwrap();
        assert_eq!(latin1, "@£$_{}[]~ éüÑÅ".chars().map(|c| c as u8).collect::<Vec<u8>>());
        assert_eq!(decode(&from_latin1(&latin1).unwrap()), "@£$_{}[]~ éüÑÅ");
    }

    #[test]
    fn invalid_octets_and_characters_are_errors() {
        assert_eq!(check_unpacked(b"ab\xE9c"), Err(NotASeptet { offset: 2, octet: 0xE9 }));
        assert_eq!(to_latin1(&encode("5 €").unwrap()), Err('€'));
        assert_eq!(to_latin1(&encode("ΔΣ").unwrap()), Err('Δ'));
        assert_eq!(from_latin1(&[b'a', 0xE1]), Err('á'));
    }

    proptest::proptest! {
        #[test]
        fn any_octets_decode_without_panic(octets in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check_unpacked(&octets);
            let _ = to_latin1(&octets);
            let _ = from_latin1(&octets);
            proptest::prop_assert_eq!(decode(&octets).is_empty(), octets.is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn pack_unpack(septets in proptest::collection::vec(0u8..128, 0..200), fill in 0usize..7) {
            let packed = pack(&septets, fill);
            proptest::prop_assert_eq!(unpack(&packed, septets.len(), fill).unwrap(), septets);
        }
    }
}
