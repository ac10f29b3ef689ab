#![allow(unreachable_pub)]
//! Integration tests: one binary (one link step), a module per feature.
//! Every test runs the real gateway on real sockets (127.0.0.1, port 0).

mod support;

mod jwt;
mod proxy;
