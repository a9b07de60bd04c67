//! kubeadm's etcd: a static pod that kubelet starts from its manifest, with
//! no systemd unit of its own ([`EtcdUnit::Unitless`]). What etcd runs with
//! is in the manifest's command line (`- --data-dir=/var/lib/etcd`, one
//! flag an item, as kubeadm writes it); our units get it as the drop-in an
//! etcd unit's settings would be, the client certificate kubeadm made for
//! health checks included.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::at;
use super::etcd_unit::EtcdUnit;

/// Where kubeadm puts etcd's static pod manifest.
pub const MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";

/// The client certificate kubeadm makes for etcd's health checks (beside
/// etcd's CA): enough for a snapshot, which needs a client of etcd's CA.
const CLIENT_CERT: &str = "healthcheck-client.crt";
const CLIENT_KEY: &str = "healthcheck-client.key";

pub fn has_manifest(root: &Path) -> bool {
    at(root, MANIFEST).is_file()
}

/// etcd's flags in a static pod manifest: the `- --name=value` items of
/// its command (kubeadm writes one flag an item). Later items win.
pub fn manifest_flags(yaml: &str) -> BTreeMap<String, String> {
    let mut flags = BTreeMap::new();
    for line in yaml.lines() {
        let Some(item) = line.trim().strip_prefix("- ") else {
            continue;
        };
        let item = item.trim().trim_matches(|c| c == '"' || c == '\'');
        if let Some((name, value)) = item.strip_prefix("--").and_then(|f| f.split_once('=')) {
            flags.insert(name.to_owned(), value.to_owned());
        }
    }
    flags
}

/// The drop-in for our units on a kubeadm node: what kubelet gives etcd
/// (data dir, name, URLs) and how to reach it (a loopback client URL, the
/// CA and the health-check client certificate). A manifest without a
/// client certificate where etcd demands one is warned of.
pub fn settings(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(at(root, MANIFEST))
        .with_context(|| format!("reading {MANIFEST}"))?;
    let flags = manifest_flags(&text);
    if !flags.contains_key("data-dir") && !flags.contains_key("listen-client-urls") {
        bail!("{MANIFEST} holds no etcd command line (no --data-dir, no --listen-client-urls)");
    }
    let mut env: Vec<(&str, String)> = vec![(
        "ETCD_DATA_DIR",
        flags
            .get("data-dir")
            .cloned()
            .unwrap_or_else(|| EtcdUnit::Unitless.data_dir().to_owned()),
    )];
    for (var, flag) in [
        ("ETCD_NAME", "name"),
        ("ETCD_ADVERTISE_CLIENT_URLS", "advertise-client-urls"),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "initial-advertise-peer-urls",
        ),
    ] {
        if let Some(v) = flags.get(flag) {
            env.push((var, v.clone()));
        }
    }
    // The loopback URL etcd listens on (kubeadm's https://127.0.0.1:2379):
    // the node's own address may change, and the server certificate names
    // 127.0.0.1 too.
    if let Some(url) = flags
        .get("listen-client-urls")
        .and_then(|l| l.split(',').find(|u| u.contains("://127.0.0.1:")))
    {
        env.push(("ETCDCTL_ENDPOINTS", url.to_owned()));
    }
    if let Some(ca) = flags.get("trusted-ca-file") {
        env.push(("ETCDCTL_CACERT", ca.clone()));
        let dir = Path::new(ca).parent().unwrap_or(Path::new("/"));
        let (cert, key) = (dir.join(CLIENT_CERT), dir.join(CLIENT_KEY));
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        if at(root, &cert).is_file() && at(root, &key).is_file() {
            env.push(("ETCDCTL_CERT", cert.into_owned()));
            env.push(("ETCDCTL_KEY", key.into_owned()));
        } else if flags.get("client-cert-auth").is_some_and(|v| v == "true") {
            tracing::warn!(
                "etcd demands a client certificate (--client-cert-auth) and {cert} is not \
                 there: set ETCDCTL_CERT and ETCDCTL_KEY in {}",
                crate::settings::ENV_FILE
            );
        }
    }
    let mut s = format!(
        "# Written by etcd2-backup-install from {MANIFEST} (kubeadm's\n\
         # static pod): what kubelet gives etcd, so these jobs find the same member.\n\
         # Run the installer again after changing the manifest. The settings file\n\
         # ({}) overrides it.\n\
         [Service]\n",
        crate::settings::ENV_FILE
    );
    for (var, value) in env {
        // A systemd value: % starts a specifier; a quote or a line end
        // cannot be carried.
        if value.contains(['"', '\\', '\n']) {
            bail!("{MANIFEST}: the value for {var} ({value:?}) cannot be put in a unit");
        }
        s.push_str(&format!(
            "Environment=\"{var}={}\"\n",
            value.replace('%', "%%")
        ));
    }
    Ok(s)
}

