//! Layer directories shared by threads and guarded against `cache clean`: made once, waited
//! for, made again after a failure or a removal, locked while leased.

use std::fs::{File, TryLockError};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use super::*;

/// A layer tar holding `etc/which` = `content`, owned by this process (so no root needed).
fn layer_tar(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    // SAFETY: geteuid and getegid cannot fail.
    header.set_uid(unsafe { libc::geteuid() }.into());
    header.set_gid(unsafe { libc::getegid() }.into());
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "etc/which", content.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

fn read_which(lease: &Lease) -> String {
    std::fs::read_to_string(lease.path().join("etc/which")).unwrap()
}

#[test]
fn threads_wanting_one_directory_make_it_once_and_share_it() {
    let cache = tempfile::tempdir().unwrap();
    let dirs = LayerDirs::new(Some(cache.path())).unwrap();
    let identity = Identity::key("files abc");
    let made = AtomicUsize::new(0);
    let start = Barrier::new(4);
    let leases: Vec<Lease> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    dirs.get(&identity, |make| {
                        made.fetch_add(1, Ordering::SeqCst);
                        make(&mut Cursor::new(layer_tar("one")))
                    })
                    .unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert!(leases.iter().all(|lease| lease.path() == leases[0].path()));
    assert_eq!(read_which(&leases[0]), "one");
    assert!(leases[0].path().starts_with(layer_dir_root(cache.path())));

    // A later build finds it without making it.
    drop(leases);
    let again = LayerDirs::new(Some(cache.path())).unwrap();
    let lease = again
        .get(&identity, |_| panic!("made before: not made again"))
        .unwrap();
    assert_eq!(read_which(&lease), "one");
}

#[test]
fn a_leased_directory_refuses_the_exclusive_lock_cache_clean_takes() {
    let cache = tempfile::tempdir().unwrap();
    let dirs = LayerDirs::new(Some(cache.path())).unwrap();
    let identity = Identity::diff_id(&Digest::sha256(b"layer"));
    let lease = dirs
        .get(&identity, |make| make(&mut Cursor::new(layer_tar("x"))))
        .unwrap();
    let clean = File::open(lease.path()).unwrap();
    assert!(matches!(clean.try_lock(), Err(TryLockError::WouldBlock)));
    drop(lease);
    clean.try_lock().unwrap();
}

#[test]
fn a_directory_removed_or_failed_is_made_again() {
    let cache = tempfile::tempdir().unwrap();
    let dirs = LayerDirs::new(Some(cache.path())).unwrap();
    let identity = Identity::key("apt sha256:abc v1");
    let failed = dirs.get(&identity, |_| Err(BuildError::Invalid("no tar".into())));
    assert!(failed.is_err());
    let lease = dirs
        .get(&identity, |make| make(&mut Cursor::new(layer_tar("first"))))
        .unwrap();
    let path = lease.path().to_owned();
    drop(lease);
    // What `cache clean` does: renamed aside, then removed.
    std::fs::rename(&path, path.with_file_name(".tmp-removing-x")).unwrap();
    let lease = dirs
        .get(&identity, |make| {
            make(&mut Cursor::new(layer_tar("second")))
        })
        .unwrap();
    assert_eq!(lease.path(), path);
    assert_eq!(read_which(&lease), "second");
}

#[test]
fn a_directory_made_ahead_is_waited_for() {
    let cache = tempfile::tempdir().unwrap();
    let dirs = Arc::new(LayerDirs::new(Some(cache.path())).unwrap());
    let identity = Identity::diff_id(&Digest::sha256(b"base"));
    dirs.make_in_background(identity.clone(), Cursor::new(layer_tar("ahead")));
    let lease = dirs
        .get(&identity, |make| make(&mut Cursor::new(layer_tar("here"))))
        .unwrap();
    // Either the background make was done or under way (waited for): never made twice.
    assert_eq!(read_which(&lease), "ahead");
}

#[test]
fn identities_of_one_name_in_two_kinds_are_two_directories() {
    let digest = Digest::sha256(b"x");
    assert_ne!(
        Identity::diff_id(&digest).dir_name(),
        Identity::key(&digest.to_string()).dir_name()
    );
    assert_eq!(Identity::key("k").dir_name().len(), 64);
}
