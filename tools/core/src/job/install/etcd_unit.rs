//! Which systemd unit runs etcd on the target, and what that changes in our
//! units: CoreOS's `etcd2.service` (what the original package and our unit
//! files name), Debian's `etcd.service` (data in /var/lib/etcd/default,
//! settings in /etc/default/etcd) or Flatcar's `etcd-member.service` (data in
//! /var/lib/etcd). The installer rewrites our units for it and writes a
//! drop-in with the settings that unit itself gives etcd, so that our jobs
//! find the same member.

use std::fs;
use std::path::Path;

use anyhow::{bail, Result};

use super::at;

/// The unit names our unit files are written for.
pub const SHIPPED: &str = "etcd2.service";

/// The drop-in (in each of our jobs' `.d` dirs) that carries what the etcd
/// unit sets for etcd itself. Named to sort before etcd's own drop-ins
/// (20-...) and ours (30-...), which override it.
pub const UNIT_DROPIN: &str = "10-etcd-unit.conf";

/// Where systemd finds unit files, most specific first (a subset of
/// systemd.unit(5)'s list; generator.early holds the masks of
/// `systemd.mask=` on the kernel command line).
const UNIT_PATHS: [&str; 5] = [
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdUnit {
    /// CoreOS Container Linux's etcd2.service (and the original package's).
    Etcd2,
    /// Debian's (and Ubuntu's) etcd.service from the etcd-server package.
    Etcd,
    /// Flatcar's (and later Container Linux's) etcd-member.service.
    EtcdMember,
    /// No systemd unit runs etcd (`--etcd-unit none`): kubeadm's static
    /// pod ([`super::kubeadm`]), or an etcd in a container. Only the backup
    /// and verify units are installed, ordered after nothing; a restore is
    /// done by hand (docs/kubeadm.md).
    Unitless,
}

impl EtcdUnit {
    /// The systemd units that run etcd.
    pub const ALL: [EtcdUnit; 3] = [EtcdUnit::Etcd2, EtcdUnit::Etcd, EtcdUnit::EtcdMember];

    pub fn name(self) -> &'static str {
        match self {
            EtcdUnit::Etcd2 => "etcd2.service",
            EtcdUnit::Etcd => "etcd.service",
            EtcdUnit::EtcdMember => "etcd-member.service",
            EtcdUnit::Unitless => "none",
        }
    }

    /// Whether our unit file `file` is installed for this etcd: the
    /// restore and join units stop and start etcd's unit, so an etcd that
    /// has none gets neither.
    pub fn installs(self, file: &str) -> bool {
        self != EtcdUnit::Unitless
            || !matches!(
                file,
                "etcd2-restore.service" | "etcd2-restore-member@.service" | "etcd2-join.service"
            )
    }

    /// The data dir etcd uses under this unit when nothing overrides it.
    pub fn data_dir(self) -> &'static str {
        match self {
            EtcdUnit::Etcd2 => "/var/lib/etcd2",
            EtcdUnit::Etcd => "/var/lib/etcd/default",
            EtcdUnit::EtcdMember => "/var/lib/etcd",
            // kubeadm's.
            EtcdUnit::Unitless => "/var/lib/etcd",
        }
    }

    /// The drop-in dirs holding this unit's settings (CoreOS put its
    /// cloud-config one, 20-cloudinit.conf, in /run); none without a unit.
    pub fn dropin_dirs(self) -> Vec<String> {
        if self == EtcdUnit::Unitless {
            return Vec::new();
        }
        vec![
            format!("/etc/systemd/system/{}.d", self.name()),
            format!("/run/systemd/system/{}.d", self.name()),
        ]
    }

    /// What the etcd unit itself sets for etcd, for [`UNIT_DROPIN`]: the
    /// data dir and, for Debian's unit, its name default and settings file
    /// (read by systemd at each start, so later edits are seen).
    pub fn settings(self) -> String {
        if self == EtcdUnit::Unitless {
            return format!(
                "# Written by etcd2-backup-install for an etcd that no systemd unit runs\n\
                 # (--etcd-unit none): set ETCDCTL_ENDPOINTS and, for TLS, ETCDCTL_CACERT,\n\
                 # ETCDCTL_CERT and ETCDCTL_KEY in {}.\n\
                 [Service]\n",
                crate::settings::ENV_FILE
            );
        }
        let mut s = format!(
            "# Written by etcd2-backup-install for {unit}: what {unit} itself\n\
             # sets for etcd, so these jobs find the same member. The drop-ins\n\
             # after this one (etcd's own settings, 30-etcd2-backup-restore.conf)\n\
             # override it.\n\
             [Service]\n\
             Environment=\"ETCD_DATA_DIR={dir}\"\n",
            unit = self.name(),
            dir = self.data_dir()
        );
        if self == EtcdUnit::Etcd {
            // Debian's etcd.service: Environment=ETCD_NAME=%H and
            // EnvironmentFile=-/etc/default/%p (a file's values beat every
            // Environment= line, as they do for etcd).
            s.push_str("Environment=\"ETCD_NAME=%H\"\nEnvironmentFile=-/etc/default/etcd\n");
        }
        s
    }

    /// One of our unit files, rewritten to name this etcd unit (After=,
    /// Before=, Conflicts=, WantedBy=, the join drop-in's path) instead of
    /// the etcd2.service it is written for.
    pub fn rewrite(self, unit_text: &str) -> String {
        if self == EtcdUnit::Etcd2 {
            return unit_text.to_string();
        }
        if self == EtcdUnit::Unitless {
            return without_etcd_unit(unit_text);
        }
        // "etcd2.service" occurs in our units only as etcd's unit name (alone
        // or as the prefix of its .d dir); none of our own units contains it.
        unit_text.replace(SHIPPED, self.name())
    }
}

