//! The Lambda Runtime API on a loopback port, and the supervisor that keeps one process of a
//! function binary running against it.
//!
//! A function binary (`lambda_runtime::run` / `lambda_http::run`) long-polls
//! `GET /2018-06-01/runtime/invocation/next`, handles the event and posts the result to
//! `…/invocation/{id}/response` or `…/invocation/{id}/error`. Each process gets a fresh port:
//! when it dies (crash, panic with `panic = "abort"`, a timeout kill) its server is torn down,
//! the invocation it held fails, and a new process is started on a new port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinSet;

const PREFIX: &str = "/2018-06-01/runtime";
/// How long an invocation may wait for a process to pick it up (beyond its own timeout).
const PICKUP_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The function reported an error (`…/error`).
    Function {
        error_type: String,
        message: String,
    },
    /// The process exited while it held the invocation.
    Crashed(String),
    TimedOut(Duration),
    Stopped,
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Function {
                error_type,
                message,
            } => write!(f, "{error_type}: {message}"),
            InvokeError::Crashed(why) => write!(f, "process crashed: {why}"),
            InvokeError::TimedOut(limit) => write!(f, "Task timed out after {:?}", limit),
            InvokeError::Stopped => write!(f, "runner is stopping"),
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<u8>, InvokeError>>;

struct Pending {
    payload: Vec<u8>,
    reply: Reply,
}

/// What the supervisor needs to start one function's process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub logical_id: String,
    pub executable: PathBuf,
    /// The function's environment (template variables resolved, Lambda's own variables).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Where the process's stdout and stderr go: forwarded line by line to the runner's own,
    /// prefixed with the function's id, or discarded (a benchmark, which must not print or
    /// spend its own CPU on them; the function still formats and writes every line).
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Forward,
    Discard,
}

/// The process currently serving a function, for tools that measure it (cold start, CPU).
#[derive(Debug, Clone, Copy)]
pub struct ProcessInfo {
    pub pid: u32,
    pub spawned: Instant,
    /// Its first `GET …/invocation/next`: the moment it was ready for work.
    pub first_poll: Option<Instant>,
}

struct Shared {
    logical_id: String,
    arn: String,
    timeout: Duration,
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    inflight: Mutex<HashMap<String, Reply>>,
    kill: Notify,
    process: Mutex<Option<ProcessInfo>>,
}

/// Invokes one function; cheap to clone.
#[derive(Clone)]
pub struct FunctionHandle {
    sender: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

impl FunctionHandle {
    pub fn logical_id(&self) -> &str {
        &self.shared.logical_id
    }

    /// The running process, if one is up.
    pub fn process(&self) -> Option<ProcessInfo> {
        *self.shared.process.lock().expect("process lock")
    }

    /// Waits (up to `limit`) until a process has asked for its first event, and returns it.
    pub async fn ready(&self, limit: Duration) -> Option<ProcessInfo> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(process) = self.process().filter(|p| p.first_poll.is_some()) {
                return Some(process);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends `payload` to the function and waits for its response body.
    pub async fn invoke(&self, payload: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending { payload, reply })
            .await
            .map_err(|_| InvokeError::Stopped)?;
        match tokio::time::timeout(self.shared.timeout + PICKUP_GRACE, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::Crashed("invocation was dropped".to_owned())),
            Err(_) => Err(InvokeError::TimedOut(self.shared.timeout + PICKUP_GRACE)),
        }
    }
}

/// Starts the supervisor: it runs the binary until `shutdown` turns true, restarting it when it
/// exits. The returned task ends once the process is gone.
pub fn start(
    spec: ProcessSpec,
    shutdown: watch::Receiver<bool>,
) -> (FunctionHandle, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(1024);
    let shared = Arc::new(Shared {
        arn: crate::wiring::function_arn(&spec.logical_id),
        logical_id: spec.logical_id.clone(),
        timeout: spec.timeout,
        queue: tokio::sync::Mutex::new(receiver),
        inflight: Mutex::new(HashMap::new()),
        kill: Notify::new(),
        process: Mutex::new(None),
    });
    let handle = FunctionHandle {
        sender,
        shared: Arc::clone(&shared),
    };
    let task = tokio::spawn(supervise(spec, shared, shutdown));
    (handle, task)
}

fn fail_inflight(shared: &Shared, error: &InvokeError) {
    let drained: Vec<Reply> = shared
        .inflight
        .lock()
        .expect("inflight lock")
        .drain()
        .map(|(_, reply)| reply)
        .collect();
    for reply in drained {
        let _ = reply.send(Err(error.clone()));
    }
}

