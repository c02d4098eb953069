//! A small seeded random number generator for the randomized tests, and the seed they
//! share: taken from `RSYSCALL_FUZZ_SEED` when set (to replay a failed run), else fresh.

/// The environment variable that fixes the seed of the randomized tests.
pub const SEED_ENV: &str = "RSYSCALL_FUZZ_SEED";

/// The seed for a randomized test: the number in [`SEED_ENV`] when it is set (a value
/// that is not a number is a test error), else one from the clock and our pid.
pub fn seed() -> u64 {
    if let Some(s) = std::env::var_os(SEED_ENV) {
        return s
            .to_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{SEED_ENV} must be a number"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// SplitMix64: small, fast, and good enough to pick requests and lies. The same seed
/// gives the same sequence, so a failed run can be replayed.
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // a generator, not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Random bytes, `len` of them.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
