//! `redact-clients`: client addresses that must not leave the host.
//!
//! - `mode = "hash"` (the default): each client becomes `c-` and 16 hex
//!   digits of HMAC-SHA256 under `key`, so one client is still one client at
//!   the collector (top clients, floods) and nobody without the key can tell
//!   which;
//! - `mode = "prefix"`: IPv4 addresses keep their first `ipv4_prefix` bits
//!   (24: `192.0.2.17` → `192.0.2.0`), IPv6 their first `ipv6_prefix` (48);
//!   a client that is not an address becomes `redacted`.

use logmon_filter::{Batch, Column, Field, Filter, FilterInfo, Params, TextColumn, Verdict, param};
use sha2::{Digest, Sha256};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Default)]
pub struct RedactClients {
    mode: Mode,
    key: Vec<u8>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    /// Clients seen lately and what they became (hash mode): a server's
    /// clients repeat, and a hash costs far more than a look-up.
    cache: std::collections::HashMap<Vec<u8>, String, BuildHasherDefault<Fnv>>,
}

/// FNV-1a: the cache's keys are short and chosen by nobody but the
/// agent's own clients, so a fast hash does (SipHash cost more than the
/// look-up it guards).
#[derive(Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Most clients [`RedactClients`] remembers (then it forgets them all).
const CACHED: usize = 16_384;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Hash,
    Prefix,
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The hashed form of a client: `c-` and the first 8 bytes, in hex.
pub fn hashed(key: &[u8], client: &str) -> String {
    let mac = hmac_sha256(key, client.as_bytes());
    let mut out = String::from("c-");
    for b in &mac[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A dotted-quad IPv4 address (no leading zeros, as servers log them),
/// read in one pass.
fn ipv4(client: &[u8]) -> Option<u32> {
    let mut addr = 0u32;
    let mut octet = 0u32;
    let mut digits = 0;
    let mut dots = 0;
    for &b in client {
        match b {
            b'0'..=b'9' => {
                if digits == 1 && octet == 0 {
                    return None;
                }
                octet = octet * 10 + u32::from(b - b'0');
                digits += 1;
                if digits > 3 {
                    return None;
                }
            }
            b'.' if digits > 0 && dots < 3 => {
                if octet > 255 {
                    return None;
                }
                addr = addr << 8 | octet;
                (octet, digits) = (0, 0);
                dots += 1;
            }
            _ => return None,
        }
    }
    (dots == 3 && digits > 0 && octet <= 255).then_some(addr << 8 | octet)
}

/// Appends `addr` in dotted-quad form.
fn put_ipv4(out: &mut Vec<u8>, addr: u32) {
    for (k, octet) in addr.to_be_bytes().into_iter().enumerate() {
        if k > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// `client` with its network prefix kept, appended to `out`: IPv4 by hand
/// (the common case, no allocation), anything else through [`truncated`].
fn put_truncated(out: &mut Vec<u8>, client: &[u8], v4: u8, v6: u8) {
    match ipv4(client) {
        Some(a) => put_ipv4(
            out,
            a & u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0),
        ),
        None => {
            let text = std::str::from_utf8(client).unwrap_or("");
            out.extend_from_slice(truncated(text, v4, v6).as_bytes());
        }
    }
}

/// The address with only its first `v4` (IPv4) or `v6` (IPv6) bits kept.
pub fn truncated(client: &str, v4: u8, v6: u8) -> String {
    match client.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            Ipv4Addr::from(u32::from(a) & mask).to_string()
        }
        Ok(IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            Ipv6Addr::from(u128::from(a) & mask).to_string()
        }
        Err(_) => "redacted".to_owned(),
    }
}

impl Filter for RedactClients {
    fn describe() -> FilterInfo {
        FilterInfo {
            name: "redact-clients".into(),
            description: "Replaces client addresses by a keyed hash or a network prefix".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            params: vec![
                param("mode", "hash (keyed HMAC-SHA256) or prefix", "hash"),
                param("key", "the secret key of hash mode (required there)", ""),
                param(
                    "ipv4_prefix",
                    "bits of an IPv4 address kept in prefix mode",
                    24,
                ),
                param(
                    "ipv6_prefix",
                    "bits of an IPv6 address kept in prefix mode",
                    48,
                ),
            ],
        }
    }

    fn configure(&mut self, params: &Params) -> Result<(), String> {
        self.mode = match params.get("mode", "hash".to_owned())?.as_str() {
            "hash" => Mode::Hash,
            "prefix" => Mode::Prefix,
            other => return Err(format!("mode = `{other}`: hash or prefix")),
        };
        self.key = params.raw("key").unwrap_or("").as_bytes().to_vec();
        if self.mode == Mode::Hash && self.key.is_empty() {
            return Err("hash mode needs a key (a secret kept on the host)".into());
        }
        self.ipv4_prefix = params.get("ipv4_prefix", 24u8)?;
        self.ipv6_prefix = params.get("ipv6_prefix", 48u8)?;
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err("ipv4_prefix is at most 32, ipv6_prefix at most 128".into());
        }
        Ok(())
    }

    fn reads(&self) -> Vec<Column> {
        vec![Column::Client]
    }

    fn filter(&mut self, batch: &Batch) -> Verdict {
        let n = batch.events.len();
        let clients = &batch.events.client;
        let mut out = TextColumn::with_capacity(n, clients.data.len() + 8 * n);
        for i in 0..n {
            let client = clients.bytes(i);
            // Clients come in runs (one page, its assets): the previous
            // answer again costs nothing.
            if i > 0 && client == clients.bytes(i - 1) {
                let start = if i == 1 { 0 } else { out.ends[i - 2] as usize };
                let end = out.ends[i - 1] as usize;
                out.data.extend_from_within(start..end);
                out.ends.push(out.data.len() as u32);
                continue;
            }
            match self.mode {
                Mode::Prefix => {
                    put_truncated(&mut out.data, client, self.ipv4_prefix, self.ipv6_prefix)
                }
                Mode::Hash => {
                    if let Some(v) = self.cache.get(client) {
                        out.data.extend_from_slice(v.as_bytes());
                    } else {
                        let v = hashed(&self.key, std::str::from_utf8(client).unwrap_or(""));
                        out.data.extend_from_slice(v.as_bytes());
                        if self.cache.len() >= CACHED {
                            self.cache.clear();
                        }
                        self.cache.insert(client.to_vec(), v);
                    }
                }
            }
            out.ends.push(out.data.len() as u32);
        }
        let mut verdict = Verdict::keep_all(n);
        verdict.replace_column(Field::Client, out);
        verdict
    }
}

