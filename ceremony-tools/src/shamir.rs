//! k-of-n secret sharing over GF(256) (Shamir; the field of x^8 + x^4 + x^3 + x^2 + 1), with
//! blahaj for the field arithmetic and the dealing, and our own share format: printable,
//! typeable, checksummed, and tied to its split.
//!
//! Share text: `cs2-<split>-<k>-<x>-<y as hex>-<check>`, where `split` is 8 random bytes (hex)
//! naming the dealing, `x` is the share's index (1..=n) and `check` is the first 4 bytes of
//! SHA-256("ceremony-share-v2" | split | k | x | y): a mistyped share is named before combining,
//! and shares of different splits are refused. Case and white space do not matter.
//!
//! What is shared is not the secret alone but `secret || tag`, with `tag` the first 8 bytes of
//! SHA-256("ceremony-secret-v2" | split | secret). Combining checks the tag, so a wrong
//! combination (an altered share whose checksum was recomputed, a share of another split carrying
//! this split's name) is refused instead of returned. The tag is inside the shared data: no share,
//! and no k-1 shares, reveal anything about it, so a short PIN cannot be guessed from one share.
//!
//! The dealing is plain Shamir: blahaj draws every coefficient uniformly from 0..=255, a zero top
//! coefficient included. Any k-1 shares of such a dealing are independent of the secret. Dealing
//! again until every top coefficient is non-zero would not be: for each byte it rules out the one
//! secret value that k-1 shares would give with a lower degree (with k = 2, a share byte would
//! never equal its secret byte), and it cannot deal a long secret at all.
//!
//! Combining uses exactly k distinct shares; each further share is checked against the polynomial
//! they make (named if it disagrees), a share given twice counts once, and one index with two
//! values is a conflict.

use blahaj::{Share, Sharks};
use sha2::{Digest, Sha256};

const PREFIX: &str = "cs2";
const CHECK_CONTEXT: &[u8] = b"ceremony-share-v2";
const SECRET_CONTEXT: &[u8] = b"ceremony-secret-v2";
const TAG_LEN: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("need 2 <= k <= n <= 255, got k = {k}, n = {n}")]
    Parameters { k: u32, n: u32 },
    #[error("the secret is empty")]
    EmptySecret,
    #[error("share {position}: {message}")]
    BadShare { position: usize, message: String },
    #[error("share {position} (index {index}) fails its checksum: it was mistyped or altered")]
    Checksum { position: usize, index: u8 },
    #[error("{0}")]
    Combine(String),
    #[error(
        "the shares combine to a value whose check fails: one of them is wrong (altered, or from another split)"
    )]
    Verifier,
}

/// A share: its split, threshold, index and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextShare {
    pub split: [u8; 8],
    pub threshold: u8,
    pub index: u8,
    pub value: Vec<u8>,
}

impl TextShare {
    fn check(&self) -> String {
        let mut h = Sha256::new();
        h.update(CHECK_CONTEXT);
        h.update(self.split);
        h.update([self.threshold, self.index]);
        h.update(&self.value);
        hex::encode(&h.finalize()[..4])
    }

    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}-{}-{}-{}-{}-{}",
            hex::encode(self.split),
            self.threshold,
            self.index,
            hex::encode(&self.value),
            self.check()
        )
    }

    /// Parse a typed share; `position` (1-based) names it in errors.
    pub fn parse(text: &str, position: usize) -> Result<Self, ShamirError> {
        let bad = |message: &str| ShamirError::BadShare { position, message: message.into() };
        let compact: String =
            text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        let parts: Vec<&str> = compact.split('-').collect();
        let [prefix, split, k, x, y, check] = parts[..] else {
            return Err(bad("expected cs2-<split>-<k>-<index>-<value>-<check>"));
        };
        if prefix != PREFIX {
            return Err(bad("does not start with cs2- (a share of this tool's format)"));
        }
        let split: [u8; 8] = hex::decode(split)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the split name is not 16 hex digits"))?;
        let threshold: u8 = k.parse().map_err(|_| bad("the threshold is not a number"))?;
        let index: u8 = x.parse().map_err(|_| bad("the index is not a number from 1 to 255"))?;
        let value = hex::decode(y).map_err(|_| bad("the value is not hex"))?;
        if index == 0 || value.is_empty() {
            return Err(bad("index 0 or an empty value"));
        }
        let share = TextShare { split, threshold, index, value };
        if share.check() != check {
            return Err(ShamirError::Checksum { position, index });
        }
        Ok(share)
    }
}

