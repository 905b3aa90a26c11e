//! Seeded mutations of corpus cases: what the readers' authors did not think of, found without a
//! coverage-guided engine (libfuzzer/ has one). The same seed gives the same inputs, so a
//! failure in CI replays anywhere.

/// xorshift64*: small, fast, and the same on every host.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that sit on the edges of sizes, offsets and counts.
const INTERESTING_U32: [u32; 10] =
    [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

/// One to four mutations of `seed`; `other` (another case of the corpus) may be spliced in.
pub fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(&mut bytes, other, rng);
    }
    bytes
}

fn mutate_once(bytes: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if bytes.is_empty() {
        bytes.push(rng.next_u64() as u8);
        return;
    }
    let at = rng.below(bytes.len());
    match rng.below(9) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.next_u64() as u8,
        // Sizes and offsets, little- and big-endian (ISO 9660 stores both).
        2 | 3 => {
            let value = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
            let encoded = if rng.below(2) == 0 { value.to_le_bytes() } else { value.to_be_bytes() };
            let end = (at + 4).min(bytes.len());
            bytes[at..end].copy_from_slice(&encoded[..end - at]);
        }
        // cpio headers are ASCII hex: another digit keeps the header parseable.
        4 => {
            let position =
                (0..bytes.len()).map(|i| (at + i) % bytes.len()).find(|&i| bytes[i].is_ascii_hexdigit());
            if let Some(i) = position {
                bytes[i] = b"0123456789ABCDEF"[rng.below(16)];
            }
        }
        5 => bytes.truncate(at),
        6 => {
            let len = 1 + rng.below((bytes.len() - at).min(512));
            bytes.drain(at..at + len);
        }
        7 => {
            let len = 1 + rng.below((bytes.len() - at).min(512));
            let chunk = bytes[at..at + len].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, chunk);
        }
        _ => {
            if other.is_empty() {
                return;
            }
            let from = rng.below(other.len());
            let len = 1 + rng.below((other.len() - from).min(4096));
            let end = (at + len).min(bytes.len());
            bytes.splice(at..end, other[from..from + len].iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations_and_they_change_the_input() {
        let seed = b"07070100000001000041ED hello world".to_vec();
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..50).map(|_| mutate(&seed, b"other", &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().filter(|m| **m != seed).count() > 40);
    }
}
