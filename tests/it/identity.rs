//! The identity key: creation, permissions, stability, corruption.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use goop2::identity::{self, IdentityError};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_key_is_private_and_the_peer_id_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/keys/identity.key");

    let first = identity::load_or_create(&path).unwrap();
    assert!(first.created);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data/keys")), 0o700);
    assert!(
        first.peer_id.to_string().starts_with("12D3KooW"),
        "Ed25519 peer IDs start so"
    );

    let second = identity::load_or_create(&path).unwrap();
    assert!(!second.created);
    assert_eq!(second.peer_id, first.peer_id);
    assert_eq!(second.keypair.public(), first.keypair.public());
    let entries: Vec<_> = fs::read_dir(dir.path().join("data/keys"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1, "no temporary file is left behind");
}

#[test]
fn a_corrupt_key_is_an_error_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    let garbage = b"\x08\x01\x12\x05not a key at all".to_vec();
    fs::write(&path, &garbage).unwrap();

    let err = identity::load_or_create(&path)
        .err()
        .expect("corrupt key must fail");
    assert!(matches!(err, IdentityError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("the identity key {} is corrupt (", path.display())),
        "{text}"
    );
    assert!(
        text.ends_with(
            "It was left untouched: restore it from a backup, or move it aside to create a new \
             identity (the peer ID will change)"
        ),
        "{text}"
    );
    assert_eq!(fs::read(&path).unwrap(), garbage);
}

#[test]
fn an_empty_key_file_is_corrupt_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.key");
    fs::write(&path, b"").unwrap();
    let err = identity::load_or_create(&path).err().unwrap();
    assert!(err.to_string().contains("(the file is empty)"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn a_key_path_that_is_a_directory_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let err = identity::load_or_create(dir.path()).err().unwrap();
    assert!(matches!(err, IdentityError::Unreadable { .. }), "{err:?}");
}
