//! The integration tests, one binary: each module drives the built tools
//! exactly as a unit or an operator would, against real etcd members, real
//! rclone remotes and real systemd on loopback. The harness is the `harness`
//! library (tests/common). `make test` builds the tools first; the harness
//! refuses to run a tool binary older than the sources.

mod alarms;
mod backends;
mod cli;
mod deb;
mod drill;
mod host_safety;
mod man_and_completions;
mod monitoring;
mod no_loss;
mod package;
mod push_fetch;
mod release;
mod restore;
mod scripts;
mod settings;
mod snapshot;
mod unit_stop;
mod verify;
mod versions;
