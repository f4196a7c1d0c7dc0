//! The training loop shared by every job.
//!
//! One optimizer step: re-seed the RNG from `(seed, step)`; for each of `grad_accum_steps`
//! micro-batches, the job's mean loss weighted by the micro-batch's share of the step's
//! samples (so the summed gradient is the big batch's mean-loss gradient), backward, and
//! accumulate; stop on a non-finite loss or gradient norm before touching the weights; clip
//! the global norm; AdamW at the schedule's rate for this step. Then log, evaluate and
//! checkpoint as configured. In bf16/fp16 the micro-batches run on a low-precision copy of
//! the fp32 master weights and their gradients come back to fp32 (`precision`). Everything
//! a step depends on is a function of the step number and the checkpointed tensors, which is
//! what makes a resumed run repeat the same curve.
//!
//! Data-parallel (`Settings::collective` with more than one rank): every rank takes its shard of
//! each micro-batch (`Plan`), starts from rank 0's weights, and averages gradients and loss
//! with the others before the non-finite check, clipping and AdamW, so every rank applies the
//! same update and N ranks × batch b train like one process with batch N·b. Evaluations sum
//! over the ranks' parts of each held-out set (`evaluate`). Rank 0 alone writes metrics,
//! samples, checkpoints, the final weights and `summary.json`.
//!
//! Stopping: `Settings::stop` is asked at every step boundary; when it says so (a signal), the
//! loop ends there, a checkpoint is written when checkpointing is on, and the summary says
//! `interrupted` (no final weights, no `summary.json`: the run is not over, `resume=auto`
//! continues it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, FloatDType};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use super::best::{self, Tracker};
use super::checkpoint::{self, Loaded, TrainState};
use super::collective::{self, Collective};
use super::evaluate::evaluate;
use super::job::{EvalSet, Job};
use super::loader::{Loader, Plan};
use super::metrics::{Metrics, TrainRecord};
use super::precision::{LossScale, Precision, Verdict};
use super::progress::Progress;
use super::schedule::{DEFAULT_WSD_DECAY_FRACTION, Schedule};
use super::seed::{epoch_seed, mix, rank_step_seed};
use super::{backend, clip, optim, params};
use crate::config::derived::{Derived, Steps};
use crate::config::types::{Backend, Experiment, Strategy};
use crate::error::fail;

pub const SUMMARY_FILE: &str = "summary.json";
pub const FINAL_WEIGHTS: &str = "model.safetensors";

/// How the RNG state at a step boundary is defined (recorded in checkpoints).
const RNG_SCHEME: &str = "reseeded before every step from (seed, step)";

pub struct Settings<'a> {
    pub exp: &'a Experiment,
    pub derived: &'a Derived,
    /// The length of training for this job's training set (`Derived::steps`).
    pub steps: &'a Steps,
    pub run_dir: &'a Path,
    /// Draw a live progress bar (a terminal, not `--quiet`, text logs).
    pub live_bar: bool,
    /// The other ranks of a data-parallel run (`collective::Single` when training alone).
    pub collective: &'a dyn Collective,
    /// The checkpoint to continue from, picked and checked before the run directory was
    /// touched (the same on every rank).
    pub resume: Option<&'a Loaded>,
    /// Asked at every step boundary: whether to stop there (a signal arrived).
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Every step was taken.
    Completed,
    /// `Settings::stop` asked to stop at a step boundary.
    Interrupted,
}

/// `summary.json`: how the run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub status: Ended,
    pub job: String,
    pub steps: u64,
    pub total_steps: u64,
    pub epochs: f64,
    pub samples: u64,
    /// Seconds spent training, over all resumed segments.
    pub train_seconds: f64,
    pub samples_per_s: f64,
    /// Mean training loss over the last logging interval.
    pub final_loss: Option<f64>,
    /// Last evaluation, by held-out set.
    pub eval: Map<String, Json>,
    pub weights: String,
    pub last_checkpoint: Option<String>,
    pub resumed_from: Option<String>,
    /// fp16 only: the loss scale at the end and the updates skipped for overflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
    /// By `eval.metric_for_best`: the best evaluation and the kept ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best: Option<BestSummary>,
    /// Why training stopped before its last step (early stopping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// This process's resident memory (Linux): what `runner plan`'s estimate is checked
    /// against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryUse>,
}

