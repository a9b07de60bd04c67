//! Shared command-line plumbing: logging, the error-printing `run_main`, and
//! flag groups flattened into several tools.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::cmd::Program;
use crate::etcd::{Etcdctl, Tls};

/// `-v`/`-q`, shared by every tool.
#[derive(Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// More output (-v: debug, shows every external command; -vv: trace)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// Set up logging to stderr without timestamps (journald adds them).
/// `ETCD2_BACKUP_LOG` (or `RUST_LOG`) overrides the level, e.g. `debug`.
fn init_logging(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    crate::progress::set_quiet(args.quiet);
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = std::env::var("ETCD2_BACKUP_LOG")
        .ok()
        .filter(|_| args.verbose == 0 && !args.quiet)
        .and_then(|s| EnvFilter::try_new(s).ok())
        .or_else(|| {
            EnvFilter::try_from_default_env()
                .ok()
                .filter(|_| args.verbose == 0 && !args.quiet)
        })
        .unwrap_or_else(|| EnvFilter::new(level))
        // ureq's own request log (the HTTP to our rclone rcd) says nothing
        // our "rclone rc <method> (<what>)" lines do not.
        .add_directive("ureq=warn".parse().expect("static directive"));
    // Ignore a second initialisation (only possible in tests).
    let _ = tracing_subscriber::fmt()
        .without_time()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !stderr_is_journal())
        .with_writer(StderrWriter)
        .with_env_filter(filter)
        .try_init();
}

pub use crate::journal::{notify_status, stderr_is_journal};

/// The syslog priority journald reads from a `<N>` line prefix
/// (SyslogLevelPrefix=, on by default), so `journalctl -p warning` shows
/// our warnings and the final error line.
fn priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Makes a [`RedactingStderr`] for each event, knowing its level.
struct StderrWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> RedactingStderr {
        RedactingStderr { prefix: None }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> RedactingStderr {
        RedactingStderr {
            prefix: stderr_is_journal().then(|| priority(meta.level())),
        }
    }
}

/// stderr for log lines, each passed through [`crate::cmd::redact`], each
/// line prefixed with its priority under the journal. The fmt layer
/// formats an event into one buffer and writes it in one call, so a secret
/// is never split across two writes.
struct RedactingStderr {
    prefix: Option<u8>,
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = crate::cmd::redact(&text);
        let out = match self.prefix {
            None => text.into_owned(),
            Some(p) => text.lines().map(|l| format!("<{p}>{l}\n")).collect(),
        };
        std::io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub use crate::exit::{
    coded, Coded, EXIT_LOCKED, EXIT_NO_BACKUP, EXIT_REFUSED, EXIT_STALE, EXIT_UNREACHABLE,
};

/// What a tool's flags give the one shape of `main` ([`main`]).
pub trait Tool: clap::Parser {
    /// The program's name, as its error line and the journal show it.
    const NAME: &'static str;
    /// Whether the settings file supplies the flags' defaults (every tool's
    /// does; the installer, which writes it, reads none).
    const SETTINGS: bool = true;
    /// Its `-v`/`-q`.
    fn log(&self) -> &LogArgs;
}

/// Every tool's `main`: the settings file first (its variables are the
/// flags' defaults), the flags, logging, then the job under [`run_main`]:
/// one error line and an exit code that is a verdict.
pub fn main<C: Tool>(job: impl FnOnce(C) -> Result<()>) -> ExitCode {
    // Named in the journal by our own name, also inside a shell pipeline.
    let stream = crate::journal::own_stream(C::NAME);
    if C::SETTINGS {
        crate::settings::load(C::NAME);
    }
    let cli = C::parse();
    init_logging(cli.log());
    if let Some(why) = stream {
        tracing::debug!("{why}");
    }
    run_main(C::NAME, || job(cli))
}

/// `value` as pretty JSON on stdout (`--json`), one document a line end.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    print_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Run a tool's body; print any error once, as `tool: error: <chain>`
/// (secrets redacted), and turn it into exit code 1, or the code of a
/// [`Coded`] error in its chain. (clap exits 2 on usage errors before this.)
fn run_main(tool: &str, body: impl FnOnce() -> Result<()>) -> ExitCode {
    crate::scratch::install_signal_handler(tool);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Stopped by a signal: our failure is its doing (its children
            // were stopped); the handler says so in the one error line and
            // exits with 128+signal, bounded by its own waits.
            while crate::scratch::stopping() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            crate::journal::error_line(tool, &format!("{e:#}"));
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Coded>())
                .map_or(1, |c| c.code);
            ExitCode::from(code)
        }
    }
}

