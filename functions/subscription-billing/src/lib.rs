//! The subscription-billing function (monthly subscription billing): on its daily schedule it
//! finds the subscriptions whose billing or retry date has come and fans them out to its queue;
//! on that queue it bills them through the payment provider, reporting failed messages for
//! redelivery. Billing is at most one charge per period however often a message is delivered.

use loyalty_core::ports::{MessageQueue, Store};
use loyalty_core::App;
use loyalty_metrics::Metric;
use loyalty_worker::{process_batch, Invocation};
use serde_json::{json, Value};

pub async fn handle<S: Store>(
    app: &App<S>,
    billing: &dyn MessageQueue,
    event: Value,
) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let plan = app
                .plan_subscription_billing(billing)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                subscriptions = plan.subscriptions,
                messages = plan.messages,
                "subscription billing planned"
            );
            Ok(json!(plan))
        }
        Invocation::Sqs(event) => {
            let response = process_batch(event, |message| async move {
                let body = message.body.unwrap_or_default();
                let results = app
                    .bill_subscription_batch(&body)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(?results, "billing batch done");
                for result in &results {
                    if let Ok(Value::String(outcome)) = serde_json::to_value(result) {
                        loyalty_metrics::emit(Metric::BillingOutcome { outcome: &outcome }, 1);
                    }
                }
                Ok(())
            })
            .await?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
    }
}