fn tag(split: &[u8; 8], secret: &[u8]) -> [u8; TAG_LEN] {
    let mut h = Sha256::new();
    h.update(SECRET_CONTEXT);
    h.update(split);
    h.update(secret);
    h.finalize()[..TAG_LEN].try_into().expect("8 bytes")
}

/// Whether `k` of `n` shares is a sharing this module makes: 2 <= k <= n <= 255.
pub fn check_parameters(k: u32, n: u32) -> Result<(), ShamirError> {
    if !(2..=255).contains(&k) || k > n || n > 255 { Err(ShamirError::Parameters { k, n }) } else { Ok(()) }
}

/// Split `secret` into `n` shares, any `k` of which recover it. `split` names the dealing (8
/// random bytes).
pub fn split(secret: &[u8], k: u32, n: u32, split: [u8; 8]) -> Result<Vec<TextShare>, ShamirError> {
    check_parameters(k, n)?;
    if secret.is_empty() {
        return Err(ShamirError::EmptySecret);
    }
    let (k, n) = (k as u8, n as u8);
    let dealt = zeroize::Zeroizing::new([secret, &tag(&split, secret)[..]].concat());
    Ok(Sharks(k)
        .dealer(&dealt)
        .take(n as usize)
        .map(|s| {
            let bytes = zeroize::Zeroizing::new(Vec::from(&s));
            TextShare { split, threshold: k, index: bytes[0], value: bytes[1..].to_vec() }
        })
        .collect())
}

/// The value at `x` of the polynomial through `shares` (as many as its degree + 1). In GF(2^8)
/// subtracting is XOR, so moving every index by `x` moves the evaluation point to 0, where
/// blahaj interpolates.
fn evaluate_at(shares: &[&TextShare], x: u8) -> Result<Vec<u8>, ShamirError> {
    let moved: Vec<Share> = shares.iter().map(|s| share_from(s.index ^ x, &s.value)).collect();
    Sharks(shares.len() as u8).recover(&moved).map_err(|e| ShamirError::Combine(e.to_string()))
}

/// blahaj's share from an index and value (its field type is not public; its byte form is).
fn share_from(x: u8, y: &[u8]) -> Share {
    let bytes = [&[x][..], y].concat();
    Share::try_from(bytes.as_slice()).expect("a share has an index and at least one byte")
}

/// Split `secret` with a fresh random split id and hand the shares to the console, one per
/// keyholder (the binary prints them one per line); say which split they belong to.
pub fn split_for_keyholders(
    secret: &[u8],
    k: u32,
    n: u32,
    console: &dyn crate::console::Console,
) -> anyhow::Result<crate::ca::Outcome> {
    use anyhow::Context;
    let mut split_id = [0u8; 8];
    getrandom::getrandom(&mut split_id).context("the system's random number generator failed")?;
    let shares = split(secret, k, n, split_id)?;
    let texts: Vec<zeroize::Zeroizing<String>> = shares.iter().map(|s| s.to_text().into()).collect();
    console.shares(&texts)?;
    console.say(&format!(
        "{} shares of split {} written, one per line; any {k} recover the secret",
        shares.len(),
        hex::encode(split_id)
    ));
    Ok(crate::ca::Outcome::default())
}

