//! Integration tests: one binary (one link step), a module per feature.
//! Every test runs the real gateway on real sockets (127.0.0.1, port 0).
#![allow(unreachable_pub)]

mod support;

mod admin;
mod adversarial;
mod binary;
mod browser;
mod bypass;
mod config;
mod deploy;
mod faults;
mod forward_auth;
mod jwt;
mod lockout;
mod mtls;
mod oidc;
mod ops;
mod proxy;
mod proxy_protocol;
mod redirects;
mod redis_ha;
mod sessions;
mod sticky;
mod tls;
mod tokens;
