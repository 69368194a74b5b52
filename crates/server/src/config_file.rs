//! The configuration file (`--config FILE`, TOML) and the effective configuration that
//! `check-config` prints.
//!
//! A file's keys are the settings' flag names without their dashes (`port = 3000`,
//! `redis-url = "redis://…"`); lists may be TOML arrays. The per-namespace maps may also be
//! written as tables (`[namespaces."/chat"]` with `public`, `rooms`, `relay-events`). The file
//! adds no settings of its own: each entry becomes a `--flag=value` placed before the
//! variables and the command line, so the same parsers check it and flags > variables > file >
//! defaults holds by construction.

use std::fmt::Write as _;
use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;

use crate::config::{Namespaces, RoomPolicy};

/// The flag of the file itself, which a file cannot set.
pub(crate) const CONFIG_FLAG: &str = "config";

/// The namespaces the binary serves, as a file may name them.
const NAMESPACES: [&str; 2] = ["/chat", "/notifications"];

/// One setting read from the file, as the flag it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSetting {
    /// The flag's long name.
    pub long: String,
    /// Its value, as the command line would spell it.
    pub value: String,
    /// Where it is in the file, for messages: `port`, `namespaces."/chat".rooms`.
    pub key: String,
}

/// Reads the settings in `text`, a file's contents; `longs` are the flags a file may set.
/// The error says what is wrong and where, ready to print after `config file <path>: `.
pub(crate) fn settings_from_file(text: &str, longs: &[&str]) -> Result<Vec<FileSetting>, String> {
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        // Where and why, without the parser's quote of the line: that line may hold a secret.
        let at = error.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(0, |last| last.chars().count())
            + 1;
        format!(
            "TOML syntax error at line {line}, column {column}: {}",
            error.message().trim_end()
        )
    })?;
    let mut settings = Vec::new();
    for (key, value) in &table {
        if key == "namespaces" {
            namespace_tables(value, &mut settings)?;
            continue;
        }
        if key == CONFIG_FLAG {
            return Err("`config` cannot be set in a configuration file".to_owned());
        }
        if !longs.contains(&key.as_str()) {
            return Err(unknown_key(key, longs));
        }
        let value = flag_value(value).map_err(|expected| format!("`{key}`: {expected}"))?;
        settings.push(FileSetting {
            long: key.clone(),
            value,
            key: key.clone(),
        });
    }
    Ok(settings)
}

fn unknown_key(key: &str, longs: &[&str]) -> String {
    let dashed = key.to_ascii_lowercase().replace('_', "-");
    if dashed != key && longs.contains(&dashed.as_str()) {
        return format!("unknown key `{key}` (did you mean `{dashed}`?)");
    }
    format!("unknown key `{key}` (the keys are the flag names, as `--help` lists them)")
}

/// The command-line spelling of a TOML value: scalars as they read, arrays comma-separated.
fn flag_value(value: &toml::Value) -> Result<String, &'static str> {
    match value {
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(","))
            .ok_or("a list holds strings, numbers or booleans"),
        other => scalar(other).ok_or("expected a string, a number, a boolean or a list"),
    }
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// The fields of a `[namespaces."…"]` table: the field, the flag it is part of, and how.
const NAMESPACE_FIELDS: [(&str, &str, FieldKind); 10] = [
    ("public", "public-namespaces", FieldKind::Member(&[])),
    (
        "rooms",
        "room-policy",
        FieldKind::Text("\"claim\" or \"open\""),
    ),
    ("relay-events", "relay-events", FieldKind::List),
    ("presence", "presence", FieldKind::Member(&["/chat"])),
    (
        "recovery",
        "recovery-namespaces",
        FieldKind::Member(&["/chat", "/notifications"]),
    ),
    ("history", "history", FieldKind::Number),
    (
        "webhook-url",
        "webhook-url",
        FieldKind::Text("an http:// URL"),
    ),
    ("webhook-connect", "webhook-connect", FieldKind::Member(&[])),
    (
        "webhook-disconnect",
        "webhook-disconnect",
        FieldKind::Member(&[]),
    ),
    ("webhook-events", "webhook-events", FieldKind::List),
];

