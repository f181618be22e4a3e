//! How every paygate config file is read: TOML, then the `PAYGATE_<TABLE>_<FIELD>` environment overrides laid
//! over it, then `${NAME}` references expanded; every error names the file and the field.

use std::path::Path;

use super::{ConfigError, DEVNET};

pub(super) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })
}

/// Parses a TOML document into `T` as every paygate configuration file is read: the `overrides` set over the
/// file's fields, then `${ENV}` references expanded with `env`; errors name the file and the field.
pub(super) fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &[(String, String)],
) -> Result<T, ConfigError> {
    let err = |field: String, message: String| ConfigError { file: file.to_owned(), field, message };
    let mut value: toml::Value = toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        let field = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}")
            })
            .unwrap_or_else(|| "(file)".into());
        err(field, message)
    })?;
    apply_overrides(&mut value, overrides).map_err(|(field, message)| err(field, message))?;
    expand_env(&mut value, &mut String::new(), env).map_err(|(field, message)| err(field, message))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        err(if field == "." { "(file)".into() } else { field }, e.into_inner().message().to_owned())
    })
}

/// The prefix of environment variables that set config fields.
pub(crate) const OVERRIDE_PREFIX: &str = "PAYGATE_";

/// `PAYGATE_SERVER_LISTEN` and kin: a field of `[server]`, `[upstream]`, `[store]`, `[reconciler]`, `[admin]`,
/// `[limits]` or `[facilitator]`, or of `[networks.<name>]`
/// (the name in capitals, `-` as `_`: `PAYGATE_NETWORKS_BASE_SEPOLIA_RPC_URL`). Other `PAYGATE_` variables are
/// not config fields and are left alone. The value keeps the type of the file's value when there is one, else
/// reads as a TOML value (`30`, `true`, `["*"]`) or, failing that, a string.
pub(super) fn apply_overrides(value: &mut toml::Value, overrides: &[(String, String)]) -> Result<(), (String, String)> {
    let Some(root) = value.as_table_mut() else { return Ok(()) };
    let mut networks: Vec<String> =
        root.get("networks").and_then(toml::Value::as_table).map(|t| t.keys().cloned().collect()).unwrap_or_default();
    networks.extend(paygate_core::registry::NETWORKS.iter().map(|n| n.name.to_owned()));
    networks.push(DEVNET.to_owned());
    // The longest name first, so that `BASE_SEPOLIA_` is not read as `BASE_` + `SEPOLIA_...`.
    networks.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for (name, raw) in overrides {
        let Some(rest) = name.strip_prefix(OVERRIDE_PREFIX) else { continue };
        let (tables, field): (Vec<String>, &str) = if let Some(table) =
            ["SERVER", "UPSTREAM", "STORE", "RECONCILER", "ADMIN", "LIMITS", "FACILITATOR"]
                .iter()
                .find(|t| rest.starts_with(&format!("{t}_")))
        {
            (vec![table.to_ascii_lowercase()], &rest[table.len() + 1..])
        } else if let Some(after) = rest.strip_prefix("NETWORKS_") {
            let upper = |n: &str| n.to_ascii_uppercase().replace('-', "_");
            let Some(network) = networks.iter().find(|n| after.starts_with(&format!("{}_", upper(n)))) else {
                return Err((name.clone(), "names no network of the file or the registry".to_owned()));
            };
            (vec!["networks".to_owned(), network.clone()], &after[network.len() + 1..])
        } else {
            continue;
        };
        let mut table = &mut *root;
        for key in &tables {
            let entry = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
            table = entry.as_table_mut().ok_or_else(|| (key.clone(), "is not a table".to_owned()))?;
        }
        let field = field.to_ascii_lowercase();
        let parsed = match table.get(&field) {
            Some(toml::Value::String(_)) => toml::Value::String(raw.clone()),
            _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone())),
        };
        table.insert(field, parsed);
    }
    Ok(())
}

/// Replaces `${NAME}` and `${NAME:-default}` in every string value; `path` tracks the field for errors.
pub(super) fn expand_env(
    value: &mut toml::Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, env)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                expand_env(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "unterminated ${...} reference".to_owned())?;
        let reference = &after[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{reference}}} is not an environment reference"));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
