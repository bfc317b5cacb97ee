//! The sections site: a site of `spec.sections` sections (the exercise's
//! shape) with a Zipf-like popularity of sections and clients, some sections
//! more error-prone than others, and one request per visit. This is what
//! `logmon-collector generate` writes; its draws from the random stream are
//! fixed, so that a seed keeps giving the same log.

use std::fmt::Write as _;

use rand::Rng;
use rand::rngs::StdRng;

use super::random::{Weighted, normal, table};
use super::{Model, TrafficSpec};
use crate::event::Event;

const SECTIONS: &[&str] = &[
    "/api",
    "/",
    "/static",
    "/report",
    "/users",
    "/products",
    "/search",
    "/orders",
    "/images",
    "/blog",
    "/login",
    "/cart",
    "/checkout",
    "/help",
    "/docs",
    "/admin",
    "/account",
    "/news",
    "/pages",
    "/media",
];
const RESOURCES: &[&str] = &[
    "user",
    "orders",
    "list",
    "item",
    "help",
    "update",
    "create",
    "details",
    "index.html",
    "stats",
    "export",
    "settings",
    "style.css",
    "app.js",
    "logo.png",
    "feed",
];
const QUERIES: &[&str] = &[
    "x=1",
    "page=2",
    "q=shoes",
    "sort=desc&limit=50",
    "lang=en",
    "utm_source=newsletter",
];
const USERS: &[&str] = &["apache", "alice", "bob", "carol", "dave", "erin", "mallory"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "curl/8.7.1",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Go-http-client/1.1",
];
const REFERERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.bing.com/search?q=logmon",
    "https://news.ycombinator.com/",
    "https://t.co/x1y2z3",
];
const METHODS: &[(&str, u32)] = &[
    ("GET", 800),
    ("POST", 120),
    ("PUT", 30),
    ("DELETE", 20),
    ("HEAD", 20),
    ("PATCH", 6),
    ("OPTIONS", 4),
];
const OK_STATUSES: &[(u16, u32)] = &[
    (200, 860),
    (201, 10),
    (204, 10),
    (301, 10),
    (302, 20),
    (304, 40),
    (400, 10),
    (401, 8),
    (403, 7),
    (404, 40),
    (429, 5),
];
const ERROR_STATUSES: &[(u16, u32)] = &[(500, 50), (502, 20), (503, 20), (504, 10)];
const PROTOCOLS: &[(&str, u32)] = &[("HTTP/1.1", 80), ("HTTP/2.0", 17), ("HTTP/1.0", 3)];

/// One generated request, compact: indices into the vocabulary.
#[derive(Debug, Clone, Copy)]
pub(super) struct Request {
    client: u32,
    section: u32,
    resource: u16,
    /// 0 = the bare section, 1 = `/section/resource`, 2 = with an id, 3 = with a query.
    shape: u8,
    id: u32,
    query: u8,
    method: u8,
    protocol: u8,
    status: u16,
    bytes: u64,
    referer: Option<u8>,
    duration_us: u64,
}

