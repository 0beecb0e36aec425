//! Cold start of a function binary against a local Lambda Runtime API: the bench serves
//! `GET /2018-06-01/runtime/invocation/next` on loopback, hands out one event, and times
//! process spawn → first `next` (ready) and first `next` → `POST …/response` (first invocation).
//! Peak RSS is `VmHWM` from `/proc/<pid>/status`, read after the response and before the kill.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    event: String,
    handed_out: bool,
    ready_at: Option<Instant>,
    responded_at: Option<Instant>,
    response: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ColdRun {
    pub ready: Duration,
    pub first_invocation: Duration,
    pub peak_rss_kib: u64,
    pub response_status: Option<u64>,
}

async fn serve(
    state: Arc<Mutex<State>>,
    done: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if method == hyper::Method::GET && path.ends_with("/runtime/invocation/next") {
        let event = {
            let mut s = state.lock().expect("state");
            if s.handed_out {
                None
            } else {
                s.handed_out = true;
                s.ready_at = Some(Instant::now());
                Some(s.event.clone())
            }
        };
        let Some(event) = event else {
            // The function waits for its second event; it never comes.
            std::future::pending::<()>().await;
            unreachable!();
        };
        let deadline = chrono::Utc::now().timestamp_millis() + 10_000;
        let response = Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", "bench-request-1")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(event)))
            .expect("response");
        return Ok(response);
    }
    {
        let mut s = state.lock().expect("state");
        if path.ends_with("/response") {
            s.responded_at = Some(Instant::now());
            s.response = Some(String::from_utf8_lossy(&body).into_owned());
        } else {
            s.responded_at = Some(Instant::now());
            s.error = Some(format!("{path}: {}", String::from_utf8_lossy(&body)));
        }
    }
    done.notify_one();
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("response"))
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
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let state = Arc::new(Mutex::new(State {
        event,
        ..State::default()
    }));
    let done = Arc::new(Notify::new());
    let server = {
        let state = Arc::clone(&state);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&state);
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        serve(Arc::clone(&state), Arc::clone(&done), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    };

    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary.display()))?;
    let pid = child.id().unwrap_or(0);
    let waited = tokio::time::timeout(Duration::from_secs(20), done.notified()).await;
    let peak_rss_kib = vm_hwm_kib(pid);
    let _ = child.kill().await;
    server.abort();
    waited.map_err(|_| "no response within 20 s".to_owned())?;
    let s = state.lock().expect("state");
    if let Some(error) = &s.error {
        return Err(error.clone());
    }
    let ready_at = s.ready_at.ok_or("never asked for an event")?;
    let responded_at = s.responded_at.ok_or("never responded")?;
    let response_status = s
        .response
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| v["statusCode"].as_u64());
    Ok(ColdRun {
        ready: ready_at - spawned,
        first_invocation: responded_at - ready_at,
        peak_rss_kib,
        response_status,
    })
}
