#![no_main]
//! Changesets: the input is both a commit message, read by
//! `itsm_change::domain::changeset::change_numbers` (which change numbers it names), and a TFVC
//! changeset export, read by `itsm_change::import::tfvc_export`; each changeset read is then
//! checked by `itsm_change::changesets::validate_record`, as the server would on record.
//!
//! Beyond "does not panic":
//! - every change number found is a whole `CHG` number of at least 7 digits that the message
//!   holds (in any case), finding them again in the list of them gives the same set, and each
//!   one is accepted as an explicit link `changes/CHG…` by `validate_record`;
//! - a changeset read from an export keeps the repository it was given, has a numeric revision
//!   and a commit time; a refused export says why; a recorded changeset has a committer.

use std::sync::OnceLock;

use itsm_change::changesets::validate_record;
use itsm_change::convert::{CHANGE_NUMBER, CHANGE_PREFIX};
use itsm_change::domain::changeset::change_numbers;
use itsm_change::import::{ImportError, tfvc_export};
use itsm_proto::change::Changeset;
use itsm_runtime::numbers::{DIGITS, is_number};
use libfuzzer_sys::fuzz_target;

const REPOSITORY: &str = "$/Fuzz";
/// At most this many explicit links per changeset (`MAX_LINKS` in changesets.rs).
const MAX_LINKS: usize = 100;

/// A changeset `validate_record` accepts, to test links against.
fn valid_changeset() -> &'static Changeset {
    static VALID: OnceLock<Changeset> = OnceLock::new();
    VALID.get_or_init(|| {
        let export = r#"[{"changesetId": 1, "author": {"uniqueName": "fuzz@example.com"},
                          "createdDate": "2026-01-01T00:00:00Z"}]"#;
        let mut changesets = tfvc_export(export, REPOSITORY).expect("the fixed export reads");
        changesets.remove(0)
    })
}

fn check_numbers(message: &str) {
    let numbers = change_numbers(message, CHANGE_NUMBER, DIGITS);
    let upper = message.to_ascii_uppercase();
    for number in &numbers {
        assert!(is_number(number, CHANGE_NUMBER), "{number:?} is not a change number");
        assert!(upper.contains(number.as_str()), "{number:?} is not in the message");
    }
    let listed = numbers.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    assert_eq!(change_numbers(&listed, CHANGE_NUMBER, DIGITS), numbers, "found again in {listed:?}");

    let links: Vec<String> =
        numbers.iter().take(MAX_LINKS).map(|number| format!("{CHANGE_PREFIX}{number}")).collect();
    if let Err(error) = validate_record(Some(valid_changeset()), &links) {
        panic!("links {links:?} from the message are refused: {error}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    check_numbers(text);

    match tfvc_export(text, REPOSITORY) {
        Ok(changesets) => {
            for changeset in &changesets {
                assert_eq!(changeset.repository, REPOSITORY);
                assert!(
                    !changeset.revision.is_empty() && changeset.revision.bytes().all(|b| b.is_ascii_digit()),
                    "revision {:?}",
                    changeset.revision
                );
                let time = changeset.commit_time.as_ref().expect("a changeset without a commit time");
                // Protobuf's range, also for a leap second (`23:59:60`).
                assert!((0..1_000_000_000).contains(&time.nanos), "nanos {}", time.nanos);
                if let Ok((model, links)) = validate_record(Some(changeset), &[]) {
                    assert!(!model.committer.is_empty(), "recorded without a committer");
                    assert!(links.is_empty());
                }
                check_numbers(&changeset.message);
            }
        }
        Err(ImportError::Tfvc(reason)) => assert!(!reason.is_empty(), "refused without a reason"),
        Err(other) => panic!("a TFVC export failed as something else: {other}"),
    }
});
