//! Query strings as Go's `url.Values` reads them: a parameter may be present without a value
//! (`?recurse`), `Get` answers the first value, and `Encode` sorts by name.

/// A parameter's value that is not an unsigned integer (the value), in Go's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strconv.ParseUint: parsing {0:?}: invalid syntax")]
pub struct NotUnsigned(pub String);

/// A request's query parameters, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (`None`: no `?` at all).
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// Whether `name` is present, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (`?tag=a&tag=b`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `name`'s value as an unsigned integer; `Ok(None)` when absent. The error says it as
    /// Go's `strconv.ParseUint` does, which Consul answers with.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, NotUnsigned> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| NotUnsigned(text.to_owned())),
        }
    }

    /// `name`'s value as Go's `strconv.ParseBool` reads it: `None` when absent, `Some(None)`
    /// when it is not a boolean (callers decide what a bare `?name` means).
    pub fn go_bool(&self, name: &str) -> Option<Option<bool>> {
        self.get(name).map(|text| match text {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        })
    }

    /// Go's `url.Values.Encode`: sorted by name, values in order.
    pub fn encode_sorted(&self) -> String {
        let mut pairs = self.pairs.clone();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
    }

    /// Consul's refusal when more than one of `flags` is present.
    pub fn conflicting(&self, flags: &[&str]) -> Option<String> {
        let present = flags.iter().filter(|flag| self.has(flag)).count();
        (present > 1).then(|| format!("Conflicting flags: {}\n", self.encode_sorted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_go_reads_url_values() {
        let query = Query::parse(Some("recurse&separator=%2F&tag=a&tag=b&cas=7&acquire=s"));
        assert!(query.has("recurse") && !query.has("keys"));
        assert_eq!(query.get("recurse"), Some(""));
        assert_eq!(query.get("separator"), Some("/"));
        assert_eq!(query.all("tag").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(query.u64("cas"), Ok(Some(7)));
        assert_eq!(query.u64("flags"), Ok(None));
        assert_eq!(
            query.conflicting(&["cas", "acquire", "release"]).as_deref(),
            Some("Conflicting flags: acquire=s&cas=7&recurse=&separator=%2F&tag=a&tag=b\n")
        );
        assert_eq!(
            Query::parse(Some("flags=x")).u64("flags").map_err(|error| error.to_string()),
            Err("strconv.ParseUint: parsing \"x\": invalid syntax".to_owned())
        );
        assert!(!Query::parse(None).has("anything"));
    }
}
