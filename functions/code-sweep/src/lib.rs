//! The code-sweep function: on its schedule it finds the redemptions the due index lists for
//! today (holds waiting for the till, codes near their expiry) and fans them out to its queue;
//! on that queue it releases lapsed holds and settles expired codes, once each, reporting failed
//! messages for redelivery.

use loyalty_core::ports::{MessageQueue, Store};
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::{json, Value};

pub async fn handle<S: Store>(
    app: &App<S>,
    sweep: &dyn MessageQueue,
    event: Value,
) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let planned = app
                .plan_code_sweep(sweep)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                codes = planned.codes,
                messages = planned.messages,
                "code sweep planned"
            );
            Ok(json!(planned))
        }
        Invocation::Sqs(event) => {
            let response = process_batch(event, |message| async move {
                let body = message.body.unwrap_or_default();
                let report = app
                    .settle_code_batch(&body)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(
                    released = report.released,
                    expired = report.expired,
                    untouched = report.untouched,
                    "code batch settled"
                );
                Ok(())
            })
            .await?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
    }
}
