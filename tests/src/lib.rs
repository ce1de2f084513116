//! Shared support for end-to-end tests.
