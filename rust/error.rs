//! Errors of the core. Each names the argument at fault so the Python layer can raise a
//! `ValueError` whose message a user can act on.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// An argument has the wrong value: (argument name, what was expected, what arrived).
    InvalidArgument {
        name: &'static str,
        expected: String,
        got: String,
    },
}

impl CoreError {
    pub fn invalid(
        name: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        CoreError::InvalidArgument {
            name,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidArgument {
                name,
                expected,
                got,
            } => {
                write!(f, "{name}: expected {expected}, got {got}")
            }
        }
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
