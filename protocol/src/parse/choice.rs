//! [`FormatChoice`]: how a source's lines are read, the one type the
//! agent's configuration and `replay --input-format` share.
//!
//! As text (a flag, a TOML string): `auto`, a built-in format name (trimmed,
//! any case, with [`Format`]'s aliases), or `nginx:<log_format>` /
//! `apache:<LogFormat>`. In TOML a format string is a table,
//! `{ nginx = '…' }` or `{ apache = '…' }`, with an optional
//! `unknown_variables = "label" | "skip"`. A format string is compiled when
//! the choice is read, so a bad one is refused before anything starts.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::template::{Dialect, LogTemplate, TemplateError, UnknownVariables};
use super::{Format, LineParser, detect};

/// How to read a source's lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FormatChoice {
    /// Detect a built-in format from the first lines of each file.
    #[default]
    Auto,
    /// One built-in format.
    Fixed(Format),
    /// A server's format string.
    Template(Arc<LogTemplate>),
}

/// Why a format choice was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatChoiceError {
    #[error(
        "unknown log format `{0}` (expected auto, csv, clf, combined, json, nginx:<log_format> or apache:<LogFormat>)"
    )]
    Unknown(String),
    #[error("bad {dialect} format string: {source}", dialect = .dialect.name())]
    Template {
        dialect: Dialect,
        #[source]
        source: TemplateError,
    },
    #[error("an unknown-variable policy applies to nginx:/apache: format strings, not to `{0}`")]
    PolicyWithoutTemplate(String),
}

impl FormatChoice {
    /// Compiles a format string.
    pub fn template(
        dialect: Dialect,
        source: &str,
        unknown: UnknownVariables,
    ) -> Result<FormatChoice, FormatChoiceError> {
        LogTemplate::compile(dialect, source, unknown)
            .map(|t| FormatChoice::Template(Arc::new(t)))
            .map_err(|source| FormatChoiceError::Template { dialect, source })
    }

    /// The same choice with `unknown` as its unknown-variable policy; only
    /// a format string has one, so for the others this is an error.
    pub fn with_unknown_variables(
        self,
        unknown: UnknownVariables,
    ) -> Result<FormatChoice, FormatChoiceError> {
        match self {
            FormatChoice::Template(t) => FormatChoice::template(t.dialect(), t.source(), unknown),
            other => Err(FormatChoiceError::PolicyWithoutTemplate(other.to_string())),
        }
    }

    /// A parser when the choice is fixed (`None` for [`FormatChoice::Auto`]).
    pub fn parser(&self) -> Option<LineParser> {
        match self {
            FormatChoice::Auto => None,
            FormatChoice::Fixed(f) => Some(LineParser::new(*f)),
            FormatChoice::Template(t) => Some(LineParser::with_template(t)),
        }
    }

    /// A parser for a file whose first lines are `head`: the fixed one, or
    /// the detected format's (`None` when nothing in `head` parses).
    pub fn parser_for<'a>(&self, head: impl IntoIterator<Item = &'a str>) -> Option<LineParser> {
        match self {
            FormatChoice::Auto => detect(head).map(LineParser::new),
            fixed => fixed.parser(),
        }
    }
}

impl fmt::Display for FormatChoice {
    /// The text [`FormatChoice::from_str`] reads back (an unknown-variable
    /// policy other than the default is not part of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatChoice::Auto => f.write_str("auto"),
            FormatChoice::Fixed(format) => f.write_str(format.name()),
            FormatChoice::Template(t) => t.fmt(f),
        }
    }
}

impl FromStr for FormatChoice {
    type Err = FormatChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(FormatChoice::Auto);
        }
        if let Some((kind, source)) = t.split_once(':') {
            let dialect = match kind.trim().to_ascii_lowercase().as_str() {
                "nginx" => Some(Dialect::Nginx),
                "apache" => Some(Dialect::Apache),
                _ => None,
            };
            if let Some(dialect) = dialect {
                return FormatChoice::template(dialect, source, UnknownVariables::default());
            }
        }
        t.parse::<Format>()
            .map(FormatChoice::Fixed)
            .map_err(|_| FormatChoiceError::Unknown(s.to_owned()))
    }
}

impl Serialize for FormatChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FormatChoice::Auto | FormatChoice::Fixed(_) => {
                serializer.serialize_str(&self.to_string())
            }
            FormatChoice::Template(t) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry(t.dialect().name(), t.source())?;
                map.serialize_entry("unknown_variables", &t.unknown_variables())?;
                map.end()
            }
        }
    }
}

const TABLE_KEYS: &[&str] = &["nginx", "apache", "unknown_variables"];

struct ChoiceVisitor;

impl<'de> Visitor<'de> for ChoiceVisitor {
    type Value = FormatChoice;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a format name (auto, csv, clf, combined, json) or a table { nginx = '…' } / { apache = '…' }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FormatChoice, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FormatChoice, A::Error> {
        let mut string: Option<(Dialect, String)> = None;
        let mut unknown = None;
        while let Some(key) = map.next_key::<String>()? {
            let dialect = match key.as_str() {
                "nginx" => Dialect::Nginx,
                "apache" => Dialect::Apache,
                "unknown_variables" => {
                    if unknown.is_some() {
                        return Err(de::Error::duplicate_field("unknown_variables"));
                    }
                    unknown = Some(map.next_value::<UnknownVariables>()?);
                    continue;
                }
                other => return Err(de::Error::unknown_field(other, TABLE_KEYS)),
            };
            if string.is_some() {
                return Err(de::Error::custom(
                    "a format table takes one of `nginx` and `apache`",
                ));
            }
            string = Some((dialect, map.next_value()?));
        }
        let Some((dialect, source)) = string else {
            return Err(de::Error::custom(
                "a format table needs `nginx = '<log_format>'` or `apache = '<LogFormat>'`",
            ));
        };
        FormatChoice::template(dialect, &source, unknown.unwrap_or_default())
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for FormatChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ChoiceVisitor)
    }
}
