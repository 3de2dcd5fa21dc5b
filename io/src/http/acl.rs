//! Consul's ACL endpoints as Consul answers them with ACLs off (`acl.enabled = false`, its
//! default): every one of them, whatever its argument, `401 ACL support disabled`
//! (`agent/acl_endpoint.go`, `checkACLDisabled`, before anything is read), and a method it does
//! not serve 405 first, as Consul's router refuses it. Client libraries and tools read that
//! answer to tell "ACLs are off" from "this token may not".
//!
//! muster has no ACL system yet (issue 24; the rule language is in `muster_core::acl`), and an
//! agent configured with `acl.enabled = true` refuses to start rather than run open, so these
//! are the only answers it gives.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;

use super::endpoints::{Endpoint, ACL, ENDPOINTS};
use super::{Api, HttpError};

/// Consul's words for a request to an ACL endpoint while ACLs are off.
pub const ACL_DISABLED: &str = "ACL support disabled";

pub(super) fn routes() -> Router<Arc<Api>> {
    ENDPOINTS.iter().filter(|endpoint| endpoint.status == ACL).fold(Router::new(), |router, endpoint| {
        let methods = methods(endpoint);
        match endpoint.path.strip_suffix('/') {
            // A path that takes an argument answers with one and without (`/v1/acl/token/`).
            Some(base) => {
                router.route(endpoint.path, methods.clone()).route(&format!("{base}/{{*argument}}"), methods)
            }
            None => router.route(endpoint.path, methods),
        }
    })
}

/// The methods Consul serves on `endpoint`, each answering [`disabled`].
fn methods(endpoint: &Endpoint) -> MethodRouter<Arc<Api>> {
    endpoint.methods.iter().fold(MethodRouter::new(), |router, method| {
        let method = Method::from_bytes(method.as_bytes()).expect("the table names HTTP methods");
        let filter = MethodFilter::try_from(method).expect("the table names methods axum routes");
        router.on(filter, disabled)
    })
}

async fn disabled() -> HttpError {
    HttpError { status: StatusCode::UNAUTHORIZED, reason: ACL_DISABLED.to_owned() }
}
