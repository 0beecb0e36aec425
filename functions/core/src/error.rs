//! Errors a caller can see. Each has a stable `code` that clients branch on; the HTTP status is
//! derived from the code so that the two can never disagree.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationError,
    InvalidJson,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidCursor,
    MissingIdempotencyKey,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    MemberNotFound,
    MemberExists,
    ReferralCodeNotFound,
    RewardNotFound,
    PromotionNotFound,
    CampaignNotFound,
    WebhookNotFound,
    WebhookDeliveryNotFound,
    RewardExists,
    RewardUnavailable,
    InsufficientPoints,
    DuplicateOrder,
    OrderNotFound,
    ReturnExceedsOrder,
    DuplicateReturn,
    DuplicateAction,
    UnknownAction,
    ActionLimitReached,
    /// `occurred_at` is older than the program's lateness window, or before the member enrolled.
    OccurredAtOutOfRange,
    /// A promotion whose window is already over cannot be created.
    PromotionAlreadyEnded,
    /// A counter (stock, uses, campaign totals, qualifying days) would pass its largest value.
    CounterOverflow,
    /// Transfers: the program has them off, or one of its limits refuses this one.
    TransfersDisabled,
    TransferToSelf,
    ReceiverNotFound,
    ReceiverInactive,
    TransferBelowMinimum,
    TransferAboveMaximum,
    TransferDailyCountExceeded,
    TransferDailyPointsExceeded,
    TransferTierNotAllowed,
    CurrencyMismatch,
    InvalidProgram,
    ProgramNotConfigured,
    SubscriptionNotFound,
    SubscriptionConflict,
    /// No redemption has this code (or it is another member's).
    RedemptionNotFound,
    /// The code was already used at the till.
    CodeAlreadyUsed,
    /// The code was canceled, or expired (a lapsed hold included).
    CodeNotUsable,
    PaymentDeclined,
    PaymentProviderUnavailable,
    ConcurrentModification,
    RouteNotFound,
    MethodNotAllowed,
    Unauthorized,
    Forbidden,
    Internal,
}

