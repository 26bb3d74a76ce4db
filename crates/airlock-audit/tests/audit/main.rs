//! The audit log at its boundaries: the public RFC 6962 vectors, the tree against its
//! recursive definition, and the log on disk.

mod log;
mod tree;
mod vectors;
