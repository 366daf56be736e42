//! Loading and watching a manifests directory.

use std::time::{Duration, Instant};

use ambit_agent::cluster::ObjectKey;
use ambit_agent::manifests::{load_dir, watch_dir};

#[test]
fn loads_every_file_and_reports_bad_documents() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: app}\n---\nkey: [unclosed\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: app}\nspec: {ports: [{port: eighty}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: app}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: app}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sub/deeper/b.json"),
        r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s2"}}]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("sub/c.yml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: app}\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "apiVersion: v1\nkind: Pod\nmetadata: {name: ignored}\n").unwrap();

    let (state, errors) = load_dir(dir.path());
    assert!(state.namespaces.contains_key("app"));
    assert!(state.pods.contains_key(&ObjectKey::new("app", "p")));
    assert!(state.pods.contains_key(&ObjectKey::new("app", "q")));
    assert!(state.services.contains_key(&ObjectKey::new("default", "s2")));
    assert_eq!(state.len(), 4, "{state:#?}");

    assert_eq!(errors.len(), 3, "{errors:#?}");
    let a = dir.path().join("a.yaml");
    assert!(errors.iter().all(|e| e.file == a));
    assert_eq!(errors[0].document, Some(2));
    assert!(errors[0].message.contains("invalid YAML"), "{}", errors[0]);
    assert_eq!((errors[1].document, errors[1].kind.as_deref(), errors[1].name.as_deref()), (Some(3), Some("Service"), Some("app/web")));
    assert!(errors[1].to_string().contains("a.yaml (document 3) Service app/web: invalid Service"), "{}", errors[1]);
    assert_eq!((errors[2].document, errors[2].kind.as_deref()), (Some(4), Some("Pod")));
    assert!(errors[2].message.contains("metadata.name"), "{}", errors[2]);
}

#[test]
fn missing_directory_is_an_error() {
    let (state, errors) = load_dir(std::path::Path::new("/nonexistent/ambit-manifests"));
    assert!(state.is_empty());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].document, None);
}

#[tokio::test]
async fn watch_sees_changes_and_atomic_renames_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let ns = |name: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    std::fs::write(dir.path().join("a.yaml"), ns("one")).unwrap();
    let mut rx = watch_dir(dir.path().to_path_buf(), Duration::from_millis(200));
    assert!(rx.borrow().state.namespaces.contains_key("one"));

    async fn wait_for(rx: &mut tokio::sync::watch::Receiver<std::sync::Arc<ambit_agent::manifests::Loaded>>, name: &str) {
        let start = Instant::now();
        loop {
            if rx.borrow_and_update().state.namespaces.contains_key(name) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(1), "change to {name} not seen within 1 s");
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    // Same size, same second: content hashing still sees it.
    std::fs::write(dir.path().join("a.yaml"), ns("two")).unwrap();
    wait_for(&mut rx, "two").await;
    // Atomic replace via rename.
    std::fs::write(dir.path().join(".tmp"), ns("six")).unwrap();
    std::fs::rename(dir.path().join(".tmp"), dir.path().join("a.yaml")).unwrap();
    wait_for(&mut rx, "six").await;
    // A new file in a new subdirectory.
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/b.yaml"), ns("new")).unwrap();
    wait_for(&mut rx, "new").await;
    assert!(rx.borrow().state.namespaces.contains_key("six"));
}
