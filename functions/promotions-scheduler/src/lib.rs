//! The promotions scheduler: on its schedule it opens the promotions of seasons that have begun
//! and closes those that have ended, announcing each once on the events queue.

use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_worker::Invocation;
use serde_json::{json, Value};

pub async fn handle<S: Store>(app: &App<S>, event: Value) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let run = app.run_seasons().await.map_err(|e| e.to_string())?;
            tracing::info!(
                opened = run.opened,
                closed = run.closed,
                "season boundaries applied"
            );
            Ok(json!(run))
        }
        Invocation::Sqs(_) => Err("the promotions scheduler is not queue-triggered".to_owned()),
    }
}
