//! The shop site: a busy online shop as its nginx logs it. Browsers load a
//! page and then its assets (with the page as referer, and 304s for returning
//! visitors), API clients make a few calls, crawlers walk the catalogue, and
//! health checks and scrapers probe several times a second. Pages and
//! products follow a Zipf-like popularity. A visit is one arrival of the
//! rate; it makes one to ten requests, so 60 visits a second give about 150
//! requests a second. `spec.sections` and `spec.error_rate` do not apply.

use rand::rngs::StdRng;

use super::Model;
use super::random::{below, chance, log_normal, pick, skewed, unit};
use crate::event::{Event, NANOS_PER_SEC};

const SITE: &str = "https://shop.example.com";

/// Every 25th client, from the first, is a monitor.
const MONITOR_EVERY: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Browser,
    Api,
    Bot,
    Monitor,
}

#[derive(Debug)]
struct Client {
    ip: String,
    user: &'static str,
    protocol: &'static str,
    user_agent: String,
    kind: Kind,
    returning: bool,
}

fn clients(rng: &mut StdRng, n: usize) -> Vec<Client> {
    const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/2{m}.0 Chrome/{v}.0.0.0 Mobile Safari/537.36",
    ];
    const API_AGENTS: &[&str] = &[
        "python-requests/2.31.0",
        "okhttp/4.12.0",
        "Go-http-client/2.0",
        "axios/1.6.{m}",
        "curl/8.{m}.0",
        "ShopApp/5.{m}.1 (iOS 17.4; iPhone15,2)",
        "ShopApp/5.{m}.0 (Android 14; Pixel 8)",
    ];
    const BOTS: &[(&str, &str)] = &[
        (
            "66.249.66.",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ),
        (
            "40.77.167.",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        ),
        (
            "5.255.231.",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        ),
        (
            "54.36.148.",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        ),
    ];
    (0..n)
        .map(|i| {
            let version = |rng: &mut StdRng, template: &str| {
                template
                    .replace("{v}", &(118 + below(rng, 9)).to_string())
                    .replace("{m}", &below(rng, 6).to_string())
            };
            let public_ip = |rng: &mut StdRng| {
                if chance(rng, 0.15) {
                    format!(
                        "2a0{}:{:x}:{:x}:{:x}::{:x}",
                        1 + below(rng, 9),
                        below(rng, 0x10000),
                        below(rng, 0x10000),
                        below(rng, 0x10000),
                        below(rng, 0x10000)
                    )
                } else {
                    format!(
                        "{}.{}.{}.{}",
                        1 + below(rng, 223),
                        below(rng, 256),
                        below(rng, 256),
                        1 + below(rng, 254)
                    )
                }
            };
            let kind = match i % MONITOR_EVERY {
                0 => Kind::Monitor,
                1 | 2 => Kind::Bot,
                3..=5 => Kind::Api,
                _ => Kind::Browser,
            };
            match kind {
                Kind::Browser => Client {
                    ip: public_ip(rng),
                    user: if chance(rng, 0.05) { "jdoe" } else { "" },
                    protocol: match below(rng, 50) {
                        0 => "HTTP/1.0",
                        1..=22 => "HTTP/1.1",
                        _ => "HTTP/2.0",
                    },
                    user_agent: {
                        let t = pick(rng, BROWSERS);
                        version(rng, t)
                    },
                    kind,
                    returning: chance(rng, 0.4),
                },
                Kind::Api => Client {
                    ip: public_ip(rng),
                    user: pick(rng, &["", "", "svc-mobile", "partner-acme", "etl"]),
                    protocol: "HTTP/1.1",
                    user_agent: {
                        let t = pick(rng, API_AGENTS);
                        version(rng, t)
                    },
                    kind,
                    returning: false,
                },
                Kind::Bot => {
                    let (net, ua) = BOTS[below(rng, BOTS.len() as u64) as usize];
                    Client {
                        ip: format!("{net}{}", 1 + below(rng, 254)),
                        user: "",
                        protocol: "HTTP/1.1",
                        user_agent: ua.to_owned(),
                        kind,
                        returning: false,
                    }
                }
                Kind::Monitor => Client {
                    ip: format!("10.20.{}.{}", below(rng, 4), 2 + below(rng, 250)),
                    user: "",
                    protocol: "HTTP/1.1",
                    user_agent: pick(
                        rng,
                        &[
                            "kube-probe/1.29",
                            "Prometheus/2.51.2",
                            "Blackbox Exporter/0.25.0",
                        ],
                    )
                    .to_owned(),
                    kind,
                    returning: false,
                },
            }
        })
        .collect()
}

