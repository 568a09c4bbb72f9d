//! train, run, metrics, reproduce, worker, job.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use l3_store::{DatasetId, RefName, Store, TensorData};
use l3_worker::job::{self, JobOptions, JobSpec};
use l3_worker::{CsvOptions, Dataset, LabelColumn, Scenario, Settings, Strategy, StreamSpec};

use crate::cli::{Cli, JobCommand};
use crate::render;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyName {
    Naive,
    Joint,
    Ewc,
    Replay,
    Lwf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScenarioName {
    /// A head per task; the task is known at test time
    Til,
    /// One head over all classes seen
    Cil,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Parent revision (default: the branch's head; a fresh model if the branch is empty)
    #[arg(long)]
    pub from: Option<String>,
    /// Branch to commit on (default: the current branch)
    #[arg(long, short)]
    pub branch: Option<String>,
    /// Task name
    #[arg(long)]
    pub task: String,
    /// The task's classes, e.g. 0,1 (default: every label in the training data)
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<u32>,
    /// Training data: a data set in the store (name or id), a safetensors file with x and y,
    /// a CSV file (label in the last column), or "optdigits"
    #[arg(long)]
    pub data: String,
    /// Test data, same forms (default for "optdigits": its test split)
    #[arg(long)]
    pub test_data: Option<String>,
    #[arg(long, value_enum, default_value = "naive")]
    pub strategy: StrategyName,
    /// Scenario of a new model (default til); must match the parent's
    #[arg(long, value_enum)]
    pub scenario: Option<ScenarioName>,
    /// Online EWC penalty strength
    #[arg(long, default_value_t = 1000.0)]
    pub lambda: f64,
    /// Online EWC decay of the old Fisher diagonal
    #[arg(long, default_value_t = 1.0)]
    pub gamma: f64,
    /// Replay buffer capacity in samples
    #[arg(long, default_value_t = 1100)]
    pub capacity: usize,
    /// LwF distillation temperature
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// LwF distillation weight
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.001)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hidden layer widths of a new model (default 400,400); must match the parent's
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A stream file (see streams/)
    pub stream: PathBuf,
    /// Branch for the stream's commits (default: the stream's name)
    #[arg(long, short)]
    pub branch: Option<String>,
    /// Override the stream's seed
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Exit when the queue is empty instead of waiting for jobs
    #[arg(long)]
    pub once: bool,
    /// How long a taken job stays leased (and its parent pinned), in seconds
    #[arg(long, default_value_t = 600)]
    pub lease: u64,
    /// Exit after this many seconds without a job (0: never)
    #[arg(long, default_value_t = 0)]
    pub idle_exit: u64,
}

fn holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn settings_from(args: &TrainArgs) -> Settings {
    let strategy = match args.strategy {
        StrategyName::Naive => Strategy::Naive,
        StrategyName::Joint => Strategy::Joint,
        StrategyName::Ewc => Strategy::Ewc {
            lambda: args.lambda,
            gamma: args.gamma,
        },
        StrategyName::Replay => Strategy::Replay {
            capacity: args.capacity,
        },
        StrategyName::Lwf => Strategy::Lwf {
            temperature: args.temperature,
            alpha: args.alpha,
        },
    };
    Settings {
        strategy,
        scenario: match args.scenario {
            None | Some(ScenarioName::Til) => Scenario::TaskIncremental,
            Some(ScenarioName::Cil) => Scenario::ClassIncremental,
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        hidden: args.hidden.clone().unwrap_or_else(|| vec![400, 400]),
        ..Settings::default()
    }
}

/// Names the bundled data answers to; a stored data set may not take them.
pub const BUNDLED: [&str; 3] = ["optdigits", "optdigits-train", "optdigits-test"];

/// Where a data argument points: the bundled data, a stored data set or a file.
enum DataArg {
    Stored(DatasetId),
    Loaded(Dataset),
}

/// Resolves a data argument without writing anything.
fn data_arg(store: &Store, what: &str, test: bool) -> Result<DataArg> {
    if BUNDLED.contains(&what) {
        let train = match what {
            "optdigits-train" => true,
            "optdigits-test" => false,
            _ => !test,
        };
        return Ok(DataArg::Loaded(Dataset::optdigits_bundled(train)?));
    }
    let path = Path::new(what);
    if let Ok(id) = store.session()?.resolve_dataset(what) {
        if path.exists() {
            bail!("\"{what}\" is both a data set in the store and a file; give the data set's id, or the file as ./{what}");
        }
        return Ok(DataArg::Stored(id));
    }
    if !path.exists() {
        bail!("\"{what}\" is neither a data set in the store, nor a file, nor \"optdigits\"");
    }
    let tensors = load_table(path, None)?;
    Ok(DataArg::Loaded(Dataset::from_tensor_map(
        &tensors, "x", "y",
    )?))
}

/// The samples of `classes` (all when empty); refuses a selection with no samples.
fn select(store: &Store, arg: DataArg, what: &str, classes: &[u32]) -> Result<Dataset> {
    let data = match arg {
        DataArg::Stored(id) => job::load_dataset(store, &id)?,
        DataArg::Loaded(d) => d,
    };
    let data = if classes.is_empty() {
        data
    } else {
        data.select_classes(classes)
    };
    if data.n == 0 {
        bail!("{what} has no samples of classes {classes:?}");
    }
    Ok(data)
}

/// Builds the job for `l3 train` and `l3 job submit`. Everything is checked before anything
/// is written: a refused command leaves the store as it was.
fn prepare(store: &Store, args: &TrainArgs) -> Result<JobSpec> {
    let mut settings = settings_from(args);
    settings.validate()?;
    l3_store::check_name("task", &args.task)?;
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => store.session()?.head_branch()?,
    };
    l3_store::check_name("branch", &branch)?;
    let mut classes = args.classes.clone();
    classes.sort_unstable();
    if classes.windows(2).any(|w| w[0] == w[1]) {
        bail!("--classes lists a class twice: {:?}", args.classes);
    }

    let train_arg = data_arg(store, &args.data, false)?;
    let test_arg = match (&args.test_data, BUNDLED.contains(&args.data.as_str())) {
        (Some(t), _) => data_arg(store, t, true)?,
        (None, true) => data_arg(store, &args.data, true)?,
        (None, false) => bail!(
            "give --test-data (a data set or file to evaluate task \"{}\" on)",
            args.task
        ),
    };
    let train = select(store, train_arg, &args.data, &args.classes)?;
    let test = select(
        store,
        test_arg,
        args.test_data.as_deref().unwrap_or(&args.data),
        &args.classes,
    )?;
    let classes = if args.classes.is_empty() {
        train.classes()
    } else {
        args.classes.clone()
    };
    if let Some(c) = classes.iter().find(|c| **c as usize >= settings.outputs) {
        bail!(
            "class {c} is not below the model's {} outputs",
            settings.outputs
        );
    }
    if classes.len() < 2 {
        bail!(
            "task \"{}\" has {} class; a task needs at least two",
            args.task,
            classes.len()
        );
    }
    if train.d != test.d {
        bail!(
            "training data has {} features, test data {}",
            train.d,
            test.d
        );
    }

    let parent = match &args.from {
        Some(rev) => Some(store.session()?.resolve(rev)?),
        None => store.session()?.get_ref(&RefName::Branch(branch.clone()))?,
    };
    if let Some(p) = parent {
        // The model's shape comes from the parent; flags that contradict it are errors.
        let (k, _) = job::load_knowledge(store, &p)?;
        let cfg = k.config();
        if args.hidden.as_ref().is_some_and(|h| *h != cfg.hidden) {
            bail!(
                "--hidden {:?} contradicts the parent's model (hidden {:?})",
                args.hidden.as_ref().unwrap_or(&vec![]),
                cfg.hidden
            );
        }
        if args.scenario.is_some() && settings.scenario != cfg.scenario {
            bail!(
                "--scenario contradicts the parent's model ({})",
                cfg.scenario.name()
            );
        }
        if cfg.input_dim != train.d {
            bail!(
                "the data has {} features; the parent's model takes {}",
                train.d,
                cfg.input_dim
            );
        }
        if let Some((_, t)) = k.registry().task(&args.task) {
            if t.classes != classes {
                bail!("task \"{}\" was trained with classes {:?}; give it another name for classes {:?}", args.task, t.classes, classes);
            }
        }
        settings.hidden = cfg.hidden.clone();
        settings.scenario = cfg.scenario;
        settings.outputs = cfg.outputs;
    }

    // Checked: now store the data and, on an empty branch, the root.
    let train_id = job::store_dataset(store, &format!("{}/train", args.task), &train)?;
    let test_id = job::store_dataset(store, &format!("{}/test", args.task), &test)?;
    let parent = match parent {
        Some(p) => p,
        None => job::commit_root(
            store,
            &branch,
            &settings,
            train.d,
            &[(args.task.clone(), classes.clone(), test_id)],
            &super::author(),
        )?,
    };
    Ok(JobSpec {
        parent,
        branch: Some(branch),
        task: args.task.clone(),
        classes,
        train_data: train_id,
        test_data: test_id,
        settings,
    })
}

pub fn train(store: &Store, args: &TrainArgs) -> Result<String> {
    let spec = prepare(store, args)?;
    let opts = JobOptions {
        author: super::author(),
        holder: holder(),
        lease: Duration::from_secs(3600),
        fallback: None,
    };
    let out = job::run_job(store, &spec, &opts)?;
    if args.json {
        return Ok(render::json(&out));
    }
    let m = &out.record["metrics"];
    let mut text = format!("{}\n", out.commit);
    for e in m["row"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "  {:<24} {:.4}",
            e["task"].as_str().unwrap_or(""),
            e["accuracy"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(text)
}

pub fn run_stream(cli: &Cli, args: &RunArgs) -> Result<String> {
    let mut spec = StreamSpec::load(&args.stream)?;
    if let Some(seed) = args.seed {
        spec.seed = seed;
    }
    // The main job starts from nothing: create the store when there is none yet.
    let dir = super::locate(cli).or_else(|_| -> Result<PathBuf> { Ok(PathBuf::from(".l3")) })?;
    let store = match Store::open(&dir, super::options()?) {
        Ok(s) => s,
        Err(l3_store::Error::NotAStore(_)) => {
            eprintln!("creating a new store in {}", dir.display());
            Store::init(&dir, Default::default())?
        }
        Err(e) => return Err(e.into()),
    };
    let taken = |b: &str| -> Result<bool> {
        Ok(store
            .session()?
            .get_ref(&RefName::Branch(b.to_string()))?
            .is_some())
    };
    let branch = match &args.branch {
        Some(b) if taken(b)? => bail!("branch \"{b}\" already exists; pick another --branch"),
        Some(b) => b.clone(),
        // A repeated run of the same stream gets the next free name: name-2, name-3, ...
        None => {
            let mut name = spec.name.clone();
            let mut n = 1;
            while taken(&name)? {
                n += 1;
                name = format!("{}-{n}", spec.name);
            }
            name
        }
    };
    // A store whose current branch is empty follows the stream's branch.
    let head = store.session()?.head_branch()?;
    if !taken(&head)? {
        store.set_head(&branch)?;
    }
    let mut read = |p: &Path| -> l3_worker::Result<BTreeMap<String, TensorData>> {
        read_safetensors(p).map_err(|e| l3_worker::Error::Dataset(e.to_string()))
    };
    let data = spec.load_task_data(&mut read)?;
    let settings = spec.settings();
    let mut ids = Vec::new();
    for (i, t) in spec.tasks.iter().enumerate() {
        let tr = job::store_dataset(
            &store,
            &format!("{}/{}/train", spec.name, t.name),
            &data.train[i],
        )?;
        let te = job::store_dataset(
            &store,
            &format!("{}/{}/test", spec.name, t.name),
            &data.test[i],
        )?;
        ids.push((tr, te));
    }
    let tasks: Vec<(String, Vec<u32>, DatasetId)> = spec
        .tasks
        .iter()
        .zip(&ids)
        .map(|(t, (_, te))| (t.name.clone(), t.classes.clone(), *te))
        .collect();
    let d = data.train[0].d;
    let mut parent = job::commit_root(&store, &branch, &settings, d, &tasks, &super::author())?;
    let opts = JobOptions {
        author: super::author(),
        holder: holder(),
        lease: Duration::from_secs(3600),
        fallback: None,
    };
    let started = std::time::Instant::now();
    for (t, (tr, te)) in spec.tasks.iter().zip(&ids) {
        let job = JobSpec {
            parent,
            branch: Some(branch.clone()),
            task: t.name.clone(),
            classes: t.classes.clone(),
            train_data: *tr,
            test_data: *te,
            settings: settings.clone(),
        };
        tracing::info!(task = %t.name, "training");
        parent = job::run_job(&store, &job, &opts)?.commit;
    }
    let metrics = job::lineage_metrics(&store, parent)?;
    if args.json {
        return Ok(render::json(
            &serde_json::json!({"branch": branch, "head": parent, "metrics": metrics, "wall_time_s": started.elapsed().as_secs_f64()}),
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stream {} on branch {branch}: {} tasks in {:.1} s\n",
        spec.name,
        spec.tasks.len(),
        started.elapsed().as_secs_f64()
    );
    let lineage = crate::cli::LineageArgs {
        rev: parent.to_hex(),
        ancestors: true,
        descendants: false,
        dot: false,
        json: false,
    };
    out.push_str(&super::history::lineage(&store, &lineage)?);
    out.push('\n');
    out.push_str(&render_metrics(&metrics));
    Ok(out)
}

fn render_metrics(m: &job::LineageMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "accuracy matrix (row: after training task i; column: test on task j)"
    );
    let _ = write!(out, "{:<16}", "");
    for t in &m.tasks {
        let _ = write!(out, " {:>10}", truncate(t, 10));
    }
    out.push('\n');
    for (i, row) in m.matrix.iter().enumerate() {
        let _ = write!(out, "{:<16}", truncate(&m.tasks[i], 16));
        for j in 0..m.tasks.len() {
            match row.get(j) {
                Some(v) if j <= i => {
                    let _ = write!(out, " {v:>10.4}");
                }
                Some(v) => {
                    let _ = write!(out, " {:>10}", format!("({v:.3})"));
                }
                None => {
                    let _ = write!(out, " {:>10}", "-");
                }
            }
        }
        out.push('\n');
    }
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:+.4}"));
    let _ = writeln!(
        out,
        "\nACC {:.4}  BWT {}  FWT {}  forgetting {}",
        m.acc,
        f(m.bwt),
        f(m.fwt),
        m.forgetting.map_or("n/a".into(), |x| format!("{x:.4}"))
    );
    let nfr: Vec<String> = m
        .negative_flip_rate
        .iter()
        .map(|v| v.map_or("-".into(), |x| format!("{x:.4}")))
        .collect();
    let _ = writeln!(out, "negative flip rate per step: {}", nfr.join(" "));
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().skip(s.chars().count() - n).collect()
    }
}

pub fn metrics(store: &Store, rev: Option<&str>, json: bool) -> Result<String> {
    let head = store.session()?.resolve(rev.unwrap_or("HEAD"))?;
    let m = job::lineage_metrics(store, head)?;
    if json {
        return Ok(render::json(&m));
    }
    Ok(render_metrics(&m))
}

pub fn reproduce(store: &Store, rev: &str, json: bool) -> Result<String> {
    let commit = store.session()?.resolve(rev)?;
    let r = job::reproduce(store, &commit)?;
    if json {
        return Ok(render::json(&r));
    }
    let mut out = String::new();
    if r.identical {
        let _ = writeln!(
            out,
            "bit-identical: the re-run gives snapshot {}",
            r.rerun_snapshot
        );
    } else {
        let _ = writeln!(
            out,
            "differs: recorded {} re-run {}",
            r.recorded_snapshot.short(12),
            r.rerun_snapshot.short(12)
        );
        if r.recorded_threads.is_some_and(|t| t as usize != r.threads) {
            let _ = writeln!(
                out,
                "note: recorded with {:?} threads, re-run with {} (set RAYON_NUM_THREADS)",
                r.recorded_threads, r.threads
            );
        }
        for (name, d) in &r.differences {
            let _ = writeln!(
                out,
                "  {name}: max |diff| {}",
                d.map_or("n/a".into(), |d| format!("{d:.3e}"))
            );
        }
    }
    Ok(out)
}

pub fn worker(store: &Store, args: &WorkerArgs) -> Result<String> {
    let me = holder();
    let lease = Duration::from_secs(args.lease);
    let mut idle_since = std::time::Instant::now();
    let (mut done, mut failed) = (0, 0);
    loop {
        let Some(j) = store.lease_job(&me, lease)? else {
            // With --once, wait while queued jobs remain (they may wait for an earlier job
            // of their series that another worker runs); stop when none is left.
            let waiting = store
                .jobs()?
                .iter()
                .any(|j| j.state == l3_store::JobState::Queued);
            let idle = args.idle_exit > 0 && idle_since.elapsed().as_secs() >= args.idle_exit;
            if (args.once && !waiting) || idle {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        tracing::info!(job = j.id, "took job");
        let opts = JobOptions {
            author: super::author(),
            holder: me.clone(),
            lease,
            fallback: Some(format!("jobs/{}", j.id)),
        };
        let result = queued_spec(store, &j.spec)
            .map_err(|e| anyhow::anyhow!("job {}: {e:#}", j.id))
            .and_then(|spec| Ok(job::run_job(store, &spec, &opts)?));
        let (ok, summary) = match result {
            Ok(out) => {
                if let Some(winner) = out.lost_race_to {
                    tracing::info!(job = j.id, commit = %out.commit, winner = %winner, "branch moved; commit kept on {}", out.branch.as_deref().unwrap_or(""));
                }
                done += 1;
                (
                    true,
                    serde_json::json!({"commit": out.commit, "branch": out.branch, "lost_race_to": out.lost_race_to}),
                )
            }
            Err(e) => {
                tracing::error!(job = j.id, "job failed: {e:#}");
                failed += 1;
                (false, serde_json::json!({"error": format!("{e:#}")}))
            }
        };
        // A job that outlived its lease belongs to whoever took it over; this worker's
        // commit is kept (on its branch or jobs/<id>) but the record is theirs to write.
        if let Err(e) = store.finish_job(j.id, &me, ok, &summary) {
            tracing::warn!(
                job = j.id,
                "lease lost before the job ended ({e}); result {summary}"
            );
        }
        store.release_writer();
        idle_since = std::time::Instant::now();
    }
    if failed > 0 {
        bail!("{failed} of {} jobs failed; see `l3 job ls`", done + failed);
    }
    Ok(format!("{done} jobs done\n"))
}

/// The job a queue entry describes, its parent resolved for jobs that follow their branch.
fn queued_spec(store: &Store, queued: &serde_json::Value) -> Result<JobSpec> {
    let mut spec: JobSpec = serde_json::from_value(queued["job"].clone())
        .map_err(|e| anyhow::anyhow!("bad job spec: {e}"))?;
    if queued["follow"].as_bool() == Some(true) {
        if let Some(branch) = &spec.branch {
            if let Some(head) = store.session()?.get_ref(&RefName::Branch(branch.clone()))? {
                spec.parent = head;
            }
        }
    }
    Ok(spec)
}

pub fn job(store: &Store, cmd: &JobCommand) -> Result<String> {
    match cmd {
        JobCommand::Submit(args) => {
            let spec = prepare(store, args)?;
            // Without --from, the job follows its branch: the worker trains on the branch's
            // head when it takes the job, so queued jobs chain instead of racing.
            let follow = args.from.is_none();
            let mut queued = serde_json::json!({"job": spec, "follow": follow});
            if follow {
                // The store runs jobs with the same serial key one at a time, in order.
                queued["serial"] =
                    serde_json::json!(format!("branch:{}", spec.branch.as_deref().unwrap_or("")));
            }
            let id = store.submit_job(&queued)?;
            Ok(format!("{id}\n"))
        }
        JobCommand::Ls { json } => {
            let jobs = store.jobs()?;
            if *json {
                return Ok(render::json(&jobs));
            }
            let mut out = String::new();
            for j in &jobs {
                let task = j.spec["job"]["task"].as_str().unwrap_or("?");
                let commit = j.result["commit"].as_str().map(|c| &c[..12]).unwrap_or("");
                let err = j.result["error"].as_str().unwrap_or("");
                let _ = writeln!(
                    out,
                    "{:<6} {:<7} {:<20} attempts {} {}{} {}",
                    j.id,
                    format!("{:?}", j.state).to_lowercase(),
                    task,
                    j.attempts,
                    commit,
                    j.result["branch"]
                        .as_str()
                        .map(|b| format!(" on {b}"))
                        .unwrap_or_default(),
                    err
                );
            }
            Ok(out)
        }
    }
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    let (_, header) = l3_store::read_header(path)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = BTreeMap::new();
    for t in &header.tensors {
        let start = (header.data_start + t.begin) as usize;
        let data = bytes[start..start + (t.end - t.begin) as usize].to_vec();
        out.insert(
            t.name.clone(),
            TensorData::new(t.dtype, t.shape.clone(), data)?,
        );
    }
    Ok(out)
}

/// A CSV file (label column), a safetensors file with x and y, or the bundled optdigits data
/// ("optdigits-train", "optdigits-test") as x/y tensors.
pub fn load_table(file: &Path, label: Option<&str>) -> Result<BTreeMap<String, TensorData>> {
    let name = file.to_string_lossy();
    let data = match name.as_ref() {
        "optdigits-train" | "optdigits" => Dataset::optdigits_bundled(true)?,
        "optdigits-test" => Dataset::optdigits_bundled(false)?,
        _ if file.extension().is_some_and(|e| e == "safetensors")
            || looks_like_safetensors(file) =>
        {
            let t = read_safetensors(file)?;
            Dataset::from_tensor_map(&t, "x", "y")?
        }
        _ => {
            let label = label.map(|l| {
                l.parse::<usize>()
                    .map_or_else(|_| LabelColumn::Name(l.to_string()), LabelColumn::Index)
            });
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let columns = text.lines().next().map_or(0, |l| l.split(',').count());
            let header = matches!(label, Some(LabelColumn::Name(_)));
            let label = label.unwrap_or(LabelColumn::Index(columns.saturating_sub(1)));
            Dataset::csv(
                file,
                &CsvOptions {
                    label,
                    header,
                    scale: 1.0,
                },
            )?
        }
    };
    Ok(data.to_tensors()?)
}

/// Whether a file starts like safetensors: a header length that fits, then `{`.
fn looks_like_safetensors(file: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 9];
    let Ok(mut f) = std::fs::File::open(file) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    f.read_exact(&mut head).is_ok()
        && u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) < len
        && head[8] == b'{'
}

/// A PyTorch state dict (.pt, .pth, .bin), read with candle's pickle reader.
// Known limitation: only the dtypes candle's pickle reader supports (U8, U32, I64, F16,
// BF16, F32, F64) can be imported from PyTorch files.
pub fn read_pytorch(file: &Path) -> Result<BTreeMap<String, TensorData>> {
    use candle_core::DType as C;
    let tensors = candle_core::pickle::read_all(file).with_context(|| {
        format!(
            "{}: not a PyTorch state dict candle can read",
            file.display()
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let shape: Vec<u64> = t.dims().iter().map(|d| *d as u64).collect();
        let flat = t.flatten_all()?;
        let (dtype, bytes): (l3_store::DType, Vec<u8>) = match t.dtype() {
            C::U8 => (l3_store::DType::U8, flat.to_vec1::<u8>()?),
            C::U32 => (l3_store::DType::U32, flat.to_vec1::<u32>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            C::I64 => (l3_store::DType::I64, flat.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            C::F16 => (l3_store::DType::F16, flat.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            C::BF16 => (l3_store::DType::BF16, flat.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            C::F32 => (l3_store::DType::F32, flat.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            C::F64 => (l3_store::DType::F64, flat.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect()),
            other => bail!("{}: tensor \"{name}\" has dtype {other:?}, which l3 cannot import from a PyTorch file", file.display()),
        };
        out.insert(name, TensorData::new(dtype, shape, bytes)?);
    }
    Ok(out)
}
