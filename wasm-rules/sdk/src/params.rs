//! Rule parameters as the host passes them: names and text values.

use crate::RuleInfo;
use std::str::FromStr;

/// The parameters given to a rule instance.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: Vec<(String, String)>,
}

impl Params {
    pub fn new(values: Vec<(String, String)>) -> Params {
        Params { values }
    }

    /// Refuse parameter names the rule does not declare.
    pub fn check(&self, info: &RuleInfo) -> Result<(), String> {
        for (name, _) in &self.values {
            if !info.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "unknown parameter `{name}` (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
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
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| format!("parameter `{name}` = `{v}`: {e}")),
        }
    }
}
