//! Access levels, what each grants, and the three-way answer an authorizer gives.
//!
//! A rule grants one [`AccessLevel`]; a check asks for one (read, list or write). Whether the
//! rule's level covers the asked one is [`AccessLevel::grants`]. Several rules for the same label
//! merge by [`AccessLevel::takes_precedence_over`]: deny > write > list > read.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much a rule grants on what it matches, in Consul's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AccessLevel {
    /// Nothing, and no rule with a shorter label or from the default policy can give it back.
    Deny,
    /// Read the one thing named.
    Read,
    /// Read, and list the names under a prefix. Valid only on key rules.
    List,
    /// Everything: read, list, create, change and delete.
    Write,
}

/// An authorizer's answer to one check. A rule that matches gives `Allow` or `Deny`; no matching
/// rule gives `Default`, which hands the question to the next authorizer in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A rule grants the access.
    Allow,
    /// A rule refuses the access.
    Deny,
    /// No rule speaks to it.
    Default,
}

impl AccessLevel {
    /// Every level, weakest precedence first.
    pub const ALL: [AccessLevel; 4] =
        [AccessLevel::Read, AccessLevel::List, AccessLevel::Write, AccessLevel::Deny];

    /// The level `text` names. Consul compares lower-cased (`AccessLevelFromString`), so `WRITE`
    /// is write; whether a resource takes the level is the parser's question.
    pub fn parse(text: &str) -> Option<AccessLevel> {
        match text.to_lowercase().as_str() {
            "deny" => Some(AccessLevel::Deny),
            "read" => Some(AccessLevel::Read),
            "list" => Some(AccessLevel::List),
            "write" => Some(AccessLevel::Write),
            _ => None,
        }
    }

    /// Consul's spelling: `deny`, `read`, `list` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Deny => "deny",
            AccessLevel::Read => "read",
            AccessLevel::List => "list",
            AccessLevel::Write => "write",
        }
    }

    /// Whether a rule at this level replaces one at `other` for the same label when policies
    /// merge (Consul's `takesPrecedenceOver`): deny > write > list > read.
    pub fn takes_precedence_over(self, other: AccessLevel) -> bool {
        self.precedence() >= other.precedence()
    }

    /// Of two levels for the same label, the one that stands after merging.
    pub fn merge(self, incoming: AccessLevel) -> AccessLevel {
        if incoming.takes_precedence_over(self) {
            incoming
        } else {
            self
        }
    }

    /// Whether a rule at this level lets a request that needs `required` through (Consul's
    /// `enforce`): write grants all three, list grants read and list, read grants read, deny
    /// grants nothing.
    ///
    /// # Panics
    ///
    /// If `required` is `Deny`: no check asks for "deny", so asking is a bug.
    pub fn grants(self, required: AccessLevel) -> Decision {
        assert_ne!(required, AccessLevel::Deny, "a check asks for read, list or write");
        let granted = match self {
            AccessLevel::Write => true,
            AccessLevel::List => matches!(required, AccessLevel::List | AccessLevel::Read),
            AccessLevel::Read => required == AccessLevel::Read,
            AccessLevel::Deny => false,
        };
        if granted {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    /// Rank in the merge order, higher wins.
    fn precedence(self) -> u8 {
        match self {
            AccessLevel::Read => 0,
            AccessLevel::List => 1,
            AccessLevel::Write => 2,
            AccessLevel::Deny => 3,
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Of two optional levels for one resource, the one that stands after merging: a level beats
/// none (Consul keeps `""` only while no policy sets the resource).
pub(crate) fn merge_optional(
    current: Option<AccessLevel>,
    incoming: Option<AccessLevel>,
) -> Option<AccessLevel> {
    match (current, incoming) {
        (Some(current), Some(incoming)) => Some(current.merge(incoming)),
        (current, None) => current,
        (None, incoming) => incoming,
    }
}

/// What an optional rule decides for a request needing `required`: `Default` without a rule.
pub(crate) fn decide(rule: Option<AccessLevel>, required: AccessLevel) -> Decision {
    rule.map_or(Decision::Default, |level| level.grants(required))
}
