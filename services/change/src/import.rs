//! Reading changesets from version control: a git repository's history (through the `git`
//! command, so every repository format and setting git understands works) and a TFVC / Azure
//! DevOps changeset export in JSON.
//!
//! The TFVC format is what `GET {org}/{project}/_apis/tfvc/changesets` returns — an object with a
//! `value` array, or the array alone — with each changeset's `changes` (from
//! `.../changesets/{id}/changes`) merged in when files are wanted:
//!
//! ```json
//! {"value": [{"changesetId": 1234,
//!             "author": {"displayName": "Ann Lee", "uniqueName": "ann@example.com"},
//!             "checkedInBy": {"displayName": "Build Bot", "uniqueName": "build@example.com"},
//!             "createdDate": "2026-03-01T10:00:00Z",
//!             "comment": "CHG0000012: raise pool size",
//!             "changes": [{"item": {"path": "$/Shop/src/pool.cs"}, "changeType": "edit"}]}]}
//! ```

use std::path::Path;
use std::process::Command;

use itsm_proto::change::Changeset;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("git: {0}")]
    Git(String),
    #[error("TFVC export: {0}")]
    Tfvc(String),
}

/// Field and record separators in the `git log` format (ASCII unit and record separators).
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';

fn git(repo: &Path, args: &[&str]) -> Result<String, ImportError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "core.quotePath=false"])
        .args(args)
        .output()
        .map_err(|e| ImportError::Git(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(ImportError::Git(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| ImportError::Git("git printed text that is not UTF-8".into()))
}

/// The history of `branch` (default: the checked-out branch) of the git repository at `repo`,
/// oldest first, at most `max_count` commits (the newest ones). The repository is named by its
/// `origin` remote, else by its path.
pub fn git_history(
    repo: &Path,
    branch: Option<&str>,
    max_count: Option<usize>,
) -> Result<Vec<Changeset>, ImportError> {
    let branch = match branch {
        Some(b) => b.to_string(),
        None => git(repo, &["rev-parse", "--abbrev-ref", "HEAD"])?.trim().to_string(),
    };
    let repository = match git(repo, &["config", "--get", "remote.origin.url"]) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => std::fs::canonicalize(repo).unwrap_or_else(|_| repo.to_path_buf()).display().to_string(),
    };
    let format = format!("--format={RECORD}%H{FIELD}%an <%ae>{FIELD}%cn <%ce>{FIELD}%cI{FIELD}%B{FIELD}");
    let mut args = vec!["log", "--no-color", "--name-only", format.as_str()];
    let limit = max_count.map(|n| format!("--max-count={n}"));
    if let Some(limit) = &limit {
        args.push(limit);
    }
    args.push(&branch);
    args.push("--");
    let log = git(repo, &args)?;
    let mut changesets = Vec::new();
    for record in log.split(RECORD).filter(|r| !r.trim().is_empty()) {
        let fields: Vec<&str> = record.splitn(6, FIELD).collect();
        let [revision, author, committer, time, message, files] = fields[..] else {
            return Err(ImportError::Git(format!("unexpected log record: {record:?}")));
        };
        let commit_time = chrono::DateTime::parse_from_rfc3339(time.trim())
            .map_err(|e| ImportError::Git(format!("commit {revision}: time {time:?}: {e}")))?;
        changesets.push(Changeset {
            repository: repository.clone(),
            revision: revision.trim().to_string(),
            author: author.to_string(),
            committer: committer.to_string(),
            commit_time: Some(timestamp(commit_time.timestamp(), commit_time.timestamp_subsec_nanos())),
            message: message.trim_end().to_string(),
            branch: branch.clone(),
            files: files.lines().map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect(),
            ..Default::default()
        });
    }
    changesets.reverse();
    Ok(changesets)
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum TfvcExport {
    Listed { value: Vec<TfvcChangeset> },
    Bare(Vec<TfvcChangeset>),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TfvcChangeset {
    changeset_id: u64,
    author: Option<TfvcIdentity>,
    checked_in_by: Option<TfvcIdentity>,
    created_date: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    changes: Vec<TfvcChange>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TfvcIdentity {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    unique_name: String,
}

impl TfvcIdentity {
    fn text(&self) -> String {
        match (self.display_name.is_empty(), self.unique_name.is_empty()) {
            (false, false) => format!("{} <{}>", self.display_name, self.unique_name),
            (true, _) => self.unique_name.clone(),
            (false, true) => self.display_name.clone(),
        }
    }
}

#[derive(serde::Deserialize)]
struct TfvcChange {
    item: TfvcItem,
}

#[derive(serde::Deserialize)]
struct TfvcItem {
    path: String,
}

/// Changesets from a TFVC export (see the module documentation), in the order given.
pub fn tfvc_export(json: &str, repository: &str) -> Result<Vec<Changeset>, ImportError> {
    let export: TfvcExport = serde_json::from_str(json).map_err(|e| ImportError::Tfvc(e.to_string()))?;
    let list = match export {
        TfvcExport::Listed { value } => value,
        TfvcExport::Bare(list) => list,
    };
    list.into_iter()
        .map(|c| {
            let time = chrono::DateTime::parse_from_rfc3339(&c.created_date).map_err(|e| {
                ImportError::Tfvc(format!(
                    "changeset {}: createdDate {:?}: {e}",
                    c.changeset_id, c.created_date
                ))
            })?;
            let author = c.author.as_ref().map(TfvcIdentity::text).unwrap_or_default();
            Ok(Changeset {
                repository: repository.to_string(),
                revision: c.changeset_id.to_string(),
                committer: c.checked_in_by.as_ref().map_or_else(|| author.clone(), TfvcIdentity::text),
                author,
                commit_time: Some(timestamp(time.timestamp(), time.timestamp_subsec_nanos())),
                message: c.comment,
                files: c.changes.into_iter().map(|change| change.item.path).collect(),
                ..Default::default()
            })
        })
        .collect()
}

/// A protobuf Timestamp, whose nanos must be below 1e9: chrono reads a leap second (`23:59:60`)
/// as second 59 with 1e9 ns or more, which becomes the last nanosecond of that second.
fn timestamp(seconds: i64, nanos: u32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: nanos.min(999_999_999) as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_stays_a_valid_timestamp() {
        let leap = chrono::DateTime::parse_from_rfc3339("2016-12-31T23:59:60.5Z").unwrap();
        let stamp = timestamp(leap.timestamp(), leap.timestamp_subsec_nanos());
        assert!((0..1_000_000_000).contains(&stamp.nanos), "{stamp:?}");
        assert_eq!(stamp.seconds, leap.timestamp());
    }

    #[test]
    fn reads_a_tfvc_rest_listing_and_a_bare_array() {
        let listed = r#"{"count": 1, "value": [{"changesetId": 1234,
            "author": {"displayName": "Ann Lee", "uniqueName": "ann@example.com"},
            "checkedInBy": {"displayName": "Build Bot", "uniqueName": "build@example.com"},
            "createdDate": "2026-03-01T10:00:00.123Z", "comment": "CHG0000012: raise pool size",
            "changes": [{"item": {"path": "$/Shop/src/pool.cs"}, "changeType": "edit"}]}]}"#;
        let changesets = tfvc_export(listed, "$/Shop").unwrap();
        assert_eq!(changesets.len(), 1);
        let c = &changesets[0];
        assert_eq!((c.revision.as_str(), c.repository.as_str()), ("1234", "$/Shop"));
        assert_eq!(c.author, "Ann Lee <ann@example.com>");
        assert_eq!(c.committer, "Build Bot <build@example.com>");
        assert_eq!(c.files, ["$/Shop/src/pool.cs"]);
        assert_eq!(c.commit_time.as_ref().unwrap().nanos, 123_000_000);

        let bare = r#"[{"changesetId": 7, "author": {"uniqueName": "bob@example.com"}, "createdDate": "2026-03-02T08:00:00Z"}]"#;
        let changesets = tfvc_export(bare, "$/Shop").unwrap();
        assert_eq!(changesets[0].committer, "bob@example.com", "the author checked it in");
        assert!(changesets[0].message.is_empty());
    }

    #[test]
    fn a_broken_tfvc_export_says_what_is_wrong() {
        assert!(matches!(tfvc_export("{", "$/Shop"), Err(ImportError::Tfvc(_))));
        let bad_date = r#"[{"changesetId": 7, "createdDate": "yesterday"}]"#;
        let err = tfvc_export(bad_date, "$/Shop").unwrap_err().to_string();
        assert!(err.contains("changeset 7") && err.contains("yesterday"), "{err}");
    }

    #[test]
    fn a_directory_that_is_not_a_repository_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(git_history(dir.path(), None, None), Err(ImportError::Git(_))));
    }
}
