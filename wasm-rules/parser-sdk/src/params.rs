//! Parser parameters as the agent passes them: names and text values.

use crate::ParserInfo;
use std::str::FromStr;

/// The parameters given to a parser instance.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: Vec<(String, String)>,
}

impl Params {
    pub fn new(values: Vec<(String, String)>) -> Params {
        Params { values }
    }

    /// Refuse parameter names the parser does not declare.
    pub fn check(&self, info: &ParserInfo) -> Result<(), String> {
        match self
            .values
            .iter()
            .find(|(name, _)| !info.params.iter().any(|p| &p.name == name))
        {
            None => Ok(()),
            Some((name, _)) => {
                let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
                Err(format!(
                    "unknown parameter `{name}` (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            }
        }
    }

    /// The raw text of a parameter, if given.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter parsed as `T`, or `default` when absent.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        self.raw(name).map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|e| format!("parameter `{name}` = `{v}`: {e}"))
        })
    }
}
