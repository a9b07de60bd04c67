//! The `etcd2-member-add` job: add this node to the founding member's
//! cluster (idempotent, waiting out etcd's reconfiguration guard) and write
//! the etcd2.service drop-in it starts with.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{check_health, peer, Health};
use crate::etcd::{hex_id, is_transient_reconfig_error, Etcdctl, Member};
use crate::poll::{self, Probe};

pub struct MemberAddJob {
    pub founder: Etcdctl,
    pub name: String,
    pub peer_urls: String,
    pub dropin: Option<PathBuf>,
    pub wait: Duration,
    /// Add as a learner (the default): it does not count for quorum until
    /// promoted, so a joiner that never starts leaves the founder writable.
    pub learner: bool,
    /// etcd2-health, for the drop-in's promotion step.
    pub health_program: PathBuf,
    /// Arguments etcd2-health needs there to reach the founder as we do:
    /// the etcdctl we resolved and the TLS files. etcd2.service has neither
    /// our settings drop-in nor /opt/bin on its PATH.
    pub health_args: Vec<String>,
}

/// The systemd drop-in that makes etcd2.service join as `name`; with
/// `promote` (the etcd2-health program, for a learner), an `ExecStartPost=`
/// that promotes it to a voting member once it caught up.
pub fn render_dropin(
    name: &str,
    initial_cluster: &str,
    founder: &str,
    promote: Option<(&std::path::Path, &[String])>,
) -> Result<String> {
    let (name, initial_cluster, founder) = (
        systemd_quoted(name, "the member name")?,
        systemd_quoted(initial_cluster, "ETCD_INITIAL_CLUSTER")?,
        systemd_quoted(founder, "the founder's URL")?,
    );
    let mut text = format!(
        "# Written by etcd2-member-add: join {name} to the cluster at {founder}.\n\
         # Remove this file once the member has started (it is only read at first start).\n\
         [Service]\n\
         Environment=\"ETCD_NAME={name}\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER={initial_cluster}\"\n\
         Environment=\"ETCD_INITIAL_CLUSTER_STATE=existing\"\n"
    );
    if let Some((health, args)) = promote {
        let health = systemd_quoted(&health.to_string_lossy(), "the etcd2-health path")?;
        let mut extra = String::new();
        for a in args {
            extra.push_str(&format!(
                " \"{}\"",
                systemd_quoted(a, "an etcd2-health argument")?
            ));
        }
        text.push_str(&format!(
            "# Added as a learner: once it caught up, make it a voting member. A\n\
             # promotion that fails within the wait stops etcd (a learner holds no\n\
             # quorum); its journal says why. Safe to run again.\n\
             TimeoutStartSec=15min\n\
             ExecStartPost=\"{health}\" --endpoints \"{founder}\" --promote \"{name}\" --wait 10m{extra}\n"
        ));
    }
    Ok(text)
}

/// `value` escaped for the inside of a double-quoted systemd
/// `Environment="K=V"`: `%` starts a specifier, `\` and `"` are escapes. A
/// control character (a newline would end the directive) is refused.
fn systemd_quoted(value: &str, what: &str) -> Result<String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        anyhow::bail!("{what} {value:?} holds a control character ({c:?}): it cannot go into a systemd drop-in");
    }
    Ok(value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%"))
}

/// ETCD_INITIAL_CLUSTER from a member list, naming the unstarted member
/// whose peer URLs are ours with our name.
pub fn initial_cluster(members: &[Member], name: &str, our_peer: &str) -> String {
    let mut parts = Vec::new();
    for m in members {
        let n = if peer(m) == our_peer {
            name
        } else {
            m.name.as_str()
        };
        for u in &m.peer_urls {
            parts.push(format!("{n}={u}"));
        }
    }
    parts.join(",")
}

