//! The referral worker: on the referral queue it decides each referral a message names
//! (reward both sides, or reject with a reason), reporting the messages it could not settle
//! yet — a referral not visible, a referee not yet qualified, a store error — for redelivery; on
//! its daily schedule it sweeps the referrals due and marks the still-pending ones `expired`.

use loyalty_core::ports::Store;
use loyalty_core::App;
use loyalty_worker::{process_batch, Invocation};
use serde_json::{json, Value};

pub async fn handle<S: Store>(app: &App<S>, event: Value) -> Result<Value, String> {
    match Invocation::parse(event)? {
        Invocation::Scheduled(_) => {
            let report = app.sweep_referrals().await.map_err(|e| e.to_string())?;
            tracing::info!(
                examined = report.examined,
                expired = report.expired,
                decided = report.decided,
                failed = report.failed,
                "referral sweep done"
            );
            if report.failed > 0 {
                // The next run (its catch-up days) retries them; fail this one so it is visible.
                return Err(format!("{} referrals could not be settled", report.failed));
            }
            Ok(json!(report))
        }
        Invocation::Sqs(event) => {
            let response = process_batch(event, |message| async move {
                let body = message.body.unwrap_or_default();
                let outcome = app.handle_referral_message(&body).await.map_err(|e| e.to_string())?;
                tracing::info!(referral_id = %outcome.referral_id, status = ?outcome.status, changed = outcome.changed, "referral message handled");
                Ok(())
            })
            .await?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
    }
}
