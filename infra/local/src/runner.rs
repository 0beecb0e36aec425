//! The whole template on one machine, with the real function binaries: every function runs as
//! a process against a local Lambda Runtime API ([`crate::runtime`]); the gateway's HTTP API
//! routes (through [`Processes`], its invoker), SQS and DynamoDB stream event source mappings
//! and schedules invoke
//! them the way AWS does.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::LocalError;
use crate::gateway::{gateway_error, json_response, Gateway, Invoker};
use crate::jwt::SigningKey;
use crate::runtime::{self, FunctionHandle, InvokeError, ProcessSpec};
use crate::schedule::Expression;
use crate::stream::TableStream;
use crate::stream_poller::{Mapping, QueueDestination, StreamPoller};
use crate::template::{HttpRoute, ScheduleEvent, StreamEvent, Template};
use crate::wiring::{Resolver, ACCOUNT_ID, REGION};

pub struct RunnerConfig {
    pub template: Template,
    /// The development issuer's key: the gateway's JWT authorizers trust it.
    pub signing_key: Arc<SigningKey>,
    pub dynamodb: String,
    /// The SQS endpoint; required when the template declares queues.
    pub sqs: Option<String>,
    /// binary name → executable
    pub binaries: HashMap<String, PathBuf>,
    /// Where binaries not in `binaries` are found (`target/debug`).
    pub bin_dir: PathBuf,
    /// Name of the table when the template has one (more are named `<table>-<LogicalId>`).
    pub table: String,
    /// Prefixed to queue names, so test runs sharing one SQS endpoint stay apart.
    pub queue_prefix: String,
    pub clock_offset: chrono::Duration,
    /// Run schedules on their expressions (firing on demand works either way).
    pub schedules: bool,
    pub rust_log: String,
}

pub struct Runner {
    gateway: Gateway<Processes>,
    tables: BTreeMap<String, String>,
    queues: BTreeMap<String, (String, String)>,
    clock_offset: chrono::Duration,
    shutdown: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

pub async fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "local",
        ))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