/// One of our unit files for an etcd that no unit runs: `etcd2.service`
/// taken out of every dependency line (After=, PartOf=, WantedBy=), a line
/// left with nothing dropped, and a comment saying so on top.
fn without_etcd_unit(text: &str) -> String {
    let mut out = format!(
        "# Installed for an etcd that no systemd unit runs (--etcd-unit none, e.g.\n\
         # kubeadm's static pod): every dependency on {SHIPPED} below is left out.\n"
    );
    for line in text.lines() {
        let t = line.trim_start();
        match t.split_once('=') {
            Some((key, values))
                if !t.starts_with('#') && values.split_whitespace().any(|v| v == SHIPPED) =>
            {
                let rest: Vec<&str> = values
                    .split_whitespace()
                    .filter(|v| *v != SHIPPED)
                    .collect();
                if !rest.is_empty() {
                    out.push_str(&format!("{key}={}\n", rest.join(" ")));
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

impl std::str::FromStr for EtcdUnit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "none" {
            return Ok(EtcdUnit::Unitless);
        }
        let full = if s.ends_with(".service") {
            s.to_string()
        } else {
            format!("{s}.service")
        };
        EtcdUnit::ALL
            .into_iter()
            .find(|u| u.name() == full)
            .ok_or_else(|| {
                format!(
                    "{s}: not one of {}, or none (no systemd unit runs etcd: kubeadm)",
                    names(&EtcdUnit::ALL)
                )
            })
    }
}

impl std::fmt::Display for EtcdUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdUnit::Unitless => f.write_str("no etcd unit"),
            u => f.write_str(u.name()),
        }
    }
}

