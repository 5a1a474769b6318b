//! A minimal Redis (RESP2) client over a raw TCP stream: the kit's readiness
//! probe, and a way for tests to poke at a server without a Redis crate.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KitError;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`, or `None` for the nil bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`, or `None` for the nil array `*-1`.
    Array(Option<Vec<Resp>>),
}

/// Sends one command on a fresh connection and returns its reply, for example
/// `command(addr, &["SET", "k", "v"])`.
///
/// There is no timeout: a paused server never answers, so wrap the call in
/// `tokio::time::timeout` where that can happen.
pub async fn command<A: AsRef<[u8]>>(addr: SocketAddr, args: &[A]) -> Result<Resp, KitError> {
    let context = || format!("redis {addr}");
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| KitError::io(context(), e))?;
    stream
        .write_all(&encode(args))
        .await
        .map_err(|e| KitError::io(context(), e))?;
    let mut buf = Vec::new();
    loop {
        if let Some((reply, _)) = parse(&buf)? {
            return Ok(reply);
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| KitError::io(context(), e))?;
        if n == 0 {
            return Err(KitError::protocol(format!(
                "{}: connection closed before a full reply",
                context()
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Encodes a command as a RESP array of bulk strings.
fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the front of `buf`: `Ok(None)` if more bytes are
/// needed, otherwise the reply and how many bytes it took.
fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, KitError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(KitError::protocol("redis: empty reply line"));
    };
    let line = String::from_utf8_lossy(line).into_owned();
    let after = end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| KitError::protocol(format!("redis: bad length {line:?}")))
    };
    match kind {
        b'+' => Ok(Some((Resp::Simple(line), after))),
        b'-' => Ok(Some((Resp::Error(line), after))),
        b':' => Ok(Some((Resp::Integer(number()?), after))),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Resp::Bulk(None), after)));
            };
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Bulk(Some(buf[after..after + len].to_vec())),
                after + len + 2,
            )))
        }
        b'*' => {
            let Ok(count) = usize::try_from(number()?) else {
                return Ok(Some((Resp::Array(None), after)));
            };
            let mut items = Vec::with_capacity(count);
            let mut used = after;
            for _ in 0..count {
                let Some((item, n)) = parse(&buf[used..])? else {
                    return Ok(None);
                };
                items.push(item);
                used += n;
            }
            Ok(Some((Resp::Array(Some(items)), used)))
        }
        other => Err(KitError::protocol(format!(
            "redis: unknown reply type {:?}",
            char::from(other)
        ))),
    }
}
