//! Branches, tags, HEAD, the reflog and revision syntax.

use std::fmt;

use sled::Transactional;

use crate::error::{Error, Result};
use crate::id::CommitId;
use crate::record::{self, RefLogRecord};
use crate::stage::Stage;
use crate::store::{kind, now_ms, Session, Store};

/// A ref: a branch (moves) or a tag (set once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefName {
    Branch(String),
    Tag(String),
}

impl RefName {
    pub(crate) fn key(&self) -> Vec<u8> {
        match self {
            RefName::Branch(b) => [b"branch/", b.as_bytes()].concat(),
            RefName::Tag(t) => [b"tag/", t.as_bytes()].concat(),
        }
    }

    pub fn short_name(&self) -> &str {
        match self {
            RefName::Branch(n) | RefName::Tag(n) => n,
        }
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefName::Branch(b) => write!(f, "branch \"{b}\""),
            RefName::Tag(t) => write!(f, "tag \"{t}\""),
        }
    }
}

/// What a ref must hold for an update to go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Any,
    Absent,
    Is(CommitId),
}

impl Expect {
    pub(crate) fn matches(&self, current: Option<CommitId>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Is(c) => current == Some(*c),
        }
    }

    pub(crate) fn value(&self) -> Option<CommitId> {
        match self {
            Expect::Is(c) => Some(*c),
            _ => None,
        }
    }

    /// Expect exactly `current`: absent when None.
    pub fn exactly(current: Option<CommitId>) -> Expect {
        current.map_or(Expect::Absent, Expect::Is)
    }
}

/// Move (or create) a ref.
#[derive(Clone, Debug)]
pub struct RefUpdate {
    pub name: RefName,
    pub new: CommitId,
    pub expected: Expect,
    /// Reflog message.
    pub message: String,
    /// A branch to write instead when `expected` does not hold, so a commit that lost a race
    /// stays reachable rather than failing.
    pub fallback: Option<String>,
}

/// One reflog entry of a branch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefLogEntry {
    pub old: Option<CommitId>,
    pub new: Option<CommitId>,
    pub time_ms: i64,
    pub message: String,
}

/// Refuses names that could be mistaken for revision syntax or are unprintable.
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            what,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if name.starts_with('-') {
        return bad("it starts with '-'");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains whitespace or a control character");
    }
    if name.contains(['~', '^', ':', '\\']) || name.contains("..") || name.contains("@{") {
        return bad("it contains '~', '^', ':', '\\', '..' or '@{'");
    }
    if name == "HEAD" || name == "@" {
        return bad("it is reserved for the current branch");
    }
    Ok(())
}

