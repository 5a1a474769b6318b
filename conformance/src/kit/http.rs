//! Just enough HTTP/1.1 and JSON to ask etcd's gateway about its health and
//! its leader, and to read its `/metrics`, without pulling an HTTP client
//! into the kit.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KitError;

/// Sends one request with `Connection: close` and returns the status code and
/// the body (everything after the headers).
pub(crate) async fn request(
    addr: impl std::fmt::Display,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), KitError> {
    let context = || format!("HTTP {method} http://{addr}{path}");
    let mut stream = TcpStream::connect(addr.to_string())
        .await
        .map_err(|e| KitError::io(context(), e))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| KitError::io(context(), e))?;
    stream
        .write_all(body.as_bytes())
        .await
        .map_err(|e| KitError::io(context(), e))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| KitError::io(context(), e))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
        KitError::protocol(format!("{}: no end of headers in {response:?}", context()))
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| KitError::protocol(format!("{}: no status in {head:?}", context())))?;
    Ok((status, body.to_string()))
}

/// The body of `GET path` from `addr` (`host:port`) when the answer is 200:
/// etcd's `/metrics` and `/version`, for tests and benchmarks that read
/// what the server counted.
pub async fn http_get(addr: &str, path: &str) -> Result<String, KitError> {
    match request(addr, "GET", path, "").await? {
        (200, body) => Ok(body),
        (status, body) => Err(KitError::protocol(format!(
            "HTTP GET http://{addr}{path}: status {status}: {body}"
        ))),
    }
}

/// The value of the first `"key": value` in a JSON text, string or number,
/// without its quotes. Enough for etcd's flat status answers, whose 64-bit
/// ids come as strings or numbers depending on the version.
pub(crate) fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .unwrap_or(rest.len());
        Some(&rest[..end])
    }
}
