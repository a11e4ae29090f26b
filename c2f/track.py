"""The run directory (config, plan, metrics.jsonl, summary, checkpoints) and its lock."""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import time
from pathlib import Path

from c2f.files import RunFileError, atomic_write_text


class RunDir:
    """runs/<group>/<hash>/ with config.yaml, plan.json, metrics.jsonl, summary.json, ckpt/."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ckpt_dir = self.path / "ckpt"
        self.metrics_path = self.path / "metrics.jsonl"
        self.summary_path = self.path / "summary.json"
        self.inference_path = self.path / "inference.json"  # feature settings, class names

    def create(self, config_yaml: str, plan: dict, log=print,
               trainer_change: dict | None = None) -> None:
        """config.yaml and plan.json; a resumed adaptive run keeps the switches it made, and
        every run keeps its W&B id (`wandb_id`), how its first weights were made
        (`initial_weights`) and the trainer settings its resumes changed (`trainer_changes`,
        `trainer_change` appended: written with the config it explains)."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", config_yaml)
        path = self.path / "plan.json"
        try:
            old = self.read_plan()
        except RunFileError as err:  # rebuilt from the config: say what cannot be
            old = self._rebuilt_plan(err, log)
        made = (old or {}).get("switches", [])
        # one W&B run per run folder, resumed by its requeues and relaunches: the run's id
        # alone would join one config's runs in two groups, or a folder deleted and trained
        # anew, into one W&B run (a folder from before wandb_id keeps the run's id)
        wandb_id = (old.get("wandb_id", self.path.name) if old is not None
                    else f"{self.path.name}-{secrets.token_hex(3)}")
        kept = {key: old[key] for key in ("initial_weights", "trainer_changes")
                if old and key in old}
        if trainer_change:
            kept["trainer_changes"] = [*kept.get("trainer_changes", []), trainer_change]
        atomic_write_text(path, json.dumps(plan | {"wandb_id": wandb_id} | kept, indent=2))
        for decision in made:
            unit = _unit(decision)
            self.record_switch(decision, sum(p[unit] or 0 for p in plan["phases"]))

    def read_plan(self) -> dict | None:
        """plan.json; None while there is none. One cut short or garbled raises RunFileError."""
        path = self.path / "plan.json"
        try:
            plan = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise RunFileError(f"{path} is unreadable ({err}); it is rebuilt from the run's "
                               "config when the run starts again") from None
        if not isinstance(plan, dict):
            raise RunFileError(f"{path} is not a plan (a JSON object); it is rebuilt from "
                               "the run's config when the run starts again")
        return plan

    def _rebuilt_plan(self, err: RunFileError, log) -> dict:
        """What an unreadable plan.json held that the run folder still tells: the W&B run id
        (its wandb/ logs name it) and an adaptive run's switches (metrics.jsonl's records)."""
        ids = self._logged_wandb_ids()
        try:
            switches = [r["switch"] for r in self.read_metrics(lambda *_: None)
                        if "switch" in r]
        except (RunFileError, KeyError, TypeError):
            switches = []
        wandb_id = ids[-1] if ids else f"{self.path.name}-{secrets.token_hex(3)}"
        lost = [] if ids else ["its W&B run id, if it had one (a new W&B run is started)"]
        lost.append("what it recorded, if anything, of how the first weights were made from "
                    "model.pretrained (initial_weights) and of trainer settings resumes "
                    "changed (trainer_changes)")
        log(f"warning: {str(err).split('; ')[0]}; plan.json is written again from the config "
            f"(W&B run id {wandb_id}{' from its wandb/ logs' if ids else ''}, {len(switches)} "
            f"phase switch(es) from metrics.jsonl). Lost: {'; '.join(lost)}")
        return {"switches": switches, "wandb_id": wandb_id}

    def _logged_wandb_ids(self) -> list[str]:
        """The W&B run ids this folder's wandb/ logs name, oldest first."""
        logged = sorted(m.groups() for p in self.path.glob("wandb/*run-*")  # by start time
                        if (m := re.fullmatch(r"(?:offline-)?run-(\d{8}_\d{6})-(.+)", p.name)))
        return [run_id for _, run_id in logged]

    def wandb_id(self) -> str:
        """The id of this folder's W&B run (plan.json's `wandb_id`, written by `create`); with
        plan.json unreadable (a finished run is never rebuilt), the one its wandb/ logs name."""
        try:
            return (self.read_plan() or {}).get("wandb_id", self.path.name)
        except RunFileError:
            return ([self.path.name] + self._logged_wandb_ids())[-1]

    def read_metrics(self, log=print, lenient: bool = False) -> list[dict]:
        """metrics.jsonl's records. A last line cut short (a crash mid-append on a file system
        without atomic renames) is dropped with a warning: the checkpoint decides which epochs
        are kept. A bad line before the last raises RunFileError naming it; `lenient` (the
        report, which must still show a damaged run) skips it with a warning too."""
        try:
            lines = self.metrics_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                if not any(rest.strip() for rest in lines[number:]):  # the last line
                    log(f"warning: {self.metrics_path} line {number} is cut short ({err}); "
                        "dropped (its epoch is trained again if the checkpoint lacks it)")
                    break
                if lenient:
                    log(f"warning: {self.metrics_path} line {number} is unreadable ({err}); "
                        "skipped")
                    continue
                raise RunFileError(
                    f"{self.metrics_path} line {number} is unreadable ({err}), and records "
                    "follow it. Restore the file from a copy, or delete "
                    f"{self.ckpt_dir} to train the run again from epoch 1 (metrics.jsonl is "
                    "then written anew)") from None
            records.append(record)
        return records

    def trained_records(self, epochs: int, log=print) -> list[dict]:
        """metrics.jsonl's records of the `epochs` epochs a checkpoint has trained; refuses
        (RunFileError) when some are missing: the run's best epoch and budget would be judged
        without them."""
        kept = [r for r in self.read_metrics(log) if r["epoch"] <= epochs]
        have = {r["epoch"] for r in kept if r.get("kind", "epoch") == "epoch"}
        missing = [epoch for epoch in range(1, epochs + 1) if epoch not in have]
        if not missing:
            return kept
        ranges: list[list[int]] = []  # 1, 2, 3, 5 -> 1-3, 5
        for epoch in missing:
            if ranges and ranges[-1][1] == epoch - 1:
                ranges[-1][1] = epoch
            else:
                ranges.append([epoch, epoch])
        text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)
        raise RunFileError(
            f"{self.metrics_path} lacks the record(s) of epoch(s) {text}, which the checkpoint "
            f"in {self.ckpt_dir} has trained ({epochs} epoch(s)): the run's results would be "
            "judged without them. Restore the file from a copy and run the same command "
            f"again, or delete {self.ckpt_dir} to train the run again from epoch 1")

    def write_metrics(self, records: list[dict]) -> None:
        """Rewrite metrics.jsonl atomically with exactly these records."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def read_summary(self) -> dict | None:
        """The summary; None while there is none, or where it is unreadable (cut short on a
        file system without atomic renames): the run then resumes from its checkpoint, which
        writes it again."""
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, ValueError):  # absent, or unreadable
            return None

    def finished_summary(self) -> dict | None:
        """The summary of a run that finished; None while it has not."""
        summary = self.read_summary()
        return summary if summary and summary.get("status") == "finished" else None

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2))

    def record_initial_weights(self, loaded: dict) -> None:
        """How the run's first weights were made from `model.pretrained`, into plan.json's
        `initial_weights`: the file, the names left at init, the file's tensors not used and
        what was adapted (c2f/train/initial_weights.py)."""
        plan = self.read_plan() or {}
        atomic_write_text(self.path / "plan.json",
                          json.dumps(plan | {"initial_weights": loaded}, indent=2))

    def record_switch(self, decision: dict, budget: int) -> None:
        """An adaptive run's phase switch, into plan.json: `switches` lists the decisions and
        each phase's `epochs` (or `steps`, pretraining) becomes what it ran, the final
        phase's the rest of `budget`."""
        path = self.path / "plan.json"
        plan = self.read_plan()
        if plan is None:
            raise RunFileError(f"{path} is missing; it is rebuilt from the run's config when "
                               "the run starts again")
        switches = [s for s in plan.get("switches", []) if s["phase"] != decision["phase"]]
        plan["switches"] = sorted([*switches, decision], key=lambda s: s["phase"])
        unit = _unit(decision)
        plan["phases"][decision["phase"]][unit] = decision[unit]
        used = sum(p[unit] for p in plan["phases"][:-1])
        plan["phases"][-1][unit] = budget - used
        atomic_write_text(path, json.dumps(plan, indent=2))

    def write_inference(self, settings: dict, class_names: list[str],
                        data: dict[str, str]) -> None:
        """What the trained model needs besides config and weights (c2f.trained reads it), and
        the eval manifest and label CSV it was scored on (c2f.evaluate's default)."""
        atomic_write_text(self.inference_path, json.dumps(
            {"settings": settings, "class_names": list(class_names), "data": data}, indent=1))

    def read_inference(self) -> dict | None:
        if not self.inference_path.exists():
            return None
        return json.loads(self.inference_path.read_text())


