//! The `gatehouse` command: parses the command line and calls the library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gatehouse::config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Reverse-proxy authentication gateway"
)]
struct Cli {
    /// Config file (also GATEHOUSE_CONFIG).
    #[arg(long, global = true, env = "GATEHOUSE_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// After all listeners are bound, write their addresses here as JSON.
    #[arg(long, global = true, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config, keys, certificates and files; exit 0 or 1.
    Check,
    /// A self-contained demo: TLS, two echo backends, printed curl commands.
    Demo {
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
    /// Read a password on stdin, print an argon2id PHC string for a users file.
    HashPassword,
    /// Print the version.
    Version,
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        None | Some(Command::Run) => run(&config_path(&cli), cli.ready_file.as_deref()),
        Some(Command::Check) => return check(&config_path(&cli)),
        Some(Command::Demo { port }) => demo(*port),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Version) => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: ok ({} routes, {} upstreams)",
                path.display(),
                c.routes.len(),
                c.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: `worker_threads` workers, by default one per CPU
/// this process may run on (its affinity mask, so `taskset` and cgroup
/// CPU sets count). With one worker, a single-threaded runtime: every task
/// runs on the main thread, with no cross-thread queues or wake-ups, which
/// costs less per request than a one-worker thread pool plus a main
/// thread. Password hashing still runs on the blocking pool either way.
fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let n = worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut b = if n == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(n);
        b
    };
    b.enable_all();
    b.build().context("cannot start the async runtime")
}

fn run(path: &Path, ready_file: Option<&Path>) -> Result<()> {
    let cfg = config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    gatehouse::telemetry::init(cfg.log.format);
    let rt = runtime(cfg.server.worker_threads)?;
    rt.block_on(async move {
        let mut running = gatehouse::start(cfg).await?;
        if let Some(file) = ready_file {
            write_ready_file(file, &running.addrs)?;
        }
        let gw = running.gateway.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading config");
                let _ = gw.reload().await;
            }
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        running.begin_shutdown();
        running.wait().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn write_ready_file(file: &Path, a: &gatehouse::gateway::BoundAddrs) -> Result<()> {
    let v = serde_json::json!({
        "listen": a.listen.to_string(),
        "admin": a.admin.to_string(),
        "redirect": a.redirect.map(|r| r.to_string()),
    });
    // Write then rename, so a reader never sees half a file.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, v.to_string())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}

fn hash_password() -> Result<()> {
    use std::io::Read;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read stdin")?;
    // One trailing newline is the shell's, not the password's.
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    println!("{}", gatehouse::login::users::hash_password(password));
    Ok(())
}

fn demo(port: u16) -> Result<()> {
    gatehouse::telemetry::init(config::LogFormat::Text);
    runtime(None)?
        .block_on(gatehouse::demo::run(port))
        .map_err(|e| anyhow::anyhow!("{e}"))
}
