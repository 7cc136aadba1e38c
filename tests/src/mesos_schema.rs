//! Mesos' own protobuf schema, read from the descriptors compiled into its
//! Java bindings (`mesos-1.4.3-shaded-protobuf.jar`, which Spark ships), for
//! tests that hold our `.proto` files to it.
//!
//! `crates/libmesos/tests/java/DumpDescriptors.java` prints the schema one
//! line per field, default and enum value; [`dump`] runs it and [`Schema`]
//! reads its lines back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::run_with_deadline;
use crate::spark::SparkEnv;

/// The jar, under SPARK_HOME.
pub const JAR: &str = "jars/mesos-1.4.3-shaded-protobuf.jar";

/// The Mesos release the jar was built from.
pub const JAR_VERSION: &str = "1.4.3";

/// Runs `DumpDescriptors.java` against the jar Spark ships: the v0 schema
/// (`org.apache.mesos.Protos`) when `classes` is empty, else the files of the
/// named generated outer classes (e.g. `org.apache.mesos.v1.scheduler.Protos`).
/// Returns the printed lines, sorted.
pub fn dump(classes: &[&str]) -> anyhow::Result<Vec<String>> {
    let spark = SparkEnv::locate()?;
    let jar = spark.home.join(JAR);
    if !jar.exists() {
        bail!("{} is missing from the pyspark install", jar.display());
    }
    let dumper = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/libmesos/tests/java/DumpDescriptors.java");
    // `java File.java` compiles the one source file in memory and runs it.
    let mut command = Command::new(&spark.java);
    command.arg("-cp").arg(&jar).arg(&dumper).args(classes);
    let output = run_with_deadline(command, Duration::from_secs(120));
    if !output.status.success() {
        bail!(
            "DumpDescriptors {classes:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("DumpDescriptors printed non-UTF-8")?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// How a field is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: i32,
    /// `required`, `optional` or `repeated`.
    pub label: String,
    /// The lower-case protobuf type: `string`, `uint64`, `message`, `enum`, ...
    pub kind: String,
    /// The full name of a message or enum type (no leading dot).
    pub type_name: Option<String>,
    /// The explicit `[default = ...]`, as Java prints it (an enum's by name).
    pub default: Option<String>,
}

/// A schema as `DumpDescriptors.java` prints it.
#[derive(Debug, Default)]
pub struct Schema {
    /// Message full name -> field name -> field.
    pub messages: BTreeMap<String, BTreeMap<String, Field>>,
    /// Enum full name -> value name -> number.
    pub enums: BTreeMap<String, BTreeMap<String, i32>>,
}

impl Schema {
    /// Reads `DumpDescriptors.java`'s lines.
    pub fn parse(lines: &[String]) -> anyhow::Result<Schema> {
        let mut schema = Schema::default();
        let mut defaults = Vec::new();
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["field", message, name, number, label, kind, rest @ ..] => {
                    let field = Field {
                        number: number.parse().with_context(|| format!("in {line:?}"))?,
                        label: (*label).to_owned(),
                        kind: (*kind).to_owned(),
                        type_name: rest.first().map(|t| (*t).to_owned()),
                        default: None,
                    };
                    schema
                        .messages
                        .entry((*message).to_owned())
                        .or_default()
                        .insert((*name).to_owned(), field);
                }
                ["value", enumeration, name, number] => {
                    schema
                        .enums
                        .entry((*enumeration).to_owned())
                        .or_default()
                        .insert(
                            (*name).to_owned(),
                            number.parse().with_context(|| format!("in {line:?}"))?,
                        );
                }
                // A default may itself contain spaces (a string default).
                ["default", message, name, ..] => {
                    let prefix = format!("default {message} {name} ");
                    let value = line.strip_prefix(&prefix).unwrap_or_default();
                    defaults.push(((*message).to_owned(), (*name).to_owned(), value.to_owned()));
                }
                _ => bail!("unexpected DumpDescriptors line {line:?}"),
            }
        }
        for (message, name, value) in defaults {
            let field = schema
                .messages
                .get_mut(&message)
                .and_then(|fields| fields.get_mut(&name))
                .with_context(|| format!("a default for an unknown field {message}.{name}"))?;
            field.default = Some(value);
        }
        Ok(schema)
    }

    /// The number of an enum's value named `name`.
    pub fn value(&self, enumeration: &str, name: &str) -> Option<i32> {
        self.enums.get(enumeration)?.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_values_and_defaults() {
        let lines: Vec<String> = [
            "default m.A role *",
            "default m.A text a b",
            "field m.A n 2 repeated message m.B",
            "field m.A role 1 optional string",
            "field m.A text 3 optional string",
            "value m.E X 0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let schema = Schema::parse(&lines).expect("parses");
        let a = &schema.messages["m.A"];
        assert_eq!(a["n"].type_name.as_deref(), Some("m.B"));
        assert_eq!(a["n"].label, "repeated");
        assert_eq!(a["role"].default.as_deref(), Some("*"));
        assert_eq!(a["text"].default.as_deref(), Some("a b"));
        assert_eq!(schema.value("m.E", "X"), Some(0));
        assert!(Schema::parse(&["nonsense".to_string()]).is_err());
        assert!(Schema::parse(&["default m.Z x 1".to_string()]).is_err());
    }
}
