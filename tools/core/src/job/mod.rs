//! The jobs, one per tool, named after it. Each uses the infrastructure
//! modules of the crate root and never another job.

pub mod convert;
pub mod fetch;
pub mod health;
pub mod install;
pub mod member_add;
pub mod push;
pub mod restore;
pub mod snapshot;
pub mod verify;
pub mod watch;
pub mod wipe;
