//! Every function in infra/template.yaml is reachable when the stack runs locally: it has an
//! HttpApi route, an SQS event on a queue the template declares, or a schedule the local runner
//! can evaluate; and its binary is a workspace binary.

use loyalty_local::template::Template;
use loyalty_tests::repo_root;

#[test]
fn every_template_function_is_wired_to_a_route_queue_or_schedule() {
    let stack = Template::load(&repo_root().join("infra/template.yaml")).expect("template parses");
    assert!(!stack.functions.is_empty());
    let unreachable = stack.unreachable_functions();
    assert!(
        unreachable.is_empty(),
        "functions with no HttpApi route, SQS event or schedule: {unreachable:?}"
    );
    for function in &stack.functions {
        for event in &function.sqs_events {
            assert!(
                stack.queue(&event.queue).is_some(),
                "{} reads an unknown queue",
                function.logical_id
            );
        }
        let wanted = format!("name = \"{}\"", function.binary);
        let found = std::fs::read_dir(repo_root().join("functions"))
            .expect("functions/")
            .filter_map(Result::ok)
            .any(|dir| {
                std::fs::read_to_string(dir.path().join("Cargo.toml"))
                    .is_ok_and(|manifest| manifest.contains(&wanted))
            });
        assert!(
            found,
            "{}: binary {} is not a crate under functions/",
            function.logical_id, function.binary
        );
    }
}
