//! How layers are made and a build is run: file maps, the deterministic tar stream, compressors
//! with hashing writers (diffID inside, digest outside), the [`Layer`] value, and the build
//! orchestration (plan, report).
