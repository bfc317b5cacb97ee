//! Batches for a filter's native unit tests, built event by event.

use crate::{Batch, Column, Events, TextColumn};

/// Builds a [`Batch`] the way the agent sends one.
#[derive(Debug)]
pub struct BatchBuilder {
    source: String,
    events: Vec<EventValues>,
}

/// The fields of one event being built; see [`BatchBuilder::event`].
#[derive(Debug, Clone)]
pub struct EventValues {
    timestamp: i64,
    text: [String; 7],
    status: u16,
    bytes: u64,
    duration_us: i64,
}

impl BatchBuilder {
    pub fn new(source: &str) -> BatchBuilder {
        BatchBuilder {
            source: source.to_owned(),
            events: Vec::new(),
        }
    }

    /// A new event (a GET of `/` from 127.0.0.1, 200, at time 0), to be
    /// changed through what this returns.
    pub fn event(&mut self) -> &mut EventValues {
        self.events.push(EventValues {
            timestamp: 0,
            text: [
                "127.0.0.1".into(),
                String::new(),
                "GET".into(),
                "/".into(),
                "HTTP/1.1".into(),
                String::new(),
                String::new(),
            ],
            status: 200,
            bytes: 0,
            duration_us: -1,
        });
        self.events.last_mut().expect("pushed")
    }

    /// The batch with every column filled.
    pub fn build(&self) -> Batch {
        self.build_reading(&Column::ALL)
    }

    /// The batch as the agent sends it to a filter that `reads` these
    /// columns: the others empty. A filter's tests build with its own
    /// [`crate::Filter::reads`], so a column read but not declared fails
    /// them (an index out of bounds).
    pub fn build_reading(&self, reads: &[Column]) -> Batch {
        let read = |c: Column| reads.contains(&c);
        let column = |c: Column, k: usize| {
            let mut t = TextColumn::new();
            if read(c) {
                for e in &self.events {
                    t.push(&e.text[k]);
                }
            }
            t
        };
        fn scalar<T>(on: bool, values: impl Iterator<Item = T>) -> Vec<T> {
            if on { values.collect() } else { Vec::new() }
        }
        let events = self.events.iter();
        Batch {
            source: self.source.clone(),
            file: "test.log".into(),
            events: Events {
                count: self.events.len() as u32,
                timestamp: scalar(read(Column::Timestamp), events.clone().map(|e| e.timestamp)),
                client: column(Column::Client, 0),
                user: column(Column::User, 1),
                method: column(Column::Method, 2),
                path: column(Column::Path, 3),
                protocol: column(Column::Protocol, 4),
                status: scalar(read(Column::Status), events.clone().map(|e| e.status)),
                bytes: scalar(read(Column::Bytes), events.clone().map(|e| e.bytes)),
                referer: column(Column::Referer, 5),
                user_agent: column(Column::UserAgent, 6),
                duration_us: scalar(read(Column::DurationUs), events.map(|e| e.duration_us)),
            },
        }
    }
}

impl EventValues {
    pub fn timestamp(&mut self, nanos: i64) -> &mut Self {
        self.timestamp = nanos;
        self
    }
    pub fn client(&mut self, v: &str) -> &mut Self {
        self.text[0] = v.into();
        self
    }
    pub fn user(&mut self, v: &str) -> &mut Self {
        self.text[1] = v.into();
        self
    }
    pub fn method(&mut self, v: &str) -> &mut Self {
        self.text[2] = v.into();
        self
    }
    pub fn path(&mut self, v: &str) -> &mut Self {
        self.text[3] = v.into();
        self
    }
    pub fn protocol(&mut self, v: &str) -> &mut Self {
        self.text[4] = v.into();
        self
    }
    pub fn referer(&mut self, v: &str) -> &mut Self {
        self.text[5] = v.into();
        self
    }
    pub fn user_agent(&mut self, v: &str) -> &mut Self {
        self.text[6] = v.into();
        self
    }
    pub fn status(&mut self, v: u16) -> &mut Self {
        self.status = v;
        self
    }
    pub fn bytes(&mut self, v: u64) -> &mut Self {
        self.bytes = v;
        self
    }
    pub fn duration_us(&mut self, v: Option<u64>) -> &mut Self {
        self.duration_us = v.map_or(-1, |d| d as i64);
        self
    }
}
