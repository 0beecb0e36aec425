//! The route table of the v1 API: which function serves which route and which scopes grant it.
//! The deployed wiring is in `infra/template.yaml`; tests check that the two agree.

use http::Method;
use loyalty_core::{ApiError, ErrorCode};

use crate::caller::{Scope, Scopes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Members,
    Accrue,
    Redeem,
    Rewards,
}

impl Function {
    pub const ALL: [Function; 4] = [
        Function::Members,
        Function::Accrue,
        Function::Redeem,
        Function::Rewards,
    ];

    /// The crate (and binary) that deploys this function.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::Accrue => "accrue",
            Self::Redeem => "redeem",
            Self::Rewards => "rewards",
        }
    }

    pub fn from_binary(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.binary() == name)
    }

    pub fn serves(self, route: &Route) -> bool {
        matches!(
            (self, route),
            (
                Self::Members,
                Route::Enrol
                    | Route::GetMember(_)
                    | Route::Ledger(_)
                    | Route::TierHistory(_)
                    | Route::EvaluateTier(_)
                    | Route::GrantTier(_)
                    | Route::Adjust(_)
                    | Route::StartSubscription(_)
                    | Route::GetSubscription(_)
                    | Route::CancelSubscription(_)
                    | Route::ChangeSubscriptionPlan(_)
                    | Route::ReplaceSubscriptionCard(_)
                    | Route::SubscriptionCharges(_)
                    | Route::StripeWebhook
                    | Route::Referrals(_)
            ) | (Self::Accrue, Route::Accrue(_) | Route::Return(_))
                | (
                    Self::Redeem,
                    Route::Redeem(_)
                        | Route::Transfer(_)
                        | Route::GetRedemption(_)
                        | Route::UseRedemption(_)
                        | Route::CancelRedemption(_)
                )
                | (
                    Self::Rewards,
                    Route::ListRewards
                        | Route::CreateReward
                        | Route::GetProgram
                        | Route::PutProgram
                        | Route::CreatePromotion
                        | Route::ListPromotions
                        | Route::CancelPromotion(_)
                        | Route::CreateCampaign
                        | Route::GetCampaign(_)
                        | Route::CancelCampaign(_)
                        | Route::CreateWebhook
                        | Route::ListWebhooks
                        | Route::DisableWebhook(_)
                        | Route::DeleteWebhook(_)
                        | Route::WebhookDeliveries(_)
                        | Route::RetryWebhookDelivery(_, _)
                )
        )
    }
}

/// A resolved route; member ids are still raw text here and are parsed by the handler, so a
/// bad id is a 400 with the id's own message rather than a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreatePromotion,
    ListPromotions,
    CancelPromotion(String),
    CreateCampaign,
    GetCampaign(String),
    CancelCampaign(String),
    Enrol,
    GetMember(String),
    Ledger(String),
    Accrue(String),
    Redeem(String),
    /// A reward code, looked up at the till or by its member.
    GetRedemption(String),
    UseRedemption(String),
    CancelRedemption(String),
    Transfer(String),
    TierHistory(String),
    EvaluateTier(String),
    GrantTier(String),
    Adjust(String),
    Return(String),
    StartSubscription(String),
    GetSubscription(String),
    CancelSubscription(String),
    ChangeSubscriptionPlan(String),
    ReplaceSubscriptionCard(String),
    SubscriptionCharges(String),
    /// Stripe's webhook deliveries: no token, the Stripe-Signature is the credential.
    StripeWebhook,
    Referrals(String),
    ListRewards,
    CreateReward,
    GetProgram,
    PutProgram,
    CreateWebhook,
    ListWebhooks,
    DisableWebhook(String),
    DeleteWebhook(String),
    WebhookDeliveries(String),
    /// The webhook, then the delivery.
    RetryWebhookDelivery(String, String),
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Public by design (`Authorizer: NONE` in the template): the catalogue, the program, and
    /// the provider's webhook (which proves itself by its signature instead).
    Public,
    /// A verified token holding any one of these scopes.
    Scoped(Scopes),
}

