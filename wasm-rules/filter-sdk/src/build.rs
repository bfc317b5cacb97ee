//! Batches for a filter's native unit tests, built event by event.

use crate::{Batch, Events, TextColumn};

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

    pub fn build(&self) -> Batch {
        let column = |k: usize| {
            let mut c = TextColumn {
                data: Vec::new(),
                ends: Vec::new(),
            };
            for e in &self.events {
                c.data.extend_from_slice(e.text[k].as_bytes());
                c.ends.push(c.data.len() as u32);
            }
            c
        };
        Batch {
            source: self.source.clone(),
            file: "test.log".into(),
            events: Events {
                timestamp: self.events.iter().map(|e| e.timestamp).collect(),
                client: column(0),
                user: column(1),
                method: column(2),
                path: column(3),
                protocol: column(4),
                status: self.events.iter().map(|e| e.status).collect(),
                bytes: self.events.iter().map(|e| e.bytes).collect(),
                referer: column(5),
                user_agent: column(6),
                duration_us: self.events.iter().map(|e| e.duration_us).collect(),
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
