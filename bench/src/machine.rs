//! The machine and servers a run measured, for the report's first table.

use crate::servers::{Targets, hosts_of};
use crate::store_stats::{http_get, info_field, redis_info, zk_word};

/// `(what, value)` lines: cores, CPU, memory, kernel, load, server versions.
pub async fn describe(targets: &Targets) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    lines.push(("cores".into(), format!("{cores} ({model})")));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    lines.push(("memory".into(), mem));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    lines.push(("kernel".into(), format!("Linux {}", kernel.trim())));
    lines.push((
        "load average at start (1, 5, 15 min)".into(),
        load_average(),
    ));
    lines.push(("source".into(), source_version()));
    if let Some(url) = &targets.redis {
        lines.push(("redis (single)".into(), redis_version(url).await));
    }
    if let Some(node) = targets.redlock.first() {
        let v = redis_version(&format!("redis://{node}")).await;
        lines.push((
            format!("redlock masters ({} started)", targets.redlock.len()),
            v,
        ));
    }
    if let Some(url) = &targets.etcd {
        let host = hosts_of(url).into_iter().next().unwrap_or_default();
        let v = http_get(&host, "/version")
            .await
            .map_or_else(|e| format!("unknown ({e})"), |b| b.trim().to_owned());
        lines.push(("etcd (one member)".into(), format!("`{v}`")));
    }
    if let Some(url) = &targets.zk {
        let host = hosts_of(url).into_iter().next().unwrap_or_default();
        let v = match zk_word(&host, "srvr").await {
            Ok(srvr) => srvr
                .lines()
                .find_map(|l| l.strip_prefix("Zookeeper version: "))
                .unwrap_or("unknown")
                .to_owned(),
            Err(e) => format!("unknown ({e})"),
        };
        lines.push(("ZooKeeper (standalone)".into(), v));
    }
    for (backend, origin) in &targets.origin {
        lines.push((format!("{} store", backend.name()), (*origin).to_owned()));
    }
    lines
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn redis_version(url: &str) -> String {
    match redis_info(url, "server").await {
        Ok(info) => format!(
            "redis {}",
            info_field(&info, "redis_version").unwrap_or("unknown")
        ),
        Err(e) => format!("unknown ({e})"),
    }
}

/// `git describe --always --dirty` of the working directory: which code was
/// measured (`-dirty`: with uncommitted changes).
fn source_version() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(
            || "unknown (no git)".into(),
            |v| format!("git {}", v.trim()),
        )
}