impl Runner {
    /// Creates the tables and queues, starts one process per function, the pollers and (when
    /// asked) the schedules.
    pub async fn start(config: RunnerConfig) -> Result<Runner, LocalError> {
        let stack = &config.template;
        let dynamodb = dynamodb_client(&config.dynamodb).await;
        let mut resolver = Resolver {
            parameters: stack.parameters.clone(),
            functions: stack
                .functions
                .iter()
                .map(|f| f.logical_id.clone())
                .collect(),
            ..Resolver::default()
        };
        for def in &stack.tables {
            let name = def.table_name.clone().unwrap_or_else(|| {
                if stack.tables.len() == 1 {
                    config.table.clone()
                } else {
                    format!("{}-{}", config.table, def.logical_id)
                }
            });
            crate::tables::create_table(&dynamodb, def, &name).await?;
            println!("[local] table {name} ({}) ready", def.logical_id);
            resolver.tables.insert(def.logical_id.clone(), name);
        }
        let sqs = match (&config.sqs, stack.queues.is_empty()) {
            (Some(endpoint), _) => Some(crate::sqs::client(endpoint).await),
            (None, true) => None,
            (None, false) => return Err(LocalError::Usage(
                "the template declares SQS queues: pass --sqs http://127.0.0.1:PORT (moto_server)"
                    .to_owned(),
            )),
        };
        if let Some(client) = &sqs {
            let created =
                crate::sqs::create_queues(client, &stack.queues, &config.queue_prefix).await?;
            for (logical_id, (name, url)) in created {
                println!("[local] queue {name} ({logical_id}) ready at {url}");
                resolver.queues.insert(logical_id, (name, url));
            }
        }

        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut functions = BTreeMap::new();
        for function in &stack.functions {
            let mut env: Vec<(String, String)> = Vec::new();
            for (key, value) in &function.environment {
                let value = resolver.resolve(value).map_err(|e| {
                    LocalError::Template(format!(
                        "{}: environment variable {key}: {e}",
                        function.logical_id
                    ))
                })?;
                env.push((key.clone(), value));
            }
            let executable = config
                .binaries
                .get(&function.binary)
                .cloned()
                .unwrap_or_else(|| config.bin_dir.join(&function.binary));
            if !executable.is_file() {
                return Err(LocalError::Usage(format!(
                    "{}: binary {} not found; build it with `cargo build --bins`",
                    function.logical_id,
                    executable.display()
                )));
            }
            let id = &function.logical_id;
            let mut lambda_env = vec![
                ("AWS_LAMBDA_FUNCTION_NAME", id.clone()),
                (
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                    function.memory_mb.to_string(),
                ),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
                ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{id}")),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_owned()),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
                ("AWS_EXECUTION_ENV", "AWS_Lambda_rust_local".to_owned()),
                ("_HANDLER", "bootstrap".to_owned()),
                ("TZ", ":UTC".to_owned()),
                ("AWS_REGION", REGION.to_owned()),
                ("AWS_DEFAULT_REGION", REGION.to_owned()),
                ("AWS_ACCESS_KEY_ID", "test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
                ("AWS_SESSION_TOKEN", "test".to_owned()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
                ("AWS_ENDPOINT_URL_DYNAMODB", config.dynamodb.clone()),
                // Webhooks may post to a receiver on this machine over plain http (on AWS they
                // must be https to a public address).
                (
                    loyalty_core::webhooks::address::ALLOW_LOOPBACK_ENV,
                    "true".to_owned(),
                ),
            ];
            if let Some(endpoint) = &config.sqs {
                lambda_env.push(("AWS_ENDPOINT_URL_SQS", endpoint.clone()));
            }
            if !config.clock_offset.is_zero() {
                lambda_env.push((
                    loyalty_core::clock::CLOCK_OFFSET_ENV,
                    config.clock_offset.num_seconds().to_string(),
                ));
            }
            // The template's RUST_LOG wins only if the runner was not told otherwise.
            if !config.rust_log.is_empty() {
                env.retain(|(k, _)| k != "RUST_LOG");
                env.push(("RUST_LOG".to_owned(), config.rust_log.clone()));
            }
            for (key, value) in lambda_env {
                env.retain(|(k, _)| k != key);
                env.push((key.to_owned(), value));
            }
            let spec = ProcessSpec {
                logical_id: id.clone(),
                executable,
                env,
                timeout: Duration::from_secs(function.timeout_seconds.max(1)),
                output: runtime::Output::Forward,
            };
            let (handle, task) = runtime::start(spec, watcher.clone());
            tasks.spawn(async move {
                let _ = task.await;
            });
            functions.insert(id.clone(), handle);
        }

        let mut schedules = Vec::new();
        for function in &stack.functions {
            let handle = &functions[&function.logical_id];
            for event in &function.sqs_events {
                if !event.enabled {
                    continue;
                }
                let (queue_name, queue_url) = resolver.queues[&event.queue].clone();
                println!(
                    "[local] {} <- sqs {queue_name} (batch {}, window {} s{})",
                    function.logical_id,
                    event.batch_size,
                    event.batching_window_seconds,
                    if event.report_batch_item_failures {
                        ", ReportBatchItemFailures"
                    } else {
                        ""
                    }
                );
                let poller = crate::sqs::Poller {
                    client: sqs.clone().expect("checked above"),
                    function: handle.clone(),
                    event: event.clone(),
                    queue_name,
                    queue_url,
                };
                tasks.spawn(poller.run(watcher.clone()));
            }
            for event in &function.stream_events {
                if !event.enabled {
                    continue;
                }
                let poller = stream_poller(
                    &dynamodb,
                    &config.dynamodb,
                    sqs.as_ref(),
                    &resolver,
                    handle,
                    event,
                )
                .await?;
                tasks.spawn(poller.run(watcher.clone()));
            }
            for event in &function.schedules {
                println!(
                    "[local] {} <- schedule {} {}{}",
                    function.logical_id,
                    event.name,
                    event.expression,
                    if event.enabled { "" } else { " (disabled)" }
                );
                schedules.push((function.logical_id.clone(), event.clone()));
                if config.schedules && event.enabled {
                    tasks.spawn(run_schedule(
                        handle.clone(),
                        event.clone(),
                        config.clock_offset,
                        watcher.clone(),
                    ));
                }
            }
        }
        let processes = Processes {
            functions,
            schedules,
            clock_offset: config.clock_offset,
        };
        Ok(Runner {
            gateway: Gateway::new(stack, Arc::clone(&config.signing_key), processes)?,
            tables: resolver.tables,
            queues: resolver.queues,
            clock_offset: config.clock_offset,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.gateway.routes()
    }

    pub fn schedules(&self) -> &[(String, ScheduleEvent)] {
        &self.gateway.invoker().schedules
    }

    pub fn table_name(&self, logical_id: &str) -> Option<&str> {
        self.tables.get(logical_id).map(String::as_str)
    }

    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.queues.get(logical_id).map(|(_, url)| url.as_str())
    }

    pub fn function(&self, logical_id: &str) -> Option<&FunctionHandle> {
        self.gateway.invoker().functions.get(logical_id)
    }

    /// The runner's clock: the system clock plus the offset it was started with.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    /// Runs a schedule once now. `name` is the event name or the function's logical id (when
    /// the function has one schedule).
    pub async fn fire_schedule(&self, name: &str) -> Result<Vec<u8>, FireError> {
        self.gateway.invoker().fire_schedule(name).await
    }

    /// Stops pollers, schedules and processes; returns when every process is gone.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }

    /// Serves the HTTP API, the development issuer and `POST /_local/schedules/{name}` until
    /// `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), LocalError> {
        self.gateway.clone().serve(listener, shutdown).await
    }

    /// One HTTP request, as the local API Gateway answers it.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        self.gateway
            .call(method, path_and_query, headers, body)
            .await
    }
}

/// A `DynamoDB` event source mapping of `handle` on the table's stream in DynamoDB Local.
async fn stream_poller(
    dynamodb: &aws_sdk_dynamodb::Client,
    endpoint: &str,
    sqs: Option<&aws_sdk_sqs::Client>,
    resolver: &Resolver,
    handle: &FunctionHandle,
    event: &StreamEvent,
) -> Result<StreamPoller<FunctionHandle, QueueDestination>, LocalError> {
    let id = handle.logical_id();
    let table = resolver.tables.get(&event.table).ok_or_else(|| {
        LocalError::Template(format!("{id}: stream of unknown table {}", event.table))
    })?;
    let mapping =
        Mapping::from_event(event).map_err(|e| LocalError::Template(format!("{id}: {e}")))?;
    let destination = match &event.on_failure {
        None => None,
        Some(queue) => {
            let (_, queue_url) = resolver.queues.get(queue).ok_or_else(|| {
                LocalError::Template(format!(
                    "{id}: on-failure queue {queue} is not in the template"
                ))
            })?;
            let client = sqs.ok_or_else(|| {
                LocalError::Usage(format!("{id}: the on-failure queue needs --sqs"))
            })?;
            Some(QueueDestination {
                client: client.clone(),
                queue_url: queue_url.clone(),
            })
        }
    };
    let stream =
        TableStream::open(dynamodb, crate::stream::client(endpoint, REGION), table).await?;
    println!(
        "[local] {id} <- stream of {table} (batch {}, window {} s, {} filters{}{})",
        event.batch_size,
        event.batching_window_seconds,
        mapping.filters.len(),
        if event.report_batch_item_failures {
            ", ReportBatchItemFailures"
        } else {
            ""
        },
        event
            .on_failure
            .as_deref()
            .map(|q| format!(", on failure {q}"))
            .unwrap_or_default()
    );
    Ok(StreamPoller {
        stream,
        target: handle.clone(),
        destination,
        mapping,
    })
}

/// The [`Invoker`] over the function processes; it also fires schedules on demand.
pub struct Processes {
    /// logical id → process
    functions: BTreeMap<String, FunctionHandle>,
    /// (function logical id, event)
    schedules: Vec<(String, ScheduleEvent)>,
    clock_offset: chrono::Duration,
}

impl Invoker for Processes {
    async fn invoke(&self, route: &HttpRoute, event: Value) -> Response<Vec<u8>> {
        let handle = &self.functions[&route.function];
        match handle.invoke(event.to_string().into_bytes()).await {
            Ok(payload) => http_response(&payload),
            Err(error) => {
                println!("[{}] invocation failed: {error}", route.function);
                match error {
                    InvokeError::Function { .. } => {
                        gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                    }
                    InvokeError::TimedOut(_) => {
                        gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
                    }
                    InvokeError::Crashed(_) | InvokeError::Stopped => {
                        gateway_error(StatusCode::BAD_GATEWAY, "Bad Gateway")
                    }
                }
            }
        }
    }

