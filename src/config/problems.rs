//! The collector that validation reports to: every problem, each under the key it is about.

use std::fmt::Display;

/// Problems found in a configuration, each a message under its key
/// (`server.listen: "localhost" is not a socket address …`). Validation goes on past a problem,
/// so that one run reports them all; a section's validator gets a `Problems` already under its
/// section's name and names only its own keys.
pub(super) struct Problems<'a> {
    list: &'a mut Vec<String>,
    /// The key everything reported here is under (`capture.rules[2]`); empty at the top.
    at: String,
}

impl<'a> Problems<'a> {
    /// Collects into `list`, with no key in front.
    pub(super) fn new(list: &'a mut Vec<String>) -> Self {
        Problems {
            list,
            at: String::new(),
        }
    }

    /// The problems under `key`: `problems.under("server").report("listen", …)` reports
    /// `server.listen: …`.
    pub(super) fn under(&mut self, key: &str) -> Problems<'_> {
        let at = self.key(key);
        Problems {
            list: self.list,
            at,
        }
    }

    /// The problems of item `i` of the list `key`: `capture.rules[2]`.
    pub(super) fn item(&mut self, key: &str, i: usize) -> Problems<'_> {
        let at = format!("{}[{i}]", self.key(key));
        Problems {
            list: self.list,
            at,
        }
    }

    /// The problems of item `i` of the list this collector is under: `sinks[2]`.
    pub(super) fn index(&mut self, i: usize) -> Problems<'_> {
        let at = format!("{}[{i}]", self.at);
        Problems {
            list: self.list,
            at,
        }
    }

    /// Report a problem with `key`.
    pub(super) fn report(&mut self, key: &str, message: impl Display) {
        let key = self.key(key);
        self.list.push(format!("{key}: {message}"));
    }

    /// Report a problem with the key this collector is under (a list item as a whole, say).
    pub(super) fn here(&mut self, message: impl Display) {
        self.list.push(format!("{}: {message}", self.at));
    }

    /// Report each of `values` that is 0: they are counts or sizes that must be at least 1.
    pub(super) fn at_least_one(&mut self, values: &[(&str, usize)]) {
        for &(key, v) in values {
            if v == 0 {
                self.report(key, "must be at least 1");
            }
        }
    }

    /// Problems reported so far, by anyone; compare two counts to learn whether a step found
    /// any.
    pub(super) fn count(&self) -> usize {
        self.list.len()
    }

    fn key(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Problems;

    #[test]
    fn keys_nest() {
        let mut list = Vec::new();
        let mut top = Problems::new(&mut list);
        top.report("TOLLGATE_X", "a");
        let mut capture = top.under("capture");
        capture.report("enabled", "b");
        capture.item("rules", 2).report("status", "c");
        capture.item("rules", 3).here("d");
        top.under("sinks").index(1).report("url", "e");
        assert_eq!(top.count(), 5);
        assert_eq!(
            list,
            [
                "TOLLGATE_X: a",
                "capture.enabled: b",
                "capture.rules[2].status: c",
                "capture.rules[3]: d",
                "sinks[1].url: e",
            ]
        );
    }
}
