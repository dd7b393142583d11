//! Custom [`Hooks`]: which requests are shadowed, how the copies are marked,
//! and how the responses are compared.
//!
//! * [`Hooks::select_backends`]: only `GET` requests whose path starts with
//!   `/api/` go to the shadows; everything else goes to the master alone.
//! * [`Hooks::munge_request`]: every shadow copy carries `X-Kage-Shadow: 1`
//!   (each backend gets its own [`HeadRewrite`], so the master's head is
//!   untouched).
//! * [`Hooks::backends_finished`]: prints, per exchange, each backend's name,
//!   outcome and status, and whether its decoded body equals the master's.
//!
//! The proxy runs on the ready-made [`Server`] loop until the process is
//! killed (Ctrl-C).
//!
//! ```text
//! cargo run --example hooks -- --listen 127.0.0.1:8080 --master 127.0.0.1:9000 \
//!     --shadow 127.0.0.1:9001 [--shadow new=127.0.0.1:9002]...
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use kage::http::{HeadRewrite, Method};
use kage::proxy::{Backend, BackendReport, Config, Exchange, Hooks, Outcome, Proxy, Request, Role, Selection};
use kage::runtime::server::Server;

const USAGE: &str = "usage: hooks --listen ADDR --master HOST:PORT [--shadow [NAME=]HOST:PORT]...";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let (listen, backends) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("hooks: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(listen, backends) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hooks: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the proxy with [`ApiShadowHooks`] and runs it.
fn run(listen: SocketAddr, backends: Vec<Backend>) -> io::Result<()> {
    let mut server = Server::new()?;
    let mut proxy = Proxy::new(Config::new(listen, backends), ApiShadowHooks::default())?;
    println!("listening on {}", proxy.local_addr());
    io::stdout().flush()?;
    server.run(&mut [&mut proxy], 1)
}

/// Shadows `GET /api/...` only, marks the shadow copies and reports how the
/// shadows' responses compare with the master's.
#[derive(Debug, Default)]
struct ApiShadowHooks {
    /// Exchanges reported so far.
    exchanges: u64,
    /// Of those, how many had a shadow answer differently from the master.
    mismatches: u64,
}

impl Hooks for ApiShadowHooks {
    fn select_backends(&mut self, request: &Request<'_>, backends: &[Backend]) -> Selection {
        let master = backends
            .iter()
            .position(|b| b.role == Role::Master)
            .map_or(Selection::none(), Selection::only);
        if request.method() == Method::Get && request.path().starts_with(b"/api/") {
            Selection::all(backends)
        } else {
            master
        }
    }

    fn munge_request(&mut self, backend: &Backend, _request: &Request<'_>, rewrite: &mut HeadRewrite) {
        if backend.role == Role::Shadow {
            if let Err(e) = rewrite.set("X-Kage-Shadow", "1") {
                eprintln!("cannot mark the request to {}: {e}", backend.name);
            }
        }
    }

    fn backends_finished(&mut self, exchange: &Exchange<'_>) {
        self.exchanges += 1;
        let request = exchange.request;
        println!(
            "exchange #{} {} {}",
            exchange.id,
            String::from_utf8_lossy(request.method_bytes()),
            String::from_utf8_lossy(request.path()),
        );
        let master = exchange.master();
        let mut differs = false;
        for (backend, report) in exchange.iter() {
            let status = report.status().map_or("-".to_string(), |s| s.to_string());
            let verdict = match (backend.role, master) {
                (Role::Master, _) => "(master)",
                (Role::Shadow, None) => "no master to compare with",
                (Role::Shadow, Some(m)) => {
                    let (verdict, same) = compare(m, report);
                    differs |= !same;
                    verdict
                }
            };
            println!(
                "  {:<12} {:<6} {:<10} status={status:<3} {verdict}",
                backend.name,
                backend.role.as_str(),
                report.outcome.as_str(),
            );
        }
        if differs {
            self.mismatches += 1;
        }
        println!("  mismatches so far: {}/{}", self.mismatches, self.exchanges);
    }
}

/// How a shadow's report compares with the master's: a word for the output,
/// and whether they agree (same outcome, status and decoded body).
fn compare(master: &BackendReport, shadow: &BackendReport) -> (&'static str, bool) {
    if master.outcome != Outcome::Complete || shadow.outcome != Outcome::Complete {
        return ("body not compared (incomplete)", master.outcome == shadow.outcome);
    }
    let same_status = master.status() == shadow.status();
    match (
        master.response_body == shadow.response_body,
        master.truncated || shadow.truncated,
    ) {
        (true, false) => ("same body", same_status),
        (true, true) => ("same body (as far as captured)", same_status),
        (false, _) => ("body differs", false),
    }
}

/// `--listen`, `--master`, `--shadow` (repeatable) to the listen address and
/// the backends.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, Vec<Backend>), String> {
    let mut listen = None;
    let mut master = None;
    let mut shadows = Vec::new();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(resolve(&value()?)?),
            "--master" => master = Some(Backend::new("master", resolve(&value()?)?, Role::Master)),
            "--shadow" => {
                let v = value()?;
                let (name, addr) = match v.split_once('=') {
                    Some((name, addr)) => (name.to_string(), addr),
                    None => (format!("shadow{}", shadows.len() + 1), v.as_str()),
                };
                shadows.push(Backend::new(name, resolve(addr)?, Role::Shadow));
            }
            "-h" | "--help" => return Err("help requested".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let master = master.ok_or("--master is required")?;
    Ok((listen, std::iter::once(master).chain(shadows).collect()))
}

/// `HOST:PORT` to its first address.
fn resolve(v: &str) -> Result<SocketAddr, String> {
    v.to_socket_addrs()
        .map_err(|e| format!("{v}: expected HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{v}: resolves to no address"))
}
