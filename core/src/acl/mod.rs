//! ACLs: the rule language's typed form, how a token's rules decide a request, and Consul's
//! built-in policies and denial text.
//!
//! A policy's rules text (HCL or JSON, parsed in the `muster` crate) becomes [`Rules`]. A
//! token's policies, roles and identities merge into one [`Rules`] by Consul's precedence per
//! label (deny > write > list > read), which compiles into a [`PolicyAuthorizer`]. For a
//! [`Permission`] it finds the governing rule (an exact rule for the whole name, else the longest
//! prefix rule) and answers `Allow`, `Deny` or `Default`; an [`Authorizer`] hands `Default` to
//! the agent's [`DefaultPolicy`] and gives the final answer, or the [`PermissionDenied`] text.
//!
//! Everything here is a pure function of the rules: which tokens exist and which policies they
//! hold is the replicated state's business, and enforcement the HTTP and DNS layers'.
//!
//! Where muster departs from Consul: rules for Consul Enterprise (namespaces, partitions,
//! Sentinel) and for the v2 `identity` resource are not modelled, and checks carry no peer
//! context (Consul lets a token that may write any service, or read all of them, read the
//! services and nodes imported from a peer).

mod access;
mod authorizer;
mod builtin;
mod error;
mod rules;
mod tree;

pub use access::{AccessLevel, Decision};
pub use authorizer::{Authorizer, DefaultPolicy, Permission, PolicyAuthorizer, Resource, WILDCARD};
pub use builtin::*;
pub use error::{PermissionDenied, PERMISSION_DENIED};
pub use rules::{Grant, LabelledRules, Match, Rules, ServiceAccess};

#[cfg(test)]
mod tests;
