//! Exit codes of the command line, in one place.

/// Every drill passed.
pub const OK: i32 = 0;
/// A drill failed (an assertion or an expectation did not hold).
pub const DRILL_FAILED: i32 = 1;
/// Invalid input or usage.
pub const INVALID: i32 = 2;
/// No drill failed, but the environment broke (a bed process died, provisioning
/// failed): the run says nothing about Velero.
pub const ENVIRONMENT: i32 = 3;
/// Stopped by SIGINT or SIGTERM.
pub const INTERRUPTED: i32 = 130;
