//! How `agora` tells a user why it failed: the error and its causes on one
//! line, outermost first.
//!
//! Library errors often say their cause in their own message and also hand
//! it out as their source (so that a log line shows it whole); printed as a
//! chain, the same words would then appear twice. A cause whose words the
//! line already ends with is left out.

/// `error` and its causes, `: `-separated, each said once.
pub(crate) fn report(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says its source in its own message and hands it out
    /// too, or only hands it out.
    #[derive(Debug)]
    struct Outer {
        says_source: bool,
        source: std::io::Error,
    }

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.says_source {
                write!(f, "cannot write the checkpoint: {}", self.source)
            } else {
                write!(f, "cannot write the checkpoint")
            }
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once_whichever_way_the_error_is_written() {
        for says_source in [true, false] {
            let error = anyhow::Error::new(Outer {
                says_source,
                source: std::io::Error::other("the disk is full"),
            })
            .context("agent failed");
            assert_eq!(
                report(&error),
                "agent failed: cannot write the checkpoint: the disk is full"
            );
        }
    }

    #[test]
    fn a_lone_error_is_its_message() {
        assert_eq!(report(&anyhow::anyhow!("bad flag")), "bad flag");
    }
}
