//! Every route in infra/template.yaml has a caller: the HttpApi's JWT authorizer is the default,
//! each route lists the scopes that grant it, and those are exactly the scopes the functions
//! check (`Route::access`). Only the catalogue and the program are public, and say so.

use http::Method;
use loyalty_http::{Access, Route, Scope};
use loyalty_tests::repo_root;
use serde_yaml::Value;

/// Public by design: the catalogue and the program, and Stripe's webhook (whose signature is
/// its credential).
const PUBLIC_ROUTES: [&str; 3] = [
    "GET /v1/program",
    "GET /v1/rewards",
    "POST /v1/webhooks/stripe",
];
const AUTHORIZER: &str = "LoyaltyJwt";

fn template() -> Value {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml"))
        .expect("read infra/template.yaml");
    serde_yaml::from_str(&text).expect("infra/template.yaml is YAML")
}

/// `!Ref Name` as serde_yaml reads it.
fn ref_target(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str(),
        _ => None,
    }
}

struct HttpEvent {
    name: String,
    method: String,
    path: String,
    auth: Option<Value>,
}

impl HttpEvent {
    fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn route(&self) -> Route {
        let concrete: Vec<&str> = self
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { "id-1" } else { s })
            .collect();
        let method = Method::from_bytes(self.method.as_bytes()).expect("method");
        Route::resolve(&method, &concrete.join("/"))
            .unwrap_or_else(|e| panic!("{}: the handlers do not know it: {e}", self.name))
    }

    fn auth(&self, field: &str) -> Option<&Value> {
        self.auth.as_ref().and_then(|auth| auth.get(field))
    }

    fn scopes(&self) -> Vec<String> {
        self.auth("AuthorizationScopes")
            .and_then(Value::as_sequence)
            .map(|scopes| {
                scopes
                    .iter()
                    .map(|s| s.as_str().expect("scopes are strings").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn http_events(template: &Value) -> Vec<HttpEvent> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut events = Vec::new();
    for resource in resources.values() {
        let Some(declared) = resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for (name, event) in declared {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let properties = &event["Properties"];
            events.push(HttpEvent {
                name: name.as_str().unwrap_or_default().to_owned(),
                method: properties["Method"].as_str().expect("Method").to_owned(),
                path: properties["Path"].as_str().expect("Path").to_owned(),
                auth: properties.get("Auth").cloned(),
            });
        }
    }
    assert!(!events.is_empty(), "the template wires no HttpApi routes");
    events
}

#[test]
fn the_http_api_defaults_to_the_jwt_authorizer_from_the_template_parameters() {
    let template = template();
    let api = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::Serverless::HttpApi"))
        .expect("an HttpApi");
    let auth = &api["Properties"]["Auth"];
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some(AUTHORIZER));
    assert!(
        auth.get("EnableIamAuthorizer").is_none(),
        "admin routes use the JWT authorizer's scopes, not AWS_IAM"
    );
    let authorizer = &auth["Authorizers"][AUTHORIZER];
    assert_eq!(
        authorizer["IdentitySource"].as_str(),
        Some("$request.header.Authorization")
    );
    let jwt = &authorizer["JwtConfiguration"];
    assert_eq!(ref_target(&jwt["issuer"]), Some("JwtIssuer"));
    let audience = jwt["audience"].as_sequence().expect("audience list");
    assert_eq!(
        audience.iter().map(ref_target).collect::<Vec<_>>(),
        vec![Some("JwtAudience")]
    );

    let parameters = &template["Parameters"];
    for required in ["JwtIssuer", "JwtAudience"] {
        assert!(
            parameters[required].get("Default").is_none(),
            "{required} must be given at deploy time, never defaulted"
        );
    }
    assert_eq!(parameters["MemberIdClaim"]["Default"].as_str(), Some("sub"));
    let environment = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        ref_target(&environment[loyalty_http::MEMBER_ID_CLAIM_ENV]),
        Some("MemberIdClaim")
    );
}

#[test]
fn every_route_has_an_authorizer_and_scopes_unless_public_by_design() {
    for event in http_events(&template()) {
        let key = event.route_key();
        let authorizer = event.auth("Authorizer").and_then(Value::as_str);
        if PUBLIC_ROUTES.contains(&key.as_str()) {
            assert_eq!(authorizer, Some("NONE"), "{key} must say it is public");
            assert!(
                event.scopes().is_empty(),
                "{key} is public but lists scopes"
            );
            continue;
        }
        assert!(
            authorizer.is_none() || authorizer == Some(AUTHORIZER),
            "{key} uses authorizer {authorizer:?} instead of {AUTHORIZER}"
        );
        assert!(
            !event.scopes().is_empty(),
            "{key} lists no AuthorizationScopes"
        );
    }
}

/// Admin routes customer service may also call on a member's behalf: granting a tier and
/// adjusting points (both record the caller as actor).
const SUPPORT_ADMIN_PATHS: [&str; 2] = [
    "/v1/admin/members/{member_id}/tier",
    "/v1/admin/members/{member_id}/adjustments",
];

#[test]
fn admin_routes_grant_only_admin_scopes() {
    for event in http_events(&template()) {
        if !event.path.starts_with("/v1/admin/") {
            continue;
        }
        let key = event.route_key();
        let scopes = event.scopes();
        assert!(
            scopes.iter().any(|s| s == Scope::Admin.as_str()),
            "{key} does not grant loyalty/admin"
        );
        for scope in &scopes {
            let allowed = scope == Scope::Admin.as_str()
                || (scope == Scope::Reports.as_str() && event.method == "GET")
                || (scope == Scope::Support.as_str()
                    && SUPPORT_ADMIN_PATHS.contains(&event.path.as_str()));
            assert!(allowed, "{key} grants the non-admin scope {scope}");
        }
    }
}

#[test]
fn the_template_grants_each_route_exactly_the_scopes_the_function_checks() {
    for event in http_events(&template()) {
        let key = event.route_key();
        let mut wired = event.scopes();
        wired.sort();
        let mut checked: Vec<String> = match event.route().access() {
            Access::Public => Vec::new(),
            Access::Scoped(scopes) => scopes.names().into_iter().map(String::from).collect(),
        };
        checked.sort();
        assert_eq!(
            wired, checked,
            "{key}: the template and functions/http/src/routes.rs disagree"
        );
    }
}
