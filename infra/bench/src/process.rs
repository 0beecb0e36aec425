//! Process CPU per operation: the real function binary (as it deploys, minus the arm64 target)
//! runs against the local runner's Lambda Runtime API (`loyalty_local::runtime`), one process
//! per execution environment, and the CPU it spends is read from the kernel — `utime + stime`
//! of `/proc/<pid>/stat` — before and after a window in which a known number of invocations
//! completed. That is what Lambda bills as duration when the function is CPU-bound, and it
//! includes everything a timer around one call in the bench would miss or misattribute: the
//! Runtime API client, event parsing, logging, the SDK, the tokio runtime's threads.
//!
//! At concurrency N there are N processes, each driven by its own caller back to back (Lambda
//! runs one invocation per environment at a time); the CPU of all N is summed and divided by the
//! invocations completed. Workers stop issuing at the deadline and the second reading is taken
//! after every in-flight invocation has answered, so no CPU of an uncounted invocation is in
//! the window. Idle time between invocations (the long-poll on `…/invocation/next`) costs
//! nothing. Resolution: one clock tick (10 ms at `CLK_TCK` = 100), over windows of hundreds to
//! thousands of invocations.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loyalty_local::runtime::{self, FunctionHandle, Output, ProcessSpec};
use tokio::sync::watch;

use crate::ops::{Api, Op};

const UNUSED_QUEUE: &str = "http://127.0.0.1:9/000000000000/bench-unused";

/// The environment a function binary is started with: what the template gives it, pointed at
/// DynamoDB Local, with Lambda's own variables (as `make run` sets them).
pub fn function_env(table: &str, dynamodb: &str) -> Vec<(String, String)> {
    [
        ("TABLE_NAME", table),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("PROGRAM_CACHE_SECONDS", "30"),
        ("RUST_LOG", "info"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        // Queues a function refuses to start without (accrue, rewards). The benchmark's members
        // have no referrer and it creates no campaign or webhook, so nothing is ever sent to them.
        ("REFERRAL_QUEUE_URL", UNUSED_QUEUE),
        ("CAMPAIGN_DISPATCH_QUEUE_URL", UNUSED_QUEUE),
        ("WEBHOOK_DELIVERY_QUEUE_URL", UNUSED_QUEUE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `utime + stime` of the whole process (all its threads), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(utime + stime))
}

fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 {
        per_second as u64
    } else {
        100
    };
    Duration::from_nanos(n * 1_000_000_000 / per_second)
}

/// One measured window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub concurrency: usize,
    pub completed: usize,
    pub unexpected: usize,
    pub first_unexpected: Option<String>,
    pub cpu: Duration,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Window {
    /// Process CPU milliseconds per completed invocation.
    pub fn cpu_ms_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / self.completed.max(1) as f64
    }
}

/// What the function processes are started with.
#[derive(Debug, Clone)]
pub struct Target {
    pub bin_dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// N execution environments of one binary, each a supervised process on its own Runtime API.
pub struct Environments {
    handles: Vec<FunctionHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Environments {
    pub async fn start(binary: &Path, env: &[(String, String)], n: usize) -> Result<Self, String> {
        if !binary.exists() {
            return Err(format!("{} not built", binary.display()));
        }
        let (shutdown, watcher) = watch::channel(false);
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let spec = ProcessSpec {
                logical_id: format!("bench-env-{i}"),
                executable: binary.to_owned(),
                env: env.to_vec(),
                timeout: Duration::from_secs(30),
                output: Output::Discard,
            };
            let (handle, task) = runtime::start(spec, watcher.clone());
            handles.push(handle);
            tasks.push(task);
        }
        let environments = Self {
            handles,
            tasks,
            shutdown,
        };
        for handle in &environments.handles {
            if handle.ready(Duration::from_secs(20)).await.is_none() {
                environments.stop().await;
                return Err(format!("{} never asked for an event", binary.display()));
            }
        }
        Ok(environments)
    }

    pub fn handles(&self) -> &[FunctionHandle] {
        &self.handles
    }