/// How a namespace table's field maps to its flag.
#[derive(Debug, Clone, Copy)]
enum FieldKind {
    /// A boolean: whether the namespace is in the flag's list (`--public-namespaces`); the
    /// list's default members, which a namespace the file leaves out stays in.
    Member(&'static [&'static str]),
    /// A string: the namespace's entry in the flag's map, the text says what is expected.
    Text(&'static str),
    /// A list of names: the namespace's entry in the flag's map.
    List,
    /// A whole number: the namespace's entry in the flag's map.
    Number,
}

/// A boolean field as the file gives it: its flag, the flag's default members, and the
/// namespaces the file puts in (true) or out (false).
type MemberField<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, bool)>);

/// `[namespaces."/chat"]` tables, as the per-namespace flags.
fn namespace_tables(value: &toml::Value, settings: &mut Vec<FileSetting>) -> Result<(), String> {
    let toml::Value::Table(namespaces) = value else {
        return Err("`namespaces` is a table of namespaces: [namespaces.\"/chat\"]".to_owned());
    };
    // For each boolean field set somewhere: its flag, its default members, and the
    // namespaces the file says are in or out.
    let mut members: Vec<MemberField<'_>> = Vec::new();
    for (name, table) in namespaces {
        let Some(namespace) = NAMESPACES.iter().find(|served| *served == name) else {
            return Err(format!(
                "namespace `{name}`: this server has {}",
                NAMESPACES.join(" and ")
            ));
        };
        let toml::Value::Table(table) = table else {
            return Err(format!("`namespaces.\"{name}\"` is a table"));
        };
        for (field, value) in table {
            let key = format!("namespaces.\"{name}\".{field}");
            let Some((_, long, kind)) = NAMESPACE_FIELDS.iter().find(|(known, ..)| known == field)
            else {
                let fields: Vec<&str> = NAMESPACE_FIELDS.iter().map(|(field, ..)| *field).collect();
                return Err(format!(
                    "unknown key `{key}` (a namespace has {})",
                    fields.join(", ")
                ));
            };
            let value = match (kind, value) {
                (FieldKind::Member(defaults), toml::Value::Boolean(member)) => {
                    let index = match members.iter().position(|(flag, ..)| flag == long) {
                        Some(index) => index,
                        None => {
                            members.push((long, defaults, Vec::new()));
                            members.len() - 1
                        }
                    };
                    members[index].2.push((namespace, *member));
                    continue;
                }
                (FieldKind::Text(_), toml::Value::String(text)) => text.clone(),
                (FieldKind::Number, toml::Value::Integer(number)) => number.to_string(),
                (FieldKind::List, toml::Value::Array(_)) => {
                    flag_value(value).map_err(|expected| format!("`{key}`: {expected}"))?
                }
                (FieldKind::Member(_), _) => {
                    return Err(format!("`{key}`: expected true or false"))
                }
                (FieldKind::Text(expected), _) => {
                    return Err(format!("`{key}`: expected {expected}"))
                }
                (FieldKind::List, _) => {
                    return Err(format!("`{key}`: expected a list of event names"))
                }
                (FieldKind::Number, _) => return Err(format!("`{key}`: expected a whole number")),
            };
            settings.push(FileSetting {
                long: (*long).to_owned(),
                value: format!("{namespace}={value}"),
                key,
            });
        }
    }
    for (long, defaults, said) in members {
        let list: Vec<&str> = NAMESPACES
            .iter()
            .copied()
            .filter(
                |namespace| match said.iter().find(|(named, _)| named == namespace) {
                    Some((_, member)) => *member,
                    None => defaults.contains(namespace),
                },
            )
            .collect();
        let field = NAMESPACE_FIELDS
            .iter()
            .find(|(_, flag, _)| *flag == long)
            .map_or(long, |(field, ..)| *field);
        settings.push(FileSetting {
            long: long.to_owned(),
            value: if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(",")
            },
            key: format!("namespaces.*.{field}"),
        });
    }
    Ok(())
}

/// What each layer under the command line set, to say where a value came from.
#[derive(Debug, Clone)]
pub(crate) struct Layers<'a> {
    /// The file, if one was read.
    pub file: Option<&'a Path>,
    /// The file's settings.
    pub file_settings: &'a [FileSetting],
    /// The variables passed: each argument's id and its variable.
    pub variables: &'a [(String, String)],
    /// The ids of the arguments the command line itself gives.
    pub flags: &'a [String],
}

