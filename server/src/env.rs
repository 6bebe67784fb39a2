//! Every configuration key from the environment, for deployments without a
//! TOML file (containers): `SWITCHBOARD_<SECTION>__<KEY>` sets `<key>` of
//! `[<section>]`, and `SWITCHBOARD_<KEY>` a top-level key; what follows the
//! prefix is matched in any case.
//!
//! ```text
//! SWITCHBOARD_LIMITS__MESSAGES_PER_SEC=50       # [limits] messages_per_sec = 50
//! SWITCHBOARD_HISTORY__DEFAULT__SIZE=500         # [history.default] size = 500
//! SWITCHBOARD_AUTH__JWT_SECRET=…                 # [auth] jwt_secret = "…"
//! SWITCHBOARD_LIMITS__ALLOWED_ORIGINS='["https://app.example"]'
//! SWITCHBOARD_SHUTDOWN_GRACE_MS=5000             # shutdown_grace_ms = 5000
//! ```
//!
//! Values are read as TOML-like scalars: numbers, `true`/`false`, `[…]`
//! arrays, anything else a string. A variable that names no setting, or holds
//! the wrong type, is refused with [`ConfigError::Env`], never ignored. The
//! variables of the command-line flags (`SWITCHBOARD_CONFIG`,
//! `SWITCHBOARD_LOG`, `SWITCHBOARD_MAX_CONNECTIONS`, …, as
//! [`Cli::flag_variables`](crate::cli::Cli::flag_variables) lists them) are
//! the flags' own and are left to them, and so are the companion tools'
//! (`SWITCHBOARD_CLI_…`).
//!
//! Layered with [figment](https://docs.rs/figment): the configuration so far
//! is the base, each variable a value on top.

use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Provider};

use crate::Config;
use crate::error::ConfigError;

/// The prefix of every variable.
pub const PREFIX: &str = "SWITCHBOARD_";

/// Variables of the companion tools (`switchboard-cli`'s
/// `SWITCHBOARD_CLI_URL`, …), left to them: a shell that exported one can
/// still start a hub.
pub const TOOLS_PREFIX: &str = "SWITCHBOARD_CLI_";

/// `config` with every `SWITCHBOARD_…` variable of `vars` set on top, except
/// `flag_variables`, which belong to command-line flags (their full names,
/// as [`Cli::flag_variables`](crate::cli::Cli::flag_variables) lists them).
pub fn apply(
    config: Config,
    vars: impl IntoIterator<Item = (String, String)>,
    flag_variables: &[String],
) -> Result<Config, ConfigError> {
    let mut layered = Figment::from(Serialized::defaults(&config));
    let mut any = false;
    // A flag's variable that is also a key's (`SWITCHBOARD_BIND`) sets the
    // same value either way; the others (`SWITCHBOARD_MAX_CONNECTIONS`) name
    // no key of their own.
    let settings = variables();
    for (name, raw) in vars {
        if flag_variables.contains(&name) && !settings.contains(&name)
            || name.to_ascii_uppercase().starts_with(TOOLS_PREFIX)
        {
            continue;
        }
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let rest = rest.to_ascii_uppercase();
        let path = rest.to_ascii_lowercase().replace("__", ".");
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(ConfigError::Env(format!("{name} names no setting")));
        }
        let value: Value = raw.parse().unwrap_or_else(|never| match never {});
        layered = layered.merge(Serialized::default(&path, value));
        any = true;
    }
    if !any {
        return Ok(config);
    }
    // An unknown key is refused by the types (`deny_unknown_fields`), so a
    // misspelt variable is an error, not a setting silently left out.
    layered.extract::<Config>().map_err(|err| ConfigError::Env(describe(err)))
}