    fn cpu(&self) -> Result<(Vec<u32>, Duration), String> {
        let mut pids = Vec::new();
        let mut total = Duration::ZERO;
        for handle in &self.handles {
            let pid = handle
                .process()
                .ok_or("a function process is not running")?
                .pid;
            total += cpu_time(pid).ok_or(format!("cannot read /proc/{pid}/stat"))?;
            pids.push(pid);
        }
        Ok((pids, total))
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Invokes and answers the response's `statusCode`.
pub async fn invoke(handle: &FunctionHandle, event: String) -> Result<u16, String> {
    let body = handle
        .invoke(event.into_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let response: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("response is not JSON: {e}"))?;
    response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| format!("no statusCode in {response}"))
}

/// Runs `op` on `concurrency` environments of `target`: `warmup` invocations each (first
/// connection, program read), then back to back for `duration`, reading the processes' CPU
/// around the window. Environment `w` works on member `pool-w`.
pub async fn measure(
    target: &Target,
    api: &Arc<Api>,
    op: Op,
    concurrency: usize,
    duration: Duration,
    phase: &str,
) -> Result<Window, String> {
    let binary = target.bin_dir.join(op.binary());
    let environments = Environments::start(&binary, &target.env, concurrency).await?;
    let result = window(&environments, api, op, duration, phase).await;
    environments.stop().await;
    result
}

const WARMUP: usize = 20;

async fn window(
    environments: &Environments,
    api: &Arc<Api>,
    op: Op,
    duration: Duration,
    phase: &str,
) -> Result<Window, String> {
    let event = |w: usize, i: String| {
        op.event(api, &format!("pool-{w}"), &format!("{phase}-{w}-{i}"))
            .map(|(_, event)| event)
            .ok_or(format!("{} has no event", op.name()))
    };
    for (w, handle) in environments.handles().iter().enumerate() {
        for i in 0..WARMUP {
            invoke(handle, event(w, format!("warm{i}"))?).await?;
        }
    }
    let (pids, before) = environments.cpu()?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for (w, handle) in environments.handles().iter().enumerate() {
        let handle = handle.clone();
        let api = Arc::clone(api);
        let phase = phase.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut unexpected = 0;
            let mut first_unexpected = None;
            let mut i = 0;
            while Instant::now() < deadline {
                let (_, event) = op
                    .event(&api, &format!("pool-{w}"), &format!("{phase}-{w}-{i}"))
                    .expect("event");
                let called = Instant::now();
                let status = invoke(&handle, event).await;
                latencies.push(called.elapsed());
                match status {
                    Ok(status) if status == op.expected_status() => {}
                    other => {
                        unexpected += 1;
                        first_unexpected.get_or_insert_with(|| format!("{other:?}"));
                    }
                }
                i += 1;
            }
            (latencies, unexpected, first_unexpected)
        }));
    }
    let mut out = Window {
        concurrency: environments.handles().len(),
        ..Window::default()
    };
    for worker in workers {
        let (latencies, unexpected, first) = worker.await.map_err(|e| e.to_string())?;
        out.completed += latencies.len();
        out.unexpected += unexpected;
        if out.first_unexpected.is_none() {
            out.first_unexpected = first;
        }
        out.latencies.extend(latencies);
    }
    out.elapsed = started.elapsed();
    let (pids_after, after) = environments.cpu()?;
    if pids != pids_after {
        return Err("a function process restarted during the window".to_owned());
    }
    out.cpu = after.saturating_sub(before);
    Ok(out)
}

/// A profile of one function process over a window: `perf record` attached to the process
/// (timer sampling of user and kernel stacks' leaf frames), summarised by symbol.
pub async fn perf_profile(
    target: &Target,
    api: &Arc<Api>,
    op: Op,
    duration: Duration,
    phase: &str,
    output: &Path,
) -> Result<(Window, Vec<(String, f64)>), String> {
    let binary = target.bin_dir.join(op.binary());
    let environments = Environments::start(&binary, &target.env, 1).await?;
    let pid = environments.handles()[0].process().ok_or("no process")?.pid;
    let data = output.with_extension("perf.data");
    let mut perf = tokio::process::Command::new("perf")
        .args(["record", "-F", "4999", "-q", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("perf: {e}"));
    let result = match &mut perf {
        Ok(_) => window(&environments, api, op, duration, phase).await,
        Err(e) => Err(e.clone()),
    };
    environments.stop().await;
    let mut perf = perf?;
    // perf writes its file when the process it follows exits.
    let _ = tokio::time::timeout(Duration::from_secs(30), perf.wait()).await;
    let window = result?;
    let report = tokio::process::Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-q",
            "--percent-limit",
            "0.01",
        ])
        .args(["--sort", "dso,sym", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("perf report: {e}"))?;
    let _ = std::fs::remove_file(&data);
    let _ = std::fs::remove_file(data.with_extension("data.old"));
    let text = String::from_utf8_lossy(&report.stdout);
    Ok((window, parse_perf_report(&text)))
}

/// `perf report --sort dso,sym` lines: `  12.34%  accrue  [.] symbol` → (dso + symbol, share %).
fn parse_perf_report(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (share, rest) = line.split_once('%')?;
            let share: f64 = share.trim().parse().ok()?;
            Some((rest.trim().to_owned(), share))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_time_of_this_process_is_readable_and_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_time(pid).expect("own stat");
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_time(pid).expect("own stat");
        assert!(after > before, "{before:?} → {after:?}");
    }

    #[test]
    fn perf_report_lines_become_shares_by_symbol() {
        let text = "# comment\n    12.50%  accrue  [.] tokio::runtime::park\n     0.40%  [kernel.kallsyms]  [k] do_syscall_64\n";
        let parsed = parse_perf_report(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "accrue  [.] tokio::runtime::park");
        assert!((parsed[0].1 - 12.5).abs() < 1e-9);
    }
}
