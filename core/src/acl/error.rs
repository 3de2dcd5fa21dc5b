//! The permission-denied error, worded as Consul words it (`acl/errors.go`).
//!
//! Clients and tools match on the text (`Permission denied` as a substring, and often the whole
//! sentence), so each form is kept letter for letter:
//!
//! ```text
//! Permission denied
//! Permission denied: <cause>
//! Permission denied: token with AccessorID '<id>' lacks permission 'key:read' on "a/b"
//! Permission denied: anonymous token lacks permission 'operator:read'. The anonymous token is
//!   used implicitly when a request does not specify a token.          (one line in fact)
//! ```

use std::fmt;

use super::access::AccessLevel;
use super::authorizer::Resource;
use super::builtin::ANONYMOUS_TOKEN_ACCESSOR_ID;

/// A request refused by ACLs. Sent to HTTP clients as a 403 with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionDenied {
    /// With nothing more to say: `Permission denied`.
    Bare,
    /// Refused for a reason that is no missing permission (a bad token, a used-up bootstrap):
    /// `Permission denied: <cause>`.
    Cause(String),
    /// The token lacks one permission.
    Lacks {
        /// The token's AccessorID; the anonymous token's gets its own wording.
        accessor_id: String,
        /// The resource kind checked.
        resource: Resource,
        /// The level checked: read, list or write.
        level: AccessLevel,
        /// What was checked (a key, a service name); empty for a check that names nothing, and
        /// then the ` on "..."` part is left out, as Consul leaves it out for an empty name.
        subject: String,
    },
}

impl fmt::Display for PermissionDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PERMISSION_DENIED)?;
        let (accessor_id, resource, level, subject) = match self {
            PermissionDenied::Bare => return Ok(()),
            PermissionDenied::Cause(cause) => return write!(f, ": {cause}"),
            PermissionDenied::Lacks { accessor_id, resource, level, subject } => {
                (accessor_id, resource, level, subject)
            }
        };
        let anonymous = accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID;
        if anonymous {
            f.write_str(": anonymous token")?;
        } else {
            write!(f, ": token with AccessorID '{accessor_id}'")?;
        }
        write!(f, " lacks permission '{resource}:{level}'")?;
        // Consul puts the name between plain double quotes, unescaped.
        if !subject.is_empty() {
            write!(f, " on \"{subject}\"")?;
        }
        if anonymous {
            f.write_str(". The anonymous token is used implicitly when a request does not specify a token.")?;
        }
        Ok(())
    }
}

impl std::error::Error for PermissionDenied {}

/// The words every denial starts with, and the substring clients look for.
pub const PERMISSION_DENIED: &str = "Permission denied";