logmon_filter::export_filter!(RedactClients);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn prefixes_keep_the_network() {
        assert_eq!(truncated("192.0.2.17", 24, 48), "192.0.2.0");
        assert_eq!(truncated("192.0.2.17", 16, 48), "192.0.0.0");
        assert_eq!(truncated("192.0.2.17", 0, 48), "0.0.0.0");
        assert_eq!(truncated("192.0.2.17", 32, 48), "192.0.2.17");
        assert_eq!(truncated("2001:db8:1:2::7", 24, 48), "2001:db8:1::");
        assert_eq!(truncated("example.com", 24, 48), "redacted");
    }

    #[test]
    fn hash_mode_needs_a_key_and_hashes_each_client_alike() {
        let mut f = RedactClients::default();
        assert!(f.configure(&Params::new(vec![])).is_err());
        f.configure(&Params::new(vec![("key".into(), "s3cret".into())]))
            .unwrap();
        let mut b = logmon_filter::BatchBuilder::new("web");
        b.event().client("10.0.0.1");
        b.event().client("10.0.0.1");
        b.event().client("10.0.0.2");
        b.event().client("10.0.0.1");
        let v = f.filter(&b.build_reading(&f.reads()));
        assert!(v.patches.is_empty());
        let c = &v.columns[0];
        assert_eq!(c.field, Field::Client);
        let values: Vec<&str> = (0..4).map(|i| c.values.get(i)).collect();
        let (one, two) = (hashed(b"s3cret", "10.0.0.1"), hashed(b"s3cret", "10.0.0.2"));
        assert_eq!(values, vec![&one, &one, &two, &one]);
        assert_eq!(one.len(), 18);
    }

    #[test]
    fn prefix_mode_by_hand_equals_the_standard_parse() {
        let mut f = RedactClients::default();
        f.configure(&Params::new(vec![
            ("mode".into(), "prefix".into()),
            ("ipv4_prefix".into(), "20".into()),
        ]))
        .unwrap();
        let clients = [
            "192.0.2.17",
            "192.0.2.17",
            "10.255.31.200",
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.0",
            "1.2.3.00",
            "1234.1.1.1",
            "2001:db8:1:2::7",
            "host.example",
            "",
        ];
        let mut b = logmon_filter::BatchBuilder::new("web");
        for c in clients {
            b.event().client(c);
        }
        let v = f.filter(&b.build_reading(&f.reads()));
        for (i, c) in clients.iter().enumerate() {
            assert_eq!(v.columns[0].values.get(i), truncated(c, 20, 48), "{c}");
        }
        assert_eq!(v.columns[0].values.get(2), "10.255.16.0");
    }
}
