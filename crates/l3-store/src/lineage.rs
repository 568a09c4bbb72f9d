//! Lineage queries: log, ancestors, descendants, merge base, blame and data provenance.

use std::collections::{BTreeSet, BinaryHeap, HashSet};

use crate::error::{Error, Result};
use crate::id::{CommitId, DatasetId, SnapshotId, TensorId};
use crate::record::CommitRecord;
use crate::store::Session;

/// A commit as callers see it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommitInfo {
    pub id: CommitId,
    pub snapshot: SnapshotId,
    pub parents: Vec<CommitId>,
    pub author: String,
    pub time_ms: i64,
    pub message: String,
    pub record: serde_json::Value,
    pub generation: u64,
}

impl CommitInfo {
    pub(crate) fn new(id: CommitId, r: CommitRecord) -> CommitInfo {
        CommitInfo {
            id,
            snapshot: SnapshotId(r.snapshot),
            parents: r.parents.into_iter().map(CommitId).collect(),
            author: r.author,
            time_ms: r.time_ms,
            message: r.message,
            record: serde_json::from_str(&r.record_json).unwrap_or(serde_json::Value::Null),
            generation: r.generation,
        }
    }
}

/// The data set ids a commit record names under `"data"` (strings of 64 hex digits).
pub fn record_datasets(record: &serde_json::Value) -> Vec<DatasetId> {
    let Some(list) = record.get("data").and_then(|d| d.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| v.as_str())
        .filter_map(|s| DatasetId::from_hex(s).ok())
        .collect()
}