/// `summary.json`'s `memory`, in bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryUse {
    /// Resident when the first step began (weights, data, the process).
    pub rss_at_first_step: u64,
    /// The process's high-water mark at the end of training.
    pub peak_rss: u64,
    /// Bytes allocated and not freed when the first step began, and the most at any time
    /// since (`train::memory::CountingAllocator`; on burn-flex only, absent on libtorch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_at_first_step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_allocated: Option<u64>,
}

/// `summary.json`'s `best`.
#[derive(Debug, Clone, Serialize)]
pub struct BestSummary {
    pub metric: String,
    pub greater_is_better: bool,
    pub step: u64,
    pub value: f64,
    /// The evaluations whose weights are under `best/`, best first.
    pub kept: Vec<best::Scored>,
    /// Whether `model.safetensors` holds the best evaluation's weights
    /// (`checkpoint.load_best_at_end`) rather than the last step's.
    pub final_weights_are_best: bool,
}

pub fn train<J: Job>(job: Arc<J>, s: &Settings, device: &Device) -> Result<Summary> {
    let exp = s.exp;
    let job_name = exp.job.as_str();
    let coll = s.collective;
    let (rank, world) = (coll.rank(), coll.world());
    let main = coll.is_main();
    let bucket = collective::bucket_elements(exp.hardware.ddp_bucket_cap_mb);
    let plan = Plan {
        examples: job.train_len(),
        batch_size: exp.train.per_device_batch_size as usize,
        accum: s.derived.grad_accum_steps as usize,
        drop_last: exp.loader.drop_last,
        shuffle: exp.loader.shuffle,
        seed: exp.seed,
        rank,
        world,
    };
    let steps = s.steps;
    let (steps_per_epoch, total_steps) = (steps.steps_per_epoch, steps.total_steps);
    let schedule = schedule(exp, s.derived, steps)?;

    // --- model, optimizer, and where to start
    if main {
        checkpoint::remove_partial(s.run_dir)?;
        crate::durable::remove_leftovers(s.run_dir);
    }
    let resume = s.resume;
    let _rng = super::backend::RNG_LOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    backend::seed(device, exp.seed);
    // Initialised on the embedded backend whatever the training device: burn draws a
    // parameter's initial values when it is first read, which `with_path_ids` does for every
    // parameter in module order, here, before the move (a lazy parameter moved unread would
    // draw on the target device's generator instead).
    let init_device = backend::init_device();
    let mut model = params::with_path_ids(job.init_model(&init_device)?);
    if init_device != *device {
        model = model.fork(device);
    }
    let mut precision = Precision::new(&exp.precision);
    let mut optim = optim::build(&exp.optimizer, &model);
    let mut step = steps.first_step;
    let mut samples = 0u64;
    let mut train_seconds = 0.0;
    if let Some(loaded) = resume {
        let st = &loaded.state;
        loaded.fits(steps)?;
        model = loaded.load_model(model)?;
        optim = loaded.load_optimizer(optim)?;
        precision.restore(st.loss_scale);
        step = st.step;
        samples = st.samples;
        train_seconds = st.train_seconds;
        tracing::info!("resuming from {} (step {step})", loaded.dir.display());
    } else if let Some(init) = &exp.init_from {
        model = job
            .load_weights(model, Path::new(init))
            .with_context(|| format!("init_from: cannot load `{init}`"))?;
        tracing::info!("initialised weights from {init}");
    }
    // DDP's start: rank 0's weights everywhere (they are the same already when every rank
    // initialised from the seed and read the same files; this makes sure of it).
    model = collective::broadcast_model(coll, model, bucket)?;

    let tb_dir = exp
        .logging
        .tensorboard
        .then(|| PathBuf::from(&s.derived.logging_dir));
    let mut metrics = if main {
        Metrics::open(
            s.run_dir,
            tb_dir.as_deref(),
            exp.logging.jsonl,
            resume.map(|r| r.state.step),
        )?
    } else {
        Metrics::none()
    };
    let mut tracker =
        best::Policy::of(exp).map(|p| Tracker::new(p, resume.and_then(|r| r.state.best.clone())));
    if main {
        // Weights a killed run kept after the checkpoint it resumes from are not the
        // resumed run's: its own evaluations decide again.
        let kept = tracker
            .as_ref()
            .map(|t| t.state.kept.clone())
            .unwrap_or_default();
        best::prune(s.run_dir, &kept)?;
    }
    let mut stopped_early: Option<String> = None;
    let progress = Progress::new(s.live_bar && main, total_steps, step);
    let eval_batch = s.derived.eval_per_device_batch_size as usize;
    let log_every = u64::from(exp.train.log_every_steps);
    let clip_norm = exp.train.clip_grad_norm;
    let recompute = exp.train.gradient_checkpointing;

    let at = StateOf {
        exp,
        plan: &plan,
        total_steps,
    };
    let mut last_eval: Option<(u64, Vec<EvalSet>)> = None;
    let mut last_checkpoint: Option<(u64, PathBuf)> = resume.map(|r| (r.state.step, r.dir.clone()));
    let mut final_loss = None;
    let mut interval = Interval::new();
    let mut lr = 0.0;
    let mut ended = Ended::Completed;

    let run_eval = |model: &J::Model, step: u64, metrics: &mut Metrics| -> Result<Vec<EvalSet>> {
        let started = Instant::now();
        let sets = evaluate(
            &*job,
            &model.valid(),
            device,
            eval_batch,
            coll,
            step,
            s.run_dir,
        )?;
        let epoch = step as f64 / steps_per_epoch as f64;
        metrics.eval(step, epoch, &sets)?;
        progress.suspend(|| {
            for set in &sets {
                let shown: Vec<String> = set
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                tracing::info!(
                    "eval step {step} {}: {} ({:.1}s)",
                    set.name,
                    shown.join("  "),
                    started.elapsed().as_secs_f64()
                );
            }
        });
        Ok(sets)
    };

    if exp.eval.on_start && exp.eval.strategy != Strategy::No && resume.is_none() {
        let sets = run_eval(&model, step, &mut metrics)?;
        judge(&mut tracker, &sets, step, &model, s.run_dir, main)?;
        last_eval = Some((step, sets));
    }
    let rss_at_first_step = crate::host::rss_bytes();
    // The counting allocator sees burn-flex's tensors, not libtorch's.
    let allocated = || {
        (exp.hardware.backend == Backend::Flex)
            .then(crate::train::memory::allocated)
            .flatten()
    };
    crate::train::memory::reset_peak();
    let allocated_at_first_step = allocated().map(|(now, _)| now);
    let segment_start = Instant::now();
    let seconds_before = train_seconds;
    let start_step = step;
    'epochs: while step < total_steps {
        let epoch = step / steps_per_epoch;
        let micro = plan.micro_batches(epoch);
        let first_micro = ((step % steps_per_epoch) as usize) * plan.accum;
        let steps_left_in_epoch =
            (steps_per_epoch - step % steps_per_epoch).min(total_steps - step);
        let wanted = (steps_left_in_epoch as usize * plan.accum).min(micro.len() - first_micro);
        let groups: Vec<Vec<Vec<usize>>> = micro[first_micro..first_micro + wanted]
            .chunks(plan.accum)
            .map(<[Vec<usize>]>::to_vec)
            .collect();
        let mut loader = Loader::new(
            job.clone(),
            groups.iter().flatten().cloned().collect(),
            epoch_seed(exp.seed, epoch),
            exp.loader.num_workers as usize,
            exp.loader.prefetch_factor as usize,
        );
        for group in &groups {
            if (s.stop)() {
                ended = Ended::Interrupted;
                break 'epochs;
            }
            coll.progress(step);
            // Each rank its own dropout masks (rank 0's are the single-process ones).
            device.seed(rank_step_seed(exp.seed, step, rank));
            let step_samples: usize = group.iter().map(Vec::len).sum();
            let mut accumulator = GradientsAccumulator::<J::Model>::new();
            let mut loss_value = 0.0f64;
            let compute = precision.compute_model(&model);
            let loss_multiplier = precision.loss_multiplier();
            for micro in 0..group.len() {
                let batch = loader.next().context("the loader ended early")??;
                let share = J::batch_len(&batch) as f64 / step_samples as f64;
                let grads = if recompute {
                    // Block by block, reseeded per stage from this micro-batch's seed.
                    let seed = mix(rank_step_seed(exp.seed, step, rank), micro as u64);
                    let stepped = job.stages(batch, device)?.checkpointed(
                        &compute,
                        share * loss_multiplier,
                        seed,
                        device,
                    )?;
                    loss_value += share * stepped.loss;
                    stepped.grads
                } else {
                    let loss = job
                        .loss(&compute, batch, device)?
                        .cast(FloatDType::F32)
                        .mul_scalar(share);
                    loss_value += f64::from(loss.clone().into_scalar::<f32>());
                    let loss = if loss_multiplier == 1.0 {
                        loss
                    } else {
                        loss.mul_scalar(loss_multiplier)
                    };
                    GradientsParams::from_grads(loss.backward(), &compute)
                };
                accumulator.accumulate(&model, precision.master_grads(&model, grads));
            }
            drop(compute);
            let grads = accumulator.grads();
            // Every rank now holds the mean over all ranks, so all take the same decisions below.
            let (grads, mean_loss) =
                collective::average_gradients(coll, &model, grads, loss_value, device, bucket)?;
            loss_value = mean_loss;
            let (grads, grad_norm) = clip::clip_global_norm(&model, grads, clip_norm);
            let verdict = if loss_value.is_finite() {
                precision.after_backward(grad_norm, step + 1)?
            } else {
                Verdict::Apply
            };
            if verdict == Verdict::Apply && (!loss_value.is_finite() || !grad_norm.is_finite()) {
                let what = if loss_value.is_finite() {
                    format!("the gradient norm is {grad_norm}")
                } else {
                    format!("the loss is {loss_value}")
                };
                return Err(fail(
                    format!(
                        "{what} at step {} (epoch {epoch}); training stopped before applying \
                         that update. The last good checkpoint is {}",
                        step + 1,
                        last_checkpoint
                            .as_ref()
                            .map(|(_, p)| format!("`{}`", p.display()))
                            .unwrap_or_else(|| "none (no checkpoint was written yet)".into())
                    ),
                    "lower optimizer.lr, set train.clip_grad_norm, or check the data; continue \
                     from the checkpoint with `--set resume=auto`",
                ));
            }
            lr = schedule.lr(step);
            if let Verdict::Skip { from, to } = verdict {
                // The step counts (its data is consumed, the schedule moves on); the weights
                // and the optimizer state stay as they were, as torch's GradScaler does.
                progress.suspend(|| {
                    tracing::info!(
                        "step {}: fp16 gradients overflowed at loss scale {from}; update \
                         skipped, scale now {to}",
                        step + 1
                    )
                });
            } else {
                model = optim.step(lr, model, grads);
            }
            step += 1;
            let step_samples = step_samples * world;
            samples += step_samples as u64;
            interval.add(loss_value, grad_norm, step_samples);
            let sps = interval.samples_per_s();
            progress.step(step, loss_value, lr, sps);

            let epoch_f = step as f64 / steps_per_epoch as f64;
            if step.is_multiple_of(log_every) || step == total_steps {
                let (loss, norm) = interval.means();
                metrics.train(&TrainRecord {
                    step,
                    epoch: epoch_f,
                    loss,
                    lr,
                    grad_norm: norm,
                    samples_per_s: sps,
                    loss_scale: precision.loss_scale().map(|s| s.scale),
                })?;
                progress.log_line(step, total_steps, epoch_f, loss, lr, sps);
                final_loss = Some(loss);
                interval = Interval::new();
            }
            let due = |strategy: Strategy, every: u64| strategy.due(step, every, steps_per_epoch);
            if due(exp.eval.strategy, exp.eval.every_steps) {
                let sets = run_eval(&model, step, &mut metrics)?;
                stopped_early = judge(&mut tracker, &sets, step, &model, s.run_dir, main)?;
                last_eval = Some((step, sets));
            }
            if due(exp.checkpoint.strategy, exp.checkpoint.every_steps) {
                let seconds = seconds_before + segment_start.elapsed().as_secs_f64();
                let kept = tracker.as_ref().map(|t| t.state.clone());
                let state = at.state(step, samples, lr, seconds, precision.loss_scale(), kept);
                let dir = if main {
                    let dir = checkpoint::save(
                        s.run_dir,
                        &model,
                        &optim,
                        &state,
                        exp.checkpoint.keep_last,
                    )?;
                    progress.suspend(|| tracing::info!("checkpoint {}", dir.display()));
                    prune_best(&tracker, s.run_dir)?;
                    dir
                } else {
                    checkpoint::dir_of(s.run_dir, step)
                };
                last_checkpoint = Some((step, dir));
            }
            if let Some(why) = &stopped_early {
                progress.suspend(|| tracing::info!("step {step}: {why}"));
                break 'epochs;
            }
        }
    }

    // --- the end: a last evaluation (unless interrupted) and checkpoint unless the loop just
    // made them
    if ended == Ended::Completed
        && exp.eval.strategy != Strategy::No
        && last_eval.as_ref().is_none_or(|(s, _)| *s != step)
    {
        let sets = run_eval(&model, step, &mut metrics)?;
        judge(&mut tracker, &sets, step, &model, s.run_dir, main)?;
        last_eval = Some((step, sets));
    }
    train_seconds = seconds_before + segment_start.elapsed().as_secs_f64();
    // Stopped before taking a step, there is nothing new to keep.
    let progressed = ended == Ended::Completed || step > start_step;
    if exp.checkpoint.strategy != Strategy::No
        && progressed
        && last_checkpoint.as_ref().is_none_or(|(s, _)| *s != step)
    {
        let kept = tracker.as_ref().map(|t| t.state.clone());
        let state = at.state(
            step,
            samples,
            lr,
            train_seconds,
            precision.loss_scale(),
            kept,
        );
        let dir = if main {
            checkpoint::save(s.run_dir, &model, &optim, &state, exp.checkpoint.keep_last)?
        } else {
            checkpoint::dir_of(s.run_dir, step)
        };
        last_checkpoint = Some((step, dir));
    }
    let weights = s.run_dir.join(FINAL_WEIGHTS);
    let best_weights = tracker
        .as_ref()
        .filter(|t| t.policy.load_at_end)
        .and_then(|t| t.state.kept.first())
        .map(|k| best::path_of(s.run_dir, k.step));
    if main && ended == Ended::Completed {
        match &best_weights {
            // The best evaluation's weights, as they were saved then.
            Some(from) => {
                let bytes = std::fs::read(from).with_context(|| {
                    format!("cannot read the best weights `{}`", from.display())
                })?;
                crate::durable::write(&weights, &bytes)?;
            }
            None => checkpoint::save_model_weights(&model, &weights)?,
        }
    }
    if main && (ended == Ended::Completed || exp.checkpoint.strategy != Strategy::No) {
        prune_best(&tracker, s.run_dir)?;
    }
    progress.finish();

    let mut eval = Map::new();
    for set in last_eval.map(|(_, sets)| sets).unwrap_or_default() {
        let m: Map<String, Json> = set
            .metrics
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        eval.insert(set.name, Json::Object(m));
    }
    let summary = Summary {
        status: ended,
        job: job_name.to_string(),
        steps: step,
        total_steps,
        epochs: step as f64 / steps_per_epoch as f64,
        samples,
        train_seconds,
        samples_per_s: if train_seconds > 0.0 {
            samples as f64 / train_seconds
        } else {
            0.0
        },
        final_loss,
        eval,
        weights: weights.display().to_string(),
        last_checkpoint: last_checkpoint.map(|(_, p)| p.display().to_string()),
        resumed_from: resume.map(|r| r.dir.display().to_string()),
        loss_scale: precision.loss_scale(),
        best: tracker.as_ref().and_then(|t| {
            let b = t.state.best?;
            Some(BestSummary {
                metric: t.policy.metric.clone(),
                greater_is_better: t.policy.higher,
                step: b.step,
                value: b.value,
                kept: t.state.kept.clone(),
                final_weights_are_best: best_weights.is_some(),
            })
        }),
        stopped_early,
        memory: rss_at_first_step.zip(crate::host::peak_rss_bytes()).map(
            |(rss_at_first_step, peak_rss)| MemoryUse {
                rss_at_first_step,
                peak_rss,
                allocated_at_first_step,
                peak_allocated: allocated().map(|(_, peak)| peak),
            },
        ),
    };
    if main && ended == Ended::Completed {
        crate::durable::write(
            &s.run_dir.join(SUMMARY_FILE),
            &serde_json::to_vec_pretty(&summary)?,
        )?;
    }
    Ok(summary)
}

