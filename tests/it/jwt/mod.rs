//! JWT edge authentication (SPEC 6): tokens minted here with keys made
//! here, sent through the real listener to a recording backend.

mod algorithms;
mod csrf;
mod examples;
mod identity;
mod issuers;
mod jwks;
pub mod jwks_server;
pub use crate::support::jwt::*;
pub use crate::support::keys;
mod rejections;

use crate::support::*;
use gatehouse::metrics::AuthResult;
use serde_json::{json, Value};
