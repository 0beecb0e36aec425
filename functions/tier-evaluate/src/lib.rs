//! The tier-evaluate function: on its nightly schedule it finds the members whose review day
//! has come and fans them out to its queue; on that queue it evaluates them, reporting failed
//! messages for redelivery.

use loyalty_core::ports::{MessageQueue, Store};
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::{json, Value};

pub async fn handle<S: Store>(
    app: &App<S>,
    reviews: &dyn MessageQueue,
    event: Value,
) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let plan = app
                .plan_tier_reviews(reviews)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                members = plan.members,
                messages = plan.messages,
                "tier reviews planned"
            );
            Ok(json!(plan))
        }
        Invocation::Sqs(event) => {
            let response = process_batch(event, |message| async move {
                let body = message.body.unwrap_or_default();
                let evaluated = app
                    .evaluate_review_batch(&body)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(evaluated, "review batch evaluated");
                Ok(())
            })
            .await?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
    }
}
