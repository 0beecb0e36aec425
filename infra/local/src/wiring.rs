//! Everything besides HTTP routes and tables that the process runner reads from the template:
//! parameters, `Globals.Function`, each function's memory, timeout, environment, `SQS` and
//! `Schedule`/`ScheduleV2` events, and the `AWS::SQS::Queue` resources. Values written with
//! intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`) are kept as [`Intrinsic`] and resolved against
//! the local resources by [`Resolver`].

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::error::LocalError;
use crate::template::Template;

pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";

const FUNCTION_TYPE: &str = "AWS::Serverless::Function";
const QUEUE_TYPE: &str = "AWS::SQS::Queue";

/// A template value that may need the local resources to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intrinsic {
    Literal(String),
    Ref(String),
    GetAtt(String, String),
    Sub(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Routes and tables, as the in-process server reads them.
    pub template: Template,
    pub parameters: BTreeMap<String, String>,
    pub functions: Vec<FunctionSpec>,
    pub queues: Vec<QueueSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    pub memory_mb: u32,
    pub timeout_seconds: u64,
    /// Globals first, then the function's own variables (which win).
    pub environment: Vec<(String, Intrinsic)>,
    pub http_events: usize,
    pub sqs_events: Vec<SqsEvent>,
    pub schedules: Vec<ScheduleEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsEvent {
    pub name: String,
    /// Logical id of the queue (from `!GetAtt X.Arn`).
    pub queue: String,
    pub batch_size: usize,
    pub batching_window_seconds: u64,
    pub report_batch_item_failures: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleEvent {
    pub name: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// `ScheduleV2` `Input`, passed instead of the EventBridge event when given.
    pub input: Option<String>,
    pub enabled: bool,
    pub v2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub queue_name: Option<String>,
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub visibility_timeout: Option<u64>,
    pub message_retention_period: Option<u64>,
    pub delay_seconds: Option<u64>,
    /// (logical id of the dead-letter queue, maxReceiveCount)
    pub redrive: Option<(String, u64)>,
}

fn err(message: impl Into<String>) -> LocalError {
    LocalError::Template(message.into())
}

impl Stack {
    pub fn load(path: &Path) -> Result<Stack, LocalError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| LocalError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&yaml)
    }

    /// Parses the template; a parameter `Name` takes its value from `LOYALTY_PARAM_Name` when
    /// that is set, else from its `Default`.
    pub fn parse(yaml: &str) -> Result<Stack, LocalError> {
        let template = Template::parse(yaml)?;
        let root: Value = serde_yaml::from_str(yaml)?;
        let mut parameters = BTreeMap::new();
        if let Some(params) = root.get("Parameters").and_then(Value::as_mapping) {
            for (name, param) in params {
                if let (Some(name), Some(default)) =
                    (name.as_str(), param.get("Default").and_then(scalar))
                {
                    parameters.insert(name.to_owned(), default);
                }
            }
        }
        // Like `sam deploy --parameter-overrides`: a local run can set any parameter, e.g. the
        // payment provider's address, through the environment.
        for (name, value) in parameters.iter_mut() {
            if let Ok(overridden) = std::env::var(format!("{PARAMETER_OVERRIDE_PREFIX}{name}")) {
                *value = overridden;
            }
        }
        let globals = root.get("Globals").and_then(|g| g.get("Function"));
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| err("no Resources section"))?;
        let mut functions = Vec::new();
        let mut queues = Vec::new();
        for (id, resource) in resources {
            let id = id.as_str().unwrap_or_default();
            match resource.get("Type").and_then(Value::as_str) {
                Some(FUNCTION_TYPE) => functions.push(parse_function(id, resource, globals)?),
                Some(QUEUE_TYPE) => queues.push(parse_queue(id, resource)?),
                _ => {}
            }
        }
        let stack = Stack {
            template,
            parameters,
            functions,
            queues,
        };
        for function in &stack.functions {
            for event in &function.sqs_events {
                if stack.queue(&event.queue).is_none() {
                    return Err(err(format!(
                        "{}.Events.{}: queue {} is not an AWS::SQS::Queue in the template",
                        function.logical_id, event.name, event.queue
                    )));
                }
            }
        }
        Ok(stack)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }

    pub fn function(&self, logical_id: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.logical_id == logical_id)
    }

    /// Functions that nothing in the template invokes: no route, no queue, no schedule.
    pub fn unreachable_functions(&self) -> Vec<&str> {
        self.functions
            .iter()
            .filter(|f| f.http_events == 0 && f.sqs_events.is_empty() && f.schedules.is_empty())
            .map(|f| f.logical_id.as_str())
            .collect()
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `!Ref X`, `!GetAtt X.Y`, `!GetAtt [X, Y]`, `!Sub "..."` and their long forms.
pub fn intrinsic(value: &Value, what: &str) -> Result<Intrinsic, LocalError> {
    let unsupported = || err(format!("{what}: unsupported value {value:?}"));
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            long_form(&format!("Fn::{tag}"), &tagged.value, what)
                .or_else(|_| long_form(tag, &tagged.value, what))
        }
        Value::Mapping(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next().ok_or_else(unsupported)?;
            long_form(key.as_str().ok_or_else(unsupported)?, inner, what)
        }
        other => scalar(other)
            .map(Intrinsic::Literal)
            .ok_or_else(unsupported),
    }
}

