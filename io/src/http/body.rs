//! Request bodies as Consul decodes them: JSON objects whose keys match case-insensitively and
//! with or without underscores (`Node`, `node`, `NodeChecks`, `node_checks`), durations as Go
//! strings (`"15s"`) or integer nanoseconds. Unknown keys are ignored, as Consul's decoder does.
//!
//! The decoding itself is in [`decode`], which knows nothing of HTTP (the fuzz crate compiles
//! it alone); this module turns its [`Refusal`]s into [`HttpError`]s.

mod decode;

use axum::http::StatusCode;

pub use self::decode::{
    boolean, check_definition, duration, file_check_definition, parse_check, parse_service,
    service_definition, string_map, txn_op, txn_parse_failed, Object, Refusal,
};
use super::HttpError;

/// Consul's refusal of a body it cannot decode.
pub fn decode_failed(reason: impl std::fmt::Display) -> HttpError {
    decode::decode_failed(reason).into()
}

impl From<Refusal> for HttpError {
    fn from(refusal: Refusal) -> HttpError {
        let status = match refusal.status {
            decode::Status::BadRequest => StatusCode::BAD_REQUEST,
            decode::Status::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        };
        HttpError { status, reason: refusal.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_status_and_reason() {
        let refused = HttpError::from(Object::parse(b"[1]").unwrap_err());
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.reason, "Request decode failed: expected a JSON object, got a list");
        let huge = format!(
            r#"{{"KV": {{"Verb": "set", "Key": "k", "Value": "{}"}}}}"#,
            "A".repeat(4 * (muster_core::fsm::VALUE_BYTES_MAX / 3 + 2))
        );
        let refused = HttpError::from(txn_op(&serde_json::from_str(&huge).unwrap()).unwrap_err());
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(decode_failed("x"), HttpError::bad_request("Request decode failed: x"));
    }
}
