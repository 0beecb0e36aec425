//! The campaign dispatcher: each message is one step through a campaign's audience. It reads one
//! page from the indexes, sends the members to the grant queue in batches and queues the next
//! step, so no invocation walks more than a page however large the audience.

use loyalty_core::campaigns::DispatchMessage;
use loyalty_core::ports::{MessageQueue, Store};
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::Value;

pub async fn handle<S: Store>(
    app: &App<S>,
    dispatch: &dyn MessageQueue,
    grants: &dyn MessageQueue,
    event: Value,
) -> Result<Value, String> {
    let Invocation::Sqs(event) = Invocation::parse(event)? else {
        return Err("the campaign dispatcher is queue-triggered only".to_owned());
    };
    let response = process_batch(event, |message| async move {
        let step: DispatchMessage = serde_json::from_str(message.body.as_deref().unwrap_or_default())
            .map_err(|e| format!("not a dispatch step: {e}"))?;
        let members = app.dispatch_campaign(&step, dispatch, grants).await.map_err(|e| e.to_string())?;
        tracing::info!(campaign = %step.campaign_id, page = step.page, members, "audience page dispatched");
        Ok(())
    })
    .await?;
    serde_json::to_value(response).map_err(|e| e.to_string())
}
