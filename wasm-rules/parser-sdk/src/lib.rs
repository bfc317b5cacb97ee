//! The SDK for logmon edge parsers.
//!
//! A parser is a type implementing [`Parser`]; [`export_parser!`] turns it
//! into the exports of the `logmon:parser/parser` WebAssembly component
//! world (`wasm-rules/parser-wit/parser.wit`). The agent calls it once per
//! poll of a file with that poll's lines, and the parser answers, through
//! an [`Output`], which lines are events (and what they hold) and which
//! are malformed (and why); the others (directives, blank lines) are
//! skipped. Parsers are plain Rust, so their logic is unit-tested natively
//! with [`lines`] and [`Parsed::rows`].
//!
//! ```ignore
//! #[derive(Default)]
//! struct MyFormat;
//! impl logmon_parser::Parser for MyFormat { /* … */ }
//! logmon_parser::export_parser!(MyFormat);
//! ```

mod params;

pub use params::Params;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "parser",
        path: "../parser-wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "logmon_parser::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::logmon::parser::types::{
    Events, MalformedLine, Param, Parsed, ParserInfo, TextColumn,
};

/// An edge parser. One value lives per source that names it, in its own
/// sandbox, and sees the lines of every file of that source; `stream`
/// tells the files apart.
pub trait Parser: Default + 'static {
    /// Name, description, version, parameters (with defaults as text) and
    /// the directive prefix, if the format has directives.
    fn describe() -> ParserInfo;
    /// Apply parameters; absent ones keep their defaults. Unknown names are
    /// refused before this is called.
    fn configure(&mut self, params: &Params) -> Result<(), String>;
    /// The next lines of `stream`, in file order: each line is pushed to
    /// `out` as an event or a malformed line, in order, or left out.
    fn parse(&mut self, stream: u64, lines: &TextColumn, out: &mut Output);
    /// The agent is done with `stream`: drop what is kept for it.
    fn forget(&mut self, stream: u64);
}

/// Build a [`Param`] description.
pub fn param(name: &str, description: &str, default_value: impl ToString) -> Param {
    Param {
        name: name.to_owned(),
        description: description.to_owned(),
        default_value: default_value.to_string(),
    }
}

impl TextColumn {
    /// An empty column.
    pub fn new() -> TextColumn {
        TextColumn {
            data: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Value `i`. The agent sends UTF-8; anything else reads as "".
    pub fn get(&self, i: usize) -> &str {
        let end = self.ends[i] as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        std::str::from_utf8(&self.data[start..end]).unwrap_or("")
    }

    /// Appends a value.
    pub fn push(&mut self, value: &str) {
        self.data.extend_from_slice(value.as_bytes());
        self.ends
            .push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the column holds no value.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn::new()
    }
}

/// The lines of one call, as the agent sends them (for tests).
pub fn lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> TextColumn {
    let mut column = TextColumn::new();
    for line in lines {
        column.push(line);
    }
    column
}

/// One event as a parser gives it to [`Output::push`]; the text fields
/// borrow from the line or the parser's own buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// UTC, nanoseconds since the Unix epoch.
    pub timestamp: i64,
    pub client: &'a str,
    pub user: &'a str,
    pub method: &'a str,
    /// The request target, query string included.
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes: u64,
    /// "" when the line has none.
    pub referer: &'a str,
    /// "" when the line has none.
    pub user_agent: &'a str,
    /// Time to serve the request in microseconds, if the line has it.
    pub duration_us: Option<u64>,
}

impl Default for Event<'_> {
    /// A GET of `/` from nobody at time 0, 200, no bytes.
    fn default() -> Self {
        Event {
            timestamp: 0,
            client: "",
            user: "",
            method: "GET",
            path: "/",
            protocol: "",
            status: 200,
            bytes: 0,
            referer: "",
            user_agent: "",
            duration_us: None,
        }
    }
}

/// An event read back from a [`Parsed`] (for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    pub timestamp: i64,
    pub client: String,
    pub user: String,
    pub method: String,
    pub path: String,
    pub protocol: String,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: String,
    pub duration_us: Option<u64>,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(e: Event<'_>) -> Self {
        OwnedEvent {
            timestamp: e.timestamp,
            client: e.client.to_owned(),
            user: e.user.to_owned(),
            method: e.method.to_owned(),
            path: e.path.to_owned(),
            protocol: e.protocol.to_owned(),
            status: e.status,
            bytes: e.bytes,
            referer: e.referer.to_owned(),
            user_agent: e.user_agent.to_owned(),
            duration_us: e.duration_us,
        }
    }
}

/// What a parser answers for one call, built line by line. Lines must be
/// pushed in increasing order, each at most once (the agent refuses an
/// answer that breaks this, and counts the call's lines malformed).
#[derive(Debug)]
pub struct Output {
    parsed: Parsed,
}

impl Default for Output {
    fn default() -> Self {
        Output::new()
    }
}

