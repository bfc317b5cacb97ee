//! Bearer tokens: read from `Authorization`, compared in constant time.

use hyper::HeaderMap;

/// The token of an `Authorization: Bearer TOKEN` header (scheme in any
/// case, surrounding spaces dropped), if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    std::str::from_utf8(token.trim_ascii()).ok()
}

/// Compares without stopping at the first difference (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `token` is one of `tokens`. Every candidate is compared, each in
/// time independent of where bytes differ.
pub fn one_of<'a>(token: &str, tokens: impl IntoIterator<Item = &'a String>) -> bool {
    let mut found = false;
    for candidate in tokens {
        found |= constant_time_eq(candidate.as_bytes(), token.as_bytes());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let with = |value: &'static [u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_bytes(value).unwrap(),
            );
            headers
        };
        assert_eq!(bearer(&with(b"Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with(b"bEARER   abc  ")), Some("abc"));
        assert_eq!(bearer(&with(b"Bearer ")), Some(""));
        assert_eq!(bearer(&with(b"Basic abc")), None);
        assert_eq!(bearer(&with(b"Bearer")), None);
        assert_eq!(bearer(&with(b"abc")), None);
        assert_eq!(bearer(&with(b"Bearer \xff")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn a_token_is_found_among_several() {
        let tokens = vec!["a".to_owned(), "secret".to_owned()];
        assert!(one_of("secret", &tokens));
        assert!(!one_of("secre", &tokens));
        assert!(!one_of("", &tokens));
    }
}