const MEMBER_READ: Scopes = Scopes::of(&[Scope::Member, Scope::Pos, Scope::Support]);
const ENROL: Scopes = Scopes::of(&[Scope::Member, Scope::Pos]);
const ACCRUE: Scopes = Scopes::of(&[Scope::Pos]);
const REDEEM: Scopes = Scopes::of(&[Scope::Member, Scope::Pos, Scope::Support]);
/// A code is read by the till, customer service, and its own member (another member's code is
/// "not found"); only the till uses one; any of them may cancel one not yet used.
const CODE_READ: Scopes = Scopes::of(&[Scope::Member, Scope::Pos, Scope::Support]);
const CODE_USE: Scopes = Scopes::of(&[Scope::Pos]);
const CODE_CANCEL: Scopes = Scopes::of(&[Scope::Member, Scope::Pos, Scope::Support]);
/// The member itself, or customer service acting on its behalf (a re-evaluation after a
/// complaint, cancelling a membership over the phone, a transfer to a family member).
const MEMBER_SELF_SERVICE: Scopes = Scopes::of(&[Scope::Member, Scope::Support]);
/// The member's own billing history, or customer service answering a question about a charge.
const MEMBER_BILLING_READ: Scopes = Scopes::of(&[Scope::Member, Scope::Support]);
const TIER_GRANT: Scopes = Scopes::of(&[Scope::Admin, Scope::Support]);
/// Customer service or an admin correcting a member's points; the entry records who.
const ADJUST: Scopes = Scopes::of(&[Scope::Admin, Scope::Support]);
/// The till taking goods back, or customer service doing it for a remote order.
const RETURN: Scopes = Scopes::of(&[Scope::Pos, Scope::Support]);
const ADMIN_WRITE: Scopes = Scopes::of(&[Scope::Admin]);
const ADMIN_READ: Scopes = Scopes::of(&[Scope::Admin, Scope::Reports]);
/// Webhooks are the admin's alone, reads included: URLs, and deliveries carrying members' events.
const WEBHOOKS: Scopes = Scopes::of(&[Scope::Admin]);

impl Route {
    /// The route's scopes: one table for the function's own check, the template and the docs.
    pub fn access(&self) -> Access {
        let scopes = match self {
            Route::ListRewards | Route::GetProgram | Route::StripeWebhook => return Access::Public,
            Route::Enrol => ENROL,
            Route::GetMember(_)
            | Route::Ledger(_)
            | Route::TierHistory(_)
            | Route::Referrals(_)
            | Route::GetSubscription(_) => MEMBER_READ,
            Route::Accrue(_) => ACCRUE,
            Route::Redeem(_) => REDEEM,
            Route::GetRedemption(_) => CODE_READ,
            Route::UseRedemption(_) => CODE_USE,
            Route::CancelRedemption(_) => CODE_CANCEL,
            Route::EvaluateTier(_)
            | Route::Transfer(_)
            | Route::StartSubscription(_)
            | Route::ChangeSubscriptionPlan(_)
            | Route::ReplaceSubscriptionCard(_)
            | Route::CancelSubscription(_) => MEMBER_SELF_SERVICE,
            Route::SubscriptionCharges(_) => MEMBER_BILLING_READ,
            Route::GrantTier(_) => TIER_GRANT,
            Route::Adjust(_) => ADJUST,
            Route::Return(_) => RETURN,
            Route::PutProgram
            | Route::CreateReward
            | Route::CreatePromotion
            | Route::CancelPromotion(_)
            | Route::CreateCampaign
            | Route::CancelCampaign(_) => ADMIN_WRITE,
            Route::ListPromotions | Route::GetCampaign(_) => ADMIN_READ,
            Route::CreateWebhook
            | Route::ListWebhooks
            | Route::DisableWebhook(_)
            | Route::DeleteWebhook(_)
            | Route::WebhookDeliveries(_)
            | Route::RetryWebhookDelivery(_, _) => WEBHOOKS,
        };
        Access::Scoped(scopes)
    }

    /// The member a `/v1/members/{member_id}/...` route acts on, as raw path text.
    pub fn member_in_path(&self) -> Option<&str> {
        match self {
            Route::GetMember(id)
            | Route::Ledger(id)
            | Route::Accrue(id)
            | Route::Redeem(id)
            | Route::Transfer(id)
            | Route::TierHistory(id)
            | Route::EvaluateTier(id)
            | Route::GrantTier(id)
            | Route::Adjust(id)
            | Route::Return(id)
            | Route::StartSubscription(id)
            | Route::GetSubscription(id)
            | Route::CancelSubscription(id)
            | Route::ChangeSubscriptionPlan(id)
            | Route::ReplaceSubscriptionCard(id)
            | Route::SubscriptionCharges(id)
            | Route::Referrals(id) => Some(id),
            _ => None,
        }
    }

