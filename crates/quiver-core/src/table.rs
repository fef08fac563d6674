//! The unit that online rows, offline files and statistics are kept under.

use serde::{Deserialize, Serialize};

use crate::registry::FeatureSet;

/// One version of one feature set of a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    pub project: String,
    pub set: String,
    pub version: u32,
}

impl TableRef {
    /// The table of feature set `fs` (at its version) in `project`.
    pub fn new(project: &str, fs: &FeatureSet) -> TableRef {
        TableRef { project: project.to_string(), set: fs.name.clone(), version: fs.version }
    }
}
