//! Config errors that name the file, line and column, and the fix.

use std::path::{Path, PathBuf};

/// A configuration that cannot be used, naming the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Valid TOML with a value that cannot work.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What to fix.
        message: String,
    },
    /// A problem at a place in the file: `<path>:<line>:<col>: <what> — <fix>`.
    #[error("{}:{line}:{col}: {what} — {fix}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        col: usize,
        /// What is wrong.
        what: String,
        /// How to fix it.
        fix: String,
    },
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// A toml parse or shape error as `<path>:<line>:<col>: <what> — <fix>`.
pub(super) fn located(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, col) = e.span().map_or((1, 1), |span| line_col(text, span.start));
    let what = e.message().trim().to_string();
    let fix = if what.starts_with("unknown field `password_file`")
        || what.starts_with("unknown field `user`")
    {
        // Configs from before NATS users were nkeys.
        "NATS users are nkeys now: remove user and password_file, set nkey_file to the exchange's seed (`handoff nats-auth` writes handoff-exchange.nk)".into()
    } else if let Some(rest) = what.strip_prefix("unknown field") {
        match rest.split_once("expected ") {
            Some((_, allowed)) => {
                format!("rename it to one of the allowed fields ({allowed}) or remove it")
            }
            None => "remove it: this table takes no such field".into(),
        }
    } else if what.starts_with("missing field") {
        "add it to this table (ops/handoff.toml shows every field with an example)".into()
    } else if what.starts_with("invalid socket address") {
        "write an address as IP:PORT, e.g. \"127.0.0.1:50051\"".into()
    } else if what.starts_with("invalid type") || what.starts_with("invalid value") {
        "give the value the type the message names (strings in quotes, numbers without)".into()
    } else if what.starts_with("duplicate key") {
        "keep one of the two keys".into()
    } else {
        "correct the TOML syntax here (see https://toml.io)".into()
    };
    ConfigError::At {
        path: path.to_path_buf(),
        line,
        col,
        what,
        fix,
    }
}

/// Where a key of a table (the `index`th `[[table]]` for arrays) sits in `text`, as
/// line and column; the table's header if the key is not written; 1:1 if neither is.
/// `key` "" asks for the header. Serde forgets positions after parsing, so the checks
/// that run after it find the place again in the text.
pub(super) fn find_key(text: &str, table: &str, index: Option<usize>, key: &str) -> (usize, usize) {
    let mut current = String::new();
    let mut seen: Option<usize> = None;
    let mut header = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            current = name.trim().to_string();
            if current == table {
                seen = Some(seen.map_or(0, |i| i + 1));
            }
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == table && seen == index && !key.is_empty() {
            if let Some(rest) = line.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                let col = raw.len() - raw.trim_start().len() + 1;
                return (n + 1, col);
            }
            continue;
        } else {
            continue;
        }
        if current == table && seen == index && header.is_none() {
            header = Some((n + 1, 1));
            if key.is_empty() {
                return (n + 1, 1);
            }
        }
    }
    header.unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
    }
}
