//! `kage route --config FILE`: the router's flags over its routes.toml.

use std::ffi::OsString;
use std::path::PathBuf;

use super::args::{listen_arg, log_format_arg, max_connections_arg, resolve_interval_arg, value};
use super::{Command, LogFormat, RouteArgs, Topic, suggest};
use crate::proxy::{DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT};
use crate::route::config as route_config;
use crate::runtime::fds;

pub(super) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut listen = None;
    let mut file = None;
    let mut max_connections = None;
    let mut log_format = LogFormat::default();
    let mut resolve_interval = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') => return Ok(Command::Usage(Topic::Route)),
            Long("help") => return Ok(Command::Help(Topic::Route)),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => listen = Some(listen_arg(&mut p)?),
            Short('c') | Long("config") => file = Some(PathBuf::from(value(&mut p, "--config")?)),
            Long("max-connections") => max_connections = Some(max_connections_arg(&mut p)?),
            Long("log-format") => log_format = log_format_arg(&mut p)?,
            Long("resolve-interval") => resolve_interval = Some(resolve_interval_arg(&mut p)?),
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; kage route takes only flags",
                    v.to_string_lossy()
                ));
            }
            other => return Err(suggest::unexpected(other, Topic::Route)),
        }
    }
    let file = file.ok_or("kage route needs --config FILE (a routes.toml)")?;
    let loaded = route_config::load(&file)?;
    let listen = listen.or(loaded.listen).ok_or_else(|| {
        format!(
            "{}: no listen address: set listen = \"HOST:PORT\" there or give --listen ADDR",
            file.display()
        )
    })?;
    let mut settings = loaded.settings(listen);
    settings.max_connections = max_connections.unwrap_or_else(|| router_connections(fds::soft_limit()));
    settings.resolve_interval = resolve_interval.unwrap_or(settings.resolve_interval);
    settings.validate().map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Command::Route(RouteArgs {
        settings,
        rules: loaded.rules,
        config: file,
        log_format,
    }))
}

/// The default router connection cap for `limit` descriptors: a client and
/// a backend socket each, with a quarter of the limit left to splice pipes.
fn router_connections(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return DEFAULT_MAX_CONNECTIONS;
    };
    let n = fds::connections_for(limit, 2, limit / 4);
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_CONNECTIONS_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_pipes() {
        assert_eq!(router_connections(Some(1024)), (1024 - 64 - 256) / 2);
        assert_eq!(router_connections(None), DEFAULT_MAX_CONNECTIONS);
    }
}
