//! One HTTP request as logmon sees it, whatever log format it came from.

use serde::{Deserialize, Serialize};

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// One HTTP request.
///
/// `timestamp` is UTC, in integer nanoseconds since the Unix epoch. Text fields
/// hold what the log said; a log's `-` placeholder becomes an empty `user` or a
/// `None` referer / user agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: i64,
    pub client: String,
    pub user: String,
    pub method: String,
    pub path: String,
    pub protocol: String,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// Time to serve the request, in microseconds, when the log has it.
    pub duration_us: Option<u64>,
    /// Labels of this request beyond its batch's (`Batch::labels`): a
    /// format string's unknown variables kept as labels, or what an edge
    /// filter added. Usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

impl Event {
    /// An event with every field empty or zero, meant to be filled again and
    /// again by [`crate::LineParser::parse_into`] so that its strings keep
    /// their allocations.
    pub fn empty() -> Event {
        Event::default()
    }

    /// Makes this event a copy of `other`, reusing this one's string
    /// allocations (derived `clone_from` would allocate anew).
    pub fn copy_from(&mut self, other: &Event) {
        self.timestamp = other.timestamp;
        self.client.clone_from(&other.client);
        self.user.clone_from(&other.user);
        self.method.clone_from(&other.method);
        self.path.clone_from(&other.path);
        self.protocol.clone_from(&other.protocol);
        self.status = other.status;
        self.bytes = other.bytes;
        self.referer.clone_from(&other.referer);
        self.user_agent.clone_from(&other.user_agent);
        self.duration_us = other.duration_us;
        self.labels.clone_from(&other.labels);
    }

    /// The whole second (Unix seconds, UTC) the request falls in; floors for
    /// times before the epoch.
    pub fn second(&self) -> i64 {
        self.timestamp.div_euclid(NANOS_PER_SEC)
    }

    /// The section of the request's path; see [`section_of`].
    pub fn section(&self) -> &str {
        section_of(&self.path)
    }
}

/// The section of a path: what comes before its second `/`, query string and
/// fragment excluded. `/api/user` → `/api`, `/report` → `/report`,
/// `/report?x=/y` → `/report`. A path that does not start with `/` (an
/// absolute URL in a proxy log, `*` for `OPTIONS *`) is its own section up to
/// the query; an empty path is `/`.
pub fn section_of(path: &str) -> &str {
    let end = memchr::memchr2(b'?', b'#', path.as_bytes()).unwrap_or(path.len());
    let path = &path[..end];
    if path.is_empty() {
        return "/";
    }
    match path.as_bytes()[1..].iter().position(|&b| b == b'/') {
        Some(i) if path.starts_with('/') => &path[..i + 1],
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_the_exercise() {
        assert_eq!(section_of("/api/user"), "/api");
        assert_eq!(section_of("/api/user/12"), "/api");
        assert_eq!(section_of("/report"), "/report");
        assert_eq!(section_of("/report?a=/b/c"), "/report");
        assert_eq!(section_of("/pages/create?x=1"), "/pages");
        assert_eq!(section_of("/"), "/");
        assert_eq!(section_of(""), "/");
        assert_eq!(section_of("?q"), "/");
        assert_eq!(section_of("//x"), "/");
        assert_eq!(section_of("*"), "*");
    }

    #[test]
    fn seconds_floor_before_the_epoch() {
        let mut e = Event {
            timestamp: -1,
            client: String::new(),
            user: String::new(),
            method: String::new(),
            path: String::new(),
            protocol: String::new(),
            status: 200,
            bytes: 0,
            referer: None,
            user_agent: None,
            duration_us: None,
            labels: Vec::new(),
        };
        assert_eq!(e.second(), -1);
        e.timestamp = 1_549_573_860 * NANOS_PER_SEC + 999;
        assert_eq!(e.second(), 1_549_573_860);
    }
}
