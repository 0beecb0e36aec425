//! The parts of the SAM template the local runner needs: which binary serves which HTTP API
//! route, and how the DynamoDB table is keyed. Reading them from `infra/template.yaml` keeps the
//! local wiring from drifting away from what is deployed.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::error::LocalError;

const FUNCTION_TYPE: &str = "AWS::Serverless::Function";
const TABLE_TYPE: &str = "AWS::DynamoDB::Table";
/// The route key API Gateway gives the catch-all route SAM creates for an `HttpApi` event
/// without `Path` and `Method`.
const DEFAULT_ROUTE: &str = "$default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub functions: Vec<FunctionDef>,
    pub tables: Vec<TableDef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    pub logical_id: String,
    pub binary: String,
    pub http_routes: Vec<HttpRoute>,
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
        let mut functions = Vec::new();
        let mut tables = Vec::new();
        for (id, resource) in resources {
            let id = id
                .as_str()
                .ok_or_else(|| template_error("a resource's logical id is not a string"))?;
            match resource.get("Type").and_then(Value::as_str) {
                Some(FUNCTION_TYPE) => functions.push(parse_function(id, resource)?),
                Some(TABLE_TYPE) => tables.push(parse_table(id, resource)?),
                _ => {}
            }
        }
        Ok(Template { functions, tables })
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

fn parse_function(id: &str, resource: &Value) -> Result<FunctionDef, LocalError> {
    let binary = string(
        resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary")),
        &format!("{id}.Metadata.BuildProperties.Binary"),
    )?
    .to_owned();
    let properties = resource.get("Properties");
    let events = mapping(
        properties.and_then(|p| p.get("Events")),
        &format!("{id}.Properties.Events"),
    )?;
    let mut http_routes = Vec::new();
    for (name, event) in events.into_iter().flatten() {
        let name = name.as_str().unwrap_or("?");
        if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
            continue;
        }
        let what = format!("{id}.Events.{name}");
        let props = event.get("Properties");
        if let Some(version) =
            optional_string(props.and_then(|p| p.get("PayloadFormatVersion")), &what)?
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
        http_routes.push(HttpRoute {
            function: id.to_owned(),
            binary: binary.clone(),
            method,
            path,
        });
    }
    Ok(FunctionDef {
        logical_id: id.to_owned(),
        binary,
        http_routes,
    })
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_TEMPLATE: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));

    fn route(method: &str, path: &str) -> HttpRoute {
        HttpRoute {
            function: "F".to_owned(),
            binary: "members".to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
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
    fn percent_decoding_leaves_bad_escapes_alone() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