/// Where the textfile metrics go.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// node_exporter's textfile collector directory: after every run this
    /// tool rewrites etcd2_backup_<step>.prom there (success or failure).
    /// Nothing is written where the directory does not exist; '' turns it off
    #[arg(
        long,
        env = "ETCD2_BACKUP_METRICS_DIR",
        default_value = crate::metrics::DEFAULT_DIR,
        value_name = "DIR",
        value_parser = path_or_empty
    )]
    pub metrics_dir: PathBuf,
}

/// A path where '' is a value (clap's own path parser refuses it).
fn path_or_empty(s: &str) -> std::result::Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(s))
}

impl MetricsArgs {
    pub fn dir(&self) -> Option<&std::path::Path> {
        (!self.metrics_dir.as_os_str().is_empty()).then_some(self.metrics_dir.as_path())
    }
}

/// How to reach and authenticate to the local etcd member.
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Client URL(s) of the etcd member, comma-separated [default: etcd's own
    /// ETCD_ADVERTISE_CLIENT_URLS when set, else http://127.0.0.1:2379]
    #[arg(long, env = "ETCDCTL_ENDPOINTS", value_name = "URLS")]
    pub endpoints: Option<String>,

    #[command(flatten)]
    pub conn: EtcdConnArgs,
}

/// Where every tool looks for the member's data dir when neither the flag
/// nor ETCD_DATA_DIR says: the original package's (and CoreOS etcd2's).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/etcd2";

/// Where the tools keep scratch files (`ETCD_BACKUP_DIR`, the original's name).
pub const DEFAULT_WORK_DIR: &str = "/var/lib/etcd2-backup";

/// The default client URL when neither --endpoints nor etcd's settings say.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Where the local member's client URL comes from: the flag (or
/// ETCDCTL_ENDPOINTS), else etcd's own ETCD_ADVERTISE_CLIENT_URLS (a systemd
/// unit that links etcd's settings drop-in sees it), else the default.
pub fn pick_endpoints(given: Option<&str>, advertised: Option<&str>) -> (String, &'static str) {
    let nonempty = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    if let Some(e) = nonempty(given) {
        (e, "--endpoints")
    } else if let Some(e) = nonempty(advertised) {
        (e, "ETCD_ADVERTISE_CLIENT_URLS")
    } else {
        (DEFAULT_ENDPOINT.to_string(), "the default")
    }
}

impl EtcdArgs {
    pub fn endpoints(&self) -> String {
        let advertised = std::env::var("ETCD_ADVERTISE_CLIENT_URLS").ok();
        let (e, from) = pick_endpoints(self.endpoints.as_deref(), advertised.as_deref());
        tracing::debug!("etcd endpoints {e} (from {from})");
        e
    }

    pub fn client(&self) -> Result<Etcdctl> {
        self.conn.client(&self.endpoints())
    }
}

/// How an archive is compressed (etcd2-snapshot, etcd2-convert).
#[derive(Args, Debug, Clone)]
pub struct CompressArgs {
    /// Compression of the archive
    #[arg(long, env = "ETCD2_BACKUP_CODEC", value_enum, default_value_t = crate::archive::Codec::Zstd)]
    pub codec: crate::archive::Codec,

    /// Compression level [default: zstd 3, gzip 6]
    #[arg(long, env = "ETCD2_BACKUP_LEVEL")]
    pub level: Option<i32>,

    /// Compression worker threads (zstd only). 0, the default, compresses on
    /// the main thread: measured smaller archives and a sixth of the memory of
    /// 1 worker for the same CPU (docs/benchmarks.md)
    #[arg(long, env = "ETCD2_BACKUP_THREADS", default_value_t = 0)]
    pub threads: u32,
}

