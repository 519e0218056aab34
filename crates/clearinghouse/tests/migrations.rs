//! The clearinghouse's migration lists against their folders.

use numport_db::migrate;

/// Every file of the clearinghouse's migration folders is in its list, as it is on disk.
#[test]
fn the_clearinghouse_lists_match_their_folders() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    migrate::check_folder(&root.join("migrations/sqlite"), clearinghouse::store::SQLITE_MIGRATIONS).unwrap();
    migrate::check_folder(&root.join("migrations/postgres"), clearinghouse::store::POSTGRES_MIGRATIONS).unwrap();
}
