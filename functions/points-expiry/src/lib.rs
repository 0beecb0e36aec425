//! The points-expiry function: on its daily schedule it walks the members whose lots have
//! expiry work today (and the days a missed run left behind), expires each lot past its date
//! once and writes each warning once. Its events come from the items it writes, via the outbox.

use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_worker::Invocation;
use serde_json::{json, Value};

pub async fn handle<S: Store>(app: &App<S>, event: Value) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let run = app.run_expiry().await.map_err(|e| e.to_string())?;
            tracing::info!(
                members = run.members,
                expired_lots = run.expired_lots,
                expired_points = run.expired_points,
                warnings = run.warnings,
                "points expiry run"
            );
            Ok(json!(run))
        }
        Invocation::Sqs(_) => Err("points expiry is not queue-triggered".to_owned()),
    }
}
