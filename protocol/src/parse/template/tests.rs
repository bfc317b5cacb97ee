use proptest::prelude::*;

use super::*;
use crate::event::NANOS_PER_SEC;

const S: i64 = NANOS_PER_SEC;
const MS: i64 = 1_000_000;

/// nginx's predefined `combined`.
const NGINX_COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// Request timing behind a proxy (the nginx blog's `upstream_time`).
const NGINX_TIMED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time""#;
/// Virtual hosts first, timings unquoted, `$msec` at the end.
const NGINX_VHOST: &str = r#"$host $remote_addr - $remote_user [$time_local] "$request" $status $bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_response_time $msec"#;
/// Apache's `vhost_combined` with `%D`, as written in httpd.conf.
const APACHE_VHOST: &str =
    r#""%v %h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D""#;
/// Apache's `combined`, without the config quoting.
const APACHE_COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i""#;

fn compile(dialect: Dialect, source: &str) -> Arc<LogTemplate> {
    match LogTemplate::compile(dialect, source, UnknownVariables::Label) {
        Ok(t) => Arc::new(t),
        Err(e) => panic!("{source:?}: {e}"),
    }
}

fn parse(t: &Arc<LogTemplate>, line: &str) -> Result<(Event, LineExtras), String> {
    let mut parser = t.parser();
    let mut event = Event::empty();
    parser
        .parse_into(line, &mut event)
        .map_err(|e| e.to_string())?;
    Ok((event, parser.extras().clone()))
}

