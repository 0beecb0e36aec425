//! The one model of the SAM template the local runner works from: parameters, every function
//! (binary, memory, timeout, environment, HTTP API routes with their authorization, SQS events,
//! schedules), the `AWS::SQS::Queue` resources and the DynamoDB tables. Both invokers (handlers
//! in-process, real binaries) and the gateway read this, so the local wiring cannot drift from
//! what is deployed. Values written with intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`) are kept
//! as [`Intrinsic`] and resolved against the local resources by [`crate::wiring::Resolver`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::LocalError;

const FUNCTION_TYPE: &str = "AWS::Serverless::Function";
const TABLE_TYPE: &str = "AWS::DynamoDB::Table";
const QUEUE_TYPE: &str = "AWS::SQS::Queue";
const HTTP_API_TYPE: &str = "AWS::Serverless::HttpApi";
/// The API SAM creates for `HttpApi` events without an `ApiId` (configured by `Globals.HttpApi`).
const IMPLICIT_API: &str = "ServerlessHttpApi";
/// The route key API Gateway gives the catch-all route SAM creates for an `HttpApi` event
/// without `Path` and `Method`.
const DEFAULT_ROUTE: &str = "$default";

/// A parameter `Name` takes its value from `LOYALTY_PARAM_Name` when that is set, like
/// `sam deploy --parameter-overrides`.
pub const PARAMETER_OVERRIDE_PREFIX: &str = "LOYALTY_PARAM_";

/// What the runner's development issuer calls itself and the audience it mints for.
pub const LOCAL_ISSUER: &str = "loyalty-local";

/// Values for parameters that have no `Default` (they must be given on deploy) and were not
/// overridden: the JWT authorizer then trusts the runner's own development issuer.
const LOCAL_PARAMETER_VALUES: [(&str, &str); 2] =
    [("JwtIssuer", LOCAL_ISSUER), ("JwtAudience", LOCAL_ISSUER)];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Parameter values: `LOYALTY_PARAM_<Name>`, else `Default`, else a local value (see
    /// [`LOCAL_ISSUER`]). Parameters with none of these are absent, and a `!Ref` to them fails.
    pub parameters: BTreeMap<String, String>,
    pub functions: Vec<FunctionDef>,
    pub tables: Vec<TableDef>,
    pub queues: Vec<QueueSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    pub logical_id: String,
    pub binary: String,
    pub memory_mb: u32,
    pub timeout_seconds: u64,
    /// Globals first, then the function's own variables (which win).
    pub environment: Vec<(String, Intrinsic)>,
    pub http_routes: Vec<HttpRoute>,
    pub sqs_events: Vec<SqsEvent>,
    pub schedules: Vec<ScheduleEvent>,
    pub stream_events: Vec<StreamEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Logical id of the function the route invokes.
    pub function: String,
    pub binary: String,
    /// Upper-case HTTP method, or `ANY`.
    pub method: String,
    /// The route path as written in the template (`/v1/members/{member_id}`), or `$default`.
    pub path: String,
    /// Who may call the route.
    pub auth: RouteAuth,
}

/// How API Gateway authorizes a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No authorizer: `Authorizer: NONE`, or no authorizer on the route nor on its API.
    Open,
    /// `AWS_IAM` (SigV4). The runner cannot check signatures, so it refuses these requests.
    Iam,
    /// A JWT authorizer; a token needs one of `scopes` (none listed: any valid token).
    Jwt {
        authorizer: JwtAuthorizer,
        scopes: Vec<String>,
    },
}

impl RouteAuth {
    /// For the runner's route listing: who may call.
    pub fn describe(&self) -> String {
        match self {
            RouteAuth::Open => "public".to_owned(),
            RouteAuth::Iam => "AWS_IAM, refused locally".to_owned(),
            RouteAuth::Jwt { scopes, .. } if scopes.is_empty() => "any valid token".to_owned(),
            RouteAuth::Jwt { scopes, .. } => scopes.join(" | "),
        }
    }
}

/// An HTTP API JWT authorizer (`Auth.Authorizers.<Name>.JwtConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthorizer {
    pub name: String,
    /// The lower-case header named by `IdentitySource: $request.header.<Name>`.
    pub identity_header: String,
    pub issuer: Intrinsic,
    pub audience: Vec<Intrinsic>,
}

/// A template value that may need the local resources to be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intrinsic {
    Literal(String),
    Ref(String),
    GetAtt(String, String),
    Sub(String),
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