fn long_form(function: &str, inner: &Value, what: &str) -> Result<Intrinsic, LocalError> {
    let unsupported = || {
        err(format!(
            "{what}: cannot resolve {function} {inner:?} locally"
        ))
    };
    match function {
        "Ref" => inner
            .as_str()
            .map(|s| Intrinsic::Ref(s.to_owned()))
            .ok_or_else(unsupported),
        "Fn::GetAtt" => match inner {
            Value::String(s) => s
                .split_once('.')
                .map(|(a, b)| Intrinsic::GetAtt(a.to_owned(), b.to_owned()))
                .ok_or_else(unsupported),
            Value::Sequence(parts) => match parts.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(Intrinsic::GetAtt(a.clone(), b.clone())),
                _ => Err(unsupported()),
            },
            _ => Err(unsupported()),
        },
        "Fn::Sub" => inner
            .as_str()
            .map(|s| Intrinsic::Sub(s.to_owned()))
            .ok_or_else(unsupported),
        _ => Err(unsupported()),
    }
}

fn env_vars(
    holder: Option<&Value>,
    what: &str,
    into: &mut Vec<(String, Intrinsic)>,
) -> Result<(), LocalError> {
    let vars = holder
        .and_then(|h| h.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping);
    for (name, value) in vars.into_iter().flatten() {
        let name = name.as_str().unwrap_or_default().to_owned();
        let value = intrinsic(value, &format!("{what}.Environment.Variables.{name}"))?;
        into.retain(|(existing, _)| *existing != name);
        into.push((name, value));
    }
    Ok(())
}

fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn enabled(props: Option<&Value>) -> bool {
    let flag = props
        .and_then(|p| p.get("Enabled"))
        .or_else(|| props.and_then(|p| p.get("State")));
    match flag {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !(s.eq_ignore_ascii_case("false") || s == "DISABLED"),
        _ => true,
    }
}