fn names(units: &[EtcdUnit]) -> String {
    units
        .iter()
        .map(|u| u.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the unit `name` is defined on the target: its first unit file that
/// is neither masked (a link to /dev/null) nor an alias of another etcd
/// unit (Debian links etcd2.service to its etcd.service). None when absent
/// or masked.
fn unit_file(root: &Path, name: &str) -> Option<String> {
    for dir in UNIT_PATHS {
        let abs = format!("{dir}/{name}");
        let path = at(root, &abs);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap_or_default();
            if target == Path::new("/dev/null") {
                return None;
            }
            let target_name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if target_name != name && EtcdUnit::ALL.iter().any(|u| u.name() == target_name) {
                return None;
            }
        }
        return Some(abs);
    }
    None
}

/// The etcd unit the installer targets: `given` (with a warning when the
/// target has no such unit: etcd may be installed later), else the one
/// etcd unit found on the target. Refuses, naming what it found, when it
/// finds none or several.
pub fn choose(root: &Path, given: Option<EtcdUnit>) -> Result<EtcdUnit> {
    let found: Vec<(EtcdUnit, String)> = EtcdUnit::ALL
        .into_iter()
        .filter_map(|u| unit_file(root, u.name()).map(|f| (u, f)))
        .collect();
    if let Some(u) = given {
        if u != EtcdUnit::Unitless && !found.iter().any(|(f, _)| *f == u) {
            tracing::warn!(
                "--etcd-unit {u}: no such unit on the target (looked in {}); installing for it anyway",
                UNIT_PATHS.join(", ")
            );
        }
        return Ok(u);
    }
    let listed = found
        .iter()
        .map(|(u, f)| format!("{u} ({f})"))
        .collect::<Vec<_>>()
        .join(", ");
    match found.as_slice() {
        [(u, f)] => {
            tracing::info!("etcd runs as {u} here ({f}); pass --etcd-unit to choose another");
            Ok(*u)
        }
        [] if super::kubeadm::has_manifest(root) => {
            tracing::info!(
                "found no etcd unit, and kubelet runs etcd as kubeadm's static pod ({}): \
                 installing the backup and verify units only (--etcd-unit none; restore: \
                 docs/kubeadm.md)",
                super::kubeadm::MANIFEST
            );
            Ok(EtcdUnit::Unitless)
        }
        [] => bail!(
            "found no etcd unit on the target ({} in {}) and no {}: pass --etcd-unit NAME, or \
             --etcd-unit none where no systemd unit runs etcd",
            names(&EtcdUnit::ALL),
            UNIT_PATHS.join(", "),
            super::kubeadm::MANIFEST
        ),
        _ => bail!("found several etcd units on the target: {listed}; pass --etcd-unit NAME"),
    }
}

/// A unit file's lines as systemd reads them: continuation lines (ending
/// in a backslash) joined with a space, comments and blank lines dropped.
pub fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if cur.is_none() && (line.is_empty() || line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if cur.is_some() && (line.starts_with('#') || line.starts_with(';')) {
            // systemd skips comment lines inside a continued line.
            continue;
        }
        let (part, more) = match line.strip_suffix('\\') {
            Some(p) => (p.trim_end(), true),
            None => (line, false),
        };
        let joined = match cur.take() {
            Some(mut c) => {
                c.push(' ');
                c.push_str(part);
                c
            }
            None => part.to_string(),
        };
        if more {
            cur = Some(joined);
        } else {
            out.push(joined);
        }
    }
    out.extend(cur);
    out
}

/// The `Environment=`/`EnvironmentFile=` lines of an etcd drop-in's
/// `[Service]` section, for a drop-in that also sets other things (Flatcar's
/// documented one overrides ExecStart= and adds [Unit] lines): these are
/// all our jobs may take from it. Empty assignments are left out (in our
/// unit one would reset our own Environment=PATH=...), and the specifiers
/// naming the unit (%n, %N, %p) are expanded for `unit`, since in our
/// units they would name our job.
pub fn environment_lines(text: &str, unit: EtcdUnit) -> Vec<String> {
    let prefix = unit.name().trim_end_matches(".service");
    let mut section = String::new();
    let mut out = Vec::new();
    for line in logical_lines(text) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if section != "[Service]" || !matches!(key.trim(), "Environment" | "EnvironmentFile") {
            continue;
        }
        if value.trim().is_empty() {
            continue;
        }
        let value = value
            .trim()
            .replace("%n", unit.name())
            .replace("%N", prefix)
            .replace("%p", prefix);
        out.push(format!("{}={value}", key.trim()));
    }
    out
}

