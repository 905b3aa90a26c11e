//! What the tool tells the people at the ceremony. The library never prints: every line, digest
//! and set of shares goes to a [`Console`], which the `ceremony` binary writes to the terminal
//! (and a test keeps).

use zeroize::Zeroizing;

pub trait Console {
    /// Narration, notes and warnings (standard error in the binary).
    fn say(&self, line: &str);
    /// A digest the witnesses compare or write down: hex, then PGP words.
    fn digest(&self, title: &str, hex: &str);
    /// The shares of a split secret, for the keyholders (standard output in the binary).
    fn shares(&self, shares: &[Zeroizing<String>]) -> anyhow::Result<()>;
}

/// A console that keeps what it is told, for tests.
#[derive(Debug, Default)]
pub struct Kept {
    pub lines: std::cell::RefCell<Vec<String>>,
}

impl Console for Kept {
    fn say(&self, line: &str) {
        self.lines.borrow_mut().push(line.to_string());
    }

    fn digest(&self, title: &str, hex: &str) {
        self.lines.borrow_mut().push(format!("{title}: {hex}"));
    }

    fn shares(&self, shares: &[Zeroizing<String>]) -> anyhow::Result<()> {
        self.lines.borrow_mut().extend(shares.iter().map(|s| format!("share {}", s.as_str())));
        Ok(())
    }
}