/// What a checkpoint's `state.json` is made from besides the position in training.
struct StateOf<'a> {
    exp: &'a Experiment,
    plan: &'a Plan,
    total_steps: u64,
}

impl StateOf<'_> {
    fn state(
        &self,
        step: u64,
        samples: u64,
        lr: f64,
        train_seconds: f64,
        loss_scale: Option<LossScale>,
        best: Option<best::State>,
    ) -> TrainState {
        let (exp, plan, total_steps) = (self.exp, self.plan, self.total_steps);
        let spe = plan.steps_per_epoch();
        TrainState {
            format_version: checkpoint::FORMAT_VERSION,
            job: exp.job.as_str().to_string(),
            step,
            epoch: step / spe,
            next_micro_batch: (step % spe) * plan.accum as u64,
            steps_per_epoch: spe,
            micro_batches_per_epoch: plan.micro_batches_per_epoch() as u64,
            total_steps,
            samples,
            seed: exp.seed,
            rng: RNG_SCHEME.into(),
            lr,
            train_seconds,
            loss_scale,
            files: Default::default(),
            best,
        }
    }
}

/// Takes an evaluation into the tracker (if `eval.metric_for_best` is set): saves its
/// weights under `best/` when it is among the kept best; why to stop, when it is time.
fn judge<M: Module>(
    tracker: &mut Option<Tracker>,
    sets: &[EvalSet],
    step: u64,
    model: &M,
    run_dir: &Path,
    main: bool,
) -> Result<Option<String>> {
    let Some(t) = tracker else {
        return Ok(None);
    };
    let value = t.value_in(sets).with_context(|| {
        format!(
            "the evaluation at step {step} did not report eval.metric_for_best `{}`",
            t.policy.metric
        )
    })?;
    let verdict = t.observe(step, value);
    if verdict.keep && main {
        let path = best::path_of(run_dir, step);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        checkpoint::save_model_weights(model, &path)?;
    }
    Ok(verdict.stop)
}

