//! Escape probes and sandbox integration tests (see README in this directory).