/// TLS, etcdctl binary and timeouts for talking to etcd.
#[derive(Args, Debug, Clone)]
pub struct EtcdConnArgs {
    /// CA bundle that signed the etcd server's certificate (TLS)
    #[arg(long, env = "ETCDCTL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate for etcd (TLS client auth)
    #[arg(long, env = "ETCDCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// Client key for etcd; its contents are never logged
    #[arg(long, env = "ETCDCTL_KEY", value_name = "FILE", hide_env_values = true)]
    pub key: Option<PathBuf>,

    /// etcd user, where etcd has authentication on: NAME, or NAME:PASSWORD
    /// as etcdctl takes it. etcd serves snapshots, member status and alarms
    /// only to a user with its root role. The password is better kept in
    /// --password-file
    #[arg(
        long,
        env = "ETCDCTL_USER",
        value_name = "NAME[:PASSWORD]",
        hide_env_values = true
    )]
    pub user: Option<String>,

    /// Password of --user. A command line is visible to every user of the
    /// host (ps): prefer --password-file
    #[arg(
        long,
        env = "ETCDCTL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    pub password: Option<String>,

    /// File whose first line is the password of --user; mode 0600 or
    /// stricter, owned by root or this user (for systemd units)
    #[arg(long, env = "ETCD2_BACKUP_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// etcdctl binary to run [default: etcdctl from PATH]
    #[arg(long, env = "ETCD2_BACKUP_ETCDCTL", value_name = "PATH")]
    pub etcdctl: Option<PathBuf>,

    /// etcdutl binary (etcd 3.5+) for snapshot restore [default:
    /// etcdutl from PATH, else beside etcdctl; without one, etcdctl does it]
    #[arg(long, env = "ETCD2_BACKUP_ETCDUTL", value_name = "PATH")]
    pub etcdutl: Option<PathBuf>,

    /// Bound on each quick etcd call (status, member list, key probe), on
    /// connecting, and on any pause in the v3 snapshot stream
    #[arg(long, env = "ETCD2_BACKUP_QUERY_TIMEOUT", default_value = "30s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub query_timeout: Duration,

    /// Bound on each long etcd operation (a whole v3 snapshot stream,
    /// etcdctl backup, snapshot restore)
    #[arg(
        long,
        env = "ETCD2_BACKUP_TIMEOUT",
        default_value = "10m",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,
}

impl EtcdConnArgs {
    pub fn tls(&self) -> Tls {
        Tls {
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// Resolve etcdctl and check the TLS files; fails with one clear line.
    /// The etcdctl (and etcdutl) for a private member of ours, plain http
    /// on loopback (its URL set with [`Etcdctl::at`]): the TLS flags, which
    /// are the live cluster's, do not apply.
    pub fn private_client(&self) -> Result<Etcdctl> {
        EtcdConnArgs {
            cacert: None,
            cert: None,
            key: None,
            ..self.clone()
        }
        .client("http://127.0.0.1:1")
    }

    pub fn client(&self, endpoints: &str) -> Result<Etcdctl> {
        let tls = self.tls();
        tls.check()?;
        // Not every job needs etcdctl (a v3 backup talks gRPC): one that
        // does and finds none fails there, saying so.
        let program = Program::find_if_any("etcdctl", self.etcdctl.as_deref(), "etcd-client")?;
        // etcdutl: the one named, else PATH's, else the one beside etcdctl
        // (a release tarball unpacked in one place).
        let etcdutl = match &self.etcdutl {
            Some(p) => Some(Program::find("etcdutl", Some(p), "etcd 3.5+")?),
            None => Program::find("etcdutl", None, "etcd 3.5+")
                .ok()
                .or_else(|| {
                    let beside = program.path().with_file_name("etcdutl");
                    Program::find("etcdutl", Some(&beside), "etcd 3.5+").ok()
                }),
        };
        let mut c = Etcdctl::new(program, endpoints, tls).with_etcdutl(etcdutl);
        c.query_timeout = self.query_timeout;
        c.long_timeout = self.timeout;
        c.set_auth(self.auth()?);
        Ok(c)
    }

    /// The etcd user and password from --user, --password and
    /// --password-file (or their variables), checked to fit together; none
    /// when no user is given. The password is never part of an error.
    pub fn auth(&self) -> Result<Option<crate::etcd::Auth>> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let (password, file) = (nonempty(&self.password), self.password_file.clone());
        let file = file.filter(|f| !f.as_os_str().is_empty());
        let Some(user) = nonempty(&self.user) else {
            if password.is_some() || file.is_some() {
                anyhow::bail!(
                    "a password was given (--password or --password-file) but no --user NAME"
                );
            }
            return Ok(None);
        };
        let (name, inline) = match user.split_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
            None => (user, None),
        };
        anyhow::ensure!(!name.is_empty(), "--user: the user name is empty");
        let password = match (inline, password, file) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => anyhow::bail!(
                "--user {name}:… carries a password already, and --password or --password-file \
                 gives another: give --user {name} with one of them"
            ),
            (Some(p), None, None) | (None, Some(p), None) => p,
            (None, None, Some(f)) => crate::fsutil::read_secret(&f, "--password-file")?,
            (None, Some(_), Some(_)) => {
                anyhow::bail!("--password and --password-file: give one of them")
            }
            (None, None, None) => anyhow::bail!(
                "--user {name} has no password: give --password-file FILE (or --password, or \
                 --user {name}:PASSWORD)"
            ),
        };
        anyhow::ensure!(!password.is_empty(), "--user {name}: the password is empty");
        Ok(Some(crate::etcd::Auth::new(&name, &password)))
    }
}

