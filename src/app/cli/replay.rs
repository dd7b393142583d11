//! `kage replay --log FILE --to HOST:PORT`.

use std::ffi::OsString;
use std::path::PathBuf;

use super::args::{rule_flag, value};
use super::{Command, ReplayArgs, Topic, suggest};
use crate::compare;
use crate::values::resolve;

pub(super) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut log, mut to, mut fail_on_mismatch) = (None, None, false);
    let mut rules = compare::Rules::default();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') => return Ok(Command::Usage(Topic::Replay)),
            Long("help") => return Ok(Command::Help(Topic::Replay)),
            Long("log") => log = Some(PathBuf::from(value(&mut p, "--log")?)),
            Long("to") => {
                let v = value(&mut p, "--to")?;
                to = Some(resolve(&v).map_err(|e| format!("--to {v}: {e}"))?);
            }
            Long("fail-on-mismatch") => fail_on_mismatch = true,
            Long(flag @ ("ignore-header" | "ignore-json" | "json-set" | "json-tolerance")) => {
                let flag = format!("--{flag}");
                rule_flag(&mut rules, &flag, value(&mut p, &flag)?)?;
            }
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?}; kage replay takes only flags",
                    v.to_string_lossy()
                ));
            }
            other => return Err(suggest::unexpected(other, Topic::Replay)),
        }
    }
    Ok(Command::Replay(ReplayArgs {
        log: log.ok_or("kage replay needs --log FILE (a diff log written with --diff-log-bodies)")?,
        to: to.ok_or("kage replay needs --to HOST:PORT")?,
        fail_on_mismatch,
        rules,
    }))
}
