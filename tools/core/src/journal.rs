//! Talking to systemd as a service's process: whether stderr is the
//! journal, and `sd_notify` status. A ground module: it imports only
//! [`crate::redact`] (a test checks).

/// Whether stderr is connected to the journal: systemd then sets
/// JOURNAL_STREAM to the device and inode of the stream it connected
/// (systemd.exec(5)); a child's inherited value no longer matches.
pub fn stderr_is_journal() -> bool {
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        let Ok(v) = std::env::var("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = v.split_once(':') else {
            return false;
        };
        let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
            return false;
        };
        dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
    })
}

/// Tell systemd what we are doing (`STATUS=`, shown by `systemctl status`),
/// when it gave us a notify socket (NOTIFY_SOCKET; the unit needs
/// NotifyAccess=main for a oneshot service). Empty clears it. Best effort:
/// a status that cannot be sent changes nothing else.
pub fn notify_status(text: &str) {
    use std::os::unix::ffi::OsStrExt;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let msg = format!("STATUS={}", crate::redact::redact(text).replace('\n', " "));
    let bytes = path.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!("sd_notify STATUS: {e}");
    }
}

/// The one error line a tool ends with, `tool: error: <text>`, secrets
/// redacted, at journald's error priority (`<3>`) when stderr is the
/// journal, so `journalctl -p err` shows it.
pub fn error_line(tool: &str, text: &str) {
    eprintln!(
        "{}{tool}: error: {}",
        prefix(3),
        crate::redact::redact(text)
    );
}

/// A `tool: warning: <text>` line written before logging is set up.
pub fn warning_line(tool: &str, text: &str) {
    eprintln!(
        "{}{tool}: warning: {}",
        prefix(4),
        crate::redact::redact(text)
    );
}

fn prefix(priority: u8) -> String {
    if stderr_is_journal() {
        format!("<{priority}>")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn imports_only_redact() {
        crate::ground::assert_ground(include_str!("journal.rs"), "journal");
    }
}