/// The machine-id given by the operator (validated), else this host's
/// `/etc/machine-id` when it is readable, else none.
pub fn machine_id_or_local(given: Option<String>) -> Result<Option<String>> {
    match given {
        Some(id) => {
            crate::node::validate_machine_id(&id)?;
            Ok(Some(id))
        }
        None => Ok(crate::node::read_machine_id(std::path::Path::new("/etc/machine-id")).ok()),
    }
}

/// Where backups live and how rclone reaches them.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// rclone remote and path holding all machines' backups (REMOTE:PATH, or
    /// an absolute local path). Secrets in a connection string
    /// (:s3,secret_access_key=…:bucket) are never printed
    #[arg(
        long,
        env = "RCLONE_ENDPOINT",
        value_name = "REMOTE:PATH",
        hide_env_values = true,
        required_unless_present = "endpoint"
    )]
    pub remote: Option<String>,

    /// The old name of --remote, which differed from etcd's --endpoints by
    /// one letter. Still taken, with a notice; over RCLONE_ENDPOINT too, as
    /// a flag is
    #[arg(long, hide = true, value_name = "REMOTE:PATH")]
    pub endpoint: Option<String>,

    /// rclone config file (it holds credentials: keep it mode 0600) [default: rclone's own]
    #[arg(long, env = "RCLONE_CONFIG_PATH", value_name = "FILE")]
    pub rclone_config: Option<PathBuf>,

    /// Whose backups: the machine-id naming the folder under the remote [default: /etc/machine-id]
    #[arg(long, env = "ETCD2_BACKUP_MACHINE_ID", value_name = "ID")]
    pub machine_id: Option<String>,

    /// rclone binary to run [default: rclone from PATH]
    #[arg(long, env = "ETCD2_BACKUP_RCLONE", value_name = "PATH")]
    pub rclone: Option<PathBuf>,

    /// Extra flag for every rclone call, repeatable (env: space-separated), e.g. --rclone-flag=--bwlimit=10M
    #[arg(
        long = "rclone-flag",
        env = "ETCD2_BACKUP_RCLONE_FLAGS",
        hide_env_values = true,
        value_delimiter = ' ',
        allow_hyphen_values = true,
        value_name = "FLAG"
    )]
    pub rclone_flags: Vec<String>,

    /// Give up connecting to the remote after this long (rclone --contimeout)
    #[arg(long, env = "ETCD2_BACKUP_CONNECT_TIMEOUT", default_value = "10s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Give up a transfer when no data moved for this long, on the network
    /// (rclone --timeout) or between rclone and us
    #[arg(long, env = "ETCD2_BACKUP_STALL_TIMEOUT", default_value = "60s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub stall_timeout: Duration,

    /// Bound on each listing or small read/write on the remote, retries
    /// included (rclone itself tries once, with two low-level tries)
    #[arg(long, env = "ETCD2_BACKUP_REMOTE_TIMEOUT", default_value = "60s",
          value_parser = parse_duration, value_name = "DURATION")]
    pub remote_timeout: Duration,

    /// Bound on one archive upload or download, however steady its progress
    #[arg(long, env = "ETCD2_BACKUP_TRANSFER_TIMEOUT", default_value = "1h",
          value_parser = parse_duration, value_name = "DURATION")]
    pub transfer_timeout: Duration,
}

