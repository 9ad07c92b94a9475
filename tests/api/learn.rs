//! learn tests.
