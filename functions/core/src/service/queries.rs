use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{member_not_found, App};
use crate::error::{ApiError, ErrorCode};
use crate::ids::MemberId;
use crate::ledger::LedgerPage;
use crate::ports::Store;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

/// Cursors are opaque to clients; inside they name the sequence number to continue below.
fn encode_cursor(before_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{before_seq}"))
}

fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidCursor,
            "cursor is not one this API issued",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let seq: u64 = text
        .strip_prefix("v1:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)?;
    if seq < 2 {
        return Err(bad());
    }
    Ok(seq)
}

impl<S: Store> App<S> {
    /// A page of the member's ledger, newest first. Ledger sequence numbers have no gaps, so a
    /// page that ends above entry 1 always has a next page.
    pub async fn ledger_page(
        &self,
        id: &MemberId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<LedgerPage, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1 to {MAX_PAGE}"),
            ));
        }
        let before = cursor.map(decode_cursor).transpose()?.unwrap_or(u64::MAX);
        let (member, entries) = tokio::join!(
            self.store().member(id),
            self.store().entries_before(id, before, limit)
        );
        member?.ok_or_else(|| member_not_found(id))?;
        let entries = entries?;
        let next_cursor = match entries.last() {
            Some(last) if entries.len() == limit as usize && last.seq > 1 => {
                Some(encode_cursor(last.seq))
            }
            _ => None,
        };
        Ok(LedgerPage {
            entries,
            next_cursor,
        })
    }
}

impl<S: Store> App<S> {
    /// The member's whole ledger, oldest first, checked as an audit would: sequence numbers run
    /// 1, 2, 3… without a gap and each entry's `balance_after` is the previous one plus its
    /// points. The error names the first entry that breaks the chain.
    pub async fn audited_ledger(
        &self,
        id: &MemberId,
    ) -> Result<Vec<crate::ledger::LedgerEntry>, String> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .ledger_page(id, Some(MAX_PAGE), cursor.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            entries.extend(page.entries);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        entries.reverse();
        let mut running = 0;
        for (i, entry) in entries.iter().enumerate() {
            if entry.seq != i as u64 + 1 {
                return Err(format!("ledger has a gap before {}", entry.entry_id));
            }
            running += entry.available_change();
            if entry.balance_after != running {
                return Err(format!(
                    "balance_after of {} breaks the chain",
                    entry.entry_id
                ));
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        assert_eq!(decode_cursor(&encode_cursor(42)).ok(), Some(42));
        for bad in [
            "",
            "!!!",
            "djE6",
            &URL_SAFE_NO_PAD.encode("v1:abc"),
            &URL_SAFE_NO_PAD.encode("v1:1"),
        ] {
            assert_eq!(
                decode_cursor(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidCursor),
                "{bad}"
            );
        }
    }
}
