//! The one place consensus's failures ([`ConsensusError`]) meet Consul's statuses and words,
//! so no caller decides what happened by reading an error's text.

use axum::http::StatusCode;
use muster_core::fsm::CommandError;
use muster_core::raft::ProposeError;

use super::HttpError;
use crate::consensus::ConsensusError;
use crate::raft_server::WriteError;

impl From<ConsensusError> for HttpError {
    fn from(error: ConsensusError) -> HttpError {
        let status = match &error {
            ConsensusError::Rejected(refused) => rejected_status(refused),
            // An entry over Raft's limit: the request was too large, as a body over Consul's is.
            ConsensusError::Write(WriteError::Refused(ProposeError::TooLarge { .. })) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError { status, reason: error.to_string() }
    }
}

/// Consul's status for a refused command.
fn rejected_status(error: &CommandError) -> StatusCode {
    match error {
        CommandError::ValueTooLarge { .. }
        | CommandError::TooManyOps { .. }
        | CommandError::SnapshotTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CommandError::MissingKey
        | CommandError::Catalog(_)
        | CommandError::Restore(_)
        | CommandError::RestoreChunkMalformed => StatusCode::BAD_REQUEST,
        CommandError::Lock(_) | CommandError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // Another restore started while this one's pieces were going in.
        CommandError::RestoreOutOfOrder { .. } => StatusCode::CONFLICT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