/// A `DynamoDB` event: the table's stream, read as Lambda's event source mapping reads it.
/// The model carries what the local poller needs to behave the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub name: String,
    /// Logical id of the table (from `!GetAtt X.StreamArn`).
    pub table: String,
    pub starting_position: String,
    pub batch_size: usize,
    pub batching_window_seconds: u64,
    pub bisect_on_error: bool,
    pub maximum_retry_attempts: Option<u64>,
    pub report_batch_item_failures: bool,
    /// `FilterCriteria.Filters[].Pattern`, as written.
    pub filter_patterns: Vec<String>,
    /// Logical id of the on-failure queue (from `!GetAtt X.Arn`).
    pub on_failure: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub logical_id: String,
    /// `Properties.TableName` when the template fixes one.
    pub table_name: Option<String>,
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyDef>,
    pub global_secondary_indexes: Vec<IndexDef>,
    pub local_secondary_indexes: Vec<IndexDef>,
    pub billing_mode: Option<String>,
    /// The TTL attribute, when `TimeToLiveSpecification` enables one.
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType` (`NEW_AND_OLD_IMAGES`), when the table has a stream.
    pub stream_view_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDef {
    pub name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub key_schema: Vec<KeyDef>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, LocalError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| LocalError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&yaml)
    }

    pub fn parse(yaml: &str) -> Result<Template, LocalError> {
        let root: Value = serde_yaml::from_str(yaml)?;
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| template_error("no Resources section"))?;
        let globals = root.get("Globals");
        let apis = parse_apis(resources, globals)?;
        let mut functions = Vec::new();
        let mut tables = Vec::new();
        let mut queues = Vec::new();
        for (id, resource) in resources {
            let id = id
                .as_str()
                .ok_or_else(|| template_error("a resource's logical id is not a string"))?;
            match resource.get("Type").and_then(Value::as_str) {
                Some(FUNCTION_TYPE) => functions.push(parse_function(
                    id,
                    resource,
                    globals.and_then(|g| g.get("Function")),
                    &apis,
                )?),
                Some(TABLE_TYPE) => tables.push(parse_table(id, resource)?),
                Some(QUEUE_TYPE) => queues.push(parse_queue(id, resource)?),
                _ => {}
            }
        }
        let template = Template {
            parameters: parameter_values(root.get("Parameters")),
            functions,
            tables,
            queues,
        };
        for function in &template.functions {
            for event in &function.sqs_events {
                if template.queue(&event.queue).is_none() {
                    return Err(template_error(format!(
                        "{}.Events.{}: queue {} is not an AWS::SQS::Queue in the template",
                        function.logical_id, event.name, event.queue
                    )));
                }
            }
        }
        Ok(template)
    }

    /// Every HTTP API route of every function, in template order.
    pub fn http_routes(&self) -> Vec<HttpRoute> {
        self.functions
            .iter()
            .flat_map(|f| f.http_routes.iter().cloned())
            .collect()
    }

    pub fn table(&self, logical_id: &str) -> Option<&TableDef> {
        self.tables.iter().find(|t| t.logical_id == logical_id)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }

    pub fn function(&self, logical_id: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.logical_id == logical_id)
    }

    /// Functions that nothing in the template invokes: no route, no queue, no schedule.
    pub fn unreachable_functions(&self) -> Vec<&str> {
        self.functions
            .iter()
            .filter(|f| {
                f.http_routes.is_empty()
                    && f.sqs_events.is_empty()
                    && f.schedules.is_empty()
                    && f.stream_events.is_empty()
            })
            .map(|f| f.logical_id.as_str())
            .collect()
    }

    /// The JWT authorizers the routes use, each once, in template order. (Two APIs may each
    /// have an authorizer of the same name; they are told apart by their whole configuration.)
    pub fn jwt_authorizers(&self) -> Vec<&JwtAuthorizer> {
        let mut found: Vec<&JwtAuthorizer> = Vec::new();
        for route in self.functions.iter().flat_map(|f| &f.http_routes) {
            if let RouteAuth::Jwt { authorizer, .. } = &route.auth {
                if !found.contains(&authorizer) {
                    found.push(authorizer);
                }
            }
        }
        found
    }
}

/// `LOYALTY_PARAM_<Name>`, else `Default`, else the local value for the authorizer parameters.
fn parameter_values(parameters: Option<&Value>) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (name, parameter) in parameters.and_then(Value::as_mapping).into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        let value = std::env::var(format!("{PARAMETER_OVERRIDE_PREFIX}{name}"))
            .ok()
            .or_else(|| parameter.get("Default").and_then(scalar))
            .or_else(|| {
                LOCAL_PARAMETER_VALUES
                    .iter()
                    .find(|(local, _)| *local == name)
                    .map(|(_, value)| (*value).to_owned())
            });
        if let Some(value) = value {
            values.insert(name.to_owned(), value);
        }
    }
    values
}

impl HttpRoute {
    /// The path parameters if `method` and `path` (no query string, still percent-encoded as
    /// sent) select this route. Parameter values are percent-decoded, as API Gateway passes them.
    pub fn matches(&self, method: &str, path: &str) -> Option<HashMap<String, String>> {
        if self.method != "ANY" && !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let mut params = HashMap::new();
        if self.is_default() {
            return Some(params);
        }
        let mut wanted = segments(&self.path);
        let mut actual = segments(path);
        loop {
            match (wanted.next(), actual.next()) {
                (None, None) => return Some(params),
                (Some(pattern), Some(segment)) => match parameter(pattern) {
                    Some((name, true)) => {
                        // A greedy parameter takes the rest of the path, slashes included.
                        let rest: Vec<&str> = std::iter::once(segment).chain(actual).collect();
                        let rest = rest.join("/");
                        if rest.is_empty() {
                            return None;
                        }
                        params.insert(name.to_owned(), percent_decode(&rest));
                        return Some(params);
                    }
                    Some((name, false)) if !segment.is_empty() => {
                        params.insert(name.to_owned(), percent_decode(segment));
                    }
                    Some(_) => return None,
                    None if pattern == segment => {}
                    None => return None,
                },
                _ => return None,
            }
        }
    }

    /// API Gateway's `routeKey`, e.g. `POST /v1/members`.
    pub fn route_key(&self) -> String {
        if self.is_default() {
            DEFAULT_ROUTE.to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }

    pub fn is_default(&self) -> bool {
        self.path == DEFAULT_ROUTE
    }

    /// Orders overlapping routes the way API Gateway picks among them: a full match beats a
    /// greedy one, which beats `$default`; more literal segments and an exact method win ties.
    pub(crate) fn specificity(&self) -> (u8, usize, bool) {
        let greedy = segments(&self.path).any(|s| parameter(s).is_some_and(|(_, greedy)| greedy));
        let rank = match (self.is_default(), greedy) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        };
        let literals = segments(&self.path)
            .filter(|s| parameter(s).is_none())
            .count();
        (rank, literals, self.method != "ANY")
    }
}

fn segments(path: &str) -> std::str::Split<'_, char> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// `{name}` → `(name, false)`, `{name+}` → `(name, true)`, a literal → `None`.
fn parameter(segment: &str) -> Option<(&str, bool)> {
    let inner = segment.strip_prefix('{')?.strip_suffix('}')?;
    Some(match inner.strip_suffix('+') {
        Some(name) => (name, true),
        None => (inner, false),
    })
}

/// Decodes `%XX` escapes only: in a path, `+` is a literal plus.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn template_error(message: impl Into<String>) -> LocalError {
    LocalError::Template(message.into())
}

/// A plain string property. Intrinsic functions (`!Ref`, `!Sub`) cannot be resolved locally,
/// so a tagged value where a literal is needed is an error rather than a silent guess.
fn string<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a str, LocalError> {
    match value {
        Some(Value::String(text)) => Ok(text),
        Some(Value::Tagged(tagged)) => Err(template_error(format!(
            "{what} uses {}, which the local runner cannot resolve",
            tagged.tag
        ))),
        Some(_) => Err(template_error(format!("{what} is not a string"))),
        None => Err(template_error(format!("{what} is missing"))),
    }
}

fn optional_string(value: Option<&Value>, what: &str) -> Result<Option<String>, LocalError> {
    value
        .map(|v| string(Some(v), what).map(str::to_owned))
        .transpose()
}

fn sequence<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a [Value], LocalError> {
    match value {
        Some(Value::Sequence(items)) => Ok(items),
        None => Ok(&[]),
        Some(_) => Err(template_error(format!("{what} is not a list"))),
    }
}

fn mapping<'a>(value: Option<&'a Value>, what: &str) -> Result<Option<&'a Mapping>, LocalError> {
    match value {
        Some(Value::Mapping(map)) => Ok(Some(map)),
        None => Ok(None),
        Some(_) => Err(template_error(format!("{what} is not a mapping"))),
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
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

fn err(message: impl Into<String>) -> LocalError {
    template_error(message)
}

/// How one HTTP API authorizes: its default authorizer and its JWT authorizers by name.
#[derive(Debug, Default)]
struct ApiAuth {
    /// `DefaultAuthorizer`: a JWT authorizer's name, or `AWS_IAM`.
    default: Option<String>,
    authorizers: BTreeMap<String, JwtAuthorizer>,
}

/// The `Auth` of every `AWS::Serverless::HttpApi`, and of the implicit API (`Globals.HttpApi`).
fn parse_apis(
    resources: &Mapping,
    globals: Option<&Value>,
) -> Result<BTreeMap<String, ApiAuth>, LocalError> {
    let mut apis = BTreeMap::new();
    let implicit = globals
        .and_then(|g| g.get("HttpApi"))
        .and_then(|a| a.get("Auth"));
    apis.insert(
        IMPLICIT_API.to_owned(),
        parse_api_auth(IMPLICIT_API, implicit)?,
    );
    for (id, resource) in resources {
        let Some(id) = id.as_str() else { continue };
        if resource.get("Type").and_then(Value::as_str) == Some(HTTP_API_TYPE) {
            let auth = resource.get("Properties").and_then(|p| p.get("Auth"));
            apis.insert(id.to_owned(), parse_api_auth(id, auth)?);
        }
    }
    Ok(apis)
}

fn parse_api_auth(api: &str, auth: Option<&Value>) -> Result<ApiAuth, LocalError> {
    let Some(auth) = auth else {
        return Ok(ApiAuth::default());
    };
    let what = format!("{api}.Auth");
    let mut out = ApiAuth {
        default: optional_string(
            auth.get("DefaultAuthorizer"),
            &format!("{what}.DefaultAuthorizer"),
        )?,
        authorizers: BTreeMap::new(),
    };
    for (name, authorizer) in mapping(auth.get("Authorizers"), &format!("{what}.Authorizers"))?
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap_or_default().to_owned();
        let what = format!("{what}.Authorizers.{name}");
        // Lambda authorizers have no JwtConfiguration; a route using one is refused below.
        let Some(jwt) = authorizer.get("JwtConfiguration") else {
            continue;
        };
        let source = string(
            authorizer.get("IdentitySource"),
            &format!("{what}.IdentitySource"),
        )?;
        let identity_header = source
            .strip_prefix("$request.header.")
            .filter(|header| !header.is_empty())
            .ok_or_else(|| {
                err(format!(
                    "{what}.IdentitySource '{source}': only $request.header.<Name> is supported locally"
                ))
            })?
            .to_ascii_lowercase();
        let issuer = intrinsic(
            jwt.get("issuer")
                .ok_or_else(|| err(format!("{what}.JwtConfiguration.issuer is missing")))?,
            &format!("{what}.JwtConfiguration.issuer"),
        )?;
        let audience = sequence(
            jwt.get("audience"),
            &format!("{what}.JwtConfiguration.audience"),
        )?
        .iter()
        .map(|a| intrinsic(a, &format!("{what}.JwtConfiguration.audience")))
        .collect::<Result<Vec<_>, _>>()?;
        if audience.is_empty() {
            return Err(err(format!("{what}.JwtConfiguration.audience is empty")));
        }
        out.authorizers.insert(
            name.clone(),
            JwtAuthorizer {
                name,
                identity_header,
                issuer,
                audience,
            },
        );
    }
    Ok(out)
}

/// A route's authorization: its own `Auth.Authorizer` (or its API's default) and its
/// `Auth.AuthorizationScopes`.
fn route_auth(api: &ApiAuth, auth: Option<&Value>, what: &str) -> Result<RouteAuth, LocalError> {
    let named = optional_string(
        auth.and_then(|a| a.get("Authorizer")),
        &format!("{what}.Auth.Authorizer"),
    )?;
    let scopes = sequence(
        auth.and_then(|a| a.get("AuthorizationScopes")),
        &format!("{what}.Auth.AuthorizationScopes"),
    )?
    .iter()
    .map(|s| string(Some(s), &format!("{what}.Auth.AuthorizationScopes")).map(str::to_owned))
    .collect::<Result<Vec<_>, _>>()?;
    let Some(name) = named.or_else(|| api.default.clone()) else {
        return Ok(RouteAuth::Open);
    };
    match name.as_str() {
        "NONE" => Ok(RouteAuth::Open),
        "AWS_IAM" => Ok(RouteAuth::Iam),
        _ => match api.authorizers.get(&name) {
            Some(authorizer) => Ok(RouteAuth::Jwt {
                authorizer: authorizer.clone(),
                scopes,
            }),
            None => Err(err(format!(
                "{what}: authorizer {name} is not a JWT authorizer of its API (the only kind run locally)"
            ))),
        },
    }
}

fn parse_http_route(
    id: &str,
    binary: &str,
    what: &str,
    props: Option<&Value>,
    apis: &BTreeMap<String, ApiAuth>,
) -> Result<HttpRoute, LocalError> {
    if let Some(version) = optional_string(props.and_then(|p| p.get("PayloadFormatVersion")), what)?
    {
        if version != "2.0" {
            return Err(template_error(format!(
                "{what}: payload format {version} is not supported locally (only 2.0)"
            )));
        }
    }
    let path = optional_string(props.and_then(|p| p.get("Path")), &format!("{what}.Path"))?;
    let method = optional_string(
        props.and_then(|p| p.get("Method")),
        &format!("{what}.Method"),
    )?;
    let (method, path) = match (method, path) {
        (None, None) => ("ANY".to_owned(), DEFAULT_ROUTE.to_owned()),
        (Some(method), Some(path)) => {
            if !path.starts_with('/') {
                return Err(template_error(format!(
                    "{what}.Path '{path}' does not start with '/'"
                )));
            }
            let method = method.to_ascii_uppercase();
            let method = if method == "*" {
                "ANY".to_owned()
            } else {
                method
            };
            (method, path)
        }
        _ => {
            return Err(template_error(format!(
                "{what} needs both Path and Method, or neither"
            )))
        }
    };
    let api_id = match props.and_then(|p| p.get("ApiId")) {
        None => IMPLICIT_API.to_owned(),
        Some(value) => match intrinsic(value, &format!("{what}.ApiId"))? {
            Intrinsic::Ref(api) => api,
            other => {
                return Err(err(format!(
                    "{what}.ApiId must be !Ref <HttpApi> locally, got {other:?}"
                )))
            }
        },
    };
    let api = apis.get(&api_id).ok_or_else(|| {
        err(format!(
            "{what}.ApiId: {api_id} is not an AWS::Serverless::HttpApi in the template"
        ))
    })?;
    Ok(HttpRoute {
        function: id.to_owned(),
        binary: binary.to_owned(),
        method,
        path,
        auth: route_auth(api, props.and_then(|p| p.get("Auth")), what)?,
    })
}

fn parse_function(
    id: &str,
    resource: &Value,
    globals: Option<&Value>,
    apis: &BTreeMap<String, ApiAuth>,
) -> Result<FunctionDef, LocalError> {
    let binary = string(
        resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary")),
        &format!("{id}.Metadata.BuildProperties.Binary"),
    )?
    .to_owned();
    let props = resource.get("Properties");
    let pick = |key: &str| {
        number(props.and_then(|p| p.get(key))).or_else(|| number(globals.and_then(|g| g.get(key))))
    };
    let mut environment = Vec::new();
    env_vars(globals, "Globals.Function", &mut environment)?;
    env_vars(props, id, &mut environment)?;
    let mut function = FunctionDef {
        logical_id: id.to_owned(),
        binary,
        memory_mb: pick("MemorySize").unwrap_or(128) as u32,
        timeout_seconds: pick("Timeout").unwrap_or(3),
        environment,
        http_routes: Vec::new(),
        sqs_events: Vec::new(),
        schedules: Vec::new(),
        stream_events: Vec::new(),
    };
    let events = mapping(
        props.and_then(|p| p.get("Events")),
        &format!("{id}.Properties.Events"),
    )?;
    for (name, event) in events.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?").to_owned();
        let what = format!("{id}.Events.{name}");
        let ev = event.get("Properties");
        match event.get("Type").and_then(Value::as_str) {
            Some("HttpApi") => {
                let route = parse_http_route(id, &function.binary, &what, ev, apis)?;
                function.http_routes.push(route);
            }
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
                function.sqs_events.push(SqsEvent {
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
            Some("DynamoDB") => {
                let table = match ev.and_then(|p| p.get("Stream")) {
                    Some(value) => match intrinsic(value, &format!("{what}.Stream"))? {
                        Intrinsic::GetAtt(table, attr) if attr == "StreamArn" => table,
                        other => {
                            return Err(err(format!(
                                "{what}.Stream must be !GetAtt <Table>.StreamArn locally, got {other:?}"
                            )))
                        }
                    },
                    None => return Err(err(format!("{what}.Stream is missing"))),
                };
                let flag = |key: &str| {
                    ev.and_then(|p| p.get(key))
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                };
                let on_failure = match ev
                    .and_then(|p| p.get("DestinationConfig"))
                    .and_then(|d| d.get("OnFailure"))
                    .and_then(|d| d.get("Destination"))
                {
                    Some(value) => match intrinsic(value, &format!("{what}.DestinationConfig"))? {
                        Intrinsic::GetAtt(queue, attr) if attr == "Arn" => Some(queue),
                        other => {
                            return Err(err(format!(
                                "{what}.DestinationConfig.OnFailure.Destination must be !GetAtt <Queue>.Arn locally, got {other:?}"
                            )))
                        }
                    },
                    None => None,
                };
                function.stream_events.push(StreamEvent {
                    name,
                    table,
                    starting_position: ev
                        .and_then(|p| p.get("StartingPosition"))
                        .and_then(Value::as_str)
                        .unwrap_or("LATEST")
                        .to_owned(),
                    batch_size: number(ev.and_then(|p| p.get("BatchSize"))).unwrap_or(100) as usize,
                    batching_window_seconds: number(
                        ev.and_then(|p| p.get("MaximumBatchingWindowInSeconds")),
                    )
                    .unwrap_or(0),
                    bisect_on_error: flag("BisectBatchOnFunctionError"),
                    maximum_retry_attempts: number(ev.and_then(|p| p.get("MaximumRetryAttempts"))),
                    report_batch_item_failures: ev
                        .and_then(|p| p.get("FunctionResponseTypes"))
                        .and_then(Value::as_sequence)
                        .is_some_and(|types| {
                            types
                                .iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                        }),
                    filter_patterns: ev
                        .and_then(|p| p.get("FilterCriteria"))
                        .and_then(|f| f.get("Filters"))
                        .and_then(Value::as_sequence)
                        .map(|filters| {
                            filters
                                .iter()
                                .filter_map(|f| f.get("Pattern").and_then(Value::as_str))
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    on_failure,
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
                function.schedules.push(ScheduleEvent {
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
    Ok(function)
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

fn parse_keys(value: Option<&Value>, what: &str) -> Result<Vec<KeyDef>, LocalError> {
    let keys = sequence(value, what)?
        .iter()
        .map(|key| {
            Ok(KeyDef {
                name: string(key.get("AttributeName"), &format!("{what}.AttributeName"))?
                    .to_owned(),
                key_type: string(key.get("KeyType"), &format!("{what}.KeyType"))?.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, LocalError>>()?;
    if keys.is_empty() {
        return Err(template_error(format!("{what} is empty")));
    }
    Ok(keys)
}

fn parse_indexes(value: Option<&Value>, what: &str) -> Result<Vec<IndexDef>, LocalError> {
    sequence(value, what)?
        .iter()
        .map(|index| {
            let name = string(index.get("IndexName"), &format!("{what}.IndexName"))?.to_owned();
            let what = format!("{what}.{name}");
            let projection = index.get("Projection");
            Ok(IndexDef {
                key_schema: parse_keys(index.get("KeySchema"), &format!("{what}.KeySchema"))?,
                projection_type: optional_string(
                    projection.and_then(|p| p.get("ProjectionType")),
                    &format!("{what}.Projection.ProjectionType"),
                )?
                // CloudFormation's default when ProjectionType is left out.
                .unwrap_or_else(|| "KEYS_ONLY".to_owned()),
                non_key_attributes: sequence(
                    projection.and_then(|p| p.get("NonKeyAttributes")),
                    &format!("{what}.Projection.NonKeyAttributes"),
                )?
                .iter()
                .map(|a| {
                    string(Some(a), &format!("{what}.Projection.NonKeyAttributes"))
                        .map(str::to_owned)
                })
                .collect::<Result<_, _>>()?,
                name,
            })
        })
        .collect()
}

fn parse_table(id: &str, resource: &Value) -> Result<TableDef, LocalError> {
    let props = resource
        .get("Properties")
        .ok_or_else(|| template_error(format!("{id} has no Properties")))?;
    let attribute_definitions = sequence(
        props.get("AttributeDefinitions"),
        &format!("{id}.AttributeDefinitions"),
    )?
    .iter()
    .map(|a| {
        Ok(AttributeDef {
            name: string(
                a.get("AttributeName"),
                &format!("{id}.AttributeDefinitions.AttributeName"),
            )?
            .to_owned(),
            attribute_type: string(
                a.get("AttributeType"),
                &format!("{id}.AttributeDefinitions.AttributeType"),
            )?
            .to_owned(),
        })
    })
    .collect::<Result<Vec<_>, LocalError>>()?;
    let ttl = props.get("TimeToLiveSpecification");
    let ttl_attribute = if truthy(ttl.and_then(|t| t.get("Enabled"))) {
        Some(
            string(
                ttl.and_then(|t| t.get("AttributeName")),
                &format!("{id}.TimeToLiveSpecification.AttributeName"),
            )?
            .to_owned(),
        )
    } else {
        None
    };
    let stream_view_type = optional_string(
        props
            .get("StreamSpecification")
            .and_then(|s| s.get("StreamViewType")),
        &format!("{id}.StreamSpecification.StreamViewType"),
    )?;
    Ok(TableDef {
        logical_id: id.to_owned(),
        table_name: optional_string(props.get("TableName"), &format!("{id}.TableName"))?,
        attribute_definitions,
        key_schema: parse_keys(props.get("KeySchema"), &format!("{id}.KeySchema"))?,
        global_secondary_indexes: parse_indexes(
            props.get("GlobalSecondaryIndexes"),
            &format!("{id}.GlobalSecondaryIndexes"),
        )?,
        local_secondary_indexes: parse_indexes(
            props.get("LocalSecondaryIndexes"),
            &format!("{id}.LocalSecondaryIndexes"),
        )?,
        billing_mode: optional_string(props.get("BillingMode"), &format!("{id}.BillingMode"))?,
        ttl_attribute,
        stream_view_type,
    })
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

    fn route(method: &str, path: &str) -> HttpRoute {
        HttpRoute {
            function: "F".to_owned(),
            binary: "members".to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            auth: RouteAuth::Open,
        }
    }

    #[test]
    fn real_template_has_four_functions_nine_routes_and_the_table() {
        let template = Template::parse(REAL_TEMPLATE).expect("template parses");
        let functions: Vec<(&str, &str)> = template
            .functions
            .iter()
            .map(|f| (f.logical_id.as_str(), f.binary.as_str()))
            .collect();
        // The foundation's four HTTP functions; later issues add more.
        for wanted in [
            ("MembersFunction", "members"),
            ("AccrueFunction", "accrue"),
            ("RedeemFunction", "redeem"),
            ("RewardsFunction", "rewards"),
        ] {
            assert!(functions.contains(&wanted), "{wanted:?} in {functions:?}");
        }
        let keys: Vec<String> = template
            .http_routes()
            .iter()
            .map(HttpRoute::route_key)
            .collect();
        for wanted in [
            "POST /v1/members",
            "GET /v1/members/{member_id}",
            "GET /v1/members/{member_id}/ledger",
            "POST /v1/members/{member_id}/accruals",
            "POST /v1/members/{member_id}/redemptions",
            "GET /v1/rewards",
            "POST /v1/admin/rewards",
            "GET /v1/program",
            "PUT /v1/admin/program",
        ] {
            assert!(keys.iter().any(|k| k == wanted), "{wanted} in {keys:?}");
        }

        let table = template.table("LoyaltyTable").expect("LoyaltyTable");
        assert_eq!(template.tables.len(), 1);
        assert_eq!(table.table_name, None);
        assert_eq!(table.billing_mode.as_deref(), Some("PAY_PER_REQUEST"));
        assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
        assert_eq!(
            table.stream_view_type.as_deref(),
            Some("NEW_AND_OLD_IMAGES"),
            "the outbox reads old and new images from the table's stream"
        );
        assert!(table.attribute_definitions.len() >= 4);
        let key = |name: &str, key_type: &str| KeyDef {
            name: name.to_owned(),
            key_type: key_type.to_owned(),
        };
        assert_eq!(table.key_schema, [key("pk", "HASH"), key("sk", "RANGE")]);
        assert!(table.global_secondary_indexes.contains(&IndexDef {
            name: "GSI1".to_owned(),
            key_schema: vec![key("gsi1pk", "HASH"), key("gsi1sk", "RANGE")],
            projection_type: "KEYS_ONLY".to_owned(),
            non_key_attributes: vec![],
        }));
        assert!(table.local_secondary_indexes.is_empty());
    }

    #[test]
    fn params_match_one_non_empty_segment() {
        let r = route("POST", "/v1/members/{member_id}/accruals");
        let params = r
            .matches("POST", "/v1/members/m1/accruals")
            .expect("matches");
        assert_eq!(
            params,
            HashMap::from([("member_id".to_owned(), "m1".to_owned())])
        );
        let decoded = r
            .matches("post", "/v1/members/a%20b%2Bc+d/accruals")
            .expect("matches");
        assert_eq!(decoded["member_id"], "a b+c+d");
        assert_eq!(r.matches("GET", "/v1/members/m1/accruals"), None);
        assert_eq!(r.matches("POST", "/v1/members//accruals"), None);
        assert_eq!(r.matches("POST", "/v1/members/a/b/accruals"), None);
        assert_eq!(r.matches("POST", "/v1/members/m1/accruals/"), None);
        assert_eq!(r.matches("POST", "/v1/members/m1"), None);
        assert_eq!(
            route("GET", "/v1/rewards").matches("GET", "/v1/Rewards"),
            None
        );
        assert_eq!(r.route_key(), "POST /v1/members/{member_id}/accruals");
    }

    #[test]
    fn greedy_proxy_and_any() {
        let r = route("ANY", "/files/{proxy+}");
        let params = r.matches("DELETE", "/files/a/b%2Fc/d").expect("matches");
        assert_eq!(params["proxy"], "a/b/c/d");
        assert_eq!(
            r.matches("GET", "/files/x").expect("one segment")["proxy"],
            "x"
        );
        assert_eq!(r.matches("GET", "/files"), None);
        assert_eq!(r.matches("GET", "/files/"), None);
        assert_eq!(r.matches("GET", "/other/x"), None);

        let root = route("GET", "/{proxy+}");
        assert_eq!(
            root.matches("GET", "/v1/x").expect("matches")["proxy"],
            "v1/x"
        );
        assert!(
            route("GET", "/v1/{proxy+}").specificity() < route("GET", "/v1/{id}").specificity()
        );
        assert!(route("ANY", "/v1/{id}").specificity() < route("GET", "/v1/{id}").specificity());
        assert!(route("GET", "/v1/{id}").specificity() < route("GET", "/v1/me").specificity());
    }

    #[test]
    fn http_api_event_without_path_is_the_default_route() {
        let yaml = r#"
Resources:
  Api: { Type: AWS::Serverless::HttpApi }
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: members } }
    Properties:
      Events:
        All: { Type: HttpApi }
        Rest: { Type: Api, Properties: { Path: /x, Method: get } }
        Some: { Type: HttpApi, Properties: { Path: /y, Method: any, ApiId: !Ref Api } }
"#;
        let template = Template::parse(yaml).expect("parses");
        let routes = template.http_routes();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].route_key(), "$default");
        assert!(routes[0].matches("PATCH", "/anything/at/all").is_some());
        assert_eq!(routes[1].route_key(), "ANY /y");
    }

    #[test]
    fn unresolvable_or_missing_values_are_errors() {
        let sub_path = r#"
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: members } }
    Properties:
      Events:
        E: { Type: HttpApi, Properties: { Path: !Sub "/${X}", Method: GET } }
"#;
        assert!(
            matches!(Template::parse(sub_path), Err(LocalError::Template(m)) if m.contains("!Sub"))
        );
        let no_binary = "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n";
        assert!(matches!(
            Template::parse(no_binary),
            Err(LocalError::Template(_))
        ));
        assert!(matches!(Template::parse("a: [b"), Err(LocalError::Yaml(_))));
    }

    #[test]
    fn the_outbox_reads_the_table_stream_with_the_mapping_lambda_uses() {
        let template = Template::parse(REAL_TEMPLATE).expect("parses");
        let outbox = template
            .functions
            .iter()
            .find(|f| f.logical_id == "OutboxFunction")
            .expect("the outbox function");
        let stream = outbox.stream_events.first().expect("a DynamoDB event");
        assert_eq!(stream.table, "LoyaltyTable");
        assert_eq!(stream.starting_position, "TRIM_HORIZON");
        assert!(stream.bisect_on_error && stream.report_batch_item_failures);
        assert!(stream.maximum_retry_attempts.is_some_and(|n| n > 0));
        assert_eq!(stream.on_failure.as_deref(), Some("OutboxDLQ"));
        assert_eq!(
            stream.filter_patterns,
            loyalty_dynamo::stream::FILTER_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            "the template's filters are the ones the adapter documents"
        );
    }

    #[test]
    fn real_template_functions_have_env_and_are_all_reachable() {
        let template = Template::parse(REAL_TEMPLATE).expect("parses");
        assert!(!template.functions.is_empty());
        assert_eq!(template.unreachable_functions(), Vec::<&str>::new());
        for f in &template.functions {
            assert!(f
                .environment
                .iter()
                .any(|(k, v)| k == "TABLE_NAME" && matches!(v, Intrinsic::Ref(_))));
        }
    }

    #[test]
    fn real_template_routes_all_have_an_authorizer_with_scopes_or_are_public_by_design() {
        let template = Template::parse(REAL_TEMPLATE).expect("parses");
        for route in template.http_routes() {
            match &route.auth {
                RouteAuth::Open => assert!(
                    matches!(
                        route.route_key().as_str(),
                        // Stripe's webhook proves itself by its signature instead of a token.
                        "GET /v1/program" | "GET /v1/rewards" | "POST /v1/webhooks/stripe"
                    ),
                    "{} is open",
                    route.route_key()
                ),
                RouteAuth::Iam => panic!("{} still uses AWS_IAM", route.route_key()),
                RouteAuth::Jwt { authorizer, scopes } => {
                    assert_eq!(authorizer.identity_header, "authorization");
                    assert!(!scopes.is_empty(), "{} has no scopes", route.route_key());
                }
            }
        }
        // With no Default and no override, the authorizer trusts the runner's issuer.
        if std::env::var_os("LOYALTY_PARAM_JwtIssuer").is_none() {
            assert_eq!(template.parameters["JwtIssuer"], LOCAL_ISSUER);
        }
        assert_eq!(template.jwt_authorizers().len(), 1);
    }

    #[test]
    fn route_auth_follows_the_api_default_the_route_override_and_none() {
        let yaml = r#"
Globals:
  HttpApi:
    Auth:
      DefaultAuthorizer: Implicit
      Authorizers:
        Implicit:
          IdentitySource: $request.header.X-Token
          JwtConfiguration: { issuer: https://implicit, audience: [a] }
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration: { issuer: !Ref Issuer, audience: [!Ref Audience, other] }
          Lambda:
            FunctionArn: arn:aws:lambda:us-east-1:123456789012:function:auth
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: members } }
    Properties:
      Events:
        Scoped: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /a, Method: GET, Auth: { AuthorizationScopes: [s/one, s/two] } } }
        Any: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /b, Method: GET } }
        Public: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /c, Method: GET, Auth: { Authorizer: NONE } } }
        Iam: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /d, Method: GET, Auth: { Authorizer: AWS_IAM } } }
        Implicit: { Type: HttpApi, Properties: { Path: /e, Method: GET } }
"#;
        let template = Template::parse(yaml).expect("parses");
        let routes = template.http_routes();
        let RouteAuth::Jwt { authorizer, scopes } = &routes[0].auth else {
            panic!("{:?}", routes[0].auth)
        };
        assert_eq!(scopes, &["s/one", "s/two"]);
        assert_eq!(authorizer.issuer, Intrinsic::Ref("Issuer".into()));
        assert_eq!(
            authorizer.audience,
            [
                Intrinsic::Ref("Audience".into()),
                Intrinsic::Literal("other".into())
            ]
        );
        assert!(matches!(&routes[1].auth, RouteAuth::Jwt { scopes, .. } if scopes.is_empty()));
        assert_eq!(routes[2].auth, RouteAuth::Open);
        assert_eq!(routes[3].auth, RouteAuth::Iam);
        assert!(matches!(&routes[4].auth, RouteAuth::Jwt { authorizer, .. }
            if authorizer.name == "Implicit" && authorizer.identity_header == "x-token"));

        let lambda = yaml.replace("Authorizer: NONE", "Authorizer: Lambda");
        assert!(
            matches!(Template::parse(&lambda), Err(LocalError::Template(m)) if m.contains("Lambda"))
        );
        let unknown_api = yaml.replace("ApiId: !Ref Api, Path: /b", "ApiId: !Ref Nope, Path: /b");
        assert!(
            matches!(Template::parse(&unknown_api), Err(LocalError::Template(m)) if m.contains("Nope"))
        );
    }

    #[test]
    fn fixture_queues_and_events() {
        let template = Template::parse(FIXTURE).expect("parses");
        let work = template.queue("WorkQueue").expect("WorkQueue");
        assert_eq!(work.redrive, Some(("WorkDlq".to_owned(), 2)));
        assert_eq!(work.visibility_timeout, Some(1));
        let probe = template.function("ProbeFunction").expect("probe");
        assert_eq!(probe.sqs_events.len(), 1);
        assert!(probe.sqs_events[0].report_batch_item_failures);
        assert_eq!(probe.schedules.len(), 2);
        assert_eq!(template.parameters["Region"], "us-east-1");
    }

    #[test]
    fn percent_decoding_leaves_bad_escapes_alone() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
