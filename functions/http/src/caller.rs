//! Who is calling: the JWT that API Gateway's authorizer verified, as it hands it to the function
//! in `requestContext.authorizer.jwt` (claims stringified, scopes split from the `scope` claim).
//! The gateway already checked signature, issuer, audience, expiry and the route's scopes; the
//! function reads the result again so a route wired without an authorizer still refuses.

use std::fmt;
use std::sync::OnceLock;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The environment variable naming the claim that carries a member token's member id; the
/// template sets it from the `MemberIdClaim` parameter.
pub const MEMBER_ID_CLAIM_ENV: &str = "MEMBER_ID_CLAIM";
pub const DEFAULT_MEMBER_ID_CLAIM: &str = "sub";

/// A role, granted as an OAuth scope. The strings are the contract shared with the template and
/// the identity provider's resource server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A member's own app: acts only on the member its token names.
    Member,
    /// Checkout, POS and commerce back ends: enrol, accrue, redeem and read for any member.
    Pos,
    /// Customer service: read any member, act on a member's behalf, tier grants.
    Support,
    /// Program managers: every `/v1/admin/*` route.
    Admin,
    /// Analysts: the read-only `/v1/admin/*` routes.
    Reports,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Member,
        Scope::Pos,
        Scope::Support,
        Scope::Admin,
        Scope::Reports,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Member => "loyalty/member",
            Self::Pos => "loyalty/pos",
            Self::Support => "loyalty/support",
            Self::Admin => "loyalty/admin",
            Self::Reports => "loyalty/reports",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == raw)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes. Scopes this API does not know (a token may carry others) are not in it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub const fn of(scopes: &[Scope]) -> Scopes {
        let mut bits = 0;
        let mut i = 0;
        while i < scopes.len() {
            bits |= scopes[i].bit();
            i += 1;
        }
        Scopes(bits)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The scope strings, in [`Scope::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

/// The verified caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: who acted, recorded on admin writes and scoping idempotency keys.
    pub subject: String,
    pub scopes: Scopes,
    /// The value of the member id claim, when the token carries one.
    pub member_claim: Option<String>,
}

impl Caller {
    /// The caller API Gateway verified, or `None` when the request carries no JWT authorizer
    /// context (a public route, or a route wired without an authorizer) or the token has no
    /// subject.
    pub fn of_request(request: &Request, member_id_claim: &str) -> Option<Caller> {
        let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
            return None;
        };
        let jwt = context.authorizer.as_ref()?.jwt.as_ref()?;
        let subject = jwt.claims.get("sub").filter(|sub| !sub.is_empty())?.clone();
        // API Gateway splits the `scope` claim into `scopes`; read the claim itself when a
        // gateway (or a test) passed only the claims.
        let scopes = match &jwt.scopes {
            Some(scopes) => scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            None => jwt
                .claims
                .get("scope")
                .map(|raw| raw.split_whitespace().filter_map(Scope::parse).collect())
                .unwrap_or_default(),
        };
        let member_claim = jwt
            .claims
            .get(member_id_claim)
            .filter(|value| !value.is_empty())
            .cloned();
        Some(Caller {
            subject,
            scopes,
            member_claim,
        })
    }
}

/// The claim naming a member token's member, read once per execution environment from
/// [`MEMBER_ID_CLAIM_ENV`] (`sub` when unset).
pub fn member_id_claim() -> &'static str {
    static CLAIM: OnceLock<String> = OnceLock::new();
    CLAIM.get_or_init(|| {
        std::env::var(MEMBER_ID_CLAIM_ENV)
            .ok()
            .filter(|claim| !claim.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_MEMBER_ID_CLAIM.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_and_unknown_ones_are_dropped() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("loyalty/root"), None);
        let set: Scopes = ["loyalty/pos", "openid", "loyalty/admin"]
            .into_iter()
            .filter_map(Scope::parse)
            .collect();
        assert_eq!(set, Scopes::of(&[Scope::Pos, Scope::Admin]));
        assert_eq!(set.names(), vec!["loyalty/pos", "loyalty/admin"]);
    }

    #[test]
    fn a_set_intersects_only_on_shared_scopes() {
        let staff = Scopes::of(&[Scope::Pos, Scope::Support]);
        let member_routes = Scopes::of(&[Scope::Member, Scope::Support]);
        assert_eq!(
            staff.intersection(member_routes),
            Scopes::of(&[Scope::Support])
        );
        assert!(staff.intersection(Scopes::of(&[Scope::Admin])).is_empty());
    }
}
