//! The shapes of answers: whole bodies, JSON, the `{"error","reason"}`
//! refusal, 405 with `Allow`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The body of every response: whole (with a `Content-Length`) or streamed.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A body sent whole, with a `Content-Length`.
pub fn whole(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `value` as an `application/json` answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(whole(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The shape of every refusal: `{"error": CODE, "reason": TEXT}`.
pub fn error(status: StatusCode, code: &str, reason: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "reason": reason }),
    )
}

/// 405 with the methods the path takes.
pub fn method_not_allowed(allow: &'static str, reason: &str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", reason);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
