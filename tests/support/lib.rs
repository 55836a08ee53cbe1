//! Test support for the end-to-end suite: required tools, scratch directories, base images made
//! with tools that are not ours, and real registries started on loopback.