impl ErrorCode {
    /// Every code, for what documents them (docs/openapi.yaml is checked against this list).
    pub const ALL: [ErrorCode; 54] = [
        Self::ValidationError,
        Self::InvalidJson,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::InvalidCursor,
        Self::MissingIdempotencyKey,
        Self::InvalidIdempotencyKey,
        Self::IdempotencyKeyReused,
        Self::MemberNotFound,
        Self::MemberExists,
        Self::ReferralCodeNotFound,
        Self::RewardNotFound,
        Self::PromotionNotFound,
        Self::CampaignNotFound,
        Self::WebhookNotFound,
        Self::WebhookDeliveryNotFound,
        Self::RewardExists,
        Self::RewardUnavailable,
        Self::InsufficientPoints,
        Self::DuplicateOrder,
        Self::OrderNotFound,
        Self::ReturnExceedsOrder,
        Self::DuplicateReturn,
        Self::DuplicateAction,
        Self::UnknownAction,
        Self::ActionLimitReached,
        Self::OccurredAtOutOfRange,
        Self::PromotionAlreadyEnded,
        Self::CounterOverflow,
        Self::TransfersDisabled,
        Self::TransferToSelf,
        Self::ReceiverNotFound,
        Self::ReceiverInactive,
        Self::TransferBelowMinimum,
        Self::TransferAboveMaximum,
        Self::TransferDailyCountExceeded,
        Self::TransferDailyPointsExceeded,
        Self::TransferTierNotAllowed,
        Self::CurrencyMismatch,
        Self::InvalidProgram,
        Self::ProgramNotConfigured,
        Self::SubscriptionNotFound,
        Self::SubscriptionConflict,
        Self::RedemptionNotFound,
        Self::CodeAlreadyUsed,
        Self::CodeNotUsable,
        Self::PaymentDeclined,
        Self::PaymentProviderUnavailable,
        Self::ConcurrentModification,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationError => "validation_error",
            Self::InvalidJson => "invalid_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidCursor => "invalid_cursor",
            Self::MissingIdempotencyKey => "missing_idempotency_key",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::MemberNotFound => "member_not_found",
            Self::MemberExists => "member_exists",
            Self::ReferralCodeNotFound => "referral_code_not_found",
            Self::RewardNotFound => "reward_not_found",
            Self::PromotionNotFound => "promotion_not_found",
            Self::CampaignNotFound => "campaign_not_found",
            Self::WebhookNotFound => "webhook_not_found",
            Self::WebhookDeliveryNotFound => "webhook_delivery_not_found",
            Self::RewardExists => "reward_exists",
            Self::RewardUnavailable => "reward_unavailable",
            Self::InsufficientPoints => "insufficient_points",
            Self::DuplicateOrder => "duplicate_order",
            Self::OrderNotFound => "order_not_found",
            Self::ReturnExceedsOrder => "return_exceeds_order",
            Self::DuplicateReturn => "duplicate_return",
            Self::DuplicateAction => "duplicate_action",
            Self::UnknownAction => "unknown_action",
            Self::ActionLimitReached => "action_limit_reached",
            Self::OccurredAtOutOfRange => "occurred_at_out_of_range",
            Self::PromotionAlreadyEnded => "promotion_already_ended",
            Self::CounterOverflow => "counter_overflow",
            Self::TransfersDisabled => "transfers_disabled",
            Self::TransferToSelf => "transfer_to_self",
            Self::ReceiverNotFound => "receiver_not_found",
            Self::ReceiverInactive => "receiver_inactive",
            Self::TransferBelowMinimum => "transfer_below_minimum",
            Self::TransferAboveMaximum => "transfer_above_maximum",
            Self::TransferDailyCountExceeded => "transfer_daily_count_exceeded",
            Self::TransferDailyPointsExceeded => "transfer_daily_points_exceeded",
            Self::TransferTierNotAllowed => "transfer_tier_not_allowed",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::InvalidProgram => "invalid_program",
            Self::ProgramNotConfigured => "program_not_configured",
            Self::SubscriptionNotFound => "subscription_not_found",
            Self::SubscriptionConflict => "subscription_conflict",
            Self::RedemptionNotFound => "redemption_not_found",
            Self::CodeAlreadyUsed => "code_already_used",
            Self::CodeNotUsable => "code_not_usable",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentProviderUnavailable => "payment_provider_unavailable",
            Self::ConcurrentModification => "concurrent_modification",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Internal => "internal_error",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::ValidationError
            | Self::InvalidJson
            | Self::InvalidCursor
            | Self::MissingIdempotencyKey
            | Self::InvalidIdempotencyKey => 400,
            Self::MemberNotFound
            | Self::ReferralCodeNotFound
            | Self::RewardNotFound
            | Self::PromotionNotFound
            | Self::CampaignNotFound
            | Self::WebhookNotFound
            | Self::WebhookDeliveryNotFound
            | Self::RouteNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::MemberExists
            | Self::RewardExists
            | Self::RewardUnavailable
            | Self::InsufficientPoints
            | Self::DuplicateOrder
            | Self::ReturnExceedsOrder
            | Self::DuplicateReturn
            | Self::DuplicateAction
            | Self::ActionLimitReached
            | Self::ConcurrentModification => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::IdempotencyKeyReused
            | Self::OccurredAtOutOfRange
            | Self::PromotionAlreadyEnded
            | Self::CounterOverflow
            | Self::TransfersDisabled
            | Self::TransferToSelf
            | Self::ReceiverNotFound
            | Self::ReceiverInactive
            | Self::TransferBelowMinimum
            | Self::TransferAboveMaximum
            | Self::TransferDailyCountExceeded
            | Self::TransferDailyPointsExceeded
            | Self::TransferTierNotAllowed
            | Self::UnknownAction
            | Self::CurrencyMismatch
            | Self::InvalidProgram => 422,
            Self::ProgramNotConfigured => 503,
            Self::SubscriptionNotFound | Self::OrderNotFound => 404,
            Self::SubscriptionConflict => 409,
            Self::RedemptionNotFound => 404,
            Self::CodeAlreadyUsed | Self::CodeNotUsable => 409,
            Self::PaymentDeclined => 402,
            Self::PaymentProviderUnavailable => 503,
            Self::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// A field failed validation; `details.field` names it so clients can point at it.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message).with_details(json!({ "field": field }))
    }

    /// Anything unexpected. The cause is logged by the caller and never sent to the client.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; it has been logged")
    }

    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "details": self.details,
            }
        })
    }
}
