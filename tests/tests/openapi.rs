//! docs/openapi.yaml describes the API that is deployed: every HttpApi route of
//! infra/template.yaml is an operation with the same method and path (and nothing else is), each
//! operation's security lists exactly the route's `AuthorizationScopes`, the route table of
//! `loyalty_http` serves each one, and every error code the document names is an `ErrorCode`
//! answered with the status the document gives it. The schemathesis run in infra/scripts/test.sh
//! checks the rest against the running stack.

use std::collections::{BTreeMap, BTreeSet};

use http::Method;
use loyalty_core::ErrorCode;
use loyalty_http::{Access, Route};
use loyalty_local::template::{RouteAuth, Template};
use loyalty_tests::repo_root;
use serde_yaml::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "options", "head", "trace",
];
/// The security scheme every protected operation names.
const SCHEME: &str = "jwt";

fn document() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/openapi.yaml"))
        .expect("read docs/openapi.yaml");
    serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML")
}

fn template() -> Template {
    Template::load(&repo_root().join("infra/template.yaml")).expect("infra/template.yaml parses")
}

/// `METHOD /path` → the operation, for every operation in the document.
fn operations(document: &Value) -> BTreeMap<String, Value> {
    let paths = document["paths"].as_mapping().expect("paths");
    let mut operations = BTreeMap::new();
    for (path, item) in paths {
        let path = path.as_str().expect("paths are strings");
        for (method, operation) in item.as_mapping().expect("a path item") {
            let method = method.as_str().expect("methods are strings");
            if METHODS.contains(&method) {
                operations.insert(
                    format!("{} {path}", method.to_uppercase()),
                    operation.clone(),
                );
            }
        }
    }
    operations
}

/// The operation's security: `None` for `security: []` (public), else the scopes of its one
/// requirement.
fn security(key: &str, operation: &Value) -> Option<BTreeSet<String>> {
    let requirements = operation["security"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{key} has no security list (public routes say `security: []`)"));
    match requirements.as_slice() {
        [] => None,
        [requirement] => {
            let scopes = requirement[SCHEME]
                .as_sequence()
                .unwrap_or_else(|| panic!("{key}: the requirement is not the '{SCHEME}' scheme"));
            Some(
                scopes
                    .iter()
                    .map(|s| s.as_str().expect("scopes are strings").to_owned())
                    .collect(),
            )
        }
        _ => panic!("{key} lists several requirements; a route has one authorizer"),
    }
}

/// `#/components/...` references resolved, once.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .trim_start_matches("#/")
            .split('/')
            .fold(document, |node, part| &node[part]),
        None => value,
    }
}

/// Every list of error codes under `value`: the `enum` of each `code` property.
fn named_codes(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                if key.as_str() == Some("code") {
                    if let Some(codes) = child.get("enum").and_then(Value::as_sequence) {
                        out.extend(codes.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                }
                named_codes(child, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| named_codes(item, out)),
        _ => {}
    }
}

/// The codes `ErrorCode::as_str` answers, read from its source: the match is exhaustive, so a
/// variant added later is here even if `ErrorCode::ALL` forgot it.
fn codes_in_source() -> BTreeSet<String> {
    let source = std::fs::read_to_string(repo_root().join("functions/core/src/error.rs"))
        .expect("read error.rs");
    let start = source.find("fn as_str").expect("ErrorCode::as_str");
    let end = start + source[start..].find("\n    }\n").expect("end of as_str");
    source[start..end]
        .lines()
        .filter_map(|line| line.split_once("=> \"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(code, _)| code.to_owned()))
        .collect()
}

fn all_codes() -> BTreeMap<&'static str, u16> {
    ErrorCode::ALL
        .iter()
        .map(|code| (code.as_str(), code.http_status()))
        .collect()
}

#[test]
fn every_template_route_is_documented_with_its_method_and_path_and_nothing_else_is() {
    let documented: BTreeSet<String> = operations(&document()).into_keys().collect();
    let deployed: BTreeSet<String> = template()
        .http_routes()
        .iter()
        .map(|route| route.route_key())
        .collect();
    assert_eq!(deployed.len(), 38, "the template's routes: {deployed:#?}");
    let undocumented: Vec<_> = deployed.difference(&documented).collect();
    let not_deployed: Vec<_> = documented.difference(&deployed).collect();
    assert!(
        undocumented.is_empty() && not_deployed.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}; operations the template does not deploy: {not_deployed:?}"
    );
}

#[test]
fn every_documented_operation_is_served_by_the_route_table_with_the_same_access() {
    for (key, operation) in operations(&document()) {
        let (method, path) = key.split_once(' ').expect("METHOD /path");
        let concrete: Vec<&str> = path
            .split('/')
            .map(|s| if s.starts_with('{') { "id-1" } else { s })
            .collect();
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let route = Route::resolve(&method, &concrete.join("/"))
            .unwrap_or_else(|e| panic!("{key}: the route table does not know it: {e}"));
        let checked: Option<BTreeSet<String>> = match route.access() {
            Access::Public => None,
            Access::Scoped(scopes) => Some(scopes.names().into_iter().map(String::from).collect()),
        };
        assert_eq!(security(&key, &operation), checked, "{key}");
    }
}

#[test]
fn each_operation_requires_exactly_the_scopes_of_its_template_route() {
    let operations = operations(&document());
    for route in template().http_routes() {
        let key = route.route_key();
        let operation = operations
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not documented"));
        let wired: Option<BTreeSet<String>> = match &route.auth {
            RouteAuth::Open => None,
            RouteAuth::Jwt { scopes, .. } => Some(scopes.iter().cloned().collect()),
            RouteAuth::Iam => panic!("{key} uses AWS_IAM, which the document does not describe"),
        };
        assert_eq!(security(&key, operation), wired, "{key}");
    }
    let schemes = &document()["components"]["securitySchemes"][SCHEME];
    for flow in ["clientCredentials", "authorizationCode"] {
        let declared: BTreeSet<&str> = schemes["flows"][flow]["scopes"]
            .as_mapping()
            .expect("scopes")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            declared,
            BTreeSet::from([
                "loyalty/member",
                "loyalty/pos",
                "loyalty/support",
                "loyalty/admin",
                "loyalty/reports"
            ]),
            "{flow}"
        );
    }
}

