//! An error printed with its causes.
//!
//! paygate's library errors keep what caused them as [`Error::source`] instead of copying its text into their
//! own message (redacting only causes that can carry a URL or a secret, which are summarized instead). Whoever
//! prints one (a log line, a config error, the CLI) prints the chain with [`Causes`].

use std::error::Error;
use std::fmt;

/// Displays an error and each of its sources, separated by `": "`, as `anyhow`'s `{:#}` does.
pub struct Causes<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot read the ledger")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn prints_every_cause_in_order() {
        let error = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(Causes(&error).to_string(), "cannot read the ledger: disk on fire");
        assert_eq!(Causes(&std::io::Error::other("alone")).to_string(), "alone");
    }
}
