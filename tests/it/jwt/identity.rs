use super::*;

/// The backend learns who called, from the claims, through the
/// configured headers (custom ones from `claims_map` paths included).
#[tokio::test]
async fn identity_headers_reach_the_backend_with_the_claims_values() {
    let b = Backend::start("b1").await;
    let jwt = format!(
        "{}claims_map = {{ groups = \"realm_access.roles\", tenant = \"org.id\", name = \"name\" }}\n\
         [identity]\nheaders = {{ \"X-Auth-User\" = \"sub\", \"X-Auth-Email\" = \"email\", \"X-Auth-Groups\" = \"groups\", \
         \"X-Auth-Method\" = \"method\", \"X-Auth-Name\" = \"name\", \"X-Tenant\" = \"tenant\" }}\n",
        hs_issuer()
    );
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    let t = hs_key().sign(
        None,
        &with(
            claims(),
            json!({"realm_access": {"roles": ["staff", "ops"]}, "org": {"id": 42}, "name": "Zoë Ådler"}),
        ),
    );
    let r = get_bearer(&gw, "/who", &t, &[("x-tenant", "spoofed")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &b.last().headers;
    assert_eq!(h["x-auth-user"], "alice");
    assert_eq!(h["x-auth-email"], "alice@example.com");
    assert_eq!(h["x-auth-groups"], "staff,ops");
    assert_eq!(h["x-auth-method"], "jwt");
    assert_eq!(h["x-tenant"], "42");
    assert_eq!(h.get_all("x-tenant").iter().count(), 1);
    // Non-ASCII names travel as UTF-8 bytes rather than being dropped.
    assert_eq!(h["x-auth-name"].as_bytes(), "Zoë Ådler".as_bytes());
    // The Authorization header is kept unless told otherwise.
    assert!(h["authorization"].to_str().unwrap().starts_with("Bearer "));
    gw.stop().await;
}

/// SPEC 16: a list claim element containing `,` is left out of the joined
/// header, so a backend splitting `X-Auth-Groups` on `,` never sees a
/// group nobody is in (`admin` out of `"admin,ops"`). The same for a list
/// mapped to a header of its own.
#[tokio::test]
async fn a_group_with_a_comma_is_left_out_of_the_groups_header() {
    let b = Backend::start("b1").await;
    let jwt = format!(
        "{}claims_map = {{ groups = \"groups\", roles = \"roles\" }}\n\
         [identity]\nheaders = {{ \"X-Auth-User\" = \"sub\", \"X-Auth-Groups\" = \"groups\", \"X-Auth-Roles\" = \"roles\" }}\n",
        hs_issuer()
    );
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    let t = hs_key().sign(
        None,
        &with(
            claims(),
            json!({"groups": ["staff", "admin,ops"], "roles": ["reader", "writer,admin"]}),
        ),
    );
    let r = get_bearer(&gw, "/who", &t, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &b.last().headers;
    assert_eq!(h["x-auth-groups"], "staff");
    assert_eq!(h.get_all("x-auth-groups").iter().count(), 1);
    assert_eq!(h["x-auth-roles"], "reader");
    // Only such elements: no groups header at all.
    let t = hs_key().sign(None, &with(claims(), json!({"groups": ["admin,ops"]})));
    let r = get_bearer(&gw, "/who", &t, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(b.last().headers.get("x-auth-groups").is_none());
    gw.stop().await;
}

/// Identity headers a client sends (any case, `_` for `-`) are removed on
/// every route, so a backend can trust them.
#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_backend() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n\
                  [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n";
    let gw = Gw::start(&config(&b, routes, &hs_issuer())).await;
    let spoof = [
        ("X-Auth-User", "mallory"),
        ("X_Auth_User", "mallory"),
        ("x-auth-groups", "admin"),
        ("X_AUTH_EMAIL", "mallory@evil.test"),
        ("X-Auth-Method", "session"),
        ("Remote-User", "root"),
        ("X-Forwarded-User", "root"),
    ];
    let r = gw.plain().get_with("/open/page", &spoof).await;
    assert_eq!(r.status, 200);
    let t = hs_key().sign(
        None,
        &with(claims(), json!({"groups": null, "email": null})),
    );
    let r = get_bearer(&gw, "/api/page", &t, &spoof).await;
    assert_eq!(r.status, 200);
    let seen = b.requests();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        for (name, _) in spoof {
            let folded = name.to_ascii_lowercase().replace('_', "-");
            for (k, v) in &s.headers {
                let k = k.as_str().replace('_', "-");
                assert!(
                    k != folded
                        || (k == "x-auth-user" && v == "alice")
                        || (k == "x-auth-method" && v == "jwt"),
                    "{} reached the backend on {}: {k}: {v:?}",
                    name,
                    s.path_and_query
                );
            }
        }
    }
    // On the JWT route the gateway's own values, once each.
    let h = &seen[1].headers;
    assert_eq!(
        h.get_all("x-auth-user").iter().collect::<Vec<_>>(),
        ["alice"]
    );
    assert!(h.get("x-auth-groups").is_none());
    assert!(h.get("x-auth-email").is_none());
    gw.stop().await;
}

/// A claim value with CR, LF or NUL could split headers: 400, nothing
/// forwarded.
#[tokio::test]
async fn a_claim_with_cr_lf_or_nul_gets_400() {
    let b = Backend::start("b1").await;
    let gw = Gw::start(&config(&b, JWT_ROUTE, &hs_issuer())).await;
    for evil in ["alice@example.com\r\nX-Admin: 1", "a\nb", "nul\u{0}byte"] {
        let t = hs_key().sign(None, &with(claims(), json!({ "email": evil })));
        let r = get_bearer(&gw, "/", &t, &[]).await;
        assert_eq!(r.status, 400, "{evil:?}: {}", r.text());
    }
    let t = hs_key().sign(None, &with(claims(), json!({ "sub": "ali\r\nce" })));
    assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 400);
    assert_eq!(b.count(), 0);
    gw.stop().await;
}

/// `strip_authorization`: the validated header is not passed on.
#[tokio::test]
async fn strip_authorization_drops_the_validated_header() {
    let b = Backend::start("b1").await;
    let jwt = format!("{}[identity]\nstrip_authorization = true\n", hs_issuer());
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    let t = hs_key().sign(None, &claims());
    for _ in 0..2 {
        // The second time from the cache: stripped all the same.
        assert_eq!(get_bearer(&gw, "/", &t, &[]).await.status, 200);
        assert!(b.last().headers.get("authorization").is_none());
        assert_eq!(b.last().headers["x-auth-user"], "alice");
    }
    gw.stop().await;
}

/// Cookie and query-string tokens; the query token never reaches the
/// backend, whatever else is in the query.
#[tokio::test]
async fn cookie_and_query_tokens_are_accepted_and_query_tokens_removed() {
    let b = Backend::start("b1").await;
    let jwt = format!(
        "{}token_sources = [\"header:Authorization\", \"cookie:access_token\", \"query:access_token\", \"header:X-Api-Token\"]\n",
        hs_issuer()
    );
    let gw = Gw::start(&config(&b, JWT_ROUTE, &jwt)).await;
    let t = hs_key().sign(None, &claims());
    let c = gw.plain();

    let cookie = format!("theme=dark; access_token={t}; other=1");
    let r = c.get_with("/c", &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last().headers["x-auth-user"], "alice");

    let r = c.get(&format!("/q/path?a=1&access_token={t}&b=two")).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last().path_and_query, "/q/path?a=1&b=two");
    let r = c.get(&format!("/q?access_token={t}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last().path_and_query, "/q");

    let r = c.get_with("/h", &[("x-api-token", t.as_str())]).await;
    assert_eq!(r.status, 200);

    // A bad query token: refused, and the login redirect does not carry it.
    let bad = hs_key().sign(None, &with(claims(), json!({"aud": "nope"})));
    let r = c.get(&format!("/q?x=1&access_token={bad}")).await;
    assert_invalid_token(&r, &bad, "query");
    let r = c
        .get_with(
            &format!("/q?x=1&access_token={bad}"),
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/.gatehouse/login?rd=%2Fq%3Fx%3D1")
    );
    assert_eq!(b.count(), 4);
    gw.stop().await;
}

/// `[routes.require]`: groups_any overlap and claim equality, else 403.
#[tokio::test]
async fn route_requirements_give_403_when_not_met() {
    let b = Backend::start("b1").await;
    let routes = "[[routes]]\nname = \"staff\"\npath_prefix = \"/staff\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n\
                  [routes.require]\ngroups_any = [\"staff\", \"admin\"]\n\
                  [[routes]]\nname = \"ops\"\npath_prefix = \"/ops\"\nupstream = \"app\"\nmethods = [\"jwt\"]\n\
                  [routes.require]\nclaims = { department = \"ops\", level = 3, mfa = true, roles = \"deployer\" }\n";
    let gw = Gw::start(&config(&b, routes, &hs_issuer())).await;
    let k = hs_key();
    let status = |c: Value, path: &'static str| {
        let t = k.sign(None, &with(claims(), c));
        let gw = &gw;
        async move { get_bearer(gw, path, &t, &[]).await.status }
    };
    assert_eq!(status(json!({}), "/staff").await, 200);
    assert_eq!(status(json!({"groups": "admin"}), "/staff").await, 200);
    assert_eq!(status(json!({"groups": ["dev"]}), "/staff").await, 403);
    assert_eq!(status(json!({"groups": null}), "/staff").await, 403);
    let ops =
        json!({"department": "ops", "level": 3, "mfa": true, "roles": ["reader", "deployer"]});
    assert_eq!(status(ops.clone(), "/ops").await, 200);
    assert_eq!(
        status(with(ops.clone(), json!({"department": "dev"})), "/ops").await,
        403
    );
    assert_eq!(
        status(with(ops.clone(), json!({"level": "3"})), "/ops").await,
        403
    );
    assert_eq!(
        status(with(ops.clone(), json!({"mfa": false})), "/ops").await,
        403
    );
    assert_eq!(
        status(with(ops.clone(), json!({"roles": ["reader"]})), "/ops").await,
        403
    );
    assert_eq!(status(with(ops, json!({"level": null})), "/ops").await, 403);
    let forbidden = gw
        .running()
        .gateway
        .metrics
        .auth_count("jwt", AuthResult::Forbidden);
    assert_eq!(forbidden, 7);
    assert_eq!(b.count(), 3);
    gw.stop().await;
}
