//! One labelled resource kind's rules, compiled for lookup by name.
//!
//! Consul keeps exact and prefix rules of one kind in a single radix tree whose leaves hold
//! `{exact, prefix}`, and walks it from the root towards the name. A sorted map with one leaf
//! per label answers the same questions: the labels that are prefixes of a name are found by
//! looking up each of the name's prefixes (shortest first, as the walk goes), and the labels
//! under a prefix are one range of the map. A lookup costs one map probe per character of the
//! name, which the callers bound (KV keys, node and service names).

use std::collections::BTreeMap;

use super::access::{decide, AccessLevel, Decision};
use super::rules::{Grant, LabelledRules, Match};

/// The compiled rules of one resource kind, by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RuleTree {
    leaves: BTreeMap<String, Leaf>,
}

/// The rules whose label is one string: at most one exact and one prefix rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Leaf {
    exact: Option<AccessLevel>,
    prefix: Option<AccessLevel>,
}

impl RuleTree {
    /// Compiles `rules`, taking from each grant the level this tree answers for (a service
    /// rule feeds two trees: the service's level and its intentions level).
    pub(crate) fn compile<G: Grant>(rules: &LabelledRules<G>, level: impl Fn(G) -> AccessLevel) -> RuleTree {
        let mut leaves: BTreeMap<String, Leaf> = BTreeMap::new();
        for (matching, label, grant) in rules.iter() {
            let leaf = leaves.entry(label.to_owned()).or_default();
            let slot = match matching {
                Match::Exact => &mut leaf.exact,
                Match::Prefix => &mut leaf.prefix,
            };
            assert!(slot.is_none(), "merged rules hold each label once per match kind");
            *slot = Some(level(grant));
        }
        let tree = RuleTree { leaves };
        assert!(tree.leaves.len() <= rules.len(), "a leaf per label, shared by exact and prefix");
        tree
    }

    /// What the rules decide for `name` and a request needing `required`.
    pub(crate) fn decide(&self, name: &str, required: AccessLevel) -> Decision {
        decide(self.governing(name), required)
    }

    /// The level of the rule that governs `name` (Consul's `getPolicy`): an exact rule for the
    /// whole name wins; else the prefix rule with the longest label that starts the name; else
    /// none. A prefix rule whose label is the whole name counts as a prefix of it.
    pub(crate) fn governing(&self, name: &str) -> Option<AccessLevel> {
        let mut longest_prefix = None;
        for (label, leaf) in self.leaves_along(name) {
            if label.len() == name.len() {
                if let Some(exact) = leaf.exact {
                    return Some(exact);
                }
            }
            if leaf.prefix.is_some() {
                longest_prefix = leaf.prefix;
            }
        }
        longest_prefix
    }

    /// Whether everything under `prefix` may be written, as a recursive delete needs (Consul's
    /// `KeyWritePrefix`): the prefix rule governing `prefix` itself must grant write, and no
    /// rule, exact or prefix, whose label starts with `prefix` may grant less. With no prefix
    /// rule governing and none below that grants less, the answer is `Default`.
    pub(crate) fn write_prefix(&self, prefix: &str) -> Decision {
        // Exact rules along the way do not govern a prefix, only the longest prefix rule does.
        let governing = self.leaves_along(prefix).filter_map(|(_, leaf)| leaf.prefix).last();
        let base = match governing {
            Some(AccessLevel::Write) => Decision::Allow,
            Some(_) => return Decision::Deny,
            None => Decision::Default,
        };
        let below_not_writable = self
            .leaves_under(prefix)
            .flat_map(|leaf| [leaf.exact, leaf.prefix])
            .flatten()
            .any(|level| level != AccessLevel::Write);
        if below_not_writable {
            Decision::Deny
        } else {
            base
        }
    }

    /// Whether some name is granted `required` (Consul's `anyAllowed`, used for `*` intention
    /// reads and "write on any service"): `Allow` if any rule grants it; else what the
    /// catch-all prefix rule (`""`) decides, `Default` without one.
    pub(crate) fn any_allowed(&self, required: AccessLevel) -> Decision {
        let catch_all = decide(self.catch_all(), required);
        if catch_all == Decision::Allow {
            return Decision::Allow;
        }
        let any = self.leaves.values().any(|leaf| leaf.decide_any(required) == Decision::Allow);
        if any {
            Decision::Allow
        } else {
            catch_all
        }
    }

    /// Whether every name is granted `required` (Consul's `allAllowed`, used for `*` intention
    /// writes and "read all nodes/services"): `Deny` if the catch-all prefix rule or any rule
    /// refuses it; else `Allow` if the catch-all grants it, `Default` without one.
    pub(crate) fn all_allowed(&self, required: AccessLevel) -> Decision {
        let catch_all = decide(self.catch_all(), required);
        if catch_all == Decision::Deny {
            return Decision::Deny;
        }
        let any_denied = self.leaves.values().any(|leaf| leaf.decide_all(required) == Decision::Deny);
        if any_denied {
            Decision::Deny
        } else {
            catch_all
        }
    }

    /// The leaves whose label starts `name`, shortest label first, the whole name included.
    fn leaves_along<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, &'a Leaf)> + 'a {
        // A label that is a byte prefix of `name` ends on one of its character boundaries, since
        // both are UTF-8: probing the boundaries finds them all.
        let boundaries = name.char_indices().map(|(at, _)| at).chain(std::iter::once(name.len()));
        boundaries.filter_map(move |end| {
            let label = &name[..end];
            self.leaves.get(label).map(|leaf| (label, leaf))
        })
    }

    /// The leaves whose label starts with `prefix`, `prefix` itself included.
    fn leaves_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Leaf> + 'a {
        self.leaves
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(label, _)| label.starts_with(prefix))
            .map(|(_, leaf)| leaf)
    }

    /// The prefix rule with the empty label, which governs every name no other rule does.
    fn catch_all(&self) -> Option<AccessLevel> {
        self.leaves.get("").and_then(|leaf| leaf.prefix)
    }
}

impl Leaf {
    /// One leaf's say in [`RuleTree::any_allowed`]: its prefix rule, else its exact rule.
    fn decide_any(self, required: AccessLevel) -> Decision {
        let prefix = decide(self.prefix, required);
        if prefix == Decision::Allow || self.exact.is_none() {
            return prefix;
        }
        decide(self.exact, required)
    }

    /// One leaf's say in [`RuleTree::all_allowed`]: a refusing prefix rule, else its exact rule,
    /// else its prefix rule.
    fn decide_all(self, required: AccessLevel) -> Decision {
        let prefix = decide(self.prefix, required);
        if prefix == Decision::Deny {
            return prefix;
        }
        match decide(self.exact, required) {
            Decision::Default => prefix,
            exact => exact,
        }
    }
}
