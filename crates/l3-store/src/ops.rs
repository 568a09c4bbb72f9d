//! Rollback, pins and the job queue.

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::CommitId;
use crate::record::{self, JobRecord, PinRecord};
use crate::refs::{Expect, RefName, RefUpdate};
use crate::stage::{NewCommit, Stage};
use crate::store::{fresh_u64, now_ms, Store};

impl Store {
    /// Moves `branch` to `target` (any commit); the reflog keeps the old value.
    pub fn reset(&self, branch: &str, target: CommitId) -> Result<Option<CommitId>> {
        let old = self
            .session()?
            .get_ref(&RefName::Branch(branch.to_string()))?;
        if old.is_none() {
            return Err(Error::Invalid(format!(
                "no branch named \"{branch}\"; create one with `l3 branch {branch} REV`"
            )));
        }
        self.update_refs(&[RefUpdate {
            name: RefName::Branch(branch.to_string()),
            new: target,
            expected: Expect::exactly(old),
            message: format!("reset to {}", target.short(12)),
            fallback: None,
        }])?;
        Ok(old)
    }

    /// Commits on `branch` a child of its head whose snapshot is `target`'s: the knowledge
    /// rolls back while history only grows.
    pub fn revert(&self, branch: &str, target: CommitId, author: &str) -> Result<CommitId> {
        let (head, snapshot) = {
            let s = self.session()?;
            let head = s
                .get_ref(&RefName::Branch(branch.to_string()))?
                .ok_or_else(|| {
                    Error::Invalid(format!("branch \"{branch}\" has no commits to revert"))
                })?;
            let snapshot = crate::SnapshotId(s.get_commit(&target)?.snapshot);
            if s.get_commit(&head)?.snapshot == snapshot.0 {
                return Err(Error::Invalid(format!(
                    "branch \"{branch}\" already holds the knowledge of {}; nothing to revert",
                    target.short(12)
                )));
            }
            (head, snapshot)
        };
        let mut stage = Stage::new(self);
        let commit = stage.add_commit(NewCommit {
            snapshot,
            parents: vec![head],
            author: author.to_string(),
            time_ms: None,
            message: format!("revert to {}", target.short(12)),
            record: serde_json::json!({"kind": "revert", "reverted_to": target}),
        })?;
        stage.finish(&[RefUpdate {
            name: RefName::Branch(branch.to_string()),
            new: commit,
            expected: Expect::Is(head),
            message: format!("revert to {}", target.short(12)),
            fallback: None,
        }])?;
        Ok(commit)
    }

    /// Keeps `commit` and all it reaches from gc for `ttl`. Returns the pin's id.
    pub fn pin(&self, commit: CommitId, holder: &str, ttl: Duration) -> Result<u64> {
        let id = fresh_u64();
        let rec = PinRecord {
            commit: commit.0,
            expires_ms: now_ms() + ttl.as_millis() as i64,
            holder: holder.to_string(),
        };
        let s = self.session()?;
        s.get_commit(&commit)?;
        s.t.pins.insert(id.to_be_bytes(), record::encode(&rec))?;
        s.t.db.flush()?;
        Ok(id)
    }

    pub fn unpin(&self, pin: u64) -> Result<()> {
        let s = self.session()?;
        s.t.pins.remove(pin.to_be_bytes())?;
        s.t.db.flush()?;
        Ok(())
    }
}

/// A job's state in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Leased,
    Done,
    Failed,
}

impl JobState {
    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> JobState {
        match c {
            0 => JobState::Queued,
            1 => JobState::Leased,
            2 => JobState::Done,
            _ => JobState::Failed,
        }
    }
}

/// A queued job as callers see it.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: u64,
    pub state: JobState,
    pub attempts: u32,
    pub holder: String,
    pub lease_expires_ms: i64,
    pub spec: serde_json::Value,
    pub result: serde_json::Value,
    pub submitted_ms: i64,
}

fn job_from(id: u64, r: JobRecord) -> Job {
    Job {
        id,
        state: JobState::from_code(r.state),
        attempts: r.attempts,
        holder: r.lease_holder,
        lease_expires_ms: r.lease_expires_ms,
        spec: serde_json::from_str(&r.spec_json).unwrap_or(serde_json::Value::Null),
        result: serde_json::from_str(&r.result_json).unwrap_or(serde_json::Value::Null),
        submitted_ms: r.submitted_ms,
    }
}

/// Failed attempts after which a job is marked failed rather than retried.
pub const MAX_ATTEMPTS: u32 = 3;