impl Session<'_> {
    pub fn commit_info(&self, id: &CommitId) -> Result<CommitInfo> {
        Ok(CommitInfo::new(*id, self.get_commit(id)?))
    }

    /// History from `start`, newest first: every ancestor ordered by generation then time,
    /// or only the first-parent chain.
    pub fn log(
        &self,
        start: CommitId,
        first_parent: bool,
        limit: usize,
    ) -> Result<Vec<CommitInfo>> {
        let mut out = Vec::new();
        if first_parent {
            let mut next = Some(start);
            while let Some(id) = next {
                if out.len() >= limit {
                    break;
                }
                let info = self.commit_info(&id)?;
                next = info.parents.first().copied();
                out.push(info);
            }
            return Ok(out);
        }
        let mut heap = BinaryHeap::new();
        let mut seen = HashSet::new();
        let first = self.get_commit(&start)?;
        heap.push((first.generation, first.time_ms, start));
        seen.insert(start);
        while let Some((_, _, id)) = heap.pop() {
            if out.len() >= limit {
                break;
            }
            let info = self.commit_info(&id)?;
            for p in &info.parents {
                if seen.insert(*p) {
                    let r = self.get_commit(p)?;
                    heap.push((r.generation, r.time_ms, *p));
                }
            }
            out.push(info);
        }
        Ok(out)
    }

    /// Every ancestor of `id` (not including it).
    pub fn ancestors(&self, id: CommitId) -> Result<BTreeSet<CommitId>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(c) = stack.pop() {
            for p in self.get_commit(&c)?.parents {
                if seen.insert(CommitId(p)) {
                    stack.push(CommitId(p));
                }
            }
        }
        Ok(seen)
    }

    /// The commits whose parent is `id`, from the children index.
    pub fn children(&self, id: &CommitId) -> Result<Vec<CommitId>> {
        let mut out = Vec::new();
        for item in self.t.children.scan_prefix(id.as_bytes()) {
            let (k, _) = item?;
            out.push(CommitId::from_slice(&k[32..]).expect("children keys hold two ids"));
        }
        Ok(out)
    }

    /// Every descendant of `id` (not including it), from the children index.
    pub fn descendants(&self, id: CommitId) -> Result<BTreeSet<CommitId>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id];
        while let Some(c) = stack.pop() {
            for child in self.children(&c)? {
                if seen.insert(child) {
                    stack.push(child);
                }
            }
        }
        Ok(seen)
    }

    /// The best common ancestors of `a` and `b`: common ancestors that are not ancestors of
    /// another common ancestor. Usually one; none when the histories are unrelated.
    pub fn merge_bases(&self, a: CommitId, b: CommitId) -> Result<Vec<CommitId>> {
        let mut in_a = self.ancestors(a)?;
        in_a.insert(a);
        let mut in_b = self.ancestors(b)?;
        in_b.insert(b);
        let common: BTreeSet<CommitId> = in_a.intersection(&in_b).copied().collect();
        let mut redundant = HashSet::new();
        for c in &common {
            for anc in self.ancestors(*c)? {
                redundant.insert(anc);
            }
        }
        Ok(common
            .into_iter()
            .filter(|c| !redundant.contains(c))
            .collect())
    }

    /// The tensor id a snapshot maps `name` to.
    pub fn tensor_in(&self, snapshot: &SnapshotId, name: &str) -> Result<Option<TensorId>> {
        let snap = self.get_snapshot(snapshot)?;
        let found = snap.tensors.binary_search_by(|t| t.name.as_str().cmp(name));
        Ok(found.ok().map(|i| TensorId(snap.tensors[i].tensor)))
    }

    /// The commit that last changed tensor `name` as seen from `start`, following first
    /// parents: the oldest commit of the unbroken run holding the same tensor id. None when
    /// `start` has no tensor of that name.
    pub fn blame(&self, start: CommitId, name: &str) -> Result<Option<CommitInfo>> {
        let mut info = self.commit_info(&start)?;
        let Some(target) = self.tensor_in(&info.snapshot, name)? else {
            return Ok(None);
        };
        while let Some(parent) = info.parents.first().copied() {
            let p = self.commit_info(&parent)?;
            if self.tensor_in(&p.snapshot, name)? != Some(target) {
                break;
            }
            info = p;
        }
        Ok(Some(info))
    }

    /// The commits whose record names data set `data`.
    pub fn commits_with_data(&self, data: &DatasetId) -> Result<Vec<CommitInfo>> {
        let mut out = Vec::new();
        for item in self.t.data_index.scan_prefix(data.as_bytes()) {
            let (k, _) = item?;
            let id = CommitId::from_slice(&k[32..]).expect("data index keys hold two ids");
            match self.commit(&id)? {
                Some(r) => out.push(CommitInfo::new(id, r)),
                None => continue, // collected by gc after the index entry was read
            }
        }
        out.sort_by_key(|c| (c.generation, c.time_ms));
        Ok(out)
    }

    /// All data sets by name (the latest of each name) with their ids.
    pub fn datasets(&self) -> Result<Vec<(String, DatasetId)>> {
        let mut out = Vec::new();
        for item in self.t.datasets.iter() {
            let (k, v) = item?;
            let id = DatasetId::from_slice(&v)
                .ok_or_else(|| Error::Invalid("data set index holds a bad id".into()))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), id));
        }
        Ok(out)
    }

    /// Every data set with this name (a name points at its latest; earlier ones remain).
    pub fn datasets_named(&self, name: &str) -> Result<Vec<DatasetId>> {
        let mut out = Vec::new();
        for item in self.t.objects.scan_prefix([crate::store::kind::DATASET]) {
            let (k, v) = item?;
            let rec: crate::record::DatasetRecord = crate::record::decode(&v)?;
            if rec.name == name {
                out.push(DatasetId::from_slice(&k[1..]).expect("32-byte key"));
            }
        }
        Ok(out)
    }

    /// Resolves a data set by name or id (or unique id prefix).
    pub fn resolve_dataset(&self, what: &str) -> Result<DatasetId> {
        if let Some(v) = self.t.datasets.get(what.as_bytes())? {
            return DatasetId::from_slice(&v)
                .ok_or_else(|| Error::Invalid("data set index holds a bad id".into()));
        }
        if what.len() >= 4 && what.chars().all(|c| c.is_ascii_hexdigit()) {
            let lower = what.to_ascii_lowercase();
            let mut found = Vec::new();
            for item in self.t.objects.scan_prefix([crate::store::kind::DATASET]) {
                let (k, _) = item?;
                let id = DatasetId::from_slice(&k[1..]).expect("32-byte key");
                if id.to_hex().starts_with(&lower) {
                    found.push(id);
                }
            }
            if found.len() == 1 {
                return Ok(found[0]);
            }
            if found.len() > 1 {
                return Err(Error::Invalid(format!(
                    "data set prefix \"{what}\" is ambiguous"
                )));
            }
        }
        Err(Error::Invalid(format!("no data set named \"{what}\"")))
    }
}
