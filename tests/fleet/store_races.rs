//! The token stores under concurrent processes, and company statuses a refused token must not
//! overwrite.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::companies::import;

const OTHER: &str = "4620816365000000";

/// Whether a process waits in /proc/locks for the lock on the file with inode `ino`.
fn someone_waits_for(ino: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    locks.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(1) == Some(&"->")
            && fields
                .get(6)
                .and_then(|dev_ino| dev_ino.rsplit(':').next())
                .is_some_and(|i| i == ino.to_string())
    })
}

/// `auth import` for another realm rewrites the file that holds every realm: it must do so
/// under the store's lock, or it writes back a copy read before a refresh (which holds the
/// lock) saved the realm's rotated token, and that token is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_the_token_file_waits_for_a_refresh_in_progress() {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.import_refresh_token(&realm).await.assert_code(0);
    let path = w.token_file();
    let lock_path = path.with_file_name("tokens.json.lock");

    // This test is the process refreshing realm 1: it holds the lock.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let ino = std::fs::metadata(&lock_path).unwrap().ino();

    let mut cmd = w.qbo(&["auth", "import", "--realm-id", OTHER]);
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"imported-for-realm-2").await.unwrap();
    drop(stdin);
    // Wait until the import waits for the lock; an import that never does ends first.
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("auth import did not wait for the token file's lock (it exited {status})");
        }
        if someone_waits_for(ino) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // The refresh saves realm 1's rotated token, then lets go.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["realms"][&realm]["refresh_token"] = "rotated-while-import-waited".into();
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    drop(held);

    let r = Run::from(child.wait_with_output().await.unwrap());
    r.assert_code(0);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        file["realms"][&realm]["refresh_token"], "rotated-while-import-waited",
        "the import wrote back realm 1's retired token"
    );
    assert_eq!(
        file["realms"][OTHER]["refresh_token"],
        "imported-for-realm-2"
    );
}

async fn status_of(w: &World, realm: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status::text, status_reason FROM ops.companies WHERE realm_id = $1")
        .bind(realm)
        .fetch_one(&w.db.pool().await)
        .await
        .unwrap()
}

/// A company a human paused stays paused when QBO refuses its refresh token, and a new
/// token (`auth import`) does not start loading it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_never_unpauses_a_paused_company() {
    const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let env = [("QBO_TOKEN_STORE", "postgres"), ("QBO_TOKEN_KEY", KEY)];
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    import(&w, &realm, &w.sandbox.current_refresh_token(), &env)
        .await
        .assert_code(0);
    w.run(&[
        "companies",
        "pause",
        "--realm-id",
        &realm,
        "--reason",
        "audit",
    ])
    .await
    .assert_code(0);

    // The user disconnects the app; a command run for the company by hand is refused.
    w.sandbox.revoke_tokens();
    let env_opt: Vec<(&str, Option<&str>)> = env
        .iter()
        .map(|(k, v)| (*k, Some(*v)))
        .chain([("QBO_REFRESH_TOKEN", None)])
        .collect();
    let r = w
        .run_with(
            &[
                "verify",
                "invoices",
                "--start",
                "2030-01-01",
                "--end",
                "2030-01-02",
            ],
            &env_opt,
        )
        .await;
    r.assert_code(3);
    assert_eq!(
        status_of(&w, &realm).await,
        ("paused".to_string(), Some("audit".to_string()))
    );

    import(&w, &realm, &w.sandbox.current_refresh_token(), &env)
        .await
        .assert_code(0);
    assert_eq!(
        status_of(&w, &realm).await,
        ("paused".to_string(), Some("audit".to_string()))
    );
}