impl MemberAddJob {
    pub fn run(&self) -> Result<String> {
        let started = Instant::now();
        let deadline = started + self.wait;
        let ours = self.peer_urls.trim().to_owned();
        anyhow::ensure!(
            !ours.is_empty()
                && ours
                    .split(',')
                    .all(|u| u.starts_with("http://") || u.starts_with("https://")),
            "--peer-urls {ours:?} is not a list of http(s) URLs (ETCD_INITIAL_ADVERTISE_PEER_URLS)"
        );
        anyhow::ensure!(!self.name.trim().is_empty(), "--name is empty (ETCD_NAME)");
        tracing::info!(
            "joining {} ({ours}) to the cluster at {}",
            self.name,
            self.founder.endpoints()
        );
        // etcd's refusal lasts a fixed ~5 s after each join: a steady short
        // retry finishes sooner than an exponential one and stays bounded.
        let retry = Duration::from_secs(1);
        // A rerun after this node was added but not started: the cluster may
        // be without quorum until we start (1 member + 1 added = quorum 2),
        // so look for ourselves before waiting for health.
        if let Ok(list) = self.founder.member_list() {
            if let Some(me) = list
                .members
                .iter()
                .find(|m| peer(m) == ours && !m.started())
            {
                tracing::info!(
                    "already added as unstarted member {} (an earlier run): not adding again",
                    hex_id(me.id)
                );
                return self.emit(&list.members);
            }
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Healthy and every started member caught up; an unstarted member
            // other than us gets the wait to start, then is named.
            let health = wait_healthy_or_unstarted(&self.founder, remaining, self.wait)?;
            let list = self.founder.member_list()?;
            if let Some(me) = list.members.iter().find(|m| peer(m) == ours) {
                if me.started() {
                    bail!(
                        "{} ({ours}) is already a started member ({}) of this cluster; if this node lost \
                         its data, remove it first: etcdctl member remove {}",
                        me.name,
                        hex_id(me.id),
                        hex_id(me.id)
                    );
                }
                tracing::info!(
                    "already added as unstarted member {} (an earlier run): not adding again",
                    hex_id(me.id)
                );
                return self.emit(&list.members);
            }
            // A listed member in a cluster of its own votes in neither:
            // to this cluster it is an unstarted member.
            if !health.foreign.is_empty() {
                bail!(
                    "refusing to add {}: {}",
                    self.name,
                    health.foreign.join("; ")
                );
            }
            if !health.unstarted.is_empty() {
                bail!(
                    "refusing to add {}: member {} was added but has not started; adding another now could cost \
                     quorum. Start it (or remove it) first",
                    self.name,
                    health.unstarted.join(", ")
                );
            }
            // etcd allows one learner at a time (--max-learners, 1 by
            // default): a started learner is waited for until promoted
            // (its etcd2.service promotes it once it caught up), within
            // the wait; then refused, naming it and what promotes it.
            if let Some(l) = started_learner(&list.members) {
                self.wait_promoted(&l, deadline)?;
                continue;
            }
            match self.founder.member_add(&self.name, &ours, self.learner) {
                Ok(after) => {
                    tracing::info!(
                        "added {} to the cluster as a {} ({} members)",
                        self.name,
                        if self.learner {
                            "learner (no vote until promoted)"
                        } else {
                            "voting member"
                        },
                        after.members.len()
                    );
                    return self.emit(&after.members);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    if !is_transient_reconfig_error(&msg) || Instant::now() + retry > deadline {
                        return Err(e).context(format!("adding {} ({ours})", self.name));
                    }
                    let cause = msg.rsplit(" | ").next().unwrap_or(&msg);
                    tracing::info!("etcd refuses the add for now ({cause}); retrying in {retry:?}");
                    std::thread::sleep(retry);
                }
            }
        }
    }

    /// Wait (until `deadline`) for learner `l` to be promoted or removed.
    fn wait_promoted(&self, l: &Member, deadline: Instant) -> Result<()> {
        let what = format!("learner {} ({})", l.name, hex_id(l.id));
        tracing::info!(
            "{what} awaits promotion and etcd allows one learner at a time: waiting for it \
             before adding {}",
            self.name
        );
        let id = l.id;
        poll::until(
            deadline.saturating_duration_since(Instant::now()),
            Duration::from_millis(500),
            &format!("waiting for {what} to be promoted"),
            || {
                Ok(match self.founder.member_list() {
                    Ok(list) if !list.members.iter().any(|m| m.id == id && m.is_learner) => {
                        Probe::Done(())
                    }
                    Ok(_) => Probe::Waiting(format!("{what} not promoted yet")),
                    Err(e) => Probe::Waiting(format!("{e:#}")),
                })
            },
            |_| {
                anyhow::anyhow!(
                    "refusing to add {}: {what} was not promoted within {}, and etcd allows one \
                     learner at a time. Promote it once it caught up (its etcd2.service does: \
                     etcd2-health --endpoints {} --promote {}), or remove it, then run this again",
                    self.name,
                    crate::cmd::human_duration(self.wait),
                    self.founder.endpoints(),
                    l.name
                )
            },
        )?;
        tracing::info!("{what} promoted (or removed): adding {} now", self.name);
        Ok(())
    }

