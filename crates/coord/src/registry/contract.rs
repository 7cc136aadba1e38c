//! The [`RegistryStore`] contract as a check every implementation's tests
//! run (re-exported as `agora_coord::testing::check_registry_store`).

use super::{MAX_VALUE_BYTES, RegistryError, RegistryStore, Version};

/// Checks that an *empty* store follows the [`RegistryStore`] contract:
/// create-if-absent, compare-and-set updates, conflicts on stale versions,
/// deletes, the value size limit, key validation, and sorted loads.
///
/// # Panics
/// On the first deviation, naming it.
pub async fn check_registry_store(store: &dyn RegistryStore) {
    fn conflict<T: std::fmt::Debug>(result: Result<T, RegistryError>, what: &str) {
        assert!(
            matches!(result, Err(RegistryError::Conflict { .. })),
            "{what}: expected a conflict, got {result:?}"
        );
    }
    let entries = store.load().await.expect("load an empty store");
    assert!(entries.is_empty(), "store is not empty: {entries:?}");

    let v0 = store
        .put("a", b"one".to_vec(), None)
        .await
        .expect("create a");
    assert_eq!(v0, Version(0), "a new key starts at version 0");
    conflict(store.put("a", b"x".to_vec(), None).await, "create existing");
    conflict(
        store.put("a", b"x".to_vec(), Some(Version(1))).await,
        "update with a future version",
    );
    let v1 = store
        .put("a", b"two".to_vec(), Some(v0))
        .await
        .expect("update a");
    assert_eq!(v1, Version(1), "an update bumps the version");
    conflict(
        store.put("a", b"x".to_vec(), Some(v0)).await,
        "update with a stale version",
    );
    conflict(
        store.put("missing", b"x".to_vec(), Some(Version(0))).await,
        "update a missing key",
    );

    let big = vec![7u8; MAX_VALUE_BYTES];
    store
        .put("big", big.clone(), None)
        .await
        .expect("a value at the limit");
    let too_big = vec![7u8; MAX_VALUE_BYTES + 1];
    assert!(
        matches!(
            store.put("big2", too_big, None).await,
            Err(RegistryError::TooLarge { .. })
        ),
        "a value over the limit is refused"
    );
    assert!(
        matches!(
            store.put("a/b", Vec::new(), None).await,
            Err(RegistryError::InvalidKey { .. })
        ),
        "a key with a slash is refused"
    );
    store
        .put("agent:0", Vec::new(), None)
        .await
        .expect("an empty value");

    let loaded = store.load().await.expect("load");
    let summary: Vec<(&str, usize, Version)> = loaded
        .iter()
        .map(|e| (e.key.as_str(), e.value.len(), e.version))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", 3, Version(1)),
            ("agent:0", 0, Version(0)),
            ("big", MAX_VALUE_BYTES, Version(0))
        ],
        "load returns every entry, sorted by key"
    );
    assert_eq!(loaded[0].value, b"two");
    assert_eq!(loaded[2].value, big);

    conflict(
        store.delete("a", Some(v0)).await,
        "delete with a stale version",
    );
    store.delete("a", Some(v1)).await.expect("delete a");
    store
        .delete("a", None)
        .await
        .expect("deleting a missing key unconditionally");
    conflict(
        store.delete("a", Some(v1)).await,
        "delete a missing key at a version",
    );
    store.delete("big", None).await.expect("delete big");
    assert_eq!(
        store
            .put("a", b"three".to_vec(), None)
            .await
            .expect("re-create a"),
        Version(0),
        "a re-created key starts at version 0"
    );
    let keys: Vec<String> = store
        .load()
        .await
        .expect("load")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["a", "agent:0"]);
}