async fn supervise(spec: ProcessSpec, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let id = spec.logical_id.clone();
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("[{id}] cannot bind the Runtime API: {error}");
                return;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(serve_runtime_api(listener, Arc::clone(&shared)));
        let mut command = tokio::process::Command::new(&spec.executable);
        command
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: a terminal's Ctrl-C reaches the runner, which stops the
            // functions itself, instead of killing them mid-invocation first.
            .process_group(0);
        match spec.output {
            Output::Forward => command.stdout(Stdio::piped()).stderr(Stdio::piped()),
            Output::Discard => command.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        for key in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        // Locally the runner stands in for Secrets Manager: a function the template gives the
        // Stripe secret (STRIPE_SECRET_ID) gets the keys from the runner's own environment.
        if spec.env.iter().any(|(k, _)| k == "STRIPE_SECRET_ID") {
            for key in ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"] {
                if let Some(value) = std::env::var_os(key) {
                    command.env(key, value);
                }
            }
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child when
        // the runner dies, so no function process outlives a runner killed with SIGKILL.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => {
                *shared.process.lock().expect("process lock") = child.id().map(|pid| ProcessInfo {
                    pid,
                    spawned: started,
                    first_poll: None,
                });
                child
            }
            Err(error) => {
                server.abort();
                eprintln!("[{id}] cannot start {}: {error}", spec.executable.display());
                fail_inflight(&shared, &InvokeError::Crashed(error.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        for (stream, name) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "stdout",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                "stderr",
            ),
        ] {
            if let Some(stream) = stream {
                let id = id.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if name == "stdout" {
                            println!("[{id}] {line}");
                        } else {
                            eprintln!("[{id}] {line}");
                        }
                    }
                });
            }
        }
        let (status, stopping) = tokio::select! {
            status = child.wait() => (status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()), false),
            _ = shared.kill.notified() => {
                let _ = child.start_kill();
                let status = child.wait().await;
                (format!("killed after a timeout ({})", status.map(|s| s.to_string()).unwrap_or_default()), false)
            }
            _ = shutdown.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                ("stopped".to_owned(), true)
            }
        };
        *shared.process.lock().expect("process lock") = None;
        server.abort();
        let _ = server.await;
        if stopping {
            fail_inflight(&shared, &InvokeError::Stopped);
            break;
        }
        eprintln!("[{id}] process exited ({status}); restarting");
        fail_inflight(&shared, &InvokeError::Crashed(status));
        backoff = if started.elapsed() > Duration::from_secs(5) {
            Duration::from_millis(100)
        } else {
            (backoff * 2).min(Duration::from_secs(5))
        };
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => break,
        }
    }
    // Nothing else will answer what is still queued.
    let mut queue = shared.queue.lock().await;
    queue.close();
    while let Ok(pending) = queue.try_recv() {
        let _ = pending.reply.send(Err(InvokeError::Stopped));
    }
}

async fn serve_runtime_api(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this task's set, so aborting the task drops them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(route(&shared, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

async fn route(shared: &Arc<Shared>, request: http::Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"not found"}"#);
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, r#"{"errorMessage":"bad body"}"#),
    };
    match (method, rest) {
        (Method::GET, "/invocation/next") => next(shared).await,
        (Method::POST, "/init/error") => {
            eprintln!(
                "[{}] init error: {}",
                shared.logical_id,
                String::from_utf8_lossy(&body)
            );
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (Method::POST, rest) => {
            let Some(rest) = rest.strip_prefix("/invocation/") else {
                return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"not found"}"#);
            };
            let (id, result) = if let Some(id) = rest.strip_suffix("/response") {
                (id, Ok(body.to_vec()))
            } else if let Some(id) = rest.strip_suffix("/error") {
                let parsed: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let text = |key: &str| parsed.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                (
                    id,
                    Err(InvokeError::Function {
                        error_type: text("errorType").unwrap_or_else(|| "Unhandled".to_owned()),
                        message: text("errorMessage")
                            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                    }),
                )
            } else {
                return reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"not found"}"#);
            };
            let waiting = shared.inflight.lock().expect("inflight lock").remove(id);
            match waiting {
                Some(waiting) => {
                    let _ = waiting.send(result);
                    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
                }
                None => reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"errorMessage":"unknown or finished request id","errorType":"InvalidRequestID"}"#,
                ),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, r#"{"errorMessage":"not found"}"#),
    }
}

async fn next(shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    if let Some(process) = shared.process.lock().expect("process lock").as_mut() {
        process.first_poll.get_or_insert_with(Instant::now);
    }
    let pending = {
        let mut queue = shared.queue.lock().await;
        queue.recv().await
    };
    let Some(pending) = pending else {
        return reply(StatusCode::GONE, r#"{"errorMessage":"runner stopped"}"#);
    };
    let id = ulid::Ulid::new().to_string().to_lowercase();
    let deadline = SystemTime::now() + shared.timeout;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    shared
        .inflight
        .lock()
        .expect("inflight lock")
        .insert(id.clone(), pending.reply);
    // Lambda stops an invocation at its timeout: fail it and recycle the process.
    let watchdog = Arc::clone(shared);
    let watched = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(watchdog.timeout).await;
        let expired = watchdog
            .inflight
            .lock()
            .expect("inflight lock")
            .remove(&watched);
        if let Some(expired) = expired {
            eprintln!(
                "[{}] invocation {watched} timed out after {:?}",
                watchdog.logical_id, watchdog.timeout
            );
            let _ = expired.send(Err(InvokeError::TimedOut(watchdog.timeout)));
            watchdog.kill.notify_one();
        }
    });
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline_ms / 1000,
        &id[..24.min(id.len())],
        &id[..16.min(id.len())]
    );
    let mut response = Response::new(Full::new(Bytes::from(pending.payload)));
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json".to_owned());
    set("lambda-runtime-aws-request-id", id.clone());
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", shared.arn.clone());
    set("lambda-runtime-trace-id", trace);
    response
}