impl RemoteArgs {
    pub fn rclone(&self) -> Result<crate::rclone::Rclone> {
        let flags = self
            .rclone_flags
            .iter()
            .filter(|f| !f.is_empty())
            .cloned()
            .collect();
        let mut r =
            crate::rclone::Rclone::new(self.rclone.as_deref(), self.rclone_config.clone(), flags)?;
        r.bounds = crate::rclone::Bounds {
            connect: self.connect_timeout,
            stall: self.stall_timeout,
            remote: self.remote_timeout,
            transfer: self.transfer_timeout,
        };
        Ok(r)
    }

    /// The repository these flags name: this machine's backups under the
    /// endpoint, through the rclone they configure, every call of the run
    /// going to one `rclone rcd` ([`crate::rclone::Rclone::one_process`]).
    pub fn repo(&self) -> Result<crate::store::Repo> {
        Ok(crate::store::Repo::new(
            self.rclone()?.one_process(),
            self.layout()?,
        ))
    }

    /// Every machine's backups under the endpoint, through one `rclone
    /// rcd` for the run; no machine-id needed.
    pub fn fleet(&self) -> Result<crate::store::Fleet> {
        crate::store::Fleet::new(self.rclone()?.one_process(), self.remote())
    }

    pub fn layout(&self) -> Result<crate::store::Layout> {
        let id = match machine_id_or_local(self.machine_id.clone())? {
            Some(id) => id,
            None => anyhow::bail!(
                "cannot read /etc/machine-id: pass --machine-id (or ETCD2_BACKUP_MACHINE_ID)"
            ),
        };
        crate::store::Layout::new(self.remote(), &id)
    }

    /// The remote the flags name: --remote (or RCLONE_ENDPOINT), or the old
    /// --endpoint, said once as such.
    pub fn remote(&self) -> &str {
        if let Some(old) = &self.endpoint {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    "--endpoint is the old name of --remote (the rclone remote; --endpoints is \
                     etcd's client URL): it still works, and wins over RCLONE_ENDPOINT"
                )
            });
            return old;
        }
        self.remote.as_deref().unwrap_or_default()
    }
}

/// Archive paths as the flags give them (FILE or `-`).
pub use crate::sink::{Input, Output};

/// The longest wait or timeout a flag accepts. Longer ones are typos (and
/// overflowed the clock arithmetic: `--lock-wait 1000000000d` panicked).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parse a duration flag such as `30s`, `5m`, `1h 30m`, at most
/// [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(format!(
            "{s} is longer than the longest wait a flag accepts ({})",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// Parse a moment flag (`--to-time`, `--from`, `--to`): RFC 3339 with its
/// zone, `10 minutes ago`, or `@UNIX_SECONDS`; Unix milliseconds
/// ([`crate::clock::parse_moment`]).
pub fn parse_moment(s: &str) -> std::result::Result<u64, String> {
    crate::clock::parse_moment(s, std::time::SystemTime::now())
}

/// Whether `e` is a write to a reader that went away (`| head`).
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print `text` to stdout; a reader that went away (`| head`) is not an
/// error: the data was not wanted (exit 0, as ripgrep does).
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("366d").is_ok());
        assert!(parse_duration("367d").unwrap_err().contains("longest wait"));
        assert!(parse_duration("1000000000d").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn endpoints_come_from_the_flag_then_etcds_settings_then_the_default() {
        let flag = "https://10.0.0.1:2379";
        let adv = "http://10.0.0.2:2379,http://10.0.0.3:2379";
        assert_eq!(
            pick_endpoints(Some(flag), Some(adv)),
            (flag.to_string(), "--endpoints")
        );
        assert_eq!(
            pick_endpoints(None, Some(adv)),
            (adv.to_string(), "ETCD_ADVERTISE_CLIENT_URLS")
        );
        assert_eq!(
            pick_endpoints(Some(" "), Some("")),
            (DEFAULT_ENDPOINT.to_string(), "the default")
        );
        assert_eq!(pick_endpoints(None, None).0, DEFAULT_ENDPOINT);
    }
}
