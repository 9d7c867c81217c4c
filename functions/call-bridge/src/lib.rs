//! The call bridge.