    async fn local(&self, method: &str, path: &str) -> Option<Response<Vec<u8>>> {
        let name = path.strip_prefix("/_local/schedules/")?;
        Some(self.fire_over_http(method, name).await)
    }
}

impl Processes {
    async fn fire_schedule(&self, name: &str) -> Result<Vec<u8>, FireError> {
        let matches: Vec<&(String, ScheduleEvent)> = self
            .schedules
            .iter()
            .filter(|(function, event)| event.name == name || function == name)
            .collect();
        let (function, event) = match matches.as_slice() {
            [one] => *one,
            [] => return Err(FireError::NotFound),
            _ => return Err(FireError::Ambiguous),
        };
        let handle = &self.functions[function];
        let time = Utc::now() + self.clock_offset;
        invoke_schedule(handle, event, time)
            .await
            .map_err(FireError::Invoke)
    }

    async fn fire_over_http(&self, method: &str, name: &str) -> Response<Vec<u8>> {
        if method != "POST" {
            return gateway_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST to fire a schedule",
            );
        }
        let name = crate::template::percent_decode(name);
        match self.fire_schedule(&name).await {
            Ok(payload) => {
                let body = if payload.is_empty() {
                    b"null".to_vec()
                } else {
                    payload
                };
                let mut response = Response::new(body);
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(FireError::NotFound) => {
                let known: Vec<&str> = self
                    .schedules
                    .iter()
                    .map(|(_, e)| e.name.as_str())
                    .collect();
                json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"message": format!("no schedule named {name}"), "schedules": known}),
                )
            }
            Err(FireError::Ambiguous) => json_response(
                StatusCode::CONFLICT,
                &json!({"message": format!("{name} has several schedules; use the event name")}),
            ),
            Err(FireError::Invoke(error)) => json_response(
                StatusCode::BAD_GATEWAY,
                &json!({"message": "the function failed", "error": error.to_string()}),
            ),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Processes are killed on drop too (kill_on_drop), this only tells tasks to end.
        let _ = self.shutdown.send(true);
    }
}