/// The effective configuration as a TOML file that reads back to the same settings: each
/// setting with where it came from, secrets masked, the namespaces resolved.
pub(crate) fn effective(
    command: &clap::Command,
    matches: &ArgMatches,
    layers: &Layers<'_>,
    namespaces: &Namespaces,
) -> String {
    let mut out = String::from(
        "# The effective configuration: flags > environment > file > defaults.\n\
         # Secrets are masked (and commented out), Redis passwords too. This text is itself a\n\
         # valid configuration file.\n",
    );
    if let Some(file) = layers.file {
        let _ = writeln!(out, "# File: {}", file.display());
    }
    out.push('\n');
    let mut heading = None;
    for arg in command.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        let per_namespace = NAMESPACE_FIELDS.iter().any(|(_, flag, _)| *flag == long);
        if long == CONFIG_FLAG || per_namespace || id == "help" {
            continue;
        }
        if arg.get_help_heading() != heading {
            heading = arg.get_help_heading();
            let _ = writeln!(out, "\n# {}", heading.unwrap_or("Server"));
        }
        let value = matches
            .get_raw(id)
            .and_then(|mut values| values.next_back())
            .map(|value| value.to_string_lossy().into_owned());
        let Some(value) = value else {
            let _ = writeln!(out, "# {long} = (not set)");
            continue;
        };
        let origin = origin(matches, id, long, layers);
        if arg.is_hide_env_values_set() {
            // Commented out: a file made from this text keeps its secrets elsewhere.
            let _ = writeln!(out, "# {long} = (set, masked)  # {origin}");
        } else if long == "redis-url" {
            let _ = writeln!(out, "{long} = {}  # {origin}", quote(&redact_url(&value)));
        } else {
            let _ = writeln!(out, "{long} = {}  # {origin}", toml_value(&value));
        }
    }
    for (name, settings) in namespaces.each() {
        let rooms = match settings.rooms {
            RoomPolicy::Claim => "claim",
            RoomPolicy::Open => "open",
        };
        let list = |events: &[String]| {
            let quoted: Vec<String> = events.iter().map(|event| quote(event)).collect();
            format!("[{}]", quoted.join(", "))
        };
        let hooks = &settings.webhook;
        let _ = write!(
            out,
            "\n[namespaces.\"{name}\"]\npublic = {}\nrooms = \"{rooms}\"\nrelay-events = {}\npresence = {}\nrecovery = {}\nhistory = {}\n",
            settings.public,
            list(&settings.relay),
            settings.presence,
            settings.recovery,
            settings.history
        );
        match &hooks.url {
            Some(url) => {
                let _ = writeln!(out, "webhook-url = {}", quote(url));
            }
            None => out.push_str("# webhook-url = (not set)\n"),
        }
        let _ = write!(
            out,
            "webhook-connect = {}\nwebhook-disconnect = {}\nwebhook-events = {}\n",
            hooks.connect,
            hooks.disconnect,
            list(&hooks.events)
        );
    }
    out
}

/// Where the value of argument `id` (flag `long`) came from: the highest layer that set it.
fn origin(matches: &ArgMatches, id: &str, long: &str, layers: &Layers<'_>) -> String {
    if matches.value_source(id) != Some(ValueSource::CommandLine) {
        return "default".to_owned();
    }
    if layers.flags.iter().any(|flag| flag == id) {
        return "flag".to_owned();
    }
    if let Some((_, variable)) = layers.variables.iter().find(|(arg, _)| arg == id) {
        return format!("variable {variable}");
    }
    match layers
        .file_settings
        .iter()
        .rev()
        .find(|setting| setting.long == long)
    {
        Some(setting) => format!("file, `{}`", setting.key),
        None => "file".to_owned(),
    }
}

/// `urls` (comma-separated) with any password replaced by `****`.
pub(crate) fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let Some((scheme, rest)) = url.split_once("://") else {
                return url.to_owned();
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return url.to_owned();
            };
            let user = rest[..at].split(':').next().unwrap_or_default();
            if !rest[..at].contains(':') {
                return url.to_owned();
            }
            format!("{scheme}://{user}:****{}", &rest[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `value` as a TOML value: a number or a boolean when it reads as one, else a string.
fn toml_value(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        quote(value)
    }
}

/// A TOML basic string. JSON's escapes are all valid in TOML.
fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}