#[test]
fn every_error_code_the_document_names_exists_and_every_code_is_documented() {
    let document = document();
    let known = all_codes();
    assert_eq!(
        known.keys().map(|c| c.to_string()).collect::<BTreeSet<_>>(),
        codes_in_source(),
        "ErrorCode::ALL and ErrorCode::as_str disagree"
    );
    let mut named = Vec::new();
    named_codes(&document, &mut named);
    assert!(!named.is_empty(), "the document names no error codes");
    for code in &named {
        assert!(
            known.contains_key(code.as_str()),
            "docs/openapi.yaml names '{code}', which is not an ErrorCode"
        );
    }
    let listed: BTreeSet<&str> = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_sequence()
        .expect("the ErrorCode schema lists the codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        listed,
        known.keys().copied().collect(),
        "the ErrorCode schema lists exactly the codes"
    );
}

#[test]
fn each_operation_documents_its_codes_under_the_status_they_are_answered_with() {
    let document = document();
    let known = all_codes();
    let mut reachable = BTreeSet::new();
    for (key, operation) in operations(&document) {
        let responses = operation["responses"].as_mapping().expect("responses");
        for (status, response) in responses {
            let status: u16 = status
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{key}: status {status:?} is not a number"));
            let mut codes = Vec::new();
            named_codes(resolve(&document, response), &mut codes);
            for code in codes {
                assert_eq!(
                    known.get(code.as_str()),
                    Some(&status),
                    "{key}: '{code}' is documented under {status}"
                );
                reachable.insert(code);
            }
        }
        // The codes every route can answer with.
        let error_codes_of = |status: &str| {
            let mut codes = Vec::new();
            if let Some(response) = operation["responses"].get(status) {
                named_codes(resolve(&document, response), &mut codes);
            }
            codes
        };
        assert!(
            error_codes_of("400").contains(&"validation_error".to_owned()),
            "{key}: unknown query parameters are a validation_error"
        );
        assert!(
            error_codes_of("405").contains(&"method_not_allowed".to_owned()),
            "{key}"
        );
        if operation.get("requestBody").is_some() {
            for (status, code) in [
                ("400", "invalid_json"),
                ("413", "payload_too_large"),
                ("415", "unsupported_media_type"),
            ] {
                assert!(
                    error_codes_of(status).contains(&code.to_owned()),
                    "{key} takes a body: {code}"
                );
            }
        }
        if !operation["security"]
            .as_sequence()
            .is_some_and(Vec::is_empty)
        {
            assert!(
                error_codes_of("401").contains(&"unauthorized".to_owned()),
                "{key}"
            );
            assert!(
                error_codes_of("403").contains(&"forbidden".to_owned()),
                "{key}"
            );
        }
    }
    // Codes no route documents: the gateway answers for them (an unknown route, a program that
    // cannot load) or they are bugs (internal_error); the ErrorCode schema still lists them.
    let unrouted: BTreeSet<&str> = known
        .keys()
        .copied()
        .filter(|code| !reachable.contains(*code))
        .collect();
    assert_eq!(
        unrouted,
        BTreeSet::from([
            "internal_error",
            "program_not_configured",
            "route_not_found"
        ])
    );
}