fn parse_function(
    id: &str,
    resource: &Value,
    globals: Option<&Value>,
) -> Result<FunctionSpec, LocalError> {
    let props = resource.get("Properties");
    let binary = resource
        .get("Metadata")
        .and_then(|m| m.get("BuildProperties"))
        .and_then(|b| b.get("Binary"))
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{id}.Metadata.BuildProperties.Binary is missing")))?
        .to_owned();
    let pick = |key: &str| {
        number(props.and_then(|p| p.get(key))).or_else(|| number(globals.and_then(|g| g.get(key))))
    };
    let mut environment = Vec::new();
    env_vars(globals, "Globals.Function", &mut environment)?;
    env_vars(props, id, &mut environment)?;
    let mut spec = FunctionSpec {
        logical_id: id.to_owned(),
        binary,
        memory_mb: pick("MemorySize").unwrap_or(128) as u32,
        timeout_seconds: pick("Timeout").unwrap_or(3),
        environment,
        http_events: 0,
        sqs_events: Vec::new(),
        schedules: Vec::new(),
    };
    let events = props
        .and_then(|p| p.get("Events"))
        .and_then(Value::as_mapping);
    for (name, event) in events.into_iter().flatten() {
        let name = name.as_str().unwrap_or_default().to_owned();
        let what = format!("{id}.Events.{name}");
        let ev = event.get("Properties");
        match event.get("Type").and_then(Value::as_str) {
            Some("HttpApi") => spec.http_events += 1,
            Some("SQS") => {
                let queue = match ev.and_then(|p| p.get("Queue")) {
                    Some(value) => match intrinsic(value, &format!("{what}.Queue"))? {
                        Intrinsic::GetAtt(queue, attr) if attr == "Arn" => queue,
                        other => {
                            return Err(err(format!(
                                "{what}.Queue must be !GetAtt <Queue>.Arn locally, got {other:?}"
                            )))
                        }
                    },
                    None => return Err(err(format!("{what}.Queue is missing"))),
                };
                let report = ev
                    .and_then(|p| p.get("FunctionResponseTypes"))
                    .and_then(Value::as_sequence)
                    .is_some_and(|types| {
                        types
                            .iter()
                            .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                    });
                spec.sqs_events.push(SqsEvent {
                    name,
                    queue,
                    batch_size: number(ev.and_then(|p| p.get("BatchSize"))).unwrap_or(10) as usize,
                    batching_window_seconds: number(
                        ev.and_then(|p| p.get("MaximumBatchingWindowInSeconds")),
                    )
                    .unwrap_or(0),
                    report_batch_item_failures: report,
                    enabled: enabled(ev),
                });
            }
            Some(kind @ ("Schedule" | "ScheduleV2")) => {
                let v2 = kind == "ScheduleV2";
                let key = if v2 { "ScheduleExpression" } else { "Schedule" };
                let expression = ev
                    .and_then(|p| p.get(key))
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{what}.{key} must be a literal expression")))?
                    .to_owned();
                crate::schedule::Expression::parse(&expression)
                    .map_err(|e| err(format!("{what}.{key}: {e}")))?;
                let input = ev.and_then(|p| p.get("Input")).and_then(scalar);
                spec.schedules.push(ScheduleEvent {
                    name,
                    expression,
                    input,
                    enabled: enabled(ev),
                    v2,
                });
            }
            _ => {}
        }
    }
    Ok(spec)
}

fn parse_queue(id: &str, resource: &Value) -> Result<QueueSpec, LocalError> {
    let props = resource.get("Properties");
    let get = |key: &str| props.and_then(|p| p.get(key));
    let truthy = |key: &str| match get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let redrive = match get("RedrivePolicy") {
        None => None,
        Some(policy) => {
            let target = policy
                .get("deadLetterTargetArn")
                .ok_or_else(|| err(format!("{id}.RedrivePolicy.deadLetterTargetArn is missing")))?;
            let dlq = match intrinsic(target, &format!("{id}.RedrivePolicy"))? {
                Intrinsic::GetAtt(queue, attr) if attr == "Arn" => queue,
                other => {
                    return Err(err(format!(
                        "{id}.RedrivePolicy.deadLetterTargetArn must be !GetAtt <Queue>.Arn, got {other:?}"
                    )))
                }
            };
            let max = number(policy.get("maxReceiveCount"))
                .ok_or_else(|| err(format!("{id}.RedrivePolicy.maxReceiveCount is missing")))?;
            Some((dlq, max))
        }
    };
    let queue_name = match get("QueueName") {
        None => None,
        Some(value) => match intrinsic(value, &format!("{id}.QueueName"))? {
            Intrinsic::Literal(name) => Some(name),
            Intrinsic::Sub(text) if !text.contains("${") => Some(text),
            _ => None,
        },
    };
    Ok(QueueSpec {
        logical_id: id.to_owned(),
        queue_name,
        fifo: truthy("FifoQueue"),
        content_based_deduplication: truthy("ContentBasedDeduplication"),
        visibility_timeout: number(get("VisibilityTimeout")),
        message_retention_period: number(get("MessageRetentionPeriod")),
        delay_seconds: number(get("DelaySeconds")),
        redrive,
    })
}

impl QueueSpec {
    /// The name the queue gets locally: `QueueName`, or the logical id (`.fifo` added for FIFO
    /// queues, as CloudFormation does), with an optional prefix that keeps test runs apart.
    pub fn local_name(&self, prefix: &str) -> String {
        let base = self
            .queue_name
            .clone()
            .unwrap_or_else(|| self.logical_id.clone());
        let base = base.trim_end_matches(".fifo");
        if self.fifo {
            format!("{prefix}{base}.fifo")
        } else {
            format!("{prefix}{base}")
        }
    }
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// Local names of the template's resources, for resolving intrinsic functions.
pub const PARAMETER_OVERRIDE_PREFIX: &str = "LOYALTY_PARAM_";

#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub parameters: BTreeMap<String, String>,
    /// logical id → local table name
    pub tables: BTreeMap<String, String>,
    /// logical id → (queue name, queue URL)
    pub queues: BTreeMap<String, (String, String)>,
    /// logical ids of functions (a `!Ref` gives the function name)
    pub functions: Vec<String>,
}

