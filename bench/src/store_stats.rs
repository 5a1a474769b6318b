//! What the stores say about themselves: versions, and the request counters
//! the many-holds scenario turns into requests per second.

use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `INFO section` of the Redis at `url`.
pub async fn redis_info(url: &str, section: &str) -> anyhow::Result<String> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    Ok(redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await?)
}

/// A field of an `INFO` answer (`redis_version`).
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Commands the Redis at `url` has run: all kinds but `INFO` (which is how
/// they are counted), those run inside scripts included; and of them, the
/// script calls (`EVAL`, `EVALSHA`, `FCALL`).
pub async fn redis_commands(url: &str) -> anyhow::Result<(u64, u64)> {
    let info = redis_info(url, "commandstats").await?;
    Ok((
        commandstats_calls(&info, |_| true),
        commandstats_calls(&info, is_script_call),
    ))
}

fn is_script_call(name: &str) -> bool {
    matches!(
        name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// The sum of `calls=` over the `cmdstat_NAME` lines whose NAME `pick`s,
/// `cmdstat_info` left out.
pub fn commandstats_calls(info: &str, pick: impl Fn(&str) -> bool) -> u64 {
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .filter(|(name, _)| *name != "info" && pick(name))
        .filter_map(|(_, stats)| {
            stats
                .split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The body of `GET path` from `addr` (`host:port`): the kit's request.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    Ok(conformance::kit::http_get(addr, path).await?)
}

/// gRPC messages etcd received, per method, from its `/metrics`.
pub fn grpc_received(metrics: &str) -> BTreeMap<String, f64> {
    let mut by_method = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total{"))
    {
        let method = line
            .split_once("grpc_method=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(m, _)| m.to_owned());
        let value = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok());
        if let (Some(m), Some(v)) = (method, value) {
            *by_method.entry(m).or_insert(0.0) += v;
        }
    }
    by_method
}

/// Sends a ZooKeeper four-letter word to `addr`; the answer.
pub async fn zk_word(addr: &str, word: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(word.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// A `key\tvalue` line of `mntr`.
pub fn mntr_field(mntr: &str, key: &str) -> Option<f64> {
    mntr.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse() {
        let info = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=5\r\ncmdstat_info:calls=3,usec=1\r\ncmdstat_pexpire:calls=2,usec=1\r\n";
        assert_eq!(commandstats_calls(info, |_| true), 12);
        assert_eq!(commandstats_calls(info, is_script_call), 10);
        assert_eq!(
            info_field("redis_version:7.0.15\r\nx:1", "redis_version"),
            Some("7.0.15")
        );
        let metrics = "# HELP x\ngrpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 42\ngrpc_server_msg_received_total{grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 8\n";
        let m = grpc_received(metrics);
        assert_eq!(m["LeaseKeepAlive"], 42.0);
        assert_eq!(m.values().sum::<f64>(), 50.0);
        assert_eq!(
            mntr_field(
                "zk_version\t3.8\nzk_packets_received\t1234\n",
                "zk_packets_received"
            ),
            Some(1234.0)
        );
    }
}