/// The drop-in written in our units' place for an etcd drop-in that sets
/// more than the environment: its `Environment=` lines only.
pub fn environment_copy(source: &str, text: &str, unit: EtcdUnit) -> String {
    let mut s = format!(
        "# Written by etcd2-backup-install: the Environment= lines of {source}\n\
         # (it sets more than the environment, so it is not linked here). Run the\n\
         # installer again after changing them there.\n[Service]\n"
    );
    for l in environment_lines(text, unit) {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// Whether a drop-in uses a specifier that names its unit: linked into our
/// units it would name our job instead of etcd's.
pub fn names_its_unit(text: &str) -> bool {
    ["%n", "%N", "%p", "%i", "%I", "%j", "%J"]
        .iter()
        .any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_with(files: &[(&str, Option<&str>)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        for (abs, link) in files {
            let p = at(t.path(), abs);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            match link {
                Some(target) => symlink(target, &p).expect("ln"),
                None => fs::write(&p, "[Service]\nExecStart=/usr/bin/etcd\n").expect("w"),
            }
        }
        t
    }

    #[test]
    fn names_parse_with_or_without_the_suffix() {
        assert_eq!("etcd".parse(), Ok(EtcdUnit::Etcd));
        assert_eq!("etcd-member.service".parse(), Ok(EtcdUnit::EtcdMember));
        assert_eq!("etcd2".parse(), Ok(EtcdUnit::Etcd2));
        let e = "etcd3.service".parse::<EtcdUnit>().unwrap_err();
        assert!(e.contains("not one of etcd2.service, etcd.service, etcd-member.service"));
    }

    #[test]
    fn the_one_etcd_unit_is_found_and_debians_alias_does_not_count() {
        let t = root_with(&[("/etc/systemd/system/etcd2.service", None)]);
        assert_eq!(choose(t.path(), None).unwrap(), EtcdUnit::Etcd2);
        // Debian: etcd.service, and etcd2.service as its alias.
        let t = root_with(&[
            ("/lib/systemd/system/etcd.service", None),
            (
                "/etc/systemd/system/etcd2.service",
                Some("/lib/systemd/system/etcd.service"),
            ),
        ]);
        assert_eq!(choose(t.path(), None).unwrap(), EtcdUnit::Etcd);
        let t = root_with(&[("/usr/lib/systemd/system/etcd-member.service", None)]);
        assert_eq!(choose(t.path(), None).unwrap(), EtcdUnit::EtcdMember);
        // A masked unit is not there.
        let t = root_with(&[
            ("/lib/systemd/system/etcd.service", None),
            ("/etc/systemd/system/etcd.service", Some("/dev/null")),
            ("/etc/systemd/system/etcd2.service", None),
        ]);
        assert_eq!(choose(t.path(), None).unwrap(), EtcdUnit::Etcd2);
        // Nor is one masked on the kernel command line (systemd.mask=).
        let t = root_with(&[
            ("/usr/lib/systemd/system/etcd.service", None),
            (
                "/run/systemd/generator.early/etcd.service",
                Some("/dev/null"),
            ),
            ("/etc/systemd/system/etcd2.service", None),
        ]);
        assert_eq!(choose(t.path(), None).unwrap(), EtcdUnit::Etcd2);
    }

    #[test]
    fn none_or_several_etcd_units_are_refused_naming_what_was_found() {
        let t = root_with(&[]);
        let e = format!("{:#}", choose(t.path(), None).unwrap_err());
        assert!(e.starts_with("found no etcd unit on the target"), "{e}");
        assert!(
            e.ends_with(
                "pass --etcd-unit NAME, or --etcd-unit none where no systemd unit runs etcd"
            ),
            "{e}"
        );
        // kubeadm's static pod: no unit, its manifest.
        let k = root_with(&[("/etc/kubernetes/manifests/etcd.yaml", None)]);
        assert_eq!(choose(k.path(), None).unwrap(), EtcdUnit::Unitless);
        assert_eq!(
            choose(t.path(), Some(EtcdUnit::Unitless)).unwrap(),
            EtcdUnit::Unitless
        );
        let t = root_with(&[
            ("/lib/systemd/system/etcd.service", None),
            ("/etc/systemd/system/etcd2.service", None),
        ]);
        let e = format!("{:#}", choose(t.path(), None).unwrap_err());
        assert_eq!(
            e,
            "found several etcd units on the target: etcd2.service \
             (/etc/systemd/system/etcd2.service), etcd.service \
             (/lib/systemd/system/etcd.service); pass --etcd-unit NAME"
        );
        // Told which: taken, even where the target has none.
        assert_eq!(
            choose(t.path(), Some(EtcdUnit::Etcd)).unwrap(),
            EtcdUnit::Etcd
        );
        assert_eq!(
            choose(root_with(&[]).path(), Some(EtcdUnit::EtcdMember)).unwrap(),
            EtcdUnit::EtcdMember
        );
    }

    #[test]
    fn units_are_rewritten_for_the_etcd_unit() {
        let unit = "[Unit]\nAfter=etcd2.service\nConflicts=etcd2.service etcd2-backup.service etcd2-backup.timer\n\
                    [Service]\nExecStart=/opt/bin/etcd2-member-add --dropin /run/systemd/system/etcd2.service.d/40-join-cluster.conf\n\
                    [Install]\nWantedBy=timers.target\nWantedBy=etcd2.service\n";
        assert_eq!(EtcdUnit::Etcd2.rewrite(unit), unit);
        assert_eq!(
            EtcdUnit::EtcdMember.rewrite(unit),
            "[Unit]\nAfter=etcd-member.service\nConflicts=etcd-member.service etcd2-backup.service etcd2-backup.timer\n\
             [Service]\nExecStart=/opt/bin/etcd2-member-add --dropin /run/systemd/system/etcd-member.service.d/40-join-cluster.conf\n\
             [Install]\nWantedBy=timers.target\nWantedBy=etcd-member.service\n"
        );
    }

    #[test]
    fn without_an_etcd_unit_our_units_depend_on_none_and_restore_is_left_out() {
        let unit = "[Unit]\n# After etcd2.service, as the original.\nAfter=etcd2.service\nPartOf=etcd2.service\n\
                    After=network-online.target\n[Install]\nWantedBy=timers.target etcd2.service\nWantedBy=etcd2.service\n";
        let out = EtcdUnit::Unitless.rewrite(unit);
        assert!(
            out.starts_with("# Installed for an etcd that no systemd unit runs"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "[Unit]\n# After etcd2.service, as the original.\nAfter=network-online.target\n\
                 [Install]\nWantedBy=timers.target\n"
            ),
            "{out}"
        );
        assert_eq!("none".parse(), Ok(EtcdUnit::Unitless));
        assert!(EtcdUnit::Unitless.installs("etcd2-backup.timer"));
        assert!(!EtcdUnit::Unitless.installs("etcd2-restore.service"));
        assert!(!EtcdUnit::Unitless.installs("etcd2-join.service"));
        assert!(EtcdUnit::Etcd.installs("etcd2-join.service"));
    }

    #[test]
    fn debians_settings_come_from_its_unit_and_etc_default() {
        let s = EtcdUnit::Etcd.settings();
        assert!(s.contains("\n[Service]\nEnvironment=\"ETCD_DATA_DIR=/var/lib/etcd/default\"\n"));
        assert!(s.ends_with("EnvironmentFile=-/etc/default/etcd\n"));
        assert!(!EtcdUnit::EtcdMember.settings().contains("EnvironmentFile"));
        assert!(EtcdUnit::EtcdMember
            .settings()
            .contains("ETCD_DATA_DIR=/var/lib/etcd\""));
    }

    /// Flatcar's documented etcd drop-in (Container Linux Config /
    /// Butane, as generated): [Unit] lines, an ExecStart= override spread
    /// over continuation lines, and the environment.
    const FLATCAR_DROPIN: &str = "[Unit]\n\
        Requires=coreos-metadata.service\n\
        After=coreos-metadata.service\n\
        \n\
        [Service]\n\
        EnvironmentFile=/run/metadata/flatcar\n\
        Environment=\"ETCD_IMAGE_TAG=v3.5.0\"\n\
        Environment=\"ETCD_DATA_DIR=/var/lib/etcd\"\n\
        Environment=\n\
        ExecStart=\n\
        ExecStart=/usr/lib/coreos/etcd-wrapper $ETCD_OPTS \\\n\
          --name=\"%m\" \\\n\
          # a comment inside the command\n\
          --listen-peer-urls=\"http://${COREOS_CUSTOM_PRIVATE_IPV4}:2380\" \\\n\
          --initial-cluster-state=\"new\"\n\
        Environment=ETCD_SSL_DIR=/etc/ssl/%p\n";

    #[test]
    fn flatcars_dropin_gives_only_its_environment() {
        assert_eq!(
            environment_lines(FLATCAR_DROPIN, EtcdUnit::EtcdMember),
            [
                "EnvironmentFile=/run/metadata/flatcar",
                "Environment=\"ETCD_IMAGE_TAG=v3.5.0\"",
                "Environment=\"ETCD_DATA_DIR=/var/lib/etcd\"",
                "Environment=ETCD_SSL_DIR=/etc/ssl/etcd-member",
            ]
        );
        let copy = environment_copy("/etc/x.conf", FLATCAR_DROPIN, EtcdUnit::EtcdMember);
        assert!(
            !copy.contains("ExecStart") && !copy.contains("[Unit]"),
            "{copy}"
        );
        assert!(names_its_unit(FLATCAR_DROPIN));
        assert!(!names_its_unit("[Service]\nEnvironment=ETCD_NAME=%H\n"));
    }

    #[test]
    fn continuation_lines_are_joined_as_systemd_does() {
        assert_eq!(
            logical_lines("# c\n[Service]\nExecStart=/a \\\n  b \\\n# x\n  c\nX=1\\\n"),
            ["[Service]", "ExecStart=/a b c", "X=1"]
        );
    }
}