impl Resolver {
    pub fn resolve(&self, value: &Intrinsic) -> Result<String, String> {
        match value {
            Intrinsic::Literal(text) => Ok(text.clone()),
            Intrinsic::Ref(name) => self.reference(name),
            Intrinsic::GetAtt(resource, attribute) => self.attribute(resource, attribute),
            Intrinsic::Sub(text) => {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..]
                        .find('}')
                        .ok_or_else(|| format!("unterminated ${{ in !Sub {text}"))?;
                    let name = &rest[start + 2..start + end];
                    out.push_str(&match name.split_once('.') {
                        Some((resource, attribute)) if !name.starts_with("AWS::") => {
                            self.attribute(resource, attribute)?
                        }
                        _ => self.reference(name)?,
                    });
                    rest = &rest[start + end + 1..];
                }
                out.push_str(rest);
                Ok(out)
            }
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => return Ok("loyalty-local".to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        if let Some(table) = self.tables.get(name) {
            return Ok(table.clone());
        }
        if let Some((_, url)) = self.queues.get(name) {
            return Ok(url.clone());
        }
        if self.functions.iter().any(|f| f == name) {
            return Ok(name.to_owned());
        }
        Err(format!(
            "!Ref {name}: no such parameter, table, queue or function"
        ))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, String> {
        if let Some((name, url)) = self.queues.get(resource) {
            return match attribute {
                "Arn" => Ok(queue_arn(name)),
                "QueueName" => Ok(name.clone()),
                "QueueUrl" => Ok(url.clone()),
                _ => Err(format!("!GetAtt {resource}.{attribute} is not supported")),
            };
        }
        if let Some(table) = self.tables.get(resource) {
            return match attribute {
                "Arn" => Ok(format!(
                    "arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table}"
                )),
                _ => Err(format!("!GetAtt {resource}.{attribute} is not supported")),
            };
        }
        if self.functions.iter().any(|f| f == resource) && attribute == "Arn" {
            return Ok(function_arn(resource));
        }
        Err(format!("!GetAtt {resource}.{attribute}: unknown resource"))
    }
}

pub fn function_arn(logical_id: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_TEMPLATE: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));
    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/probe-template.yaml"
    ));

    #[test]
    fn real_template_functions_have_env_and_are_all_reachable() {
        let stack = Stack::parse(REAL_TEMPLATE).expect("parses");
        assert!(!stack.functions.is_empty());
        assert_eq!(stack.unreachable_functions(), Vec::<&str>::new());
        for f in &stack.functions {
            assert!(f
                .environment
                .iter()
                .any(|(k, v)| k == "TABLE_NAME" && matches!(v, Intrinsic::Ref(_))));
        }
    }

    #[test]
    fn fixture_queues_events_and_resolution() {
        let stack = Stack::parse(FIXTURE).expect("parses");
        let work = stack.queue("WorkQueue").expect("WorkQueue");
        assert_eq!(work.redrive, Some(("WorkDlq".to_owned(), 2)));
        assert_eq!(work.visibility_timeout, Some(1));
        let probe = stack.function("ProbeFunction").expect("probe");
        assert_eq!(probe.sqs_events.len(), 1);
        assert!(probe.sqs_events[0].report_batch_item_failures);
        assert_eq!(probe.schedules.len(), 2);
        let mut resolver = Resolver {
            parameters: stack.parameters.clone(),
            ..Resolver::default()
        };
        resolver.tables.insert("ProbeTable".into(), "t1".into());
        resolver.queues.insert(
            "WorkQueue".into(),
            ("p-work".into(), "http://q/p-work".into()),
        );
        let env: BTreeMap<String, String> = probe
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), resolver.resolve(v).expect(k)))
            .collect();
        assert_eq!(env["TABLE_NAME"], "t1");
        assert_eq!(env["WORK_QUEUE_URL"], "http://q/p-work");
        assert_eq!(env["WORK_QUEUE_ARN"], queue_arn("p-work"));
        assert_eq!(env["GREETING"], "hello-us-east-1");
    }
}
