//! Unguessable tokens: secrets, nonces, keys and the sandbox's ids, all from one helper.

use rand::distr::{Alphanumeric, SampleString};

/// `len` characters of [A-Za-z0-9] from the thread's CSPRNG (about 5.95 bits each).
pub fn token(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_have_their_length_and_alphabet_and_differ() {
        let (a, b) = (super::token(32), super::token(32));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
