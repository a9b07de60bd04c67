//! Holds no code: this package exists for the workspace-level integration tests in `tests/`.
