//! [`load`]: the command line and `WS_GATEWAY_*` variables (clap), with the
//! `--config` TOML file layered in below them. Each file key becomes the
//! flag of the same name, so a file value goes through exactly the parser
//! and checks a flag does; an unknown key is an error naming it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use super::Config;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// Parses `args` (the program name first) with the file layered in.
pub fn load<I, T>(args: I) -> Result<Config, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let given = args.clone();
    let cmd = Config::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| blame(e, &cmd, &given, None))?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(Config::from_arg_matches(&matches)?);
    };
    let file_err = |reason: String| LoadError::File {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
    for (key, value) in table {
        let id = key.replace('-', "_");
        let arg = cmd
            .get_arguments()
            .find(|a| {
                a.get_id() == id.as_str()
                    && !matches!(a.get_id().as_str(), "config" | "print_config" | "check")
            })
            .ok_or_else(|| file_err(format!("unknown key `{key}`")))?;
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(&id));
        if !arg.get_action().takes_values() {
            // A switch (`SetTrue`): clap refuses `--app-ping=true`, so `true`
            // is the bare flag and `false` the default, as `--print-config`
            // writes them.
            match value {
                toml::Value::Boolean(true) => args.push(flag.into()),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(file_err(format!(
                        "key `{key}`: {other} is not true or false"
                    )));
                }
            }
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(file_err(format!("key `{key}`: unsupported value {other}"))),
        };
        args.push(format!("{flag}={text}").into());
    }
    Config::try_parse_from(args).map_err(|e| blame(e, &cmd, &given, Some((&path, &text))))
}

/// A refused value's error, naming where the value came from when that
/// was not the command line: the `WS_GATEWAY_*` variable, or the config
/// file's line.
fn blame(
    err: clap::Error,
    cmd: &clap::Command,
    given: &[OsString],
    file: Option<(&PathBuf, &str)>,
) -> LoadError {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(invalid)) = err.get(ContextKind::InvalidArg) else {
        return err.into();
    };
    let long = invalid
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--");
    let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(long)) else {
        return err.into();
    };
    let flag = format!("--{long}");
    let on_command_line = given.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    if on_command_line {
        return err.into();
    }
    let reason = err
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    if let Some(var) = arg.get_env().map(|v| v.to_string_lossy().into_owned())
        && std::env::var_os(&var).is_some()
    {
        return LoadError::Env { var, reason };
    }
    match file {
        Some((path, text)) => {
            let key = arg.get_id().as_str().replace('_', "-");
            let line = text
                .lines()
                .position(|l| {
                    let l = l.trim_start();
                    (l.starts_with(&key) || l.starts_with(arg.get_id().as_str())) && l.contains('=')
                })
                .map(|n| format!("line {}, ", n + 1))
                .unwrap_or_default();
            LoadError::File {
                path: path.clone(),
                reason: format!("{line}key `{key}`: {reason}"),
            }
        }
        None => err.into(),
    }
}
