//! The campaign worker: grants each member of a grant message, once per campaign, within the
//! budget. A failing message is reported for redelivery; on its last delivery (the queue's
//! `maxReceiveCount`) the members still failing are counted as `failed` before it goes to the
//! dead-letter queue.

use loyalty_core::campaigns::GrantMessage;
use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::Value;

pub async fn handle<S: Store>(
    app: &App<S>,
    max_receives: u32,
    event: Value,
) -> Result<Value, String> {
    let Invocation::Sqs(event) = Invocation::parse(event)? else {
        return Err("the campaign worker is queue-triggered only".to_owned());
    };
    let response = process_batch(event, |message| async move {
        let received: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let grant: GrantMessage = serde_json::from_str(message.body.as_deref().unwrap_or_default())
            .map_err(|e| format!("not a grant message: {e}"))?;
        app.grant_campaign(&grant, received >= max_receives)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    serde_json::to_value(response).map_err(|e| e.to_string())
}