/// A page of the shop, Zipf-ish: a few pages are hot, most are rare.
fn page(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "linen", "shirt", "wool", "scarf", "leather", "boots", "denim", "jacket", "cotton",
        "socks", "silk", "dress", "canvas", "bag", "summer", "hat", "rain", "coat", "trail",
        "shoes", "cashmere", "sweater", "chino", "shorts",
    ];
    const CATEGORIES: &[&str] = &[
        "men",
        "women",
        "kids",
        "shoes",
        "accessories",
        "sale",
        "new-arrivals",
    ];
    match below(rng, 20) {
        0..=2 => "/".to_owned(),
        3..=10 => {
            let id = skewed(rng, 4000);
            let w = |i: u64| WORDS[((id * 7 + i * 13) % WORDS.len() as u64) as usize];
            format!("/products/{}-{}-{}-{id}", w(0), w(1), w(2))
        }
        11..=13 => {
            let c = CATEGORIES[skewed(rng, CATEGORIES.len() as u64) as usize];
            match below(rng, 3) {
                0 => format!("/category/{c}"),
                1 => format!("/category/{c}?page={}", 2 + skewed(rng, 12)),
                _ => format!(
                    "/category/{c}?sort=price_asc&size={}",
                    pick(rng, &["s", "m", "l", "xl"])
                ),
            }
        }
        14 => format!("/search?q={}+{}", pick(rng, WORDS), pick(rng, WORDS)),
        15 => "/cart".to_owned(),
        16 => format!("/account/orders/{}", 100_000 + below(rng, 90_000)),
        17 => format!("/blog/2024/{}-{}-guide", pick(rng, WORDS), pick(rng, WORDS)),
        _ => pick(
            rng,
            &["/about", "/contact", "/shipping", "/returns", "/faq"],
        )
        .to_owned(),
    }
}

/// An asset a page loads, with its (fixed) size.
fn asset(rng: &mut StdRng) -> (String, u64) {
    const BUNDLES: &[(&str, u64)] = &[
        ("/static/js/main.4f8c2a91.js", 248_113),
        ("/static/js/vendor.b61d0e3f.js", 512_907),
        ("/static/js/runtime.09a7c5de.js", 2_301),
        ("/static/css/main.c3e1f08a.css", 41_552),
        ("/static/fonts/inter-var.woff2", 98_868),
        ("/static/img/logo.svg", 4_212),
        ("/favicon.ico", 15_086),
        ("/static/img/hero-summer.avif", 183_440),
    ];
    if chance(rng, 0.55) {
        let (p, size) = BUNDLES[skewed(rng, BUNDLES.len() as u64) as usize];
        (p.to_owned(), size)
    } else {
        let id = skewed(rng, 4000);
        let w = [160, 480, 960][below(rng, 3) as usize];
        (
            format!("/images/products/{id}/{w}w.webp"),
            (id * 7919 + w * 31) % (w * 90) + w * 20,
        )
    }
}

/// The shop's visitors, and when the monitors probe next.
#[derive(Debug)]
pub(super) struct ShopSite {
    clients: Vec<Client>,
    /// When the next probe is due (unix nanoseconds); `None` before the
    /// first second.
    next_probe: Option<i64>,
}

impl ShopSite {
    pub(super) fn new(clients: usize, rng: &mut StdRng) -> ShopSite {
        ShopSite {
            clients: self::clients(rng, clients.max(1)),
            next_probe: None,
        }
    }
}

/// Seconds as nanoseconds.
fn nanos(seconds: f64) -> i64 {
    (seconds * NANOS_PER_SEC as f64) as i64
}

/// One request of `c`, `seconds` long, as the server logged it; its
/// timestamp is set when it is written.
fn request(
    c: &Client,
    method: &str,
    path: String,
    (status, bytes): (u16, u64),
    referer: Option<String>,
    seconds: f64,
) -> Event {
    Event {
        timestamp: 0,
        client: c.ip.clone(),
        user: c.user.to_owned(),
        method: method.to_owned(),
        path,
        protocol: c.protocol.to_owned(),
        status,
        bytes,
        referer,
        user_agent: Some(c.user_agent.clone()),
        duration_us: Some(((seconds * 1e6) as u64).max(40)),
        labels: Vec::new(),
    }
}

impl Model for ShopSite {
    type Request = Event;

    /// The monitors' probes, every 0.2–0.3 s.
    fn background(&mut self, rng: &mut StdRng, second: i64, out: &mut Vec<(i64, Event)>) {
        let end = second.saturating_add(NANOS_PER_SEC);
        let mut at = self.next_probe.unwrap_or_else(|| second + nanos(unit(rng)));
        let monitors = self.clients.len().div_ceil(MONITOR_EVERY) as u64;
        while at < end {
            let c = &self.clients[MONITOR_EVERY * below(rng, monitors) as usize];
            let (path, bytes) = match c.user_agent.as_bytes()[0] {
                b'P' => ("/metrics", 40_000 + below(rng, 2_000)),
                b'B' => ("/", log_normal(rng, 32_000.0) as u64),
                _ => ("/healthz", 2),
            };
            let d = log_normal(rng, 0.0008);
            let probe = request(c, "GET", path.to_owned(), (200, bytes), None, d);
            out.push((at, probe));
            at += nanos(0.2 + unit(rng) * 0.1);
        }
        self.next_probe = Some(at);
    }

