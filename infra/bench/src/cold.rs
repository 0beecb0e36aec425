//! Cold start of a function binary on the local runner's Lambda Runtime API
//! (`loyalty_local::runtime`, what `make run` serves): the process is started, *ready* is
//! process spawn → its first `GET …/invocation/next`, *first invocation* is the event handed
//! over → its response. Peak RSS is `VmHWM` from `/proc/<pid>/status`, read after the response
//! and before the process is stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::{invoke, Environments};

#[derive(Debug, Clone)]
pub struct ColdRun {
    pub ready: Duration,
    pub first_invocation: Duration,
    pub peak_rss_kib: u64,
    pub response_status: Option<u64>,
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts `binary` once with `env` and hands it `event`.
pub async fn run_once(
    binary: &Path,
    env: &[(String, String)],
    event: String,
) -> Result<ColdRun, String> {
    let environments = Environments::start(binary, env, 1).await?;
    let handle = environments.handles()[0].clone();
    let outcome = async {
        let process = handle.process().ok_or("the process is gone")?;
        let ready_at = process.first_poll.ok_or("never asked for an event")?;
        let handed = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(20), invoke(&handle, event))
            .await
            .map_err(|_| "no response within 20 s".to_owned())??;
        let first_invocation = handed.elapsed();
        Ok(ColdRun {
            ready: ready_at - process.spawned,
            first_invocation,
            peak_rss_kib: vm_hwm_kib(process.pid),
            response_status: Some(u64::from(status)),
        })
    }
    .await;
    environments.stop().await;
    outcome
}
