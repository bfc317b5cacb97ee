//! Edge parsers: user WebAssembly components (world `logmon:parser/parser`,
//! `wasm-rules/parser-wit/parser.wit`) that turn a source's raw lines into
//! events, for formats neither built in nor expressible as a format string
//! (the shipped one: `w3c`, IIS's W3C extended format). One call per poll
//! of a file; the instance is created once per source and reused.
//!
//! This module holds what the configuration names ([`SourceFormat`],
//! [`ParserConfig`]) and is compiled always; the host ([`SourceParser`],
//! wasmtime) only with the `wasm` feature. Without it, a source whose
//! format is a component is refused at start with a message that says so.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use logmon_protocol::FormatChoice;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::filter::ParamValue;

#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
mod shipped;

#[cfg(feature = "wasm")]
pub use host::{Outcomes, ParserError, Runtime, SourceParser, check_parsed};
#[cfg(feature = "wasm")]
pub use shipped::{HOSTILE_PATH, SHIPPED, by_name, names};

/// How a source's lines become events: a line format the agent knows
/// (`auto`, a built-in name, an nginx/Apache format string), or an edge
/// parser component, `{ component = "w3c" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFormat {
    /// A format of `logmon-protocol` (shared with `replay --input-format`).
    Line(FormatChoice),
    /// An edge parser (agent only).
    Component(ParserConfig),
}

impl Default for SourceFormat {
    fn default() -> Self {
        SourceFormat::Line(FormatChoice::Auto)
    }
}

impl From<FormatChoice> for SourceFormat {
    fn from(choice: FormatChoice) -> Self {
        SourceFormat::Line(choice)
    }
}

impl std::str::FromStr for SourceFormat {
    type Err = logmon_protocol::parse::FormatChoiceError;

    /// A line format by its text (a component is named only in a table).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(SourceFormat::Line)
    }
}

impl Serialize for SourceFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SourceFormat::Line(choice) => choice.serialize(serializer),
            SourceFormat::Component(config) => config.serialize(serializer),
        }
    }
}

struct FormatVisitor;

impl<'de> Visitor<'de> for FormatVisitor {
    type Value = SourceFormat;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a format name (auto, csv, clf, combined, json), a table { nginx = '…' } / { apache = '…' }, or a parser { component = \"w3c\" }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SourceFormat, E> {
        v.parse().map(SourceFormat::Line).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceFormat, A::Error> {
        // The table is read whole, then given to the type its keys name,
        // so each keeps its own error messages.
        let mut table = toml::Table::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<toml::Value>()?;
            table.insert(key, value);
        }
        if table.contains_key("component") {
            ParserConfig::deserialize(toml::Value::Table(table))
                .map(SourceFormat::Component)
                .map_err(de::Error::custom)
        } else {
            FormatChoice::deserialize(toml::Value::Table(table))
                .map(SourceFormat::Line)
                .map_err(de::Error::custom)
        }
    }
}

impl<'de> Deserialize<'de> for SourceFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FormatVisitor)
    }
}

/// A source's edge parser, as configured:
/// `format = { component = "w3c" }` or `{ component = "/path/x.wasm",
/// params = { … }, memory_mb = 64, deadline_ms = 200 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    /// A shipped parser's name (`w3c`) or the path of a `.wasm` component.
    pub component: String,
    /// Its parameters. Default: none (each keeps its default).
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Linear memory cap of the instance, in MiB. Default: 64.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-time budget of one call (one poll's lines of one file, at most
    /// `read_budget_bytes`), in milliseconds. Default: 200.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_memory_mb() -> u64 {
    64
}

fn default_deadline_ms() -> u64 {
    200
}

impl ParserConfig {
    /// A parser with default limits.
    pub fn new(component: &str, params: &[(&str, &str)]) -> ParserConfig {
        ParserConfig {
            component: component.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ParamValue::Text((*v).to_owned())))
                .collect(),
            memory_mb: default_memory_mb(),
            deadline_ms: default_deadline_ms(),
        }
    }

    /// The parameters as the parser receives them.
    pub fn param_texts(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect()
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Checks the limits.
    pub fn check(&self) -> Result<(), String> {
        if self.component.trim().is_empty() {
            return Err("a parser needs a `component`".into());
        }
        if !(1..=4096).contains(&self.memory_mb) {
            return Err(format!(
                "parser {}: memory_mb must be in 1..=4096",
                self.component
            ));
        }
        if !(1..=60_000).contains(&self.deadline_ms) {
            return Err(format!(
                "parser {}: deadline_ms must be in 1..=60000",
                self.component
            ));
        }
        Ok(())
    }
}

