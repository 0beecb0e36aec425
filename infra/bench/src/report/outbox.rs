//! Events per second through the outbox (the table's stream relayed by the outbox function).

use std::fmt::Write as _;

use super::Report;

impl Report {
    pub(super) fn outbox_section(&self, w: &mut String) {
        let _ = writeln!(w, "## Events through the outbox\n");
        let run = match &self.outbox {
            None => {
                let _ = writeln!(w, "Not measured in this run.\n");
                return;
            }
            Some(Err(error)) => {
                let _ = writeln!(w, "The measurement failed: {error}\n");
                return;
            }
            Some(Ok(run)) => run,
        };
        let _ = writeln!(
            w,
            "{} members enrolled and funded (one accrual each) on a table of their own; its whole stream is read \
             from `TRIM_HORIZON` through DynamoDB Local's streams API, then relayed by the outbox function's own \
             `relay_batch` in batches of 100 records (the template's `BatchSize`), one after the other, in the bench \
             process, with an in-memory events queue. The relay includes parsing the stream images, deriving the \
             events from the catalog, serialising them and the webhook look-up (cached); it excludes the SQS send. \
             The request path is unchanged by the outbox: nothing is sent after a commit, so accrue and redeem keep \
             the round trips and units shown above.\n",
            run.members
        );
        let _ = writeln!(
            w,
            "| stream records | batches | events | stream read s | relay s | records/s relayed | events/s relayed |"
        );
        let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.2} | {:.3} | {:.0} | {:.0} |\n",
            run.records,
            run.batches,
            run.events,
            run.read.as_secs_f64(),
            run.relay.as_secs_f64(),
            run.records_per_sec(),
            run.events_per_sec()
        );
    }
}
