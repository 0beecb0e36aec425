//! The template and the handlers agree: every HttpApi route in infra/template.yaml reaches a
//! function that serves it, and every route a function serves is wired in the template.

use http::Method;
use loyalty_http::{Function, Route};
use loyalty_local::template::Template;
use loyalty_tests::repo_root;

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "m-1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_template_route_is_served_by_its_function_and_back() {
    let template =
        Template::load(&repo_root().join("infra/template.yaml")).expect("template parses");
    let routes = template.http_routes();
    assert!(!routes.is_empty());
    for route in &routes {
        let function = Function::from_binary(&route.binary)
            .unwrap_or_else(|| panic!("{} builds unknown binary {}", route.function, route.binary));
        let method = Method::from_bytes(route.method.as_bytes()).expect("method");
        let resolved =
            Route::resolve(&method, &concrete(&route.path)).expect("handlers know the route");
        assert!(
            function.serves(&resolved),
            "{} does not serve {}",
            route.function,
            route.route_key()
        );
    }
    for function in Function::ALL {
        let wired = routes
            .iter()
            .filter(|r| r.binary == function.binary())
            .count();
        assert!(wired > 0, "{function:?} has no route in the template");
    }
}