    /// The use case a route runs, as logs (its span) and metrics (replays) name it.
    pub fn operation(&self) -> &'static str {
        match self {
            Route::CreatePromotion => "create_promotion",
            Route::ListPromotions => "list_promotions",
            Route::CancelPromotion(_) => "cancel_promotion",
            Route::CreateCampaign => "create_campaign",
            Route::GetCampaign(_) => "get_campaign",
            Route::CancelCampaign(_) => "cancel_campaign",
            Route::Enrol => "enrol",
            Route::GetMember(_) => "get_member",
            Route::Ledger(_) => "ledger",
            Route::Accrue(_) => "accrue",
            Route::Redeem(_) => "redeem",
            Route::GetRedemption(_) => "get_redemption",
            Route::UseRedemption(_) => "use_redemption",
            Route::CancelRedemption(_) => "cancel_redemption",
            Route::TierHistory(_) => "tier_history",
            Route::EvaluateTier(_) => "evaluate_tier",
            Route::GrantTier(_) => "grant_tier",
            Route::Adjust(_) => "adjust",
            Route::Return(_) => "return",
            Route::Transfer(_) => "transfer",
            Route::StartSubscription(_) => "start_subscription",
            Route::GetSubscription(_) => "get_subscription",
            Route::CancelSubscription(_) => "cancel_subscription",
            Route::ChangeSubscriptionPlan(_) => "change_subscription_plan",
            Route::ReplaceSubscriptionCard(_) => "replace_subscription_card",
            Route::SubscriptionCharges(_) => "subscription_charges",
            Route::StripeWebhook => "stripe_webhook",
            Route::Referrals(_) => "referrals",
            Route::ListRewards => "list_rewards",
            Route::CreateReward => "create_reward",
            Route::GetProgram => "get_program",
            Route::PutProgram => "put_program",
            Route::CreateWebhook => "create_webhook",
            Route::ListWebhooks => "list_webhooks",
            Route::DisableWebhook(_) => "disable_webhook",
            Route::DeleteWebhook(_) => "delete_webhook",
            Route::WebhookDeliveries(_) => "webhook_deliveries",
            Route::RetryWebhookDelivery(_, _) => "retry_webhook_delivery",
        }
    }

    pub fn resolve(method: &Method, path: &str) -> Result<Route, ApiError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (route, allowed) = match segments.as_slice() {
            ["v1", "members"] => (
                Some(Route::Enrol).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id] => (
                Some(Route::GetMember((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "members", id, "ledger"] => (
                Some(Route::Ledger((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "members", id, "accruals"] => (
                Some(Route::Accrue((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id, "redemptions"] => (
                Some(Route::Redeem((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id, "returns"] => (
                Some(Route::Return((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id, "transfers"] => (
                Some(Route::Transfer((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id, "tier-history"] => (
                Some(Route::TierHistory((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "members", id, "tier-evaluation"] => (
                Some(Route::EvaluateTier((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "members", id, "referrals"] => (
                Some(Route::Referrals((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "members", id, "subscription"] => {
                let id = (*id).to_owned();
                let route = if method == Method::POST {
                    Some(Route::StartSubscription(id))
                } else if method == Method::GET {
                    Some(Route::GetSubscription(id))
                } else if method == Method::DELETE {
                    Some(Route::CancelSubscription(id))
                } else if method == Method::PATCH {
                    Some(Route::ChangeSubscriptionPlan(id))
                } else {
                    None
                };
                (route, "GET, POST, PATCH, DELETE")
            }
            ["v1", "members", id, "subscription", "payment-method"] => (
                Some(Route::ReplaceSubscriptionCard((*id).to_owned()))
                    .filter(|_| method == Method::PUT),
                "PUT",
            ),
            ["v1", "members", id, "subscription", "charges"] => (
                Some(Route::SubscriptionCharges((*id).to_owned()))
                    .filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "redemptions", code] => (
                Some(Route::GetRedemption((*code).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "redemptions", code, "use"] => (
                Some(Route::UseRedemption((*code).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "redemptions", code, "cancel"] => (
                Some(Route::CancelRedemption((*code).to_owned()))
                    .filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "webhooks", "stripe"] => (
                Some(Route::StripeWebhook).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "admin", "members", id, "tier"] => (
                Some(Route::GrantTier((*id).to_owned())).filter(|_| method == Method::PUT),
                "PUT",
            ),
            ["v1", "admin", "members", id, "adjustments"] => (
                Some(Route::Adjust((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "rewards"] => (
                Some(Route::ListRewards).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "admin", "rewards"] => (
                Some(Route::CreateReward).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "program"] => (
                Some(Route::GetProgram).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "admin", "program"] => (
                Some(Route::PutProgram).filter(|_| method == Method::PUT),
                "PUT",
            ),
            ["v1", "admin", "promotions"] => match *method {
                Method::GET => (Some(Route::ListPromotions), "GET, POST"),
                Method::POST => (Some(Route::CreatePromotion), "GET, POST"),
                _ => (None, "GET, POST"),
            },
            ["v1", "admin", "promotions", id, "cancel"] => (
                Some(Route::CancelPromotion((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "admin", "campaigns"] => (
                Some(Route::CreateCampaign).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "admin", "campaigns", id] => (
                Some(Route::GetCampaign((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "admin", "campaigns", id, "cancel"] => (
                Some(Route::CancelCampaign((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "admin", "webhooks"] => match *method {
                Method::GET => (Some(Route::ListWebhooks), "GET, POST"),
                Method::POST => (Some(Route::CreateWebhook), "GET, POST"),
                _ => (None, "GET, POST"),
            },
            ["v1", "admin", "webhooks", id] => (
                Some(Route::DeleteWebhook((*id).to_owned())).filter(|_| method == Method::DELETE),
                "DELETE",
            ),
            ["v1", "admin", "webhooks", id, "disable"] => (
                Some(Route::DisableWebhook((*id).to_owned())).filter(|_| method == Method::POST),
                "POST",
            ),
            ["v1", "admin", "webhooks", id, "deliveries"] => (
                Some(Route::WebhookDeliveries((*id).to_owned())).filter(|_| method == Method::GET),
                "GET",
            ),
            ["v1", "admin", "webhooks", id, "deliveries", delivery, "retry"] => (
                Some(Route::RetryWebhookDelivery(
                    (*id).to_owned(),
                    (*delivery).to_owned(),
                ))
                .filter(|_| method == Method::POST),
                "POST",
            ),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::RouteNotFound,
                    format!("no route {method} {path}"),
                ))
            }
        };
        route.ok_or_else(|| {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{path} accepts {allowed}, not {method}"),
            )
            .with_details(serde_json::json!({ "allow": allowed }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_and_belong_to_one_function() {
        let cases = [
            (Method::POST, "/v1/members", Function::Members),
            (Method::GET, "/v1/members/m1", Function::Members),
            (Method::GET, "/v1/members/m1/ledger", Function::Members),
            (
                Method::GET,
                "/v1/members/m1/tier-history",
                Function::Members,
            ),
            (
                Method::POST,
                "/v1/members/m1/tier-evaluation",
                Function::Members,
            ),
            (Method::PUT, "/v1/admin/members/m1/tier", Function::Members),
            (
                Method::POST,
                "/v1/admin/members/m1/adjustments",
                Function::Members,
            ),
            (Method::POST, "/v1/members/m1/returns", Function::Accrue),
            (
                Method::POST,
                "/v1/members/m1/subscription",
                Function::Members,
            ),
            (
                Method::GET,
                "/v1/members/m1/subscription",
                Function::Members,
            ),
            (
                Method::PATCH,
                "/v1/members/m1/subscription",
                Function::Members,
            ),
            (
                Method::DELETE,
                "/v1/members/m1/subscription",
                Function::Members,
            ),
            (
                Method::PUT,
                "/v1/members/m1/subscription/payment-method",
                Function::Members,
            ),
            (
                Method::GET,
                "/v1/members/m1/subscription/charges",
                Function::Members,
            ),
            (Method::POST, "/v1/webhooks/stripe", Function::Members),
            (Method::POST, "/v1/members/m1/accruals", Function::Accrue),
            (Method::POST, "/v1/members/m1/redemptions", Function::Redeem),
            (
                Method::GET,
                "/v1/redemptions/ABCD-EFGH-JKMN",
                Function::Redeem,
            ),
            (
                Method::POST,
                "/v1/redemptions/ABCD-EFGH-JKMN/use",
                Function::Redeem,
            ),
            (
                Method::POST,
                "/v1/redemptions/ABCD-EFGH-JKMN/cancel",
                Function::Redeem,
            ),
            (Method::GET, "/v1/rewards", Function::Rewards),
            (Method::POST, "/v1/admin/rewards", Function::Rewards),
            (Method::GET, "/v1/program", Function::Rewards),
            (Method::PUT, "/v1/admin/program", Function::Rewards),
            (Method::POST, "/v1/admin/webhooks", Function::Rewards),
            (Method::GET, "/v1/admin/webhooks", Function::Rewards),
            (Method::DELETE, "/v1/admin/webhooks/wh_1", Function::Rewards),
            (
                Method::POST,
                "/v1/admin/webhooks/wh_1/disable",
                Function::Rewards,
            ),
            (
                Method::GET,
                "/v1/admin/webhooks/wh_1/deliveries",
                Function::Rewards,
            ),
            (
                Method::POST,
                "/v1/admin/webhooks/wh_1/deliveries/d1/retry",
                Function::Rewards,
            ),
        ];
        for (method, path, owner) in cases {
            let route = Route::resolve(&method, path).expect(path);
            for function in Function::ALL {
                assert_eq!(
                    function.serves(&route),
                    function == owner,
                    "{method} {path} {function:?}"
                );
            }
        }
    }

    #[test]
    fn admin_routes_never_grant_member_or_pos_and_reports_only_reads() {
        let admin = [
            (Method::PUT, "/v1/admin/members/m1/tier"),
            (Method::POST, "/v1/admin/members/m1/adjustments"),
            (Method::POST, "/v1/admin/rewards"),
            (Method::PUT, "/v1/admin/program"),
            (Method::POST, "/v1/admin/promotions"),
            (Method::GET, "/v1/admin/promotions"),
            (Method::POST, "/v1/admin/promotions/p1/cancel"),
            (Method::POST, "/v1/admin/campaigns"),
            (Method::GET, "/v1/admin/campaigns/c1"),
            (Method::POST, "/v1/admin/campaigns/c1/cancel"),
        ];
        for (method, path) in admin {
            let route = Route::resolve(&method, path).expect(path);
            let Access::Scoped(scopes) = route.access() else {
                panic!("{method} {path} is public");
            };
            assert!(scopes.contains(Scope::Admin), "{method} {path}");
            assert!(!scopes.contains(Scope::Member), "{method} {path}");
            assert!(!scopes.contains(Scope::Pos), "{method} {path}");
            assert_eq!(
                scopes.contains(Scope::Reports),
                method == Method::GET,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn webhook_routes_are_for_admins_only_reads_included() {
        for (method, path) in [
            (Method::POST, "/v1/admin/webhooks"),
            (Method::GET, "/v1/admin/webhooks"),
            (Method::DELETE, "/v1/admin/webhooks/wh_1"),
            (Method::POST, "/v1/admin/webhooks/wh_1/disable"),
            (Method::GET, "/v1/admin/webhooks/wh_1/deliveries"),
            (Method::POST, "/v1/admin/webhooks/wh_1/deliveries/d1/retry"),
        ] {
            let route = Route::resolve(&method, path).expect(path);
            assert_eq!(
                route.access(),
                Access::Scoped(Scopes::of(&[Scope::Admin])),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn only_the_catalogue_and_the_program_are_public() {
        assert_eq!(
            Route::resolve(&Method::GET, "/v1/rewards").map(|r| r.access()),
            Ok(Access::Public)
        );
        assert_eq!(
            Route::resolve(&Method::GET, "/v1/program").map(|r| r.access()),
            Ok(Access::Public)
        );
        let accrue = Route::resolve(&Method::POST, "/v1/members/m1/accruals").expect("route");
        assert_eq!(accrue.access(), Access::Scoped(Scopes::of(&[Scope::Pos])));
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        let wrong = Route::resolve(&Method::DELETE, "/v1/members/m1").expect_err("405");
        assert_eq!(wrong.code, ErrorCode::MethodNotAllowed);
        let unknown = Route::resolve(&Method::GET, "/v2/members").expect_err("404");
        assert_eq!(unknown.code, ErrorCode::RouteNotFound);
    }
}
