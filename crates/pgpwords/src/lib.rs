//! The PGP word list (Juola and Zimmermann): each byte of a digest becomes a word, from the
//! two-syllable "even" list at even positions and the three-syllable "odd" list at odd positions,
//! so that a swapped, repeated or dropped word is audible. IANA's key-ceremony tools read digests
//! aloud this way; so do ours.

use std::sync::OnceLock;

const EVEN_TEXT: &str = include_str!("even.txt");
const ODD_TEXT: &str = include_str!("odd.txt");

fn lists() -> &'static ([&'static str; 256], [&'static str; 256]) {
    static LISTS: OnceLock<([&str; 256], [&str; 256])> = OnceLock::new();
    LISTS.get_or_init(|| {
        let load = |text: &'static str| -> [&'static str; 256] {
            let words: Vec<&str> = text.lines().collect();
            words.try_into().expect("each PGP word list has 256 words")
        };
        (load(EVEN_TEXT), load(ODD_TEXT))
    })
}

/// The words for `bytes`, starting with the even list.
pub fn encode(bytes: &[u8]) -> Vec<&'static str> {
    let (even, odd) = lists();
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| if i % 2 == 0 { even[b as usize] } else { odd[b as usize] })
        .collect()
}

/// The words for a hex string (such as a SHA-256 digest), or `None` if it is not hex.
pub fn encode_hex(hex: &str) -> Option<Vec<&'static str>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect();
    bytes.map(|b| encode(&b))
}

/// A digest as words in lines of eight, for printing.
pub fn format_hex(hex: &str) -> String {
    match encode_hex(hex) {
        Some(words) => words.chunks(8).map(|c| c.join(" ")).collect::<Vec<_>>().join("\n"),
        None => String::new(),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// 1-based position of the word that is wrong.
    pub position: usize,
    pub word: String,
    pub reason: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "word {} ({:?}): {}", self.position, self.word, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Words back to bytes (case-insensitive). A word from the wrong list at its position is an error:
/// that is how a swap of two words is caught.
pub fn decode(words: &[&str]) -> Result<Vec<u8>, DecodeError> {
    let (even, odd) = lists();
    let find = |list: &[&str; 256], w: &str| list.iter().position(|x| x.eq_ignore_ascii_case(w));
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (own, other) = if i % 2 == 0 { (even, odd) } else { (odd, even) };
            match (find(own, w), find(other, w)) {
                (Some(b), _) => Ok(b as u8),
                (None, Some(_)) => Err(DecodeError {
                    position: i + 1,
                    word: w.to_string(),
                    reason: "belongs to the other list: a word is missing, repeated or swapped",
                }),
                (None, None) => {
                    Err(DecodeError { position: i + 1, word: w.to_string(), reason: "not a PGP word" })
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        assert_eq!(encode(&[0x00, 0x00]), ["aardvark", "adroitness"]);
        assert_eq!(encode(&[0xff, 0xff]), ["Zulu", "Yucatan"]);
        assert_eq!(encode(&[0xe5, 0x82]), ["topmost", "Istanbul"]);
        assert_eq!(encode_hex("E582").unwrap(), ["topmost", "Istanbul"]);
        assert_eq!(encode_hex("e58"), None);
        assert_eq!(encode_hex("zz"), None);
    }

    #[test]
    fn lists_are_complete_and_disjoint() {
        let (even, odd) = lists();
        let mut all: Vec<String> = even.iter().chain(odd.iter()).map(|w| w.to_lowercase()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 512);
    }

    #[test]
    fn swapped_words_are_caught() {
        let err = decode(&["adroitness", "aardvark"]).unwrap_err();
        assert_eq!(err.position, 1);
        assert!(decode(&["aardvark", "banana"]).unwrap_err().reason.contains("not a PGP word"));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let words = encode(&bytes);
            let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
            let refs: Vec<&str> = upper.iter().map(String::as_str).collect();
            prop_assert_eq!(decode(&refs).unwrap(), bytes);
        }
    }
}
