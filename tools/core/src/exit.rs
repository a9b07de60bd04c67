//! Exit codes as verdicts a script branches on, and the error that carries
//! one. A ground module: it imports nothing of the crate (a test checks).

/// Exit codes beside 0 (ok), 1 (failed) and 2 (usage), for verdicts a
/// script branches on. Each tool that uses one lists it in its --help.
pub const EXIT_STALE: u8 = 3;
pub const EXIT_NO_BACKUP: u8 = 4;
pub const EXIT_UNREACHABLE: u8 = 5;
/// Another etcd2-push holds the lock (push).
pub const EXIT_LOCKED: u8 = 6;
/// Refused: the remote holds another member's backups under this
/// machine-id (push, unless --force).
pub const EXIT_REFUSED: u8 = 7;

/// An error that ends the tool with its own exit code (see `EXIT_*`).
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error ending the tool with `code` and this one line.
pub fn coded(code: u8, message: String) -> anyhow::Error {
    anyhow::Error::new(Coded { code, message })
}

#[cfg(test)]
mod tests {
    #[test]
    fn imports_nothing_of_the_crate() {
        crate::ground::assert_ground(include_str!("exit.rs"), "exit");
    }
}
