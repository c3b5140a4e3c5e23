//! What every section's validation needs: where values are in the file, and
//! the warnings collected on the way.

use std::cell::RefCell;
use std::fmt::Debug;
use std::ops::{Range, RangeInclusive};
use std::path::Path;

use super::bounds::KeyLines;
use super::ConfigError;

pub(super) struct Context<'a> {
    path: &'a Path,
    source: &'a str,
    pub keys: KeyLines<'a>,
    warnings: RefCell<Vec<String>>,
}

/// One section of the raw file and the context to validate it: the input of
/// each section type's `TryFrom`.
pub(super) struct Section<'a, T> {
    pub raw: T,
    pub cx: &'a Context<'a>,
}

impl<'a> Context<'a> {
    pub fn new(path: &'a Path, source: &'a str) -> Self {
        Context {
            path,
            source,
            keys: KeyLines::new(source),
            warnings: RefCell::new(Vec::new()),
        }
    }

    pub fn section<T>(&'a self, raw: T) -> Section<'a, T> {
        Section { raw, cx: self }
    }

    /// An error about the whole file.
    pub fn err(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            message,
        }
    }

    /// An error about the table or value at `span`, with its line.
    pub fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        self.err(format!("line {}: {message}", self.line_of(span)))
    }

    pub fn line_of(&self, span: Range<usize>) -> usize {
        self.source[..span.start.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// A value that carries no span of its own, checked against its range
    /// (the message names the line when the file sets the key).
    pub fn bounded<T: PartialOrd + Debug>(
        &self,
        table: &str,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        self.keys.check(table, key, value, range).map_err(|m| self.err(m))
    }

    /// A legal but risky setting, for the log and `check`.
    pub fn warn(&self, message: String) {
        self.warnings.borrow_mut().push(message);
    }

    pub fn into_warnings(self) -> Vec<String> {
        self.warnings.into_inner()
    }
}
