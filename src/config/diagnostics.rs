//! Where a configuration problem is: [`Diagnostic`] (`file:line:col:
//! field: message`), [`ConfigError`] (all of them at once), and the
//! [`Source`] being validated, which turns byte offsets into lines and
//! columns and TOML errors into diagnostics.

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted path of the field (`refs.track`, `builder[0].platforms`).
    pub field: String,
    /// What is wrong, and where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.field,
            self.message
        )
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// A source file being validated: its text, for turning byte offsets into
/// lines and columns, and the problems found so far.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    text: &'a str,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl<'a> Source<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Source {
            path,
            text,
            diagnostics: Vec::new(),
        }
    }

    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, col) = self.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            col,
            field: field.into(),
            message: message.into(),
        });
    }

    /// The dotted path of the table that encloses `offset`: the last `[header]`
    /// or `[[header]]` line before it.
    fn table_at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            .unwrap_or_default()
    }

    /// Turns a TOML/serde error into a diagnostic with the best field path we can give.
    pub(super) fn parse_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let named = ["unknown field `", "missing field `", "unknown variant `"]
            .iter()
            .find_map(|p| message.split_once(p))
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        let table = self.table_at(span.start);
        let key_on_line = {
            let line_start = self.text[..span.start.min(self.text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line = self.text[line_start..].lines().next().unwrap_or("");
            line.split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
        };
        let leaf = if message.starts_with("unknown variant") {
            key_on_line
        } else {
            named.or(key_on_line)
        };
        let field = match (table.is_empty(), leaf) {
            (_, None) if table.is_empty() => "(file)".to_string(),
            (_, None) => table,
            (true, Some(leaf)) => leaf,
            (false, Some(leaf)) => format!("{table}.{leaf}"),
        };
        self.error(span, field, message);
    }
}

/// Reads a config file; a file that cannot be read is one diagnostic.
pub(super) fn read_source(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = Source::new(Path::new("x"), "a = 1\nbb = 2\n");
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        assert_eq!(src.position(9), (2, 4));
    }
}
