//! Authorisation: a route's `[routes.require]` (SPEC 3 step 7). Every
//! listed condition must hold, else 403.

use super::jwt::claims::claim_at;
use super::Identity;
use crate::config::{Require, Route};
use crate::error::GatewayError;
use serde_json::Value;

/// Runs after authentication. An anonymous caller (an `optional` route)
/// facing requirements is asked to authenticate (401 or the login page)
/// rather than told no: signing in may well satisfy them. A refusal
/// ([`GatewayError::Forbidden`]) is counted by the caller, which knows the
/// identity's method.
pub fn authorize(route: &Route, identity: Option<&Identity>) -> Result<(), GatewayError> {
    let req = &route.require;
    if req.groups_any.is_empty() && req.claims.is_empty() {
        return Ok(());
    }
    let Some(id) = identity else {
        return Err(super::unauthenticated(None));
    };
    if permits(req, id) {
        Ok(())
    } else {
        Err(GatewayError::Forbidden)
    }
}

/// `groups_any`: any overlap with the caller's groups. `claims`: each
/// claim (name or dotted path) equals the value, or contains it when the
/// claim is a list. An identity without claims (a session) is matched on
/// its identity fields.
pub fn permits(req: &Require, id: &Identity) -> bool {
    if !req.groups_any.is_empty() && !id.groups.iter().any(|g| req.groups_any.contains(g)) {
        return false;
    }
    req.claims.iter().all(|(name, want)| match &id.claims {
        Some(claims) => claim_at(claims, name).is_some_and(|have| matches(have, want)),
        None => id
            .field(name)
            .is_some_and(|have| want.as_str() == Some(have.as_ref())),
    })
}

fn scalar_eq(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => have == want,
    }
}

fn matches(have: &Value, want: &Value) -> bool {
    match have {
        Value::Array(items) => items.iter().any(|i| scalar_eq(i, want)),
        other => scalar_eq(other, want),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;
    use serde_json::json;
    use std::sync::Arc;

    fn id(groups: &[&str], claims: Value) -> Identity {
        Identity {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            name: None,
            method: Method::Jwt,
            extra: vec![("department".into(), "ops".into())],
            claims: claims.as_object().cloned().map(Arc::new),
            expires_at: None,
            iss: None,
            issuer: None,
            login: None,
        }
    }

    fn req(groups: &[&str], claims: Value) -> Require {
        Require {
            groups_any: groups.iter().map(|g| g.to_string()).collect(),
            claims: claims
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn groups_any_needs_an_overlap() {
        let r = req(&["staff", "admin"], json!({}));
        assert!(permits(&r, &id(&["users", "admin"], json!({}))));
        assert!(!permits(&r, &id(&["users"], json!({}))));
        assert!(!permits(&r, &id(&[], json!({}))));
        assert!(!permits(&r, &id(&["Admin"], json!({}))));
        assert!(permits(&req(&[], json!({})), &id(&[], json!({}))));
    }

    #[test]
    fn claims_compare_by_type_or_membership() {
        let claims = json!({
            "department": "ops", "level": 3, "ratio": 0.5, "mfa": true,
            "roles": ["reader", "writer"], "org": {"id": 42, "tier": "gold"},
            "https://example.com/team": "blue"
        });
        let who = id(&[], claims);
        let ok = |c: Value| permits(&req(&[], c), &who);
        assert!(ok(json!({"department": "ops"})));
        assert!(!ok(json!({"department": "dev"})));
        assert!(ok(json!({"level": 3})));
        assert!(ok(json!({"level": 3.0})));
        assert!(!ok(json!({"level": "3"})));
        assert!(ok(json!({"ratio": 0.5})));
        assert!(ok(json!({"mfa": true})));
        assert!(!ok(json!({"mfa": false})));
        assert!(ok(json!({"roles": "writer"})));
        assert!(!ok(json!({"roles": "admin"})));
        assert!(ok(json!({"org.id": 42, "org.tier": "gold"})));
        assert!(ok(json!({"https://example.com/team": "blue"})));
        assert!(!ok(json!({"missing": "x"})));
        assert!(!ok(json!({"department": "ops", "level": 4})));
    }

    #[test]
    fn identities_without_claims_match_on_their_fields() {
        let who = id(&[], Value::Null);
        assert!(permits(&req(&[], json!({"department": "ops"})), &who));
        assert!(permits(
            &req(&[], json!({"email": "alice@example.com"})),
            &who
        ));
        assert!(!permits(&req(&[], json!({"department": "dev"})), &who));
        assert!(!permits(&req(&[], json!({"level": 3})), &who));
    }
}