/// Whether this build can run edge parsers.
pub const AVAILABLE: bool = cfg!(feature = "wasm");

/// Without the `wasm` feature there are no parsers: configurations that
/// name one are refused before one could be needed.
#[cfg(not(feature = "wasm"))]
#[derive(Debug)]
pub enum SourceParser {}

/// Without the `wasm` feature: never made.
#[cfg(not(feature = "wasm"))]
#[derive(Debug)]
pub enum Outcomes {}

#[cfg(not(feature = "wasm"))]
impl SourceParser {
    pub fn parse(
        &mut self,
        _tailer: &crate::tail::Tailer,
        _lines: &crate::tail::ReadLines,
    ) -> &mut Outcomes {
        match *self {}
    }

    pub fn forget(&mut self, _stream: crate::tail::FileFingerprint) {
        match *self {}
    }

    pub fn state(&self) -> &crate::metrics::ParserState {
        match *self {}
    }
}

#[cfg(not(feature = "wasm"))]
impl Outcomes {
    pub fn take(
        &mut self,
        _line: usize,
        _event: &mut logmon_protocol::Event,
    ) -> Result<logmon_protocol::Parsed, logmon_protocol::ParseError> {
        match *self {}
    }
}

/// The edge parser of each source (`None` for a source with a line
/// format), compiled, instantiated and configured: a parser that cannot
/// start stops the agent's start with its reason.
pub fn load_parsers(
    sources: &[(&str, Option<&ParserConfig>, usize)],
) -> Result<Vec<Option<SourceParser>>, String> {
    #[cfg(feature = "wasm")]
    {
        let mut runtime = None;
        let mut parsers = Vec::new();
        for &(name, config, max_line_bytes) in sources {
            let Some(config) = config else {
                parsers.push(None);
                continue;
            };
            if runtime.is_none() {
                runtime = Some(std::sync::Arc::new(
                    Runtime::new().map_err(|e| e.to_string())?,
                ));
            }
            let runtime = runtime.as_ref().expect("made above");
            let parser = SourceParser::load(runtime, name, config, max_line_bytes)
                .map_err(|e| format!("source {name}: {e}"))?;
            parsers.push(Some(parser));
        }
        Ok(parsers)
    }
    #[cfg(not(feature = "wasm"))]
    {
        match sources.iter().find(|(_, parser, _)| parser.is_some()) {
            Some((name, _, _)) => Err(format!(
                "source {name} has a parser component, and this agent was built without the `wasm` feature"
            )),
            None => Ok(sources.iter().map(|_| None).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Source {
        format: SourceFormat,
    }

    fn read(toml: &str) -> Result<SourceFormat, String> {
        toml::from_str::<Source>(toml)
            .map(|s| s.format)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_format_is_a_line_format_or_a_component() {
        assert_eq!(
            read("format = \"combined\"").unwrap(),
            SourceFormat::Line(FormatChoice::Fixed(logmon_protocol::Format::Combined))
        );
        assert!(matches!(
            read("format = { nginx = '$remote_addr [$time_local] \"$request\" $status' }").unwrap(),
            SourceFormat::Line(FormatChoice::Template(_))
        ));
        assert_eq!(
            read("format = { component = \"w3c\" }").unwrap(),
            SourceFormat::Component(ParserConfig::new("w3c", &[]))
        );
        let SourceFormat::Component(c) = read(
            "format = { component = \"/x.wasm\", params = { a = 1, b = [\"x\", \"y\"] }, memory_mb = 8, deadline_ms = 50 }",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            c.param_texts(),
            vec![("a".into(), "1".into()), ("b".into(), "x,y".into())]
        );
        assert_eq!((c.memory_mb, c.deadline_ms), (8, 50));
        // Each kind keeps its own errors.
        let e = read("format = { component = \"w3c\", memroy_mb = 8 }").unwrap_err();
        assert!(e.contains("unknown field `memroy_mb`"), "{e}");
        let e = read("format = { nginx = '$status$body_bytes_sent' }").unwrap_err();
        assert!(e.contains("bad nginx format string"), "{e}");
        let e = read("format = \"w3c\"").unwrap_err();
        assert!(e.contains("unknown log format `w3c`"), "{e}");
        // And it reads back what it writes.
        let c = SourceFormat::Component(ParserConfig::new("w3c", &[("plus_as_space", "false")]));
        #[derive(Serialize)]
        struct Out<'a> {
            format: &'a SourceFormat,
        }
        let written = toml::to_string(&Out { format: &c }).unwrap();
        assert_eq!(read(&written).unwrap(), c, "{written}");
    }
}
