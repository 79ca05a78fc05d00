"""Trackers: where metrics go besides ``results.json`` (W&B, or nowhere)."""

from __future__ import annotations

import os


class NoTracker:
    """Metrics go nowhere; also the context every tracker is used in."""

    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        """Finish however the run ends, so a crashed or interrupted run is marked as such (exit
        code 1 or 130) instead of being left running."""
        self.finish(0 if kind is None else 130 if issubclass(kind, KeyboardInterrupt) else 1)


class WandbTracker(NoTracker):
    """One W&B run per Hydra job. Offline by default: no account, no network; ``wandb sync`` later."""

    def __init__(self, cfg: dict, out_dir: str, project: str, mode: str, name: str | None, group: str | None):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            mode=mode,
            dir=out_dir,
            config=cfg,
            name=name,
            group=group,
            reinit="finish_previous",
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        for k, v in metrics.items():
            self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def make_tracker(logger_cfg: dict, cfg: dict, out_dir: str):
    if logger_cfg["name"] == "none" or logger_cfg.get("mode") == "disabled":
        return NoTracker()
    return WandbTracker(
        cfg,
        out_dir,
        logger_cfg["project"],
        logger_cfg["mode"],
        logger_cfg.get("run_name"),
        logger_cfg.get("group"),
    )
