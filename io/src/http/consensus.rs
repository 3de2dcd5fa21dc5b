//! Consensus's failures ([`ConsensusError`]) as HTTP errors: Consul's status from
//! [`ConsensusError::status`] (which server RPC carries too), its words from the error, so no
//! caller decides what happened by reading an error's text.

use axum::http::StatusCode;

use super::HttpError;
use crate::consensus::ConsensusError;

impl From<ConsensusError> for HttpError {
    fn from(error: ConsensusError) -> HttpError {
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError { status, reason: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use muster_core::fsm::CommandError;
    use muster_core::raft::ProposeError;

    use super::*;
    use crate::raft_server::WriteError;

    #[test]
    fn each_failure_has_consuls_status_and_words() {
        let answer = |error: ConsensusError| {
            let http = HttpError::from(error);
            (http.status.as_u16(), http.reason)
        };
        assert_eq!(answer(ConsensusError::NoLeader), (500, "No cluster leader".into()));
        let not_leader =
            ConsensusError::from(WriteError::Refused(ProposeError::NotLeader { leader_hint: Some(2) }));
        assert_eq!(not_leader, ConsensusError::NotLeader { leader: Some(2) });
        assert_eq!(answer(not_leader), (500, "No cluster leader".into()));
        assert_eq!(
            answer(ConsensusError::Rejected(CommandError::MissingKey)),
            (400, "Missing key name".into())
        );
        let large = CommandError::TooManyOps { count: 129, max: 128 };
        assert_eq!(answer(ConsensusError::Rejected(large)).0, 413);
        assert_eq!(answer(ConsensusError::from(WriteError::Lost)).0, 500);
        let too_large = WriteError::Refused(ProposeError::TooLarge { size: 5 << 20, max: 4 << 20 });
        assert_eq!(answer(ConsensusError::from(too_large)).0, 413);
        assert_eq!(
            answer(ConsensusError::DiskFull),
            (500, "failed to append to the Raft log: no space left on device".into())
        );
        let timeout = answer(ConsensusError::Timeout);
        assert_eq!(
            timeout,
            (500, "timed out waiting for the write to commit; it may still take effect".into())
        );
    }
}