/// The sections site, drawn once per run: its sections and visitors.
#[derive(Debug)]
pub(super) struct SectionSite {
    sections: Vec<String>,
    section_weights: Weighted,
    /// Per-section share of 5xx responses.
    section_errors: Vec<f64>,
    clients: Vec<String>,
    client_users: Vec<&'static str>,
    client_agents: Vec<u8>,
    client_weights: Weighted,
    methods: (Vec<&'static str>, Weighted),
    ok_statuses: (Vec<u16>, Weighted),
    error_statuses: (Vec<u16>, Weighted),
    protocols: (Vec<&'static str>, Weighted),
}

impl SectionSite {
    pub(super) fn new(spec: &TrafficSpec, rng: &mut StdRng) -> SectionSite {
        let n_sections = spec.sections.max(1);
        let sections: Vec<String> = (0..n_sections)
            .map(|i| {
                SECTIONS
                    .get(i)
                    .map_or_else(|| format!("/section{i}"), |s| (*s).to_owned())
            })
            .collect();
        let section_weights = Weighted::zipf(n_sections, 1.1);
        // Every fourth section (from the third) is three times as error-prone;
        // scale so the traffic-weighted mean is the spec's error rate.
        let multipliers: Vec<f64> = (0..n_sections)
            .map(|i| if i % 4 == 2 { 3.0 } else { 1.0 })
            .collect();
        let total = section_weights.cumulative.last().copied().unwrap_or(1.0);
        let mut previous = 0.0;
        let mean: f64 = section_weights
            .cumulative
            .iter()
            .zip(&multipliers)
            .map(|(&c, &m)| {
                let w = c - previous;
                previous = c;
                w * m / total
            })
            .sum();
        let error_rate = if spec.error_rate.is_finite() {
            spec.error_rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let section_errors = multipliers
            .iter()
            .map(|m| (error_rate * m / mean).min(1.0))
            .collect();

        let n_clients = spec.clients.max(1);
        let mut clients = Vec::with_capacity(n_clients);
        let mut client_users = Vec::with_capacity(n_clients);
        let mut client_agents = Vec::with_capacity(n_clients);
        for i in 0..n_clients {
            // Private addresses for the busiest few (like the exercise's
            // 10.0.0.x), public-looking ones for the rest; all distinct.
            let ip = if i < 8 {
                format!("10.0.0.{}", i + 1)
            } else {
                let a = [81u32, 93, 104, 151, 172, 185, 203, 212][rng.random_range(0..8)];
                format!("{a}.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
            };
            clients.push(ip);
            client_users.push(if rng.random::<f64>() < 0.3 {
                USERS[rng.random_range(0..USERS.len())]
            } else {
                "-"
            });
            client_agents.push(rng.random_range(0..AGENTS.len()) as u8);
        }
        SectionSite {
            sections,
            section_weights,
            section_errors,
            clients,
            client_users,
            client_agents,
            client_weights: Weighted::zipf(n_clients, 0.9),
            methods: table(METHODS),
            ok_statuses: table(OK_STATUSES),
            error_statuses: table(ERROR_STATUSES),
            protocols: table(PROTOCOLS),
        }
    }

    fn request(&self, rng: &mut StdRng) -> Request {
        let section = self.section_weights.pick(rng);
        let method = self.methods.1.pick(rng);
        let status = if rng.random::<f64>() < self.section_errors[section] {
            self.error_statuses.0[self.error_statuses.1.pick(rng)]
        } else {
            let s = self.ok_statuses.0[self.ok_statuses.1.pick(rng)];
            match (self.methods.0[method], s) {
                ("POST", 200) if rng.random::<f64>() < 0.3 => 201,
                (_, s) => s,
            }
        };
        let method_name = self.methods.0[method];
        let bytes = if matches!(status, 204 | 304) || method_name == "HEAD" {
            0
        } else if status >= 300 {
            (150.0 * (0.3 * normal(rng)).exp()) as u64
        } else {
            // Log-normal around 2 kB with a heavy tail.
            ((7.6 + 1.2 * normal(rng)).exp() as u64).min(50_000_000)
        };
        let slow = if status >= 500 { 8.0 } else { 1.0 };
        let duration_us = ((10.0 + 1.0 * normal(rng)).exp() * slow) as u64;
        let shape = match rng.random_range(0..10u8) {
            0 => 0,
            1..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        Request {
            client: self.client_weights.pick(rng) as u32,
            section: section as u32,
            resource: rng.random_range(0..RESOURCES.len()) as u16,
            shape,
            id: rng.random_range(1..100_000),
            query: rng.random_range(0..QUERIES.len()) as u8,
            method: method as u8,
            protocol: self.protocols.1.pick(rng) as u8,
            status,
            bytes,
            referer: if rng.random::<f64>() < 0.6 {
                Some(rng.random_range(0..REFERERS.len() + 1) as u8)
            } else {
                None
            },
            duration_us,
        }
    }

    /// Writes `r` into the reusable `event`, its timestamp aside.
    fn fill_request(&self, r: &Request, event: &mut Event) {
        set(&mut event.client, &self.clients[r.client as usize]);
        let user = self.client_users[r.client as usize];
        set(&mut event.user, if user == "-" { "" } else { user });
        set(&mut event.method, self.methods.0[r.method as usize]);
        let section = &self.sections[r.section as usize];
        let base = if section == "/" { "" } else { section.as_str() };
        let resource = RESOURCES[r.resource as usize];
        event.path.clear();
        let _ = match r.shape {
            0 => write!(event.path, "{section}"),
            1 => write!(event.path, "{base}/{resource}"),
            2 => write!(event.path, "{base}/{resource}/{}", r.id),
            _ => write!(
                event.path,
                "{base}/{resource}?{}",
                QUERIES[r.query as usize]
            ),
        };
        set(&mut event.protocol, self.protocols.0[r.protocol as usize]);
        event.status = r.status;
        event.bytes = r.bytes;
        match r.referer.map(|i| REFERERS.get(i as usize)) {
            None => event.referer = None,
            Some(Some(external)) => set_opt(&mut event.referer, external),
            Some(None) => {
                // An internal referer: another page of this site.
                let referer = event.referer.get_or_insert_with(String::new);
                referer.clear();
                referer.push_str("https://logmon.example");
                referer.push_str(&self.sections[(r.section as usize + 1) % self.sections.len()]);
            }
        }
        set_opt(
            &mut event.user_agent,
            AGENTS[self.client_agents[r.client as usize] as usize],
        );
        event.duration_us = Some(r.duration_us);
    }
}

fn set(dst: &mut String, s: &str) {
    dst.clear();
    dst.push_str(s);
}

fn set_opt(dst: &mut Option<String>, s: &str) {
    match dst {
        Some(d) => set(d, s),
        None => *dst = Some(s.to_owned()),
    }
}

impl Model for SectionSite {
    type Request = Request;

    fn visit(&mut self, rng: &mut StdRng, at: i64, out: &mut Vec<(i64, Request)>) {
        out.push((at, self.request(rng)));
    }

    fn fill(&self, r: &Request, event: &mut Event) {
        self.fill_request(r, event);
    }
}