fn ok(t: &Arc<LogTemplate>, line: &str) -> (Event, LineExtras) {
    parse(t, line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn fails(t: &Arc<LogTemplate>, line: &str) -> String {
    match parse(t, line) {
        Err(e) => e,
        Ok(got) => panic!("{line:?} should not match, got {got:?}"),
    }
}

fn nginx(source: &str) -> Arc<LogTemplate> {
    compile(Dialect::Nginx, source)
}

fn apache(source: &str) -> Arc<LogTemplate> {
    compile(Dialect::Apache, source)
}

/// One nginx variable after a `$msec` timestamp: `1.000 <value>`.
fn nginx_one(var: &str, value: &str) -> (Event, LineExtras) {
    ok(&nginx(&format!("$msec {var}")), &format!("1.000 {value}"))
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// --- acceptance: real formats, every field ------------------------------------

#[test]
fn nginx_combined_parses_exactly() {
    let t = nginx(NGINX_COMBINED);
    assert_eq!(t.wire_format(), Format::Combined);
    let (e, x) = ok(
        &t,
        r#"203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?x=1 HTTP/1.1" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
    );
    assert_eq!(
        e,
        Event {
            timestamp: 971_211_336 * S,
            client: "203.0.113.7".into(),
            user: "alice".into(),
            method: "GET".into(),
            path: "/apache_pb.gif?x=1".into(),
            protocol: "HTTP/1.1".into(),
            status: 200,
            bytes: 2326,
            referer: Some("http://www.example.com/start.html".into()),
            user_agent: Some("Mozilla/4.08 [en] (Win98; I ;Nav)".into()),
            duration_us: None,
            labels: Vec::new(),
        }
    );
    assert_eq!(x, LineExtras::default());
    // nginx's escapes: \x22 for a quote, \xHH for every non-ASCII byte.
    let (e, _) = ok(
        &t,
        r#"2001:db8::1 - - [07/Feb/2019:21:11:00 +0000] "GET /caf\xC3\xA9?q=\x22a\x22 HTTP/2.0" 404 0 "-" "Bot \x22x\x22 \x5C""#,
    );
    assert_eq!(
        e,
        Event {
            timestamp: 1_549_573_860 * S,
            client: "2001:db8::1".into(),
            user: String::new(),
            method: "GET".into(),
            path: "/café?q=\"a\"".into(),
            protocol: "HTTP/2.0".into(),
            status: 404,
            bytes: 0,
            referer: None,
            user_agent: Some("Bot \"x\" \\".into()),
            duration_us: None,
            labels: Vec::new(),
        }
    );
}

#[test]
fn nginx_upstream_timing_format_parses_exactly() {
    let t = nginx(NGINX_TIMED);
    assert_eq!(t.label_names(), ["upstream_connect_time"]);
    let (e, x) = ok(
        &t,
        r#"192.0.2.10 - - [07/Feb/2019:21:11:00 +0000] "POST /api/user HTTP/1.1" 502 157 "-" "curl/8.5.0" rt=0.253 uct="0.001, 0.002" urt="0.120, 0.130""#,
    );
    assert_eq!(
        e,
        Event {
            timestamp: 1_549_573_860 * S,
            client: "192.0.2.10".into(),
            user: String::new(),
            method: "POST".into(),
            path: "/api/user".into(),
            protocol: "HTTP/1.1".into(),
            status: 502,
            bytes: 157,
            referer: None,
            user_agent: Some("curl/8.5.0".into()),
            duration_us: Some(253_000),
            labels: Vec::new(),
        }
    );
    assert_eq!(
        x,
        LineExtras {
            host: None,
            upstream_response_us: vec![Some(120_000), Some(130_000)],
            labels: labels(&[("upstream_connect_time", "0.001, 0.002")]),
        }
    );
    // A request nginx answered itself: no upstream.
    let (e, x) = ok(
        &t,
        r#"192.0.2.10 - - [07/Feb/2019:21:11:01 +0000] "GET /static/app.js HTTP/1.1" 200 5120 "https://shop.example.com/" "Mozilla/5.0" rt=0.000 uct="-" urt="-""#,
    );
    assert_eq!(e.timestamp, 1_549_573_861 * S);
    assert_eq!(e.duration_us, Some(0));
    assert_eq!(e.referer.as_deref(), Some("https://shop.example.com/"));
    assert_eq!(
        x,
        LineExtras {
            host: None,
            upstream_response_us: vec![],
            labels: labels(&[("upstream_connect_time", "-")]),
        }
    );
}

#[test]
fn nginx_vhost_format_parses_exactly() {
    let t = nginx(NGINX_VHOST);
    let (e, x) = ok(
        &t,
        r#"shop.example.com 198.51.100.2 - bob [07/Feb/2019:21:11:00 +0100] "GET /report HTTP/1.1" 304 187 "https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)" 0.004 0.003 : 0.001, - 1549570260.123"#,
    );
    // $msec is more precise than $time_local, so it gives the timestamp.
    assert_eq!(
        e,
        Event {
            timestamp: 1_549_570_260 * S + 123 * MS,
            client: "198.51.100.2".into(),
            user: "bob".into(),
            method: "GET".into(),
            path: "/report".into(),
            protocol: "HTTP/1.1".into(),
            status: 304,
            bytes: 187,
            referer: Some("https://shop.example.com/".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
            duration_us: Some(4_000),
            labels: Vec::new(),
        }
    );
    assert_eq!(
        x,
        LineExtras {
            host: Some("shop.example.com".into()),
            upstream_response_us: vec![Some(3_000), Some(1_000), None],
            labels: vec![],
        }
    );
}

#[test]
fn apache_vhost_format_with_micros_parses_exactly() {
    let t = apache(APACHE_VHOST);
    let (e, x) = ok(
        &t,
        r#"www.example.org 203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b\\c HTTP/1.0" 404 - "-" "Wget/1.21 \"x\"" 1234"#,
    );
    assert_eq!(
        e,
        Event {
            timestamp: 971_211_336 * S,
            client: "203.0.113.9".into(),
            user: String::new(),
            method: "GET".into(),
            path: r#"/a"b\c"#.into(),
            protocol: "HTTP/1.0".into(),
            status: 404,
            bytes: 0,
            referer: None,
            user_agent: Some(r#"Wget/1.21 "x""#.into()),
            duration_us: Some(1234),
            labels: Vec::new(),
        }
    );
    assert_eq!(
        x,
        LineExtras {
            host: Some("www.example.org".into()),
            upstream_response_us: vec![],
            labels: vec![],
        }
    );
}

#[test]
fn apache_combined_parses_exactly() {
    let t = apache(APACHE_COMBINED);
    let (e, x) = ok(
        &t,
        r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
    );
    assert_eq!(
        e,
        Event {
            timestamp: 971_211_336 * S,
            client: "127.0.0.1".into(),
            user: "frank".into(),
            method: "GET".into(),
            path: "/apache_pb.gif".into(),
            protocol: "HTTP/1.0".into(),
            status: 200,
            bytes: 2326,
            referer: Some("http://www.example.com/start.html".into()),
            user_agent: Some("Mozilla/4.08 [en] (Win98; I ;Nav)".into()),
            duration_us: None,
            labels: Vec::new(),
        }
    );
    assert_eq!(x, LineExtras::default());
}

#[test]
fn lines_that_do_not_match_say_where_and_why() {
    let t = nginx(NGINX_COMBINED);
    let good = r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua""#;
    assert!(parse(&t, good).is_ok());
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-""#
        ),
        r#"column 67: expected `" "` after $http_referer, found `"`"#
    );
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" abc 5 "-" "ua""#
        ),
        "column 59: bad $status `abc`"
    );
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GARBAGE" 200 5 "-" "ua""#
        ),
        "column 43: malformed $request `GARBAGE` (expected METHOD PATH [PROTOCOL])"
    );
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua""#
        ),
        "column 14: bad $time_local `10/Foo/2000:13:55:36 -0700`"
    );
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua" extra"#
        ),
        "column 73: the format ends here but the line goes on: ` extra`"
    );
    assert_eq!(
        fails(
            &t,
            r#""1.2.3.4","-","apache",1549573860,"GET / HTTP/1.0",200,1234"#
        ),
        "column 1: expected ` - ` after $remote_addr, found none in `\"1.2.3.4\",\"-\",\"apache\",1549573860,\"GET /…`"
    );
    assert_eq!(
        fails(
            &t,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1 200 5 "-" "ua"#
        ),
        "column 64: expected `\" ` after $request, found `\"-\" \"ua`"
    );
    let timed = nginx(NGINX_TIMED);
    assert_eq!(
        fails(
            &timed,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua" rt=fast uct="-" urt="-""#
        ),
        "column 77: bad $request_time `fast`"
    );
    assert_eq!(
        fails(
            &timed,
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua" rt=0.1 uct="-" urt="0.1, x""#
        ),
        "column 94: bad $upstream_response_time `0.1, x`"
    );
    let vhost = apache(APACHE_VHOST);
    assert_eq!(
        fails(
            &vhost,
            r#"h 1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "ua" 1.5"#
        ),
        "column 76: bad %D `1.5`"
    );
    assert_eq!(
        fails(
            &vhost,
            r#"h 1.2.3.4 - - 10/Oct/2000:13:55:36 -0700 "GET / HTTP/1.1" 200 5"#
        ),
        "column 13: expected ` [` after %u, found none in `- 10/Oct/2000:13:55:36 -0700 \"GET / HTTP…`"
    );
}

