//! The route table of the v1 API and which function serves which route. The deployed wiring is
//! in `infra/template.yaml`; a test checks that the two agree.

use http::Method;
use loyalty_core::{ApiError, ErrorCode};

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
                    | Route::StartSubscription(_)
                    | Route::GetSubscription(_)
                    | Route::CancelSubscription(_)
                    | Route::ChangeSubscriptionPlan(_)
                    | Route::Referrals(_)
            ) | (Self::Accrue, Route::Accrue(_))
                | (Self::Redeem, Route::Redeem(_))
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
    TierHistory(String),
    EvaluateTier(String),
    GrantTier(String),
    StartSubscription(String),
    GetSubscription(String),
    CancelSubscription(String),
    ChangeSubscriptionPlan(String),
    Referrals(String),
    ListRewards,
    CreateReward,
    GetProgram,
    PutProgram,
}

impl Route {
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
            ["v1", "admin", "members", id, "tier"] => (
                Some(Route::GrantTier((*id).to_owned())).filter(|_| method == Method::PUT),
                "PUT",
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
            (Method::POST, "/v1/members/m1/accruals", Function::Accrue),
            (Method::POST, "/v1/members/m1/redemptions", Function::Redeem),
            (Method::GET, "/v1/rewards", Function::Rewards),
            (Method::POST, "/v1/admin/rewards", Function::Rewards),
            (Method::GET, "/v1/program", Function::Rewards),
            (Method::PUT, "/v1/admin/program", Function::Rewards),
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
    fn wrong_methods_and_unknown_paths() {
        let wrong = Route::resolve(&Method::DELETE, "/v1/members/m1").expect_err("405");
        assert_eq!(wrong.code, ErrorCode::MethodNotAllowed);
        let unknown = Route::resolve(&Method::GET, "/v2/members").expect_err("404");
        assert_eq!(unknown.code, ErrorCode::RouteNotFound);
    }
}
