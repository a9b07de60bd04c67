//! Which OS the installer is on, from `/etc/os-release`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cmd::show;

/// An `/etc/os-release` verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Os {
    Supported(String),
    Other(String),
}

/// Parse os-release (`KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| !k.starts_with('#'))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// CoreOS Container Linux, Flatcar and Fedora CoreOS are supported; every
/// other OS is named so the operator can decide on --any-os.
pub fn classify_os(fields: &BTreeMap<String, String>) -> Os {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let id = get("ID");
    let like = get("ID_LIKE").split_whitespace().any(|l| l == "coreos");
    let name = match get("PRETTY_NAME") {
        "" => format!("ID={id}"),
        p => format!("{p} (ID={id})"),
    };
    if id == "coreos"
        || id == "flatcar"
        || like
        || (id == "fedora" && get("VARIANT_ID") == "coreos")
    {
        Os::Supported(name)
    } else {
        Os::Other(name)
    }
}

/// Read the target's os-release (`etc/os-release`, else `usr/lib/os-release`).
pub fn read_os(root: &Path) -> Result<Os> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        match fs::read_to_string(root.join(p)) {
            Ok(t) => return Ok(classify_os(&parse_os_release(&t))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", show(&root.join(p)))),
        }
    }
    Ok(Os::Other("an OS without /etc/os-release".into()))
}

/// Whether an etcd2 drop-in only sets environment, so that linking it into
/// our units gives them the member's settings and nothing else. Returns the
/// first offending line otherwise.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_accepts_the_coreos_family_only() {
        let os = |t: &str| classify_os(&parse_os_release(t));
        assert!(matches!(os("ID=coreos\n"), Os::Supported(_)));
        assert!(matches!(
            os("ID=flatcar\nID_LIKE=coreos\nPRETTY_NAME=\"Flatcar Container Linux\"\n"),
            Os::Supported(_)
        ));
        assert!(matches!(
            os("ID=fedora\nVARIANT_ID=coreos\n"),
            Os::Supported(_)
        ));
        assert_eq!(
            os("ID=fedora\nVARIANT_ID=workstation\n"),
            Os::Other("ID=fedora".into())
        );
        assert_eq!(
            os("PRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\nID=debian\n"),
            Os::Other("Debian GNU/Linux 12 (bookworm) (ID=debian)".into())
        );
    }
}