#[test]
fn a_malformed_line_leaves_no_trace_in_the_next_event() {
    let t = nginx(NGINX_VHOST);
    let mut parser = t.parser();
    let mut event = Event::empty();
    let full = r#"h 1.1.1.1 - u [07/Feb/2019:21:11:00 +0000] "GET /a HTTP/1.1" 200 1 "r" "a" 0.1 0.2 1549573860.000"#;
    parser.parse_into(full, &mut event).unwrap();
    let sparse =
        r#"h 1.1.1.1 - - [07/Feb/2019:21:11:00 +0000] "-" 200 1 "-" "-" - - 1549573860.000"#;
    parser.parse_into(sparse, &mut event).unwrap();
    assert_eq!(event.user, "");
    assert_eq!((event.method.as_str(), event.path.as_str()), ("", ""));
    assert_eq!(
        (event.referer.clone(), event.user_agent.clone()),
        (None, None)
    );
    assert_eq!(event.duration_us, None);
    assert_eq!(parser.extras().upstream_response_us, vec![]);
}

// --- nginx variables, one by one ------------------------------------------------

#[test]
fn nginx_client_user_and_host() {
    assert_eq!(nginx_one("$remote_addr", "10.0.0.1").0.client, "10.0.0.1");
    assert_eq!(nginx_one("$remote_user", "bob").0.user, "bob");
    assert_eq!(nginx_one("$remote_user", "-").0.user, "");
    assert_eq!(
        nginx_one("$host", "a.example").1.host.as_deref(),
        Some("a.example")
    );
    assert_eq!(nginx_one("$host", "-").1.host, None);
}

#[test]
fn nginx_times() {
    let (e, _) = ok(&nginx("[$time_local]"), "[07/Feb/2019:22:11:00 +0100]");
    assert_eq!(e.timestamp, 1_549_573_860 * S);
    let (e, _) = ok(&nginx("$time_iso8601"), "2019-02-07T22:11:00+01:00");
    assert_eq!(e.timestamp, 1_549_573_860 * S);
    let (e, _) = ok(&nginx("$msec"), "1549573860.250");
    assert_eq!(e.timestamp, 1_549_573_860 * S + 250 * MS);
    // Unbracketed, the local time's own space does not end it.
    let (e, _) = ok(
        &nginx("$time_local $status"),
        "07/Feb/2019:21:11:00 +0000 204",
    );
    assert_eq!((e.timestamp, e.status), (1_549_573_860 * S, 204));
    assert_eq!(
        fails(&nginx("$time_iso8601"), "2019-02-30T00:00:00+00:00"),
        "column 1: bad $time_iso8601 `2019-02-30T00:00:00+00:00`"
    );
    assert_eq!(fails(&nginx("$msec"), "soon"), "column 1: bad $msec `soon`");
}

#[test]
fn nginx_request_and_its_parts() {
    let (e, _) = nginx_one("\"$request\"", "\"DELETE /x/y?z HTTP/1.0\"");
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.protocol.as_str()),
        ("DELETE", "/x/y?z", "HTTP/1.0")
    );
    let (e, _) = nginx_one("\"$request\"", "\"GET /no-protocol\"");
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.protocol.as_str()),
        ("GET", "/no-protocol", "")
    );
    let (e, _) = nginx_one("\"$request\"", "\"-\"");
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.protocol.as_str()),
        ("", "", "")
    );
    let t = nginx("$msec $request_method $request_uri $server_protocol");
    let (e, _) = ok(&t, "1.0 PUT /u?v=1 HTTP/2.0");
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.protocol.as_str()),
        ("PUT", "/u?v=1", "HTTP/2.0")
    );
    // $request wins over its parts.
    let t = nginx("$msec \"$request\" $request_method");
    let (e, _) = ok(&t, "1.0 \"GET /a HTTP/1.1\" POST");
    assert_eq!(e.method, "GET");
}

#[test]
fn nginx_status_and_bytes() {
    assert_eq!(nginx_one("$status", "499").0.status, 499);
    assert_eq!(nginx_one("$body_bytes_sent", "0").0.bytes, 0);
    assert_eq!(nginx_one("$body_bytes_sent", "-").0.bytes, 0);
    assert_eq!(
        nginx_one("$bytes_sent", "18446744073709551615").0.bytes,
        u64::MAX
    );
    // $body_bytes_sent (the response body) wins over $bytes_sent.
    let (e, _) = ok(&nginx("$msec $bytes_sent $body_bytes_sent"), "1.0 500 300");
    assert_eq!(e.bytes, 300);
    let (e, _) = ok(&nginx("$msec $body_bytes_sent $bytes_sent"), "1.0 300 500");
    assert_eq!(e.bytes, 300);
    assert_eq!(
        fails(&nginx("$msec $status"), "1.0 70000"),
        "column 5: bad $status `70000`"
    );
}

