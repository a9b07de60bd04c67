//! Facts about this node: machine-id and host name.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Read and validate a machine-id (32 lowercase hex digits, as systemd's `%m`).
pub fn read_machine_id(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading machine-id from {}", path.display()))?;
    let id = raw.trim();
    validate_machine_id(id).with_context(|| format!("machine-id in {}", path.display()))?;
    Ok(id.to_owned())
}

pub fn validate_machine_id(id: &str) -> Result<()> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not a machine-id (expected 32 hex digits, as in /etc/machine-id)");
    }
    Ok(())
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_validation() {
        assert!(validate_machine_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(validate_machine_id("short").is_err());
        assert!(validate_machine_id("../../../../etc/passwd/0123456789ab").is_err());
    }
}