def _unit(decision: dict) -> str:
    """What a switch decision counts: epochs, or steps (pretraining)."""
    return "steps" if "steps" in decision else "epochs"


class RunHeld(RuntimeError):
    """Another live process holds the run directory; the message says which."""


# flock's answers on file systems without locks: Lustre mounted without `flock` (ENOSYS),
# NFS without its lock service (ENOLCK), some network and FUSE file systems (EOPNOTSUPP)
NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP}


class RunLock:
    """An OS lock on a run directory's `.lock` file (flock: it dies with its process, so a
    killed holder never blocks a relaunch), with the holder's pid, host and start time in it.
    Where the file system has no locks the run trains unlocked, and says so."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return (f"pid {info.get('pid')} on host {info.get('host')} (since "
                f"{info.get('since')})")

    def held_error(self) -> RunHeld:
        return RunHeld(f"run {self.path.parent} is being trained by {self.holder()}; this "
                       "process leaves it alone (trainer.wait_for_lock=true waits for it "
                       "instead)")

    def held_by(self) -> str | None:
        """Who holds the run now (`holder`), None when no live process does. A probe that
        never blocks, made only where a holder left its note (a run held now, or one whose
        holder was killed), so a run that is free and was released cleanly is not touched."""
        import fcntl

        try:
            if not self.path.read_text().strip():
                return None
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder()
        except OSError as err:
            if err.errno in NO_LOCKS:  # nothing to ask: no process can hold it either
                return None
            raise
        finally:
            os.close(fd)  # drops the probe's own lock
        return None

    def acquire(self, wait: bool = False, log=print) -> None:
        import fcntl
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise self.held_error() from None
            log(f"run {self.path.parent} is held by {self.holder()}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in NO_LOCKS:
                os.close(fd)
                raise
            log(f"warning: the file system of {self.path.parent} has no file locks (flock: "
                f"{err.strerror}; Lustre without -o flock, NFS without its lock service): "
                "the run trains unlocked, so two launches of it at once would both train "
                "it. A paths.runs_dir on a file system with locks protects it")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None
