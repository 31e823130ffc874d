"""``fit()``: the one training loop every method runs in.

Per epoch: set the learning rate each step, ``method.training_step`` → backward → step →
``method.after_step()`` (a method's own weight EMA), score the method's selection against the
truth, evaluate on the clean test set (every ``cfg.eval_every`` epochs and the last; the others
log ``test_acc`` None), write the logs and a checkpoint. Nothing in the step reads a value back to
the host except every ``CHECK_EVERY`` steps, to stop early on a non-finite loss.

Two add-ons work with any method: ``--mixup ALPHA`` mixes each batch before the step (methods
with ``supports_mixup``; see ``methods.base.Mix``) and ``--ema DECAY`` keeps an EMA of every
network (``engine.ema.WeightAverage``), evaluated instead of the live weights and checkpointed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import distributed as dist
from ..config import TrainConfig
from ..data.loader import Loader
from ..errors import CheckpointError, ConfigError, NoisyfitError
from ..methods.base import METHODS, Method, Mix
from .checkpoint import load_checkpoint, save_checkpoint
from .ddp import Replicas, check_distributed
from .diagnostics import SampleVerdicts, SelectionMeter
from .ema import WeightAverage
from .evaluate import autocast_for, evaluate
from .run import RunLog
from .schedule import adam_beta1, learning_rate
from .tensorboard import TensorBoardLog

CHECK_EVERY = 50  # steps between checks for a non-finite loss (one host sync each)
#: Share of the training predictions on one class above which an epoch counts as collapsed.
COLLAPSE_SHARE = 0.9


class CollapseWarning(UserWarning):
    """The network predicts (almost) one class for every training sample."""


class NonFiniteLossError(NoisyfitError, FloatingPointError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FitResult:
    """What ``fit`` returns: one record per epoch and the per-sample verdicts."""

    history: list[dict[str, Any]]
    verdicts: SampleVerdicts
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def make_optimizer(method: Method, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov switch), or Adam, with weight decay, over all the method's
    networks (one optimizer: per-parameter updates make it equal to one per network)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            method.parameters(),
            lr=cfg.lr,
            betas=(cfg.momentum, 0.999),
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.SGD(
        method.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def check_addons(method: Method | type[Method], cfg: TrainConfig) -> None:
    """Raise ConfigError if ``--mixup`` is asked of a method whose rule cannot take it."""
    if cfg.mixup > 0 and not method.supports_mixup:
        ok = ", ".join(n for n in METHODS.names() if METHODS.get(n).supports_mixup)
        raise ConfigError(
            f"--mixup {cfg.mixup}: method {cfg.method!r} cannot train on mixed targets (its "
            f"rule selects, weights or relabels single samples); methods that can: {ok}. "
            "Drop --mixup (docs/methods/README.md lists the add-ons each method accepts)."
        )
    check_distributed(method, cfg)  # torchrun with W > 1: refuse what is not exact there


def draw_mix(b: int, alpha: float, device: torch.device) -> Mix:
    """One mixup draw for a batch of ``b``: λ ~ Beta(α, α) and a random pairing (global RNG,
    which the checkpoint saves, so a resumed run draws the same)."""
    a = torch.tensor(float(alpha), device=device)
    lam = torch.distributions.Beta(a, a).sample()
    return Mix(lam=lam, perm=torch.randperm(b, device=device))


def fit(
    method: Method,
    train: Loader,
    test: Loader | None,
    cfg: TrainConfig,
    *,
    true_labels: torch.Tensor | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    describe: str = "",
    val: Loader | None = None,
) -> FitResult:
    """Train ``method`` on ``train`` for ``cfg.epochs`` epochs, evaluating on ``test``.

    Args:
        method: a built method (its networks already on the loader's device).
        train: the training loader (given labels).
        test: the clean test loader (None: no evaluation).
        cfg: the run's config (optimizer, schedule, epochs, progress, checkpoint).
        true_labels: (N,) int64 on the device, used only to score the method's selection.
        run_dir: where logs and checkpoints go (None: nothing is written).
        resume: continue from ``run_dir/checkpoint.pt``.
        describe: a prefix for the progress bar.
        val: the noisy validation loader (given labels): each epoch records ``val_loss`` and
            ``val_acc`` of the method's prediction on it (None: not recorded).

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last checkpoint is kept).
        KeyboardInterrupt: re-raised after saying how to resume.
    """
    device = train.device
    check_addons(method, cfg)
    opt = make_optimizer(method, cfg)
    method.optimizer = opt
    averaged = WeightAverage(method, cfg.ema) if cfg.ema > 0 else None
    meter = SelectionMeter(true_labels, device)
    verdicts = SampleVerdicts(len(train.labels), train.labels, device)
    main = dist.is_main()  # W > 1: rank 0 alone writes the run folder
    log = RunLog(run_dir) if run_dir is not None and main else None
    tb = None
    if getattr(cfg, "tensorboard", False) and run_dir is not None and main:
        tb = TensorBoardLog(run_dir)
    history: list[dict[str, Any]] = []
    start = 0
    saved = 0  # epochs in the checkpoint on disk (what a resume would continue from)
    if resume:
        state = load_checkpoint(run_dir / "checkpoint.pt", map_location=device)
        _restore(state, method, opt, verdicts, run_dir / "checkpoint.pt")
        if averaged is not None:
            averaged.load_state_dict(state["ema"])
        history = list(state["history"])
        start = saved = int(state["epoch"]) + 1
    epoch = start
    warned = False  # one collapse warning per run
    rep = None  # the W > 1 machinery (engine.ddp)
    try:
        if not resume:
            method.prepare()  # multi-stage methods' first stages (INCV's selection)
        train = method.epoch_loader(train)  # a subset for methods that train on one (INCV's S)
        rep = Replicas.for_fit(method, verdicts, cfg, len(verdicts.verdict))  # None: W = 1
        if rep is not None:
            train = rep.loader(train)  # this rank's share of every global batch
        steps = len(train)
        for epoch in range(start, cfg.epochs):
            method.on_epoch_start(epoch)
            method.train()
            meter.reset()
            sums = torch.zeros(2, dtype=torch.float64, device=device)  # Σ loss·b, Σ errors
            seen = 0  # samples this epoch (known on the host: no device round trip)
            bad = torch.zeros((), dtype=torch.bool, device=device)
            preds = None  # (K,) predicted-class counts on the training batches
            bar = tqdm(
                total=steps,
                desc=f"{describe}epoch {epoch + 1}/{cfg.epochs}",
                disable=not cfg.progress or not main,
                leave=False,
                dynamic_ncols=True,
            )
            t0, c0 = time.perf_counter(), time.process_time()
            lr = cfg.lr
            sched_epoch, sched_epochs = method.schedule_epoch(epoch, cfg.epochs)
            if rep is not None:
                rep.wrap()  # one DDP wrapper per network for the epoch's steps
            for s, batch in enumerate(train.epoch(epoch)):
                lr = learning_rate(
                    cfg.lr_schedule,
                    cfg.lr,
                    sched_epoch,
                    s,
                    steps,
                    sched_epochs,
                    milestones=cfg.lr_milestones,
                    decay=cfg.lr_decay,
                    first_decay_steps=cfg.lr_cycle_steps,
                    decay_start=cfg.lr_decay_start,
                )
                for g in opt.param_groups:
                    g["lr"] = lr
                    if cfg.lr_schedule == "linear-decay" and "betas" in g:  # Co-teaching's β1
                        b1 = adam_beta1(
                            cfg.lr_schedule,
                            sched_epoch,
                            cfg.lr_decay_start,
                            cfg.momentum,
                            cfg.beta1_after_decay,
                        )
                        g["betas"] = (b1, g["betas"][1])
                if device.type == "cuda" and batch.x.ndim == 4:
                    batch.x = batch.x.contiguous(memory_format=torch.channels_last)
                if cfg.mixup > 0:
                    method.mix = draw_mix(len(batch), cfg.mixup, device)
                    batch.x = method.mix.inputs(batch.x)
                with autocast_for(device), dist.step_context(batch):
                    out = method.training_step(batch, epoch)
                opt.zero_grad(set_to_none=True)
                out.loss.backward() if rep is None else rep.backward(out.loss)
                opt.step()
                method.after_step()  # e.g. a method's own EMA of its weights
                if averaged is not None:
                    averaged.update()

                loss = out.loss.detach()
                bad |= ~torch.isfinite(loss)
                if out.logits is not None:
                    pred = out.logits.detach().argmax(1)
                    err = (pred != batch.labels).sum()
                    if preds is None:
                        preds = torch.zeros(out.logits.shape[1], dtype=torch.long, device=device)
                    preds += torch.bincount(pred, minlength=len(preds))
                else:
                    err = torch.zeros((), device=device)
                n = getattr(batch, "global_size", len(batch))  # W > 1: the global batch
                sums += torch.stack([loss.double() * n, err.double()])
                seen += n
                meter.update(batch.index, batch.labels, out.selected, out.weights, out.new_labels)
                verdicts.update(
                    batch.index, batch.labels, out.selected, out.weights, out.new_labels, out.score
                )
                if rep is not None:
                    rep.sync(batch)  # every rank's per-sample rows into every replica
                if (s + 1) % CHECK_EVERY == 0 and bool(bad if rep is None else rep.any(bad)):
                    break
                bar.update(1)
            bar.close()
            if rep is not None:
                rep.unwrap()
                sums, preds = rep.reduce_epoch(sums, preds, meter)
                bad = rep.any(bad)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_time = time.perf_counter() - t0
            cpu_time = time.process_time() - c0
            if bool(bad):
                last = "no checkpoint yet" if epoch == 0 else f"the checkpoint of epoch {epoch}"
                raise NonFiniteLossError(
                    f"the training loss became NaN or infinite in epoch {epoch + 1}; training "
                    f"stopped and {last} is kept. Try a lower --lr (now {cfg.lr}) or check the "
                    "inputs for NaN."
                )
            loss_sum, err_sum = sums.tolist()
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": loss_sum / max(seen, 1),
                "train_error": err_sum / max(seen, 1),
                "images_per_s": seen / train_time if train_time > 0 else None,
                "epoch_time_s": train_time,
                # CPU time of the process: with one thread, the work done whatever else runs
                "epoch_cpu_s": cpu_time,
            }
            if preds is not None:
                share = float(preds.max()) / max(1, int(preds.sum()))
                record["top_class_share"] = share
                # the first epoch may pass through a one-class phase; later ones should not
                late = epoch > start or epoch == cfg.epochs - 1
                if share > COLLAPSE_SHARE and len(preds) > 2 and late and not warned:
                    warned = True
                    hint = f" {method.collapse_hint}" if method.collapse_hint else ""
                    warnings.warn(
                        f"epoch {epoch + 1}: the network predicts class {int(preds.argmax())} "
                        f"for {share:.0%} of the training samples: training has collapsed to "
                        f"one class. Try a lower --lr (now {cfg.lr}).{hint}",
                        CollapseWarning,
                        stacklevel=2,
                    )
            record.update(meter.compute())
            record.update(method.on_epoch_end(epoch))
            # every eval_every epochs and always the last (the test set may be large)
            due = (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1
            if test is not None and due:
                if averaged is not None:  # --ema: the averaged networks are the prediction
                    live = evaluate(method, test)
                    record["test_acc_live"] = next(iter(live.values()))["acc"]
                    with averaged.swapped():
                        ev = evaluate(method, test)
                else:
                    ev = evaluate(method, test)
                first = next(iter(ev))
                record.update(
                    test_loss=ev[first]["loss"],
                    test_error=1 - ev[first]["acc"],
                    test_acc=ev[first]["acc"],
                    test_top5=ev[first]["top5"],
                )
                for name, v in list(ev.items())[1:]:
                    record.update({f"test_acc_{name}": v["acc"], f"test_loss_{name}": v["loss"]})
            else:
                record.update(test_loss=None, test_error=None, test_acc=None)
            if val is not None:  # noisy validation: the given labels, never the truth
                if averaged is not None:
                    with averaged.swapped():
                        ev = next(iter(evaluate(method, val).values()))
                else:
                    ev = next(iter(evaluate(method, val).values()))
                record.update(val_loss=ev["loss"], val_acc=ev["acc"])
            history.append(record)
            if tb is not None:
                tb.write(record)
            if log is not None:
                log.write(history)
                if cfg.checkpoint:
                    state = _state(epoch, method, opt, verdicts, history, cfg)
                    if averaged is not None:
                        state["ema"] = averaged.state_dict()
                    save_checkpoint(state, run_dir / "checkpoint.pt")
                    saved = epoch + 1
            _print_epoch(record, cfg, describe)
    except KeyboardInterrupt:
        if run_dir is not None and main:
            tqdm.write(interrupt_message(run_dir, epoch, saved, cfg.checkpoint, method))
        raise
    finally:
        if tb is not None:
            tb.close()
        if rep is not None:
            rep.unwrap()
    extra = {"ema": averaged} if averaged is not None else {}
    return FitResult(history=history, verdicts=verdicts, extra=extra)


def interrupt_message(
    run_dir: Path, epoch: int, saved: int, checkpoint: bool, method: Method | None = None
) -> str:
    """What Ctrl-C in ``epoch`` (0-based) leaves: ``saved`` epochs in the checkpoint on disk
    (a Ctrl-C during a checkpoint write leaves the previous one), and how to go on; stages the
    method saved before its first epoch (``method.stage_files``) count as something to resume."""
    where = f"\ninterrupted in epoch {epoch + 1}; "
    if not checkpoint:
        return where + "the run was started with --no-checkpoint, so it cannot be resumed."
    if saved == 0:
        files = method.stage_files if method is not None else ()
        stage = (
            f" ({method.stage_note or 'its saved stages are kept'})"
            if any((run_dir / f).is_file() for f in files)
            else ""
        )
        if stage:
            return (
                where
                + f"no epoch is saved yet{stage}. Resume with: noisyfit train --resume {run_dir}"
            )
        return where + "no epoch is saved yet, so there is nothing to resume; start the run again."
    return where + f"{saved} epoch(s) are saved. Resume with: noisyfit train --resume {run_dir}"


def _print_epoch(r: dict[str, Any], cfg: TrainConfig, describe: str) -> None:
    if not cfg.progress or not dist.is_main():
        return
    parts = [
        f"{describe}epoch {r['epoch']:>3}/{cfg.epochs}",
        f"lr {r['lr']:.4g}",
        f"train loss {r['train_loss']:.4f}",
    ]
    if r.get("val_acc") is not None:
        parts.append(f"val acc (noisy) {r['val_acc']:.4f}")
    if r.get("test_acc") is not None:
        parts.append(f"test acc {r['test_acc']:.4f}")
    if r.get("label_precision") is not None:
        parts.append(f"LP {r['label_precision']:.3f} LR {r['label_recall']:.3f}")
    if r.get("images_per_s"):
        parts.append(f"{r['images_per_s']:.0f} img/s")
    tqdm.write("  ".join(parts))


def _rng_state() -> dict[str, Any]:
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _state(epoch, method, opt, verdicts, history, cfg) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "models": {k: m.state_dict() for k, m in method.models.items()},
        "optimizer": opt.state_dict(),
        "method": method.state_dict(),
        "verdicts": verdicts.state_dict(),
        "history": history,
        "rng": _rng_state(),
        "config": cfg.to_dict(),
    }


def _restore(state, method, opt, verdicts, path: Path | str = "checkpoint") -> None:
    try:
        for k, m in method.models.items():
            m.load_state_dict(state["models"][k])
        opt.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        verdicts.load_state_dict(state["verdicts"])
    except (KeyError, RuntimeError, ValueError) as e:  # another model, method or data
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: the checkpoint does not fit this run's model/method/data ({first}); "
            "resume with the config the run started with, or start a new run"
        ) from None
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["rng"]["cuda"]])
