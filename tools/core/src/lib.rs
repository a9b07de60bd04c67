//! Shared library of the etcd2-backup tools.
//!
//! Every tool's `main.rs` is a thin shim: it parses its flags and calls into
//! this crate. This crate is the only code that spawns `etcdctl` or `rclone`,
//! reads configuration from the environment, or touches on-disk layouts.

pub mod archive;
pub mod cli;
pub mod cmd;
pub mod datadir;
pub mod etcd;
pub mod fetch;
pub mod fsutil;
pub mod install;
pub mod join;
pub mod node;
pub mod push;
pub mod remote;
pub mod restore;
pub mod scratch;
pub mod snapshot;