    fn emit(&self, members: &[Member]) -> Result<String> {
        let ic = initial_cluster(members, &self.name, self.peer_urls.trim());
        let learner = members
            .iter()
            .any(|m| peer(m) == self.peer_urls.trim() && m.is_learner);
        let text = render_dropin(
            &self.name,
            &ic,
            self.founder.endpoints(),
            learner.then_some((self.health_program.as_path(), self.health_args.as_slice())),
        )?;
        match &self.dropin {
            Some(p) => {
                if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
                crate::fsutil::write_atomic(p, text.as_bytes(), 0o644)?;
                tracing::info!("wrote {} (ETCD_INITIAL_CLUSTER={ic}); run systemctl daemon-reload, then start etcd", p.display());
            }
            None => crate::cli::print_stdout(&text)?,
        }
        Ok(text)
    }
}

/// A started member that is still a learner.
fn started_learner(members: &[Member]) -> Option<Member> {
    members
        .iter()
        .find(|m| m.is_learner && m.started())
        .cloned()
}

/// Wait until the cluster is healthy, or until the only thing keeping it
/// from health is a member that has not started (returned for the caller
/// to judge).
/// `shown` is the bound as the operator gave it (`limit` is what is left of it).
fn wait_healthy_or_unstarted(ctl: &Etcdctl, limit: Duration, shown: Duration) -> Result<Health> {
    let started = Instant::now();
    poll::until(
        limit,
        Duration::from_millis(500),
        "waiting for the founding member's cluster",
        || {
            Ok(match check_health(ctl) {
                Ok(h)
                    if h.problems.is_empty()
                        && (h.unstarted.is_empty() || started.elapsed() > limit) =>
                {
                    Probe::Done(h)
                }
                Ok(h) => Probe::Waiting(h.describe(0)),
                Err(e) => Probe::Waiting(format!("{e:#}")),
            })
        },
        |last| {
            anyhow::anyhow!(
                "the cluster at {} is not healthy within {}: {last}",
                ctl.endpoints(),
                crate::cmd::human_duration(shown)
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: vec![],
            is_learner: false,
        }
    }

    #[test]
    fn initial_cluster_names_the_unstarted_member_as_us() {
        let ms = vec![m(1, "e1", "http://a:2380"), m(2, "", "http://b:2380")];
        assert_eq!(
            initial_cluster(&ms, "e2", "http://b:2380"),
            "e1=http://a:2380,e2=http://b:2380"
        );
    }

    #[test]
    fn dropin_has_the_three_settings() {
        let d = render_dropin(
            "e2",
            "e1=http://a:2380,e2=http://b:2380",
            "http://a:2379",
            None,
        )
        .unwrap();
        assert!(!d.contains("ExecStartPost"));
        let args = [
            "--etcdctl",
            "/opt/bin/etcdctl",
            "--cacert",
            "/etc/ssl/etcd/ca.pem",
        ]
        .map(String::from);
        let l = render_dropin(
            "e2",
            "e1=http://a:2380",
            "https://a:2379",
            Some((std::path::Path::new("/opt/bin/etcd2-health"), &args)),
        )
        .unwrap();
        assert!(
            l.contains("ExecStartPost=\"/opt/bin/etcd2-health\" --endpoints \"https://a:2379\" --promote \"e2\" --wait 10m \"--etcdctl\" \"/opt/bin/etcdctl\" \"--cacert\" \"/etc/ssl/etcd/ca.pem\"\n"),
            "{l}"
        );
        assert!(d.contains("[Service]\n"));
        assert!(d.contains("Environment=\"ETCD_NAME=e2\"\n"));
        assert!(
            d.contains("Environment=\"ETCD_INITIAL_CLUSTER=e1=http://a:2380,e2=http://b:2380\"\n")
        );
        assert!(d.contains("Environment=\"ETCD_INITIAL_CLUSTER_STATE=existing\"\n"));
    }

    #[test]
    fn dropin_values_are_escaped_for_systemd_and_control_characters_refused() {
        let d = render_dropin("e%2\"x\\", "a=http://h:1", "http://h:2", None).unwrap();
        assert!(
            d.contains("Environment=\"ETCD_NAME=e%%2\\\"x\\\\\"\n"),
            "{d}"
        );
        let e = render_dropin(
            "e2\nExecStart=/bin/evil",
            "a=http://h:1",
            "http://h:2",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
    }
}