#[test]
fn nginx_referer_and_user_agent() {
    let (e, _) = nginx_one("\"$http_referer\"", "\"https://a/\"");
    assert_eq!(e.referer.as_deref(), Some("https://a/"));
    assert_eq!(nginx_one("\"$http_referer\"", "\"-\"").0.referer, None);
    assert_eq!(nginx_one("\"$http_referer\"", "\"\"").0.referer, None);
    let (e, _) = nginx_one("\"$http_user_agent\"", r#""a \x22b\x22 \xE2\x9C\x93""#);
    assert_eq!(e.user_agent.as_deref(), Some("a \"b\" ✓"));
    // Decoded bytes that are not UTF-8 are replaced, not refused.
    let (e, _) = nginx_one("\"$http_user_agent\"", r#""\xFF""#);
    assert_eq!(e.user_agent.as_deref(), Some("\u{FFFD}"));
}

#[test]
fn nginx_request_time_and_upstream_lists() {
    assert_eq!(
        nginx_one("$request_time", "0.253").0.duration_us,
        Some(253_000)
    );
    assert_eq!(
        nginx_one("$request_time", "12").0.duration_us,
        Some(12_000_000)
    );
    assert_eq!(nginx_one("$request_time", "-").0.duration_us, None);
    let up = |v: &str| {
        nginx_one("$upstream_response_time", v)
            .1
            .upstream_response_us
    };
    assert_eq!(up("0.010"), vec![Some(10_000)]);
    assert_eq!(up("0.010, 0.020"), vec![Some(10_000), Some(20_000)]);
    assert_eq!(
        up("0.010, - : 0.005"),
        vec![Some(10_000), None, Some(5_000)]
    );
    assert_eq!(up("-"), vec![]);
    // Unquoted in the middle of a line, the list is read by its shape.
    let t = nginx("$msec $upstream_response_time $status");
    let (e, x) = ok(&t, "1.0 0.1, 0.2 : 0.3 201");
    assert_eq!(
        x.upstream_response_us,
        vec![Some(100_000), Some(200_000), Some(300_000)]
    );
    assert_eq!(e.status, 201);
}

#[test]
fn nginx_unknown_variables_are_labels_or_skipped() {
    let source = "$msec $request_id \"$http_x_forwarded_for\" ${ssl_protocol}/$ssl_cipher";
    let line = "1.0 abc123 \"10.1.1.1, 10.2.2.2\" TLSv1.3/TLS_AES_128_GCM_SHA256";
    let (_, x) = ok(&nginx(source), line);
    assert_eq!(
        x.labels,
        labels(&[
            ("request_id", "abc123"),
            ("http_x_forwarded_for", "10.1.1.1, 10.2.2.2"),
            ("ssl_protocol", "TLSv1.3"),
            ("ssl_cipher", "TLS_AES_128_GCM_SHA256"),
        ])
    );
    assert_eq!(x.label("request_id"), Some("abc123"));
    let skip =
        Arc::new(LogTemplate::compile(Dialect::Nginx, source, UnknownVariables::Skip).unwrap());
    assert!(skip.label_names().is_empty());
    let (e, x) = ok(&skip, line);
    assert_eq!(x.labels, vec![]);
    assert_eq!(e.timestamp, S);
    // Skipped values still have to be there.
    assert_eq!(
        fails(&skip, "1.0 abc123"),
        "column 5: expected ` \"` after $request_id, found none in `abc123`"
    );
}

#[test]
fn nginx_json_log_format_with_json_escapes() {
    // log_format json escape=json '{…}': values in quotes, numbers bare.
    let t = nginx(
        r#"{"time":"$time_iso8601","client":"$remote_addr","request":"$request","status":$status,"bytes":$body_bytes_sent,"agent":"$http_user_agent","rt":$request_time,"vhost":"$host"}"#,
    );
    let (e, x) = ok(
        &t,
        r#"{"time":"2019-02-07T21:11:00+00:00","client":"10.0.0.1","request":"GET /a\"b HTTP/1.1","status":200,"bytes":12,"agent":"tab\there \u00e9 \\ \/","rt":0.005,"vhost":"a.example"}"#,
    );
    assert_eq!(e.timestamp, 1_549_573_860 * S);
    assert_eq!((e.client.as_str(), e.path.as_str()), ("10.0.0.1", "/a\"b"));
    assert_eq!((e.status, e.bytes, e.duration_us), (200, 12, Some(5_000)));
    assert_eq!(e.user_agent.as_deref(), Some("tab\there é \\ /"));
    assert_eq!(x.host.as_deref(), Some("a.example"));
}

#[test]
fn apache_control_character_escapes_are_decoded() {
    let (e, _) = apache_one("\"%{User-Agent}i\"", r#""a\nb\tc\x01 \u12""#);
    assert_eq!(e.user_agent.as_deref(), Some("a\nb\tc\u{1} \\u12"));
}

#[test]
fn nginx_config_quoting_is_unwrapped() {
    let t = nginx("'$remote_addr [$time_local] '\n        '\"$request\" $status'");
    let (e, _) = ok(
        &t,
        "1.1.1.1 [07/Feb/2019:21:11:00 +0000] \"GET / HTTP/1.1\" 200",
    );
    assert_eq!((e.client.as_str(), e.status), ("1.1.1.1", 200));
}

// --- Apache directives, one by one ---------------------------------------------

fn apache_one(directive: &str, value: &str) -> (Event, LineExtras) {
    ok(
        &apache(&format!("%{{sec}}t {directive}")),
        &format!("1 {value}"),
    )
}

#[test]
fn apache_directives() {
    assert_eq!(apache_one("%h", "host.example").0.client, "host.example");
    assert_eq!(apache_one("%a", "10.0.0.2").0.client, "10.0.0.2");
    assert_eq!(apache_one("%u", "-").0.user, "");
    assert_eq!(
        apache_one("%l", "ident").0,
        Event {
            timestamp: S,
            ..Event::empty()
        }
    );
    let (e, _) = apache_one("\"%r\"", "\"HEAD / HTTP/1.1\"");
    assert_eq!((e.method.as_str(), e.path.as_str()), ("HEAD", "/"));
    let (e, _) = apache_one("%m %U %H", "GET /x HTTP/1.1");
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.protocol.as_str()),
        ("GET", "/x", "HTTP/1.1")
    );
    assert_eq!(apache_one("%>s", "301").0.status, 301);
    assert_eq!(apache_one("%<s", "302").0.status, 302);
    assert_eq!(apache_one("%b", "-").0.bytes, 0);
    assert_eq!(apache_one("%B", "17").0.bytes, 17);
    assert_eq!(apache_one("%O", "99").0.bytes, 99);
    assert_eq!(apache_one("%D", "1500").0.duration_us, Some(1500));
    assert_eq!(apache_one("%T", "2").0.duration_us, Some(2_000_000));
    assert_eq!(apache_one("%{ms}T", "15").0.duration_us, Some(15_000));
    assert_eq!(apache_one("%{us}T", "15").0.duration_us, Some(15));
    assert_eq!(
        apache_one("%v", "vh.example").1.host.as_deref(),
        Some("vh.example")
    );
    let (e, _) = apache_one("\"%{Referer}i\" \"%{User-Agent}i\"", r#""r" "u \"q\"""#);
    assert_eq!(
        (e.referer.as_deref(), e.user_agent.as_deref()),
        (Some("r"), Some("u \"q\""))
    );
    let (_, x) = apache_one(
        "\"%{X-Forwarded-For}i\" %P %{SESSION}C",
        "\"1.1.1.1\" 4242 abc",
    );
    assert_eq!(
        x.labels,
        labels(&[
            ("http_x_forwarded_for", "1.1.1.1"),
            ("pid", "4242"),
            ("cookie_SESSION", "abc")
        ])
    );
    // A status condition only makes the server write `-`.
    assert_eq!(apache_one("%!200,304{Referer}i", "-").0.referer, None);
}

#[test]
fn apache_config_quoting_is_unwrapped_only_when_it_wraps() {
    let line = r#"[07/Feb/2019:21:11:00 +0000] "GET / HTTP/1.1" 200 "-""#;
    for source in [
        r#""%t \"%r\" %>s \"%{Referer}i\"""#,
        r#"%t \"%r\" %>s \"%{Referer}i\""#,
        r#"%t "%r" %>s "%{Referer}i""#,
    ] {
        let (e, _) = ok(&apache(source), line);
        assert_eq!((e.status, e.path.as_str()), (200, "/"), "{source}");
    }
    // Quotes at both ends that belong to the format stay.
    let (e, _) = ok(
        &apache(r#""%r" %{sec}t "%{Referer}i""#),
        r#""GET / HTTP/1.1" 1 "https://r/""#,
    );
    assert_eq!(e.referer.as_deref(), Some("https://r/"));
}

#[test]
fn apache_times() {
    let (e, _) = ok(&apache("%t"), "[07/Feb/2019:21:11:00 +0000]");
    assert_eq!(e.timestamp, 1_549_573_860 * S);
    let (e, _) = ok(&apache("%{msec}t"), "1549573860250");
    assert_eq!(e.timestamp, 1_549_573_860 * S + 250 * MS);
    let (e, _) = ok(&apache("%{usec}t"), "1549573860250001");
    assert_eq!(e.timestamp, 1_549_573_860 * S + 250_001_000);
    // %t writes its own brackets.
    assert_eq!(
        fails(&apache("%t"), "07/Feb/2019:21:11:00 +0000"),
        "column 1: expected `[` at the start of the line, found `07/Feb/2019:21:11:00 +0000`"
    );
    // The most precise time wins wherever it is.
    let (e, _) = ok(
        &apache("%t %{msec}t"),
        "[07/Feb/2019:21:11:00 +0000] 1549573860999",
    );
    assert_eq!(e.timestamp, 1_549_573_860 * S + 999 * MS);
}

#[test]
fn format_strings_that_do_not_compile_say_why() {
    use Dialect::{Apache, Nginx};
    let cases = [
        (Nginx, "  ", "the format string is empty"),
        (
            Nginx,
            "$remote_addr",
            "the format has no time variable ($time_local, $time_iso8601, $msec, %t, %{sec}t, %{msec}t or %{usec}t)",
        ),
        (
            Nginx,
            "$msec $status$body_bytes_sent",
            "column 14: $status and $body_bytes_sent have nothing between them, so a line cannot be split between them",
        ),
        (
            Nginx,
            "$msec $",
            "column 7: `$` is not followed by a variable name",
        ),
        (Nginx, "$msec ${x", "column 7: unterminated `${`"),
        (Apache, "%t %Z", "column 4: unknown directive `%Z`"),
        (Apache, "%t %{Referer", "column 4: unterminated `%{`"),
        (Apache, "%t %", "column 4: `%` at the end of the format"),
        (Apache, "%t %i", "column 4: `%i` needs a name: `%{Name}i`"),
        (
            Apache,
            "%{%Y-%m-%d}t",
            "column 1: `%{%Y-%m-%d}t`: only %t, %{sec}t, %{msec}t and %{usec}t are supported",
        ),
    ];
    for (dialect, source, expected) in cases {
        let got = LogTemplate::compile(dialect, source, UnknownVariables::Label);
        assert_eq!(
            got.map_err(|e| e.to_string()).err().as_deref(),
            Some(expected),
            "{source:?}"
        );
    }
    assert!(LogTemplate::apache("%t 100%% %>s").is_ok());
}

// --- the format choice -----------------------------------------------------------

#[test]
fn format_choice_reads_names_and_format_strings() {
    use crate::parse::FormatChoice;
    assert_eq!(" AUTO ".parse::<FormatChoice>(), Ok(FormatChoice::Auto));
    assert_eq!(
        " Combined\n".parse::<FormatChoice>(),
        Ok(FormatChoice::Fixed(Format::Combined))
    );
    assert_eq!(
        "common".parse::<FormatChoice>(),
        Ok(FormatChoice::Fixed(Format::Clf))
    );
    let FormatChoice::Template(t) = format!("nginx:{NGINX_COMBINED}")
        .parse::<FormatChoice>()
        .unwrap()
    else {
        panic!("not a template");
    };
    assert_eq!((t.dialect(), t.source()), (Dialect::Nginx, NGINX_COMBINED));
    let choice: FormatChoice = format!("Apache:{APACHE_VHOST}").parse().unwrap();
    assert_eq!(choice.to_string(), format!("apache:{APACHE_VHOST}"));
    assert_eq!(
        choice.to_string().parse::<FormatChoice>(),
        Ok(choice.clone())
    );
    assert_eq!(
        "xml".parse::<FormatChoice>().unwrap_err().to_string(),
        "unknown log format `xml` (expected auto, csv, clf, combined, json, nginx:<log_format> or apache:<LogFormat>)"
    );
    assert_eq!(
        "nginx:$remote_addr"
            .parse::<FormatChoice>()
            .unwrap_err()
            .to_string(),
        "bad nginx format string: the format has no time variable ($time_local, $time_iso8601, $msec, %t, %{sec}t, %{msec}t or %{usec}t)"
    );
    let skip = choice
        .with_unknown_variables(UnknownVariables::Skip)
        .unwrap();
    let FormatChoice::Template(t) = &skip else {
        panic!()
    };
    assert_eq!(t.unknown_variables(), UnknownVariables::Skip);
    assert!(
        FormatChoice::Auto
            .with_unknown_variables(UnknownVariables::Skip)
            .is_err()
    );
    // Parsers: none for auto until lines are seen.
    assert!(FormatChoice::Auto.parser().is_none());
    assert_eq!(skip.parser().unwrap().format(), Format::Combined);
    let detected = FormatChoice::Auto
        .parser_for(["1.1.1.1 - - [07/Feb/2019:21:11:00 +0000] \"GET / HTTP/1.1\" 200 1"]);
    assert_eq!(detected.unwrap().format(), Format::Clf);
}

#[test]
fn format_choice_serde_takes_names_and_tables() {
    use crate::parse::FormatChoice;
    let from = |json: &str| serde_json::from_str::<FormatChoice>(json).map_err(|e| e.to_string());
    assert_eq!(from(r#""json""#), Ok(FormatChoice::Fixed(Format::Json)));
    let table =
        serde_json::json!({ "nginx": NGINX_TIMED, "unknown_variables": "skip" }).to_string();
    let choice = from(&table).unwrap();
    let FormatChoice::Template(t) = &choice else {
        panic!()
    };
    assert_eq!(
        (t.dialect(), t.unknown_variables()),
        (Dialect::Nginx, UnknownVariables::Skip)
    );
    assert_eq!(serde_json::to_string(&choice).unwrap(), table);
    assert_eq!(
        serde_json::to_string(&FormatChoice::Auto).unwrap(),
        r#""auto""#
    );
    assert_eq!(
        from(r#"{ "nginx": "$msec", "apache": "%t" }"#),
        Err("a format table takes one of `nginx` and `apache` at line 1 column 28".into())
    );
    assert!(
        from(r#"{ "ngnix": "$msec" }"#)
            .unwrap_err()
            .starts_with("unknown field `ngnix`")
    );
    assert!(
        from(r#"{ "unknown_variables": "skip" }"#)
            .unwrap_err()
            .starts_with("a format table needs")
    );
    assert!(
        from(r#"{ "apache": "%t %Z" }"#)
            .unwrap_err()
            .starts_with("bad apache format string: column 4: unknown directive `%Z`")
    );
}

#[test]
fn line_parser_reads_format_strings() {
    let mut parser = crate::LineParser::with_template(&nginx(NGINX_VHOST));
    assert_eq!(parser.format(), Format::Combined);
    let line = "h 1.1.1.1 - - [07/Feb/2019:21:11:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\" 0.1 - 1549573860.000\r";
    let e = parser.parse(line).unwrap().unwrap();
    assert_eq!((e.timestamp, e.status), (1_549_573_860 * S, 200));
    assert_eq!(parser.extras().unwrap().host.as_deref(), Some("h"));
    assert_eq!(parser.parse("   "), Ok(None));
    assert_eq!(parser.template().unwrap().source(), NGINX_VHOST);
    assert_eq!(
        crate::LineParser::with_template(&nginx("$msec $status")).format(),
        Format::Clf
    );
}

// --- render, parse back, same event ----------------------------------------------

/// The formats the round trip runs over: the acceptance formats and a few
/// that use every other variable.
const ROUND_TRIP: &[(Dialect, &str)] = &[
    (Dialect::Nginx, NGINX_COMBINED),
    (Dialect::Nginx, NGINX_TIMED),
    (Dialect::Nginx, NGINX_VHOST),
    (
        Dialect::Nginx,
        r#"$time_iso8601 $remote_addr $request_method $request_uri $server_protocol $status $body_bytes_sent "$http_user_agent" $request_id"#,
    ),
    (Dialect::Apache, APACHE_VHOST),
    (Dialect::Apache, APACHE_COMBINED),
    (
        Dialect::Apache,
        r#"%{msec}t %a %u "%m %U %H" %s %O %{ms}T "%{Referer}i" %{X-Request-Id}i"#,
    ),
    (Dialect::Apache, r#"%{usec}t %h %l %u "%r" %>s %B %T"#),
];

/// `e` and `x` cut down to what `t` can hold: fields it lacks emptied,
/// times and durations at its precision.
fn representable(t: &LogTemplate, e: &mut Event, x: &mut LineExtras) {
    let kept = |f: &dyn Fn(&Field) -> bool| {
        t.segments
            .iter()
            .any(|s| matches!(s, Segment::Var(v) if v.keep && f(&v.field)))
    };
    let mut out = Event {
        timestamp: e.timestamp,
        ..Event::empty()
    };
    let ts_unit = if kept(&|f| *f == Field::EpochMicros) {
        1_000
    } else if kept(&|f| matches!(f, Field::EpochSeconds | Field::EpochMillis)) {
        MS
    } else {
        S
    };
    out.timestamp = e.timestamp - e.timestamp.rem_euclid(ts_unit);
    if kept(&|f| *f == Field::Client) {
        out.client = std::mem::take(&mut e.client);
    }
    if kept(&|f| *f == Field::User) {
        out.user = std::mem::take(&mut e.user);
    }
    if kept(&|f| *f == Field::Request || *f == Field::Method) {
        out.method = std::mem::take(&mut e.method);
    }
    if kept(&|f| *f == Field::Request || *f == Field::Uri) {
        out.path = std::mem::take(&mut e.path);
    }
    if kept(&|f| *f == Field::Request || *f == Field::Protocol) {
        out.protocol = std::mem::take(&mut e.protocol);
    }
    if kept(&|f| *f == Field::Status) {
        out.status = e.status;
    }
    if kept(&|f| matches!(f, Field::BodyBytes | Field::BytesSent)) {
        out.bytes = e.bytes;
    }
    if kept(&|f| *f == Field::Referer) {
        out.referer = e.referer.take();
    }
    if kept(&|f| *f == Field::UserAgent) {
        out.user_agent = e.user_agent.take();
    }
    let us_unit = if kept(&|f| *f == Field::Micros) {
        Some(1)
    } else if kept(&|f| matches!(f, Field::Seconds | Field::Millis)) {
        Some(1_000)
    } else if kept(&|f| *f == Field::WholeSeconds) {
        Some(1_000_000)
    } else {
        None
    };
    out.duration_us = us_unit.and_then(|unit| e.duration_us.map(|us| us - us % unit));
    *e = out;
    if !kept(&|f| *f == Field::Host) {
        x.host = None;
    }
    if kept(&|f| *f == Field::Upstream) {
        for us in x.upstream_response_us.iter_mut().flatten() {
            *us -= *us % 1_000;
        }
        // A list of one `-` is written `-`, which reads as no list.
        if x.upstream_response_us == [None] {
            x.upstream_response_us.clear();
        }
    } else {
        x.upstream_response_us.clear();
    }
    let values = std::mem::take(&mut x.labels);
    x.labels = t
        .label_names()
        .iter()
        .zip(
            values
                .into_iter()
                .map(|(_, v)| v)
                .chain(std::iter::repeat(String::new())),
        )
        .map(|(n, v)| (n.clone(), v))
        .collect();
}

/// A token with no space and no `-` alone, as unquoted values must be.
fn token(re: &'static str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(re)
        .unwrap()
        .prop_filter("not -", |s| s != "-")
}

/// Free text for quoted fields: quotes, backslashes, control and non-ASCII
/// characters included.
fn free_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::string::string_regex("[ -~\"\\\\\t\u{1}é✓]{1,24}")
            .unwrap()
            .prop_filter("not -", |s| s != "-"),
    )
}

fn event_and_extras() -> impl Strategy<Value = (Event, LineExtras)> {
    (
        (
            0i64..4_000_000_000_000_000_000,
            token("[a-z0-9.:]{1,15}"),
            prop_oneof![Just(String::new()), token("[a-z]{1,8}")],
            token("[A-Z]{3,7}"),
            token("/[!-~]{0,20}"),
            prop_oneof![
                Just(String::new()),
                Just("HTTP/1.1".to_owned()),
                Just("HTTP/2.0".to_owned())
            ],
        ),
        (
            100u16..600,
            any::<u64>(),
            free_text(),
            free_text(),
            proptest::option::of(0u64..100_000_000_000),
        ),
        (
            proptest::option::of(token("[a-z0-9.]{1,20}")),
            proptest::collection::vec(proptest::option::of(0u64..10_000_000_000), 0..4),
            proptest::collection::vec(token("[a-zA-Z0-9._]{1,12}"), 4),
        ),
    )
        .prop_map(
            |(
                (timestamp, client, user, method, path, protocol),
                (status, bytes, referer, user_agent, duration_us),
                (host, upstream_response_us, label_values),
            )| {
                let event = Event {
                    timestamp,
                    client,
                    user,
                    method,
                    path,
                    protocol,
                    status,
                    bytes,
                    referer,
                    user_agent,
                    duration_us,
                    labels: Vec::new(),
                };
                let extras = LineExtras {
                    host,
                    upstream_response_us,
                    labels: label_values
                        .into_iter()
                        .map(|v| (String::new(), v))
                        .collect(),
                };
                (event, extras)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rendered_lines_parse_back_to_the_same_event(
        which in 0..ROUND_TRIP.len(),
        (event, extras) in event_and_extras(),
    ) {
        let (dialect, source) = ROUND_TRIP[which];
        let t = compile(dialect, source);
        let (mut event, mut extras) = (event, extras);
        representable(&t, &mut event, &mut extras);
        let mut line = String::new();
        t.render(&event, &extras, &mut line);
        let (got, got_extras) = parse(&t, &line).map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
        prop_assert_eq!(&got, &event, "line {:?}", line);
        prop_assert_eq!(&got_extras, &extras, "line {:?}", line);
    }

    #[test]
    fn no_line_makes_the_matcher_panic(line in "[ -~\"\\[\\]\\\\é]{0,120}", which in 0..ROUND_TRIP.len()) {
        let (dialect, source) = ROUND_TRIP[which];
        let _ = parse(&compile(dialect, source), &line);
    }

    #[test]
    fn no_format_string_makes_the_compiler_panic(source in "[ -~\t]{0,60}") {
        let _ = LogTemplate::nginx(&source);
        let _ = LogTemplate::apache(&source);
    }
}

/// Lines per second of the format-string parser against the hand-written
/// Combined parser on the same lines, in one run (these machines are noisy):
/// `cargo test -p logmon-protocol --release measure_template -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_template_parser_against_built_in_combined() {
    use std::time::Instant;
    let lines: Vec<String> = (0..200_000u64)
        .map(|i| {
            format!(
                r#"10.0.{}.{} - - [07/Feb/2019:21:{:02}:{:02} +0000] "GET /api/user/{i} HTTP/1.1" 200 {} "https://shop.example.com/cart?step=2" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" rt=0.{:03} uct="0.001" urt="0.{:03}""#,
                i % 7,
                i % 250,
                i / 60 % 60,
                i % 60,
                1000 + i % 5000,
                i % 1000,
                i % 900
            )
        })
        .collect();
    let run = |parser: &mut crate::LineParser, lines: &[String]| {
        let mut event = Event::empty();
        let t = Instant::now();
        for line in lines {
            parser.parse_into(line, &mut event).unwrap();
        }
        std::hint::black_box(&event);
        t.elapsed().as_secs_f64()
    };
    // The built-in parser reads the same lines as Combined and ignores the tail.
    let mut builtin = crate::LineParser::new(Format::Combined);
    let mut combined = crate::LineParser::with_template(&nginx(NGINX_COMBINED));
    let mut timed = crate::LineParser::with_template(&nginx(NGINX_TIMED));
    let combined_lines: Vec<String> = lines
        .iter()
        .map(|l| l[..l.find(" rt=").unwrap()].to_owned())
        .collect();
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push((
            run(&mut builtin, &combined_lines),
            run(&mut combined, &combined_lines),
            run(&mut timed, &lines),
        ));
    }
    let best = |f: fn(&(f64, f64, f64)) -> f64| rows.iter().map(f).fold(f64::INFINITY, f64::min);
    let (b, c, t) = (best(|r| r.0), best(|r| r.1), best(|r| r.2));
    let n = lines.len() as f64;
    println!("| parser | lines/s | ns/line | vs built-in |");
    println!("|---|---|---|---|");
    for (name, secs) in [
        ("built-in combined", b),
        ("nginx `combined` string", c),
        ("nginx upstream-timing string", t),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}× |",
            n / secs,
            secs / n * 1e9,
            secs / b
        );
    }
}
