//! The function's own check of the caller against the route, before anything is read or
//! written. API Gateway enforces the route's scopes too; checking again here means a route
//! wired without its authorizer, or a gateway misconfigured, still refuses rather than opens.

use loyalty_core::ids::MemberId;
use loyalty_core::{ApiError, ErrorCode};
use serde_json::json;

use crate::caller::{Caller, Scope};
use crate::routes::{Access, Route};

/// On whose authority a request acts, once the route admitted its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// A public route: nobody needs to be named.
    Anonymous,
    /// A merchant's system or staff (pos, support, admin, reports): any member the route names.
    Staff(Caller),
    /// A member's app: only the member its token names.
    Member { caller: Caller, member: MemberId },
}

impl Principal {
    /// The token's `sub`, when there is a token.
    pub(crate) fn subject(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::Staff(caller) | Self::Member { caller, .. } => Some(&caller.subject),
        }
    }

    /// The member a member token is confined to.
    pub(crate) fn own_member(&self) -> Option<&MemberId> {
        match self {
            Self::Member { member, .. } => Some(member),
            _ => None,
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "this route needs a bearer token (Authorization: Bearer <JWT>)",
    )
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

/// Admits `caller` to `route` or refuses it: 401 without a caller, 403 without one of the
/// route's scopes, 403 for a member token on another member.
pub(crate) fn authorize(
    route: &Route,
    caller: Option<Caller>,
    member_id_claim: &str,
) -> Result<Principal, ApiError> {
    let granting = match route.access() {
        Access::Public => return Ok(Principal::Anonymous),
        Access::Scoped(scopes) => scopes,
    };
    let caller = caller.ok_or_else(unauthorized)?;
    let granted = caller.scopes.intersection(granting);
    if granted.is_empty() {
        return Err(
            forbidden("the token has none of the scopes this route needs")
                .with_details(json!({ "required_scopes": granting.names() })),
        );
    }
    // A token that also holds a staff scope granting the route acts as staff; only a token
    // admitted by `loyalty/member` alone is confined to its own member.
    if granted.iter().any(|scope| scope != Scope::Member) {
        return Ok(Principal::Staff(caller));
    }
    let member = caller
        .member_claim
        .as_deref()
        .and_then(|claim| MemberId::parse(claim).ok())
        .ok_or_else(|| {
            forbidden(format!(
                "a member token must carry a member id in its '{member_id_claim}' claim"
            ))
        })?;
    if let Some(path_member) = route.member_in_path() {
        if path_member != member.as_str() {
            return Err(forbidden("a member token acts only on its own member"));
        }
    }
    Ok(Principal::Member { caller, member })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::Scopes;
    use http::Method;

    fn caller(scopes: &[Scope], member: Option<&str>) -> Option<Caller> {
        Some(Caller {
            subject: "user-1".into(),
            scopes: Scopes::of(scopes),
            member_claim: member.map(str::to_owned),
        })
    }

    fn route(method: Method, path: &str) -> Route {
        Route::resolve(&method, path).expect("route")
    }

    fn code(result: Result<Principal, ApiError>) -> ErrorCode {
        result.expect_err("refused").code
    }

    #[test]
    fn a_protected_route_without_a_caller_is_unauthorized() {
        let ledger = route(Method::GET, "/v1/members/m1/ledger");
        assert_eq!(
            code(authorize(&ledger, None, "sub")),
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn public_routes_need_nobody() {
        let program = route(Method::GET, "/v1/program");
        assert_eq!(authorize(&program, None, "sub"), Ok(Principal::Anonymous));
    }

    #[test]
    fn a_member_token_reaches_its_own_member_only() {
        let own = route(Method::GET, "/v1/members/m1/ledger");
        let other = route(Method::GET, "/v1/members/m2/ledger");
        let token = caller(&[Scope::Member], Some("m1"));
        assert!(matches!(
            authorize(&own, token.clone(), "sub"),
            Ok(Principal::Member { .. })
        ));
        assert_eq!(code(authorize(&other, token, "sub")), ErrorCode::Forbidden);
    }

    #[test]
    fn a_member_token_without_a_member_claim_is_forbidden() {
        let own = route(Method::GET, "/v1/members/m1");
        let token = caller(&[Scope::Member], None);
        assert_eq!(code(authorize(&own, token, "sub")), ErrorCode::Forbidden);
    }

    #[test]
    fn a_member_token_cannot_accrue_even_for_itself() {
        let accrue = route(Method::POST, "/v1/members/m1/accruals");
        let token = caller(&[Scope::Member], Some("m1"));
        assert_eq!(code(authorize(&accrue, token, "sub")), ErrorCode::Forbidden);
    }

    #[test]
    fn a_staff_scope_acts_on_any_member_even_beside_a_member_scope() {
        let redeem = route(Method::POST, "/v1/members/m2/redemptions");
        let token = caller(&[Scope::Member, Scope::Support], Some("m1"));
        assert!(matches!(
            authorize(&redeem, token, "sub"),
            Ok(Principal::Staff(_))
        ));
    }

    #[test]
    fn reports_read_admin_routes_but_cannot_write_them() {
        let list = route(Method::GET, "/v1/admin/promotions");
        let create = route(Method::POST, "/v1/admin/promotions");
        let token = caller(&[Scope::Reports], None);
        assert!(authorize(&list, token.clone(), "sub").is_ok());
        assert_eq!(code(authorize(&create, token, "sub")), ErrorCode::Forbidden);
    }
}