impl Store {
    /// Adds a job (any JSON the worker understands) to the queue.
    pub fn submit_job(&self, spec: &serde_json::Value) -> Result<u64> {
        let s = self.session()?;
        let next = s.t.meta.update_and_fetch("next-job", |old| {
            let n = old
                .and_then(|o| o.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            Some((n + 1).to_le_bytes().to_vec())
        })?;
        let id = next
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(1, u64::from_le_bytes);
        let rec = JobRecord {
            spec_json: spec.to_string(),
            state: JobState::Queued.code(),
            attempts: 0,
            lease_holder: String::new(),
            lease_expires_ms: 0,
            result_json: "null".into(),
            submitted_ms: now_ms(),
        };
        s.t.jobs.insert(id.to_be_bytes(), record::encode(&rec))?;
        s.t.db.flush()?;
        Ok(id)
    }

    pub fn jobs(&self) -> Result<Vec<Job>> {
        let s = self.session()?;
        let mut out = Vec::new();
        for item in s.t.jobs.iter() {
            let (k, v) = item?;
            let id = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            out.push(job_from(id, record::decode(&v)?));
        }
        Ok(out)
    }

    /// Takes the oldest queued job, or one whose lease ran out, for `lease`.
    // Known limitation: leases are not renewed while a job runs; a job longer than its lease may
    // be taken again by another worker. Both commits are kept (the second on jobs/<id>), so
    // nothing is lost, but the work is done twice.
    pub fn lease_job(&self, holder: &str, lease: Duration) -> Result<Option<Job>> {
        let s = self.session()?;
        let now = now_ms();
        // Jobs that share a `serial` key (top level of their spec, e.g. the branch whose tip
        // they train on) run one at a time, in submission order.
        let serial = |rec: &JobRecord| -> Option<String> {
            let spec: serde_json::Value = serde_json::from_str(&rec.spec_json).ok()?;
            spec.get("serial")?.as_str().map(str::to_string)
        };
        let mut busy = std::collections::HashSet::new();
        for item in s.t.jobs.iter() {
            let (_, v) = item?;
            let rec: JobRecord = record::decode(&v)?;
            if JobState::from_code(rec.state) == JobState::Leased && rec.lease_expires_ms >= now {
                busy.extend(serial(&rec));
            }
        }
        for item in s.t.jobs.iter() {
            let (k, v) = item?;
            let mut rec: JobRecord = record::decode(&v)?;
            let state = JobState::from_code(rec.state);
            let free = state == JobState::Queued
                || (state == JobState::Leased && rec.lease_expires_ms < now);
            if !free {
                continue;
            }
            if let Some(key) = serial(&rec) {
                if !busy.insert(key) {
                    continue; // an earlier job of the same series runs or waits
                }
            }
            if rec.attempts >= MAX_ATTEMPTS {
                rec.state = JobState::Failed.code();
                rec.result_json =
                    serde_json::json!({"error": "lease expired too many times"}).to_string();
                s.t.jobs.insert(&k, record::encode(&rec))?;
                continue;
            }
            rec.state = JobState::Leased.code();
            rec.attempts += 1;
            rec.lease_holder = holder.to_string();
            rec.lease_expires_ms = now + lease.as_millis() as i64;
            // Compare-and-swap: another worker in this process may have taken it.
            if s.t
                .jobs
                .compare_and_swap(&k, Some(&v), Some(record::encode(&rec)))?
                .is_ok()
            {
                s.t.db.flush()?;
                let id = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                return Ok(Some(job_from(id, rec)));
            }
        }
        s.t.db.flush()?;
        Ok(None)
    }

    /// Records a job's end. Only the lease holder may finish it.
    pub fn finish_job(
        &self,
        id: u64,
        holder: &str,
        ok: bool,
        result: &serde_json::Value,
    ) -> Result<()> {
        let s = self.session()?;
        let key = id.to_be_bytes();
        let v =
            s.t.jobs
                .get(key)?
                .ok_or_else(|| Error::Invalid(format!("no job {id}")))?;
        let mut rec: JobRecord = record::decode(&v)?;
        if rec.lease_holder != holder {
            return Err(Error::Invalid(format!(
                "job {id} is leased by {}, not {holder}",
                rec.lease_holder
            )));
        }
        rec.state = if ok {
            JobState::Done.code()
        } else {
            JobState::Failed.code()
        };
        rec.result_json = result.to_string();
        s.t.jobs.insert(key, record::encode(&rec))?;
        s.t.db.flush()?;
        Ok(())
    }
}
