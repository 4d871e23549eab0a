//! Test hooks for crash tests, built only with the `failpoints` feature (the test builds
//! enable it; a release build has no trace of them).

/// `QBO_TEST_FAILPOINT=<name>`: the task that reaches `name` says so on stderr and never
/// goes on, so a test can SIGKILL the process at exactly that point (waiting for what the
/// point leaves in Postgres, never for a time). The process's other tasks (heartbeats
/// included) run on until it is killed, as they would in a process that died there.
#[cfg(feature = "failpoints")]
pub async fn hold(name: &str) {
    if std::env::var("QBO_TEST_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: holding until killed");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hold(_name: &str) {}
