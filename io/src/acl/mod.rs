//! ACLs on the agent's side of the line: reading a policy's rules text (HCL or JSON) into the
//! core's typed [`muster_core::acl::Rules`]. How rules decide a request is the core's
//! business (`muster_core::acl`); this module only reads text, which needs the HCL parser and
//! `serde_json` that the core does without.

pub mod rules;
