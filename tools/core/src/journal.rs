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

/// journald's stream socket, where `systemd-cat` and a unit's stdout
/// connect (systemd-journald.service(8)).
const STREAM_SOCKET: &str = "/run/systemd/journal/stdout";

/// When stderr is the journal, give this process a journal stream of its
/// own, under `identifier`, in stderr's place: in a unit that runs a shell
/// pipeline (`bash -c 'etcd2-snapshot | etcd2-push'`) the stream systemd
/// connected names the shell, and `journalctl -t etcd2-push` would find
/// nothing. It is what `systemd-cat -t` does (sd_journal_stream_fd(3)): a
/// stream connection opened with a header naming the identifier, `<N>`
/// priority prefixes read as before, and the unit still found from our
/// cgroup. Best effort: where the socket cannot be reached, stderr stays
/// the inherited stream, and the reason is returned (for a debug line once
/// logging is set up). Call before anything is written to stderr.
pub fn own_stream(identifier: &str) -> Option<String> {
    use std::io::Write;
    if !stderr_is_journal() {
        return None;
    }
    let stream = std::os::unix::net::UnixStream::connect(STREAM_SOCKET).and_then(|mut s| {
        s.shutdown(std::net::Shutdown::Read)?;
        // identifier, our unit (journald would take it from /proc when a
        // line arrives: a short-lived tool may be gone by then and its lines
        // would lose their _SYSTEMD_UNIT), default priority (info), level
        // prefix on, no forwarding to syslog, kmsg or the console.
        let unit = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|c| own_unit(&c))
            .unwrap_or_default();
        s.write_all(format!("{identifier}\n{unit}\n6\n1\n0\n0\n0\n").as_bytes())?;
        Ok(s)
    });
    let failed = match stream {
        Ok(s) => nix::unistd::dup2_stderr(&s).err().map(std::io::Error::from),
        Err(e) => Some(e),
    };
    failed.map(|e| {
        format!("a journal stream of our own ({STREAM_SOCKET}): {e}; logging to the inherited one")
    })
}

/// The service whose cgroup `/proc/self/cgroup` places us in
/// (`0::/system.slice/etcd2-backup.service` gives etcd2-backup.service).
fn own_unit(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    path.rsplit('/')
        .find(|c| c.ends_with(".service"))
        .map(str::to_owned)
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
    fn our_unit_is_the_service_of_our_cgroup() {
        let unit = |c: &str| super::own_unit(c);
        assert_eq!(
            unit("0::/system.slice/etcd2-backup.service\n").as_deref(),
            Some("etcd2-backup.service")
        );
        // A process in a sub-cgroup of its service (systemd's Delegate=).
        assert_eq!(
            unit("0::/system.slice/etcd2-restore.service/payload\n").as_deref(),
            Some("etcd2-restore.service")
        );
        assert_eq!(unit("0::/user.slice/user-0.slice/session-3.scope\n"), None);
        assert_eq!(unit("1:name=systemd:/x.service\n"), None);
    }

    #[test]
    fn imports_only_redact() {
        crate::ground::assert_ground(include_str!("journal.rs"), "journal");
    }
}