/// A figment error as one line naming the key.
fn describe(err: figment::Error) -> String {
    err.into_iter()
        .map(|one| match one.path.is_empty() {
            true => one.kind.to_string(),
            false => format!("{}: {}", one.path.join("."), one.kind),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The configuration as TOML with its secrets masked, for `--print-config`.
pub fn masked_toml(config: &Config) -> String {
    let mut shown = config.clone();
    let mask = |secret: &mut Option<String>| {
        if secret.is_some() {
            *secret = Some("********".to_owned());
        }
    };
    mask(&mut shown.auth.jwt_secret);
    mask(&mut shown.api.key);
    mask(&mut shown.hooks.secret);
    // The mode in force: with a key configured, `insecure` is ignored.
    shown.auth.insecure = config.auth.insecure && !config.auth.uses_tokens();
    // A Redis URL may carry a password: `redis://user:secret@host` shows
    // as `redis://********@host`.
    let mask_url = |url: &mut String| {
        if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
            if at > scheme + 3 {
                url.replace_range(scheme + 3..at, "********");
            }
        }
    };
    shown.redis.url.iter_mut().chain(shown.redis.shards.iter_mut()).for_each(mask_url);
    toml::to_string(&shown)
        .unwrap_or_else(|err| format!("# cannot show the configuration: {err}\n"))
}

/// The keys the environment can set, as variable names (for the docs and
/// for a test that every key is reachable).
pub fn variables() -> Vec<String> {
    let data = Figment::from(Serialized::defaults(Config::default())).data().unwrap_or_default();
    let mut out = Vec::new();
    for dict in data.values() {
        collect(dict, "", &mut out);
    }
    out.sort();
    out
}

fn collect(dict: &Dict, at: &str, out: &mut Vec<String>) {
    for (key, value) in dict {
        let name = if at.is_empty() {
            key.to_ascii_uppercase()
        } else {
            format!("{at}__{}", key.to_ascii_uppercase())
        };
        match value {
            Value::Dict(_, inner) => collect(inner, &name, out),
            _ => out.push(format!("{PREFIX}{name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;

    /// `apply` with the real flags' variables left out.
    fn apply(config: Config, vars: Vec<(String, String)>) -> Result<Config, ConfigError> {
        super::apply(config, vars, &Cli::flag_variables())
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn nested_keys_of_every_type_are_set_from_variables() {
        let config = apply(
            Config::default(),
            vars(&[
                ("SWITCHBOARD_LIMITS__MESSAGES_PER_SEC", "7"),
                ("SWITCHBOARD_HISTORY__DEFAULT__SIZE", "3"),
                ("SWITCHBOARD_ROOMS__PUBLISH_REQUIRES_JOIN", "true"),
                ("SWITCHBOARD_Auth__Jwt_Secret", "s3cret"),
                (
                    "SWITCHBOARD_LIMITS__ALLOWED_ORIGINS",
                    r#"["https://a.example", "https://b.example"]"#,
                ),
                ("SWITCHBOARD_SHUTDOWN_GRACE_MS", "1234"),
                ("SWITCHBOARD_SERVER_NAME", "hq"),
                ("UNRELATED", "x"),
                // switchboard-cli's, not the hub's: left alone.
                ("SWITCHBOARD_CLI_TOKEN", "a.b.c"),
                ("switchboard_cli_url", "ws://elsewhere/ws"),
            ]),
        )
        .unwrap();
        assert_eq!(config.limits.messages_per_sec, 7);
        assert_eq!(config.history.default.size, 3);
        assert!(config.rooms.publish_requires_join);
        assert_eq!(config.auth.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(config.limits.allowed_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(config.shutdown_grace_ms, 1234);
        assert_eq!(config.server_name, "hq");
        // Everything else keeps its value.
        assert_eq!(config.limits.max_connections, Config::default().limits.max_connections);
    }

    #[test]
    fn a_misspelt_or_mistyped_variable_is_refused_with_its_key() {
        let err = apply(Config::default(), vars(&[("SWITCHBOARD_LIMITS__MESAGES_PER_SEC", "7")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mesages_per_sec"), "{err}");
        let err =
            apply(Config::default(), vars(&[("SWITCHBOARD_LIMITS__MESSAGES_PER_SEC", "fast")]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("messages_per_sec"), "{err}");
        assert!(apply(Config::default(), vars(&[("SWITCHBOARD_LIMITS__", "1")])).is_err());
    }

    #[test]
    fn flag_variables_are_left_to_the_flags() {
        let config = apply(
            Config::default(),
            vars(&[("SWITCHBOARD_LOG", "debug"), ("SWITCHBOARD_MAX_CONNECTIONS", "5")]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_variable_list_names_nested_and_top_level_keys() {
        let names = variables();
        assert!(names.contains(&"SWITCHBOARD_LIMITS__MESSAGES_PER_SEC".to_owned()), "{names:?}");
        assert!(names.contains(&"SWITCHBOARD_BACKLOG".to_owned()));
        assert!(names.len() > 40, "{}", names.len());
    }

    #[test]
    fn printed_configuration_masks_secrets_and_reads_back() {
        let mut config = Config::default();
        config.auth.jwt_secret = Some("s3cret".to_owned());
        config.redis.url = Some("redis://app:s3cret@127.0.0.1:6379/2".to_owned());
        config.api.key = Some("k3y".to_owned());
        config.hooks.secret = Some("h00k".to_owned());
        let printed = masked_toml(&config);
        assert!(!printed.contains("s3cret") && !printed.contains("k3y"), "{printed}");
        assert!(!printed.contains("h00k"), "{printed}");
        assert!(printed.contains("********"));
        // Tokens are enforced: the mode printed is the one in force.
        assert!(printed.contains("insecure = false"), "{printed}");
        let back = Config::from_toml(&printed).unwrap();
        assert_eq!(back.limits, config.limits);
    }
}