#[derive(Debug)]
pub enum FireError {
    NotFound,
    Ambiguous,
    Invoke(InvokeError),
}

/// The event EventBridge (or EventBridge Scheduler) delivers for a scheduled rule.
pub fn schedule_event(function: &str, event: &ScheduleEvent, time: DateTime<Utc>) -> Value {
    if let Some(input) = &event.input {
        return serde_json::from_str(input).unwrap_or_else(|_| json!(input));
    }
    let hex = format!("{:032x}", ulid::Ulid::new().0);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let resource = if event.v2 {
        format!(
            "arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{function}-{}",
            event.name
        )
    } else {
        format!(
            "arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/loyalty-local-{function}{}",
            event.name
        )
    };
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": if event.v2 { "aws.scheduler" } else { "aws.events" },
        "account": ACCOUNT_ID,
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": REGION,
        "resources": [resource],
        "detail": {},
    })
}

async fn invoke_schedule(
    handle: &FunctionHandle,
    event: &ScheduleEvent,
    time: DateTime<Utc>,
) -> Result<Vec<u8>, InvokeError> {
    let started = Instant::now();
    let payload = schedule_event(handle.logical_id(), event, time);
    let result = handle.invoke(payload.to_string().into_bytes()).await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(error) => format!("error: {error}"),
    };
    println!(
        "[{}] invoke schedule {} at {} -> {outcome} {} ms",
        handle.logical_id(),
        event.name,
        time.format("%Y-%m-%dT%H:%M:%SZ"),
        started.elapsed().as_millis()
    );
    result
}

