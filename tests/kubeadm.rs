//! A kubeadm control-plane node, as far as etcd2-backup sees one: no systemd
//! unit runs etcd (kubelet runs it from /etc/kubernetes/manifests/etcd.yaml),
//! etcd demands client certificates from /etc/kubernetes/pki/etcd, and the
//! host has no etcdctl. The installer goes unit-less by itself, and the
//! backup unit backs up under real systemd (an nspawn container) with
//! kubeadm's health-check certificate.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use harness::etcd::Cluster;
use harness::nspawn::Container;
use harness::package::{build, conf_with, extract};
use harness::{require, wait_for};

const REMOTE_IN: &str = "/srv/etcd-backups";

/// kubeadm's manifest, trimmed to etcd's command, for a member on `port`.
fn manifest(port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://127.0.0.1:{port}
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:{port}
    - --name=cp1
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.16-0
"
    )
}

#[test]
fn a_kubeadm_node_installs_unit_less_and_backs_up_with_its_certificates_and_no_etcdctl() {
    require("rclone", "rclone");
    let c = Cluster::start_tls(1);
    for k in 0..5 {
        c.put_v3(0, &format!("/registry/pods/p{k}"), "v");
    }
    let base = c.path();
    let port: u16 = c.endpoint(0).rsplit(':').next().unwrap().parse().unwrap();

    // /etc/kubernetes as kubeadm leaves it: the manifest, and etcd's CA and
    // health-check client certificate under kubeadm's names.
    let kube = base.join("kubernetes");
    fs::create_dir_all(kube.join("manifests")).unwrap();
    fs::write(kube.join("manifests/etcd.yaml"), manifest(port)).unwrap();
    let pki = kube.join("pki/etcd");
    fs::create_dir_all(&pki).unwrap();
    let tls = c.tls.as_ref().unwrap();
    for (from, to) in [
        (&tls.ca, "ca.crt"),
        (&tls.server_cert, "server.crt"),
        (&tls.server_key, "server.key"),
        (&tls.client_cert, "healthcheck-client.crt"),
        (&tls.client_key, "healthcheck-client.key"),
    ] {
        fs::copy(from, pki.join(to)).unwrap();
        let mode = if to.ends_with(".key") { 0o600 } else { 0o644 };
        fs::set_permissions(pki.join(to), fs::Permissions::from_mode(mode)).unwrap();
    }
    let conf = conf_with(&format!("kube:{REMOTE_IN}"), "https://127.0.0.1:1", &[]);
    let tgz = build(&base.join("build"), &conf, "[kube]\ntype = local\n");
    let pkg = extract(&tgz, &base.join("pkg"));
    let remote = base.join("remote");
    fs::create_dir_all(&remote).unwrap();
    let ct = Container::boot(
        &format!("kubeadm-{}", std::process::id()),
        &[
            (kube.clone(), "/etc/kubernetes", true),
            (pkg, "/root/etcd2-backup", true),
            (remote.clone(), REMOTE_IN, false),
        ],
        base,
    );

    // The installer finds no etcd unit, sees kubeadm's manifest, and
    // installs the units that need no etcd unit.
    let o = ct.exec(&["/root/etcd2-backup/etcd2-backup-install", "--any-os"]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "install failed:\n{log}");
    assert!(log.contains("kubeadm's static pod"), "{log}");
    let units = "/etc/systemd/system";
    for gone in [
        "etcd2-restore.service",
        "etcd2-restore-member@.service",
        "etcd2-join.service",
    ] {
        assert!(
            !ct.exec(&["test", "-e", &format!("{units}/{gone}")])
                .status
                .success(),
            "{gone} installed without an etcd unit to stop"
        );
    }
    for unit in ["etcd2-backup.service", "etcd2-backup.timer"] {
        let text = ct.read(&format!("{units}/{unit}"));
        let tied: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("etcd2.service"))
            .collect();
        assert!(tied.is_empty(), "{unit} depends on etcd2.service: {tied:?}");
    }
    let dropin = ct.read(&format!("{units}/etcd2-backup.service.d/10-etcd-unit.conf"));
    for line in [
        format!("Environment=\"ETCDCTL_ENDPOINTS=https://127.0.0.1:{port}\""),
        "Environment=\"ETCDCTL_CERT=/etc/kubernetes/pki/etcd/healthcheck-client.crt\"".into(),
        "Environment=\"ETCD_DATA_DIR=/var/lib/etcd\"".into(),
    ] {
        assert!(
            dropin.lines().any(|l| l == line),
            "{line} not in:\n{dropin}"
        );
    }
    let env = ct.read("/etc/etcd2-backup/etcd2-backup.env");
    assert!(env.lines().any(|l| l == "ETCD2_BACKUP_API=v3"), "{env}");
    ct.verify_units(&[
        "etcd2-backup.service",
        "etcd2-backup.timer",
        "etcd2-verify.service",
        "etcd2-verify.timer",
    ]);
    ct.systemctl(&["enable", "etcd2-backup.timer"]);

    // The backup unit, with no etcdctl it could find (kubeadm installs
    // none), debug lines on to show the v2 probe is not tried, and leave to
    // write the local remote.
    let o = ct.exec(&[
        "sh",
        "-c",
        &format!(
            "printf '[Service]\\nReadWritePaths={REMOTE_IN}\\nInaccessiblePaths=/usr/bin/etcdctl\\n' \
             > {units}/etcd2-backup.service.d/50-test.conf \
             && sed -i 's/^ETCD2_BACKUP_LOG=.*/ETCD2_BACKUP_LOG=debug/' /etc/etcd2-backup/etcd2-backup.env \
             && systemctl daemon-reload"
        ),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ct.systemctl(&["start", "etcd2-backup.service"]);
    let journal = ct.journal(&["etcd2-backup.service"]);
    assert!(journal.contains("pushed "), "{journal}");
    assert!(journal.contains("no etcdctl here"), "{journal}");
    let mid = ct.read("/etc/machine-id").trim().to_owned();
    let published = wait_for(
        "the generation on the remote",
        Duration::from_secs(5),
        || {
            let dir = remote.join(&mid);
            fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .map(|e| e.path())
        },
    );
    // What was published holds every key of the member.
    let sidecar: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&published).unwrap()).unwrap();
    let archive = remote
        .join(&mid)
        .join("generations")
        .join(sidecar["archive"].as_str().unwrap());
    let m = harness::manifest_of(&archive);
    assert_eq!(m["key_count"], 5, "{m}");
    assert_eq!(m["api"], "v3", "{m}");
}