/// Recover the secret from at least k valid shares of one split, and check it.
pub fn combine(shares: &[TextShare]) -> Result<zeroize::Zeroizing<Vec<u8>>, ShamirError> {
    let Some(first) = shares.first() else { return Err(ShamirError::Combine("no shares given".into())) };
    let k = first.threshold;
    if let Some(other) = shares.iter().find(|s| s.split != first.split) {
        return Err(ShamirError::Combine(format!(
            "share with index {} is from split {}, the first share from split {}: shares of different splits never combine",
            other.index,
            hex::encode(other.split),
            hex::encode(first.split)
        )));
    }
    if let Some(other) = shares.iter().find(|s| s.threshold != k || s.value.len() != first.value.len()) {
        return Err(ShamirError::Combine(format!(
            "share with index {} does not match the others (threshold or length differs)",
            other.index
        )));
    }
    // One share per index: the same share twice counts once, two values for one index conflict.
    let mut distinct: Vec<&TextShare> = Vec::new();
    for share in shares {
        match distinct.iter().find(|d| d.index == share.index) {
            Some(seen) if seen.value != share.value => {
                return Err(ShamirError::Combine(format!(
                    "two different shares carry index {}: one of them is mistyped or forged",
                    share.index
                )));
            }
            Some(_) => {}
            None => distinct.push(share),
        }
    }
    if distinct.len() < k as usize {
        return Err(ShamirError::Combine(format!(
            "this split needs {k} different shares; {} given",
            distinct.len()
        )));
    }
    let (used, further) = distinct.split_at(k as usize);
    for extra in further {
        if evaluate_at(used, extra.index)? != extra.value {
            return Err(ShamirError::Combine(format!(
                "share with index {} does not agree with the first {k}: one of these is wrong",
                extra.index
            )));
        }
    }
    let dealt = zeroize::Zeroizing::new(evaluate_at(used, 0)?);
    if dealt.len() <= TAG_LEN {
        return Err(ShamirError::Verifier);
    }
    let (secret, check) = dealt.split_at(dealt.len() - TAG_LEN);
    if tag(&first.split, secret) != check {
        return Err(ShamirError::Verifier);
    }
    Ok(zeroize::Zeroizing::new(secret.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_three_of_five_recombine_and_two_do_not() {
        let secret = b"123456 correct horse";
        let shares = split(secret, 3, 5, [7; 8]).unwrap();
        assert_eq!(shares.iter().map(|s| s.index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                    assert_eq!(combine(&subset).unwrap().as_slice(), secret);
                }
                let two = [shares[a].clone(), shares[b].clone()];
                assert!(combine(&two).unwrap_err().to_string().contains("needs 3 different shares"));
            }
        }
    }

    /// The library prints nothing: the keyholders' shares reach the console, and any k of them
    /// recover the secret.
    #[test]
    fn shares_for_keyholders_go_to_the_console() {
        let console = crate::console::Kept::default();
        split_for_keyholders(b"0123-4567", 2, 3, &console).unwrap();
        let lines = console.lines.borrow();
        let shares: Vec<TextShare> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("share "))
            .enumerate()
            .map(|(i, text)| TextShare::parse(text, i + 1).unwrap())
            .collect();
        assert_eq!(shares.len(), 3, "{lines:?}");
        assert!(lines.last().unwrap().contains("3 shares of split"), "{lines:?}");
        assert_eq!(combine(&shares[1..]).unwrap().as_slice(), b"0123-4567");
    }

    #[test]
    fn text_round_trip_and_checksum() {
        let shares = split(b"pin", 2, 3, [0xab; 8]).unwrap();
        let text = shares[1].to_text();
        assert!(text.starts_with("cs2-abababababababab-2-2-"), "{text}");
        assert_eq!(TextShare::parse(&format!("  {}\n", text.to_uppercase()), 1).unwrap(), shares[1]);
        // One changed character anywhere in the value is caught.
        let value_start = "cs2-abababababababab-2-2-".len();
        let mut chars: Vec<char> = text.chars().collect();
        chars[value_start] = if chars[value_start] == '0' { '1' } else { '0' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(TextShare::parse(&typo, 2).unwrap_err(), ShamirError::Checksum { position: 2, index: 2 });
    }

    #[test]
    fn parameters_are_checked() {
        assert!(split(b"x", 1, 3, [0; 8]).is_err());
        assert!(split(b"x", 4, 3, [0; 8]).is_err());
        assert!(split(b"x", 2, 256, [0; 8]).is_err());
        assert!(split(b"", 2, 3, [0; 8]).is_err());
    }

    #[test]
    fn shares_of_two_splits_never_combine_into_garbage() {
        let a = split(b"123456", 2, 3, [1; 8]).unwrap();
        let b = split(b"123456", 2, 3, [2; 8]).unwrap();
        let err = combine(&[a[0].clone(), b[1].clone()]).unwrap_err();
        assert!(err.to_string().contains("different splits"), "{err}");
        // A share of another split relabelled as this one, with its checksum recomputed: the
        // check inside the shared data catches the garbage.
        let mut forged = b[1].clone();
        forged.split = a[0].split;
        let forged = TextShare::parse(&forged.to_text(), 2).unwrap();
        assert_eq!(combine(&[a[0].clone(), forged]).unwrap_err(), ShamirError::Verifier);
    }

    /// An implementation of GF(2^8) (the polynomial x^8 + x^4 + x^3 + x^2 + 1, as blahaj and the
    /// share format use; a share's value is only defined with it) and Lagrange
    /// interpolation written here, independent of blahaj: the oracle for what a share means.
    fn gf_mul(mut a: u8, mut b: u8) -> u8 {
        let mut product = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                product ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= 0x1d;
            }
            b >>= 1;
        }
        product
    }

    fn gf_inverse(a: u8) -> u8 {
        // a^254 = a^-1 in GF(2^8)
        let mut result = 1u8;
        for _ in 0..254 {
            result = gf_mul(result, a);
        }
        result
    }

    fn interpolate_at_zero(points: &[(u8, u8)]) -> u8 {
        let mut sum = 0u8;
        for (i, &(xi, yi)) in points.iter().enumerate() {
            let mut basis = 1u8;
            for (j, &(xj, _)) in points.iter().enumerate() {
                if i != j {
                    // (0 - xj) / (xi - xj), where minus is XOR
                    basis = gf_mul(basis, gf_mul(xj, gf_inverse(xi ^ xj)));
                }
            }
            sum ^= gf_mul(yi, basis);
        }
        sum
    }

    #[test]
    fn shares_mean_what_an_independent_interpolation_says() {
        let secret: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let shares = split(&secret, 3, 5, [9; 8]).unwrap();
        for chosen in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let dealt: Vec<u8> = (0..shares[0].value.len())
                .map(|byte| {
                    let points: Vec<(u8, u8)> =
                        chosen.iter().map(|&c| (shares[c].index, shares[c].value[byte])).collect();
                    interpolate_at_zero(&points)
                })
                .collect();
            assert_eq!(&dealt[..secret.len()], secret.as_slice(), "shares {chosen:?}");
            assert_eq!(dealt[secret.len()..], tag(&[9; 8], &secret));
        }
    }

    /// Uniform coefficients: with k = 2 a share byte equals its secret byte one time in 256 (a
    /// dealing that refused zero top coefficients never let them be equal), and a long secret
    /// deals at once.
    #[test]
    fn a_share_byte_equals_its_secret_byte_as_often_as_chance_says() {
        let secret: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let shares = split(&secret, 2, 3, [5; 8]).unwrap();
        let equal: usize =
            shares.iter().map(|s| s.value.iter().zip(&secret).filter(|(y, b)| y == b).count()).sum();
        // 12,288 pairs, 48 expected; fewer than 10 has a probability below 1e-12.
        assert!((10..=120).contains(&equal), "{equal} of 12288 share bytes equal their secret byte");
    }

    #[test]
    fn a_share_twice_counts_once_and_a_conflict_or_a_disagreeing_share_is_named() {
        let shares = split(b"4711-0815", 2, 4, [3; 8]).unwrap();
        let twice = [shares[0].clone(), shares[0].clone()];
        assert!(combine(&twice).unwrap_err().to_string().contains("needs 2 different shares; 1 given"));
        let with_repeat = [shares[0].clone(), shares[0].clone(), shares[2].clone()];
        assert_eq!(combine(&with_repeat).unwrap().as_slice(), b"4711-0815");
        let mut conflicting = shares[0].clone();
        conflicting.value[0] ^= 1;
        let err = combine(&[shares[0].clone(), conflicting, shares[1].clone()]).unwrap_err().to_string();
        assert!(err.contains("two different shares carry index 1"), "{err}");
        let mut wrong = shares[3].clone();
        wrong.value[2] ^= 0x40;
        let err = combine(&[shares[1].clone(), shares[2].clone(), wrong]).unwrap_err().to_string();
        assert!(err.contains("share with index 4 does not agree with the first 2"), "{err}");
        // Every further share that agrees is fine.
        assert_eq!(combine(&shares).unwrap().as_slice(), b"4711-0815");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_k_shares_recover_and_k_minus_one_never_reveal(
            secret in proptest::collection::vec(any::<u8>(), 1..40),
            k in 2u32..6,
            extra in 0u32..4,
            seed in any::<u64>(),
        ) {
            let n = k + extra;
            let shares = split(&secret, k, n, seed.to_be_bytes()).unwrap();
            let mut order: Vec<usize> = (0..n as usize).collect();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let chosen: Vec<TextShare> = order[..k as usize].iter().map(|&i| shares[i].clone()).collect();
            let recovered = combine(&chosen).unwrap();
            prop_assert_eq!(recovered.as_slice(), secret.as_slice());
            // k-1 shares are refused, and their interpolation does not give the secret back.
            prop_assert!(combine(&chosen[..k as usize - 1]).is_err());
            let raw: Vec<Share> = chosen[..k as usize - 1].iter().map(|t| share_from(t.index, &t.value)).collect();
            let guess = Sharks(k as u8 - 1).recover(&raw).unwrap();
            prop_assert!(guess.iter().zip(&secret).any(|(g, b)| g != b) || secret.len() < 4,
                "k-1 shares revealed the secret");
        }
    }
}