/// The settings file for a kubeadm node: a package that leaves the API to
/// `auto` backs up through v3, since Kubernetes writes only v3 keys, and a
/// v3 backup needs no etcdctl, which kubeadm does not install.
pub fn env_file(text: &str) -> String {
    let api = crate::settings::parse(text)
        .ok()
        .and_then(|vars| {
            vars.into_iter()
                .rev()
                .find(|(n, _)| n == "ETCD2_BACKUP_API")
        })
        .map(|(_, v)| v);
    if api.as_deref().is_some_and(|v| v != "auto") {
        return text.to_owned();
    }
    crate::settings::with_value(
        text,
        "ETCD2_BACKUP_API",
        "v3",
        "kubeadm: Kubernetes keeps no v2 data, and a v3 backup needs no etcdctl.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As kubeadm 1.31 writes it (trimmed to the command).
    const ETCD_YAML: &str = "apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.11:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.11:2380
    - --initial-cluster=cp1=https://10.0.0.11:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.11:2379
    - --name=cp1
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.16-0
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
";

    #[test]
    fn the_manifest_gives_etcds_flags() {
        let f = manifest_flags(ETCD_YAML);
        assert_eq!(f["data-dir"], "/var/lib/etcd");
        assert_eq!(f["name"], "cp1");
        assert_eq!(
            f["listen-client-urls"],
            "https://127.0.0.1:2379,https://10.0.0.11:2379"
        );
        assert!(!f.contains_key("mountPath: /var/lib/etcd"));
        assert_eq!(f.len(), 10);
    }

    #[test]
    fn the_dropin_reaches_etcd_on_loopback_with_the_healthcheck_certificate() {
        let t = tempfile::tempdir().unwrap();
        let put = |abs: &str, text: &str| {
            let p = at(t.path(), abs);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put(MANIFEST, ETCD_YAML);
        let s = settings(t.path()).unwrap();
        assert!(s.contains("\"ETCD_DATA_DIR=/var/lib/etcd\"\n"), "{s}");
        assert!(s.contains("\"ETCD_NAME=cp1\"\n"), "{s}");
        assert!(
            s.contains("\"ETCDCTL_ENDPOINTS=https://127.0.0.1:2379\"\n"),
            "{s}"
        );
        assert!(
            s.contains("\"ETCDCTL_CACERT=/etc/kubernetes/pki/etcd/ca.crt\"\n"),
            "{s}"
        );
        // No client certificate there: none named (a warning says so).
        assert!(!s.contains("ETCDCTL_CERT"), "{s}");
        put("/etc/kubernetes/pki/etcd/healthcheck-client.crt", "c");
        put("/etc/kubernetes/pki/etcd/healthcheck-client.key", "k");
        let s = settings(t.path()).unwrap();
        assert!(
            s.contains("\"ETCDCTL_CERT=/etc/kubernetes/pki/etcd/healthcheck-client.crt\"\n")
                && s.contains("\"ETCDCTL_KEY=/etc/kubernetes/pki/etcd/healthcheck-client.key\"\n"),
            "{s}"
        );
        // A manifest that is no etcd's is refused, as is a value a unit
        // cannot carry; a % is escaped.
        put(MANIFEST, "kind: Pod\n");
        assert!(settings(t.path()).is_err());
        put(MANIFEST, "    - --data-dir=/var/lib/\"etcd\"\n");
        let e = settings(t.path()).unwrap_err();
        assert!(format!("{e:#}").contains("ETCD_DATA_DIR"), "{e:#}");
        put(MANIFEST, "    - --data-dir=/var/lib/etcd%1\n");
        assert!(settings(t.path())
            .unwrap()
            .contains("ETCD_DATA_DIR=/var/lib/etcd%%1\""));
    }

    #[test]
    fn the_settings_file_backs_up_through_v3_unless_told_otherwise() {
        let out = env_file("A=1\nETCD2_BACKUP_API=auto\nB=2\n");
        assert!(out.contains("\nETCD2_BACKUP_API=v3\nB=2\n"), "{out}");
        assert!(!out.contains("=auto"), "{out}");
        assert_eq!(env_file("ETCD2_BACKUP_API=v2\n"), "ETCD2_BACKUP_API=v2\n");
    }
}