async fn run_schedule(
    handle: FunctionHandle,
    event: ScheduleEvent,
    offset: chrono::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(expression) = Expression::parse(&event.expression) else {
        return;
    };
    let started = Utc::now() + offset;
    let mut after = started;
    while !*shutdown.borrow() {
        let Some(next) = expression.next_after(after, started) else {
            eprintln!(
                "[{}] schedule {} never fires again",
                handle.logical_id(),
                event.name
            );
            return;
        };
        let wait = (next - (Utc::now() + offset)).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let _ = invoke_schedule(&handle, &event, next).await;
        after = next;
    }
}

/// An `ApiGatewayV2httpResponse` payload as API Gateway turns it into an HTTP response. A
/// payload without `statusCode` is a 200 with the payload as its JSON body (format 2.0).
pub fn http_response(payload: &[u8]) -> Response<Vec<u8>> {
    let parsed: Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(_) => return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    };
    let Some(status) = parsed.get("statusCode").and_then(Value::as_u64) else {
        let mut response = Response::new(payload.to_vec());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    };
    let Ok(status) = StatusCode::from_u16(status as u16) else {
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = parsed
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = if parsed.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        use base64::Engine as _;
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(bytes) => bytes,
            Err(_) => {
                return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    };
    if let Some(multi) = parsed.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in multi {
            for value in values.as_array().into_iter().flatten() {
                add(name, value.as_str().unwrap_or_default());
            }
        }
    }
    if let Some(single) = parsed.get("headers").and_then(Value::as_object) {
        for (name, value) in single {
            let already = parsed
                .get("multiValueHeaders")
                .and_then(|m| m.get(name))
                .is_some();
            if !already {
                add(name, value.as_str().unwrap_or_default());
            }
        }
    }
    for cookie in parsed
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add("set-cookie", cookie.as_str().unwrap_or_default());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_v2_responses() {
        let r = http_response(
            br#"{"statusCode":201,"headers":{"content-type":"application/json","x-a":"1"},
                "multiValueHeaders":{"x-a":["1","2"]},"cookies":["a=b","c=d"],
                "body":"{\"ok\":true}","isBase64Encoded":false}"#,
        );
        assert_eq!(r.status(), 201);
        assert_eq!(r.body(), br#"{"ok":true}"#);
        assert_eq!(r.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        let b = http_response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#);
        assert_eq!(b.body(), b"hi");
        let bare = http_response(br#"{"hello":"world"}"#);
        assert_eq!(bare.status(), 200);
        assert_eq!(http_response(b"nope").status(), 500);
    }

    #[test]
    fn scheduled_event_shape() {
        let event = ScheduleEvent {
            name: "Nightly".into(),
            expression: "cron(0 2 * * ? *)".into(),
            input: None,
            enabled: true,
            v2: false,
        };
        let time = DateTime::parse_from_rfc3339("2030-01-15T02:00:00Z")
            .expect("time")
            .to_utc();
        let v = schedule_event("TierFunction", &event, time);
        assert_eq!(v["detail-type"], "Scheduled Event");
        assert_eq!(v["source"], "aws.events");
        assert_eq!(v["time"], "2030-01-15T02:00:00Z");
        assert_eq!(v["id"].as_str().map(str::len), Some(36));
        let with_input = ScheduleEvent {
            input: Some(r#"{"job":"x"}"#.into()),
            v2: true,
            ..event
        };
        assert_eq!(schedule_event("F", &with_input, time), json!({"job": "x"}));
    }
}