impl Output {
    pub fn new() -> Output {
        Output {
            parsed: Parsed {
                events: Events {
                    timestamp: Vec::new(),
                    client: TextColumn::new(),
                    user: TextColumn::new(),
                    method: TextColumn::new(),
                    path: TextColumn::new(),
                    protocol: TextColumn::new(),
                    status: Vec::new(),
                    bytes: Vec::new(),
                    referer: TextColumn::new(),
                    user_agent: TextColumn::new(),
                    duration_us: Vec::new(),
                },
                line: Vec::new(),
                malformed: Vec::new(),
            },
        }
    }

    /// Line `line` of the call is `event`.
    pub fn push(&mut self, line: usize, event: &Event<'_>) {
        let c = &mut self.parsed.events;
        c.timestamp.push(event.timestamp);
        c.client.push(event.client);
        c.user.push(event.user);
        c.method.push(event.method);
        c.path.push(event.path);
        c.protocol.push(event.protocol);
        c.status.push(event.status);
        c.bytes.push(event.bytes);
        c.referer.push(event.referer);
        c.user_agent.push(event.user_agent);
        c.duration_us.push(
            event
                .duration_us
                .map_or(-1, |d| i64::try_from(d).unwrap_or(i64::MAX)),
        );
        self.parsed.line.push(line as u32);
    }

    /// Line `line` of the call is malformed, for `reason`.
    pub fn malformed(&mut self, line: usize, reason: impl Into<String>) {
        self.parsed.malformed.push(MalformedLine {
            line: line as u32,
            reason: reason.into(),
        });
    }

    /// The answer so far, to change by hand (the agent checks an answer
    /// whole, however it was made; the hostile test parser uses this).
    pub fn raw(&mut self) -> &mut Parsed {
        &mut self.parsed
    }

    /// The answer.
    pub fn finish(self) -> Parsed {
        self.parsed
    }
}

impl Events {
    /// The number of events.
    pub fn len(&self) -> usize {
        self.timestamp.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.timestamp.is_empty()
    }

    /// Event `i`, owned.
    pub fn get(&self, i: usize) -> OwnedEvent {
        OwnedEvent {
            timestamp: self.timestamp[i],
            client: self.client.get(i).to_owned(),
            user: self.user.get(i).to_owned(),
            method: self.method.get(i).to_owned(),
            path: self.path.get(i).to_owned(),
            protocol: self.protocol.get(i).to_owned(),
            status: self.status[i],
            bytes: self.bytes[i],
            referer: self.referer.get(i).to_owned(),
            user_agent: self.user_agent.get(i).to_owned(),
            duration_us: u64::try_from(self.duration_us[i]).ok(),
        }
    }
}

impl Parsed {
    /// Each event with the index of its line (for tests).
    pub fn rows(&self) -> Vec<(u32, OwnedEvent)> {
        (0..self.events.len())
            .map(|i| (self.line[i], self.events.get(i)))
            .collect()
    }

    /// The malformed lines' indices and reasons (for tests).
    pub fn malformed_lines(&self) -> Vec<(u32, &str)> {
        self.malformed
            .iter()
            .map(|m| (m.line, m.reason.as_str()))
            .collect()
    }
}

/// Export a [`Parser`] implementation as this component's parser.
#[macro_export]
macro_rules! export_parser {
    ($parser:ty) => {
        const _: () = {
            use ::std::cell::RefCell;
            use $crate::Parser as _;

            ::std::thread_local! {
                static PARSER: RefCell<$parser> = RefCell::new(<$parser>::default());
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn describe() -> $crate::ParserInfo {
                    <$parser>::describe()
                }
                fn configure(params: Vec<(String, String)>) -> Result<(), String> {
                    let params = $crate::Params::new(params);
                    params.check(&<$parser>::describe())?;
                    PARSER.with_borrow_mut(|parser| parser.configure(&params))
                }
                fn parse(file: u64, lines: $crate::TextColumn) -> $crate::Parsed {
                    let mut out = $crate::Output::new();
                    PARSER.with_borrow_mut(|parser| parser.parse(file, &lines, &mut out));
                    out.finish()
                }
                fn forget(file: u64) {
                    PARSER.with_borrow_mut(|parser| parser.forget(file))
                }
            }

            $crate::bindings::export_bindings!(Export);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_reads_back_what_was_pushed() {
        let mut out = Output::new();
        out.push(
            0,
            &Event {
                path: "/a?x=1",
                client: "10.0.0.1",
                status: 404,
                duration_us: Some(1500),
                ..Event::default()
            },
        );
        out.malformed(1, "too short");
        out.push(
            3,
            &Event {
                user_agent: "curl/8",
                ..Event::default()
            },
        );
        let parsed = out.finish();
        let rows = parsed.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 0);
        assert_eq!(rows[0].1.path, "/a?x=1");
        assert_eq!(rows[0].1.status, 404);
        assert_eq!(rows[0].1.duration_us, Some(1500));
        assert_eq!(rows[1].0, 3);
        assert_eq!(rows[1].1.user_agent, "curl/8");
        assert_eq!(rows[1].1.duration_us, None);
        assert_eq!(parsed.malformed_lines(), vec![(1, "too short")]);
        let l = lines(["a", "", "ccc"]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec!["a", "", "ccc"]);
    }
}