/// Deletes the best weights the tracker no longer keeps (once a checkpoint that does not
/// need them is written, or at the end).
fn prune_best(tracker: &Option<Tracker>, run_dir: &Path) -> Result<()> {
    match tracker {
        Some(t) => best::prune(run_dir, &t.state.kept),
        None => Ok(()),
    }
}

/// The schedule for the steps the data gives.
pub fn schedule(exp: &Experiment, derived: &Derived, steps: &Steps) -> Result<Schedule> {
    let sched = &exp.scheduler;
    Ok(Schedule {
        style: sched.style,
        peak: derived
            .lr
            .context("no learning rate (validation should have caught this)")?,
        min_lr: exp.optimizer.min_lr,
        warmup_init_lr: sched.warmup_init_lr,
        warmup: steps.warmup_steps,
        total: steps.total_steps as f64,
        decay_fraction: sched.decay_fraction.unwrap_or(DEFAULT_WSD_DECAY_FRACTION),
    })
}

/// Running means between two log lines.
struct Interval {
    started: Instant,
    steps: u64,
    loss: f64,
    grad_norm: f64,
    norms: u64,
    samples: usize,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            started: Instant::now(),
            steps: 0,
            loss: 0.0,
            grad_norm: 0.0,
            norms: 0,
            samples: 0,
        }
    }
    /// One step; an fp16 step skipped for overflow has no finite gradient norm to average.
    fn add(&mut self, loss: f64, grad_norm: f64, samples: usize) {
        self.steps += 1;
        self.loss += loss;
        if grad_norm.is_finite() {
            self.grad_norm += grad_norm;
            self.norms += 1;
        }
        self.samples += samples;
    }
    fn means(&self) -> (f64, f64) {
        let n = self.steps.max(1) as f64;
        (self.loss / n, self.grad_norm / self.norms.max(1) as f64)
    }
    fn samples_per_s(&self) -> f64 {
        let t = self.started.elapsed().as_secs_f64();
        if t > 0.0 {
            self.samples as f64 / t
        } else {
            0.0
        }
    }
}