pub(crate) fn reflog_key(branch: &str, seq: u64) -> Vec<u8> {
    [branch.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

impl Session<'_> {
    pub fn head_branch(&self) -> Result<String> {
        let head = self.t.meta.get("HEAD")?;
        Ok(head.map_or("main".to_string(), |v| {
            String::from_utf8_lossy(&v).into_owned()
        }))
    }

    pub fn get_ref(&self, name: &RefName) -> Result<Option<CommitId>> {
        Ok(self
            .t
            .refs
            .get(name.key())?
            .and_then(|v| CommitId::from_slice(&v)))
    }

    fn list_refs(&self, prefix: &[u8]) -> Result<Vec<(String, CommitId)>> {
        let mut out = Vec::new();
        for item in self.t.refs.scan_prefix(prefix) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(c) = CommitId::from_slice(&v) {
                out.push((name, c));
            }
        }
        Ok(out)
    }

    pub fn branches(&self) -> Result<Vec<(String, CommitId)>> {
        self.list_refs(b"branch/")
    }

    pub fn tags(&self) -> Result<Vec<(String, CommitId)>> {
        self.list_refs(b"tag/")
    }

    pub fn reflog(&self, branch: &str) -> Result<Vec<RefLogEntry>> {
        let prefix = [branch.as_bytes(), &[0]].concat();
        let mut out = Vec::new();
        for item in self.t.reflog.scan_prefix(&prefix) {
            let (_, v) = item?;
            let r: RefLogRecord = record::decode(&v)?;
            let id = |b: [u8; 32]| (b != [0; 32]).then_some(CommitId(b));
            out.push(RefLogEntry {
                old: id(r.old),
                new: id(r.new),
                time_ms: r.time_ms,
                message: r.message,
            });
        }
        Ok(out)
    }

    /// Resolves a revision: `HEAD`, a branch, a tag, `branch@{N}` (the branch's value N moves
    /// ago), a full id or a unique hex prefix (at least 4 digits), followed by any number of `~N` (N first parents back) and `^N` (the
    /// N-th parent; `^0` is the commit itself).
    pub fn resolve(&self, rev: &str) -> Result<CommitId> {
        let bad = |cause: String| Error::BadRevision {
            rev: rev.to_string(),
            cause,
        };
        let split = rev.find(['~', '^']).unwrap_or(rev.len());
        let (base, mut steps) = rev.split_at(split);
        let mut commit = self.resolve_base(base).map_err(|e| match e {
            Error::BadRevision { cause, .. } => bad(cause),
            other => other,
        })?;

        while let Some(op) = steps.chars().next() {
            let rest = &steps[1..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let n: usize = if digits == 0 {
                1
            } else {
                rest[..digits]
                    .parse()
                    .map_err(|_| bad(format!("bad number after {op}")))?
            };
            steps = &rest[digits..];
            if let Some(c) = steps.chars().next().filter(|c| *c != '~' && *c != '^') {
                return Err(bad(format!("unexpected {c:?} after {op}: use ~N or ^N")));
            }
            let rec = self.get_commit(&commit)?;
            commit = match op {
                '^' if n == 0 => commit,
                '^' => CommitId(*rec.parents.get(n - 1).ok_or_else(|| {
                    bad(format!("commit {} has no parent {n}", commit.short(12)))
                })?),
                _ => {
                    let mut c = commit;
                    for i in 0..n {
                        let r = self.get_commit(&c)?;
                        c = CommitId(*r.parents.first().ok_or_else(|| {
                            bad(format!("history ends {i} steps back, at {}", c.short(12)))
                        })?);
                    }
                    c
                }
            };
        }
        Ok(commit)
    }

    fn resolve_base(&self, base: &str) -> Result<CommitId> {
        let bad = |cause: String| Error::BadRevision {
            rev: base.to_string(),
            cause,
        };
        if base.is_empty() {
            return Err(bad("empty revision".into()));
        }
        if base == "HEAD" || base == "@" {
            let branch = self.head_branch()?;
            return self
                .get_ref(&RefName::Branch(branch.clone()))?
                .ok_or_else(|| {
                    bad(format!(
                        "the current branch \"{branch}\" has no commits yet"
                    ))
                });
        }
        if let Some(c) = self.get_ref(&RefName::Branch(base.to_string()))? {
            return Ok(c);
        }
        // `branch@{N}`: the value the branch had N moves ago (`@{0}` is its current value).
        if let Some((branch, n)) = base.strip_suffix('}').and_then(|b| b.split_once("@{")) {
            let n: usize = n
                .parse()
                .map_err(|_| bad(format!("\"{n}\" is not a number of moves")))?;
            let log = self.reflog(branch)?;
            if log.is_empty() {
                return Err(bad(format!("branch \"{branch}\" has no reflog")));
            }
            let entry = log
                .len()
                .checked_sub(n + 1)
                .map(|i| &log[i])
                .ok_or_else(|| {
                    bad(format!(
                        "branch \"{branch}\" has moved only {} times",
                        log.len() - 1
                    ))
                })?;
            return entry
                .new
                .ok_or_else(|| bad(format!("branch \"{branch}\" did not exist then")));
        }
        if let Some(c) = self.get_ref(&RefName::Tag(base.to_string()))? {
            return Ok(c);
        }
        let is_hex = base.chars().all(|c| c.is_ascii_hexdigit());
        if !is_hex {
            return Err(bad("no branch, tag or commit has this name".into()));
        }
        if base.len() < 4 {
            return Err(bad(
                "no branch or tag has this name, and an id prefix needs 4 digits".into(),
            ));
        }
        let lower = base.to_ascii_lowercase();
        let even = &lower[..lower.len() / 2 * 2];
        let mut prefix = vec![kind::COMMIT];
        for i in (0..even.len()).step_by(2) {
            prefix.push(u8::from_str_radix(&even[i..i + 2], 16).expect("hex checked"));
        }
        let mut found = Vec::new();
        for item in self.t.objects.scan_prefix(&prefix) {
            let (k, _) = item?;
            let id = CommitId::from_slice(&k[1..]).expect("commit keys hold 32 bytes");
            if id.to_hex().starts_with(&lower) {
                found.push(id);
            }
            if found.len() > 5 {
                break;
            }
        }
        match found.len() {
            0 => Err(bad("no commit has this id prefix".into())),
            1 => Ok(found[0]),
            _ => Err(bad(format!(
                "ambiguous id prefix: it matches {}{}; give more digits",
                found
                    .iter()
                    .take(5)
                    .map(|c| c.short(12))
                    .collect::<Vec<_>>()
                    .join(", "),
                if found.len() > 5 { " and more" } else { "" }
            ))),
        }
    }
}

impl Store {
    /// Moves or creates refs in one transaction (with reflog entries for branches).
    pub fn update_refs(
        &self,
        updates: &[RefUpdate],
    ) -> Result<Vec<(String, String, Option<CommitId>)>> {
        for u in updates {
            check_name(
                if matches!(u.name, RefName::Tag(_)) {
                    "tag"
                } else {
                    "branch"
                },
                u.name.short_name(),
            )?;
            self.session()?.get_commit(&u.new)?;
        }
        Ok(Stage::new(self).finish(updates)?.fallbacks)
    }

    /// Points the current branch (HEAD) at another branch; it need not have commits yet.
    pub fn set_head(&self, branch: &str) -> Result<()> {
        check_name("branch", branch)?;
        let s = self.session()?;
        s.t.meta.insert("HEAD", branch.as_bytes())?;
        s.t.db.flush()?;
        Ok(())
    }

    /// Deletes a branch; its reflog keeps the last value, so it can be recreated.
    pub fn delete_branch(&self, branch: &str) -> Result<CommitId> {
        let s = self.session()?;
        if s.head_branch()? == branch {
            return Err(Error::Invalid(format!(
                "\"{branch}\" is the current branch; switch to another before deleting it"
            )));
        }
        let seq = s.t.db.generate_id()?;
        let name = RefName::Branch(branch.to_string());
        let res = (&s.t.refs, &s.t.reflog).transaction(|(refs, reflog)| {
            let Some(old) = refs.remove(name.key())? else {
                return Ok(None);
            };
            let entry = RefLogRecord {
                old: old.as_ref().try_into().unwrap_or([0; 32]),
                new: [0; 32],
                time_ms: now_ms(),
                message: "branch deleted".into(),
            };
            reflog.insert(reflog_key(branch, seq), record::encode(&entry))?;
            Ok(CommitId::from_slice(&old))
        });
        let old = res.map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => Error::from(e),
            sled::transaction::TransactionError::Abort(()) => Error::Invalid("aborted".into()),
        })?;
        s.t.db.flush()?;
        old.ok_or_else(|| Error::Invalid(format!("no branch named \"{branch}\"")))
    }
}