    fn visit(&mut self, rng: &mut StdRng, at: i64, out: &mut Vec<(i64, Event)>) {
        let c = &self.clients[skewed(rng, self.clients.len() as u64) as usize];
        match c.kind {
            Kind::Browser => {
                let target = page(rng);
                let referer = match below(rng, 20) {
                    0..=7 => None,
                    8..=13 => Some(format!("{SITE}{}", page(rng))),
                    14..=16 => Some("https://www.google.com/".to_owned()),
                    17 => Some("https://www.bing.com/".to_owned()),
                    18 => Some("https://duckduckgo.com/".to_owned()),
                    _ => Some(format!(
                        "https://www.instagram.com/p/C{}/",
                        below(rng, 99_999_999)
                    )),
                };
                let (method, status, bytes) = match below(rng, 200) {
                    0..=5 => ("GET", 404, 3_652),
                    6 => ("GET", 500, 578),
                    7..=9 if target == "/cart" => ("POST", 303, 0),
                    10..=11 => ("GET", 302, 154),
                    _ => ("GET", 200, log_normal(rng, 32_000.0) as u64),
                };
                let d = log_normal(rng, 0.045);
                let page_url = format!("{SITE}{target}");
                out.push((at, request(c, method, target, (status, bytes), referer, d)));
                if status == 200 {
                    let mut then = at + nanos(d);
                    for _ in 0..below(rng, 9) {
                        then += nanos(unit(rng) * 0.08);
                        let (path, size) = asset(rng);
                        let (status, bytes) = if c.returning && chance(rng, 0.8) {
                            (304, 0)
                        } else {
                            (200, size)
                        };
                        let d = log_normal(rng, 0.0012);
                        let r = Some(page_url.clone());
                        out.push((then, request(c, "GET", path, (status, bytes), r, d)));
                    }
                }
            }
            Kind::Api => {
                let mut then = at;
                for _ in 0..1 + below(rng, 3) {
                    let id = 100_000 + below(rng, 90_000);
                    let (method, path, status) = match below(rng, 20) {
                        0..=7 => (
                            "GET",
                            format!("/api/v2/products/{}", skewed(rng, 4000)),
                            200,
                        ),
                        8..=11 => (
                            "GET",
                            format!("/api/v2/orders?status=open&page={}", 1 + skewed(rng, 5)),
                            200,
                        ),
                        12 | 13 => ("POST", "/api/v2/orders".to_owned(), 201),
                        14 | 15 => ("PUT", format!("/api/v2/cart/items/{id}"), 200),
                        16 => ("DELETE", format!("/api/v2/cart/items/{id}"), 204),
                        17 => ("GET", format!("/api/v2/orders/{id}"), 404),
                        18 => ("POST", "/api/v2/auth/token".to_owned(), 401),
                        _ => (
                            "GET",
                            format!("/api/v2/products/{}/stock", skewed(rng, 4000)),
                            429,
                        ),
                    };
                    let bytes = match status {
                        204 => 0,
                        401 | 429 => 61,
                        404 => 48,
                        _ => log_normal(rng, 1_800.0) as u64,
                    };
                    let d = log_normal(rng, 0.025);
                    out.push((then, request(c, method, path, (status, bytes), None, d)));
                    then += nanos(d + unit(rng) * 0.3);
                }
            }
            Kind::Bot => {
                let (path, status, bytes) = match below(rng, 40) {
                    0 => ("/robots.txt".to_owned(), 200, 312),
                    1 => ("/sitemap.xml".to_owned(), 200, 88_410),
                    2 => (
                        format!("/products/discontinued-{}", below(rng, 9_000)),
                        301,
                        162,
                    ),
                    3 | 4 => (format!("/products/old-{}", below(rng, 9_000)), 404, 3_652),
                    _ => {
                        let p = page(rng);
                        (p, 200, log_normal(rng, 32_000.0) as u64)
                    }
                };
                let method = if chance(rng, 0.03) { "HEAD" } else { "GET" };
                let d = log_normal(rng, 0.06);
                out.push((at, request(c, method, path, (status, bytes), None, d)));
            }
            // Monitors probe on their own schedule (`background`).
            Kind::Monitor => {}
        }
    }

    fn fill(&self, r: &Event, event: &mut Event) {
        event.clone_from(r);
    }
}
