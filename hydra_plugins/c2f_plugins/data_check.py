"""The data of the jobs a submitit launcher is about to queue, checked on the launching machine
first (c2f/data/launch_check.py): once per distinct dataset, so that a wrong class count or
audio that cannot be decoded stops the sweep before any job waits in a queue to find it."""

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)


class SweepConfigError(SystemExit):
    """Jobs of a sweep that cannot run: the message alone on stderr, exit status 1 (a
    SystemExit passes Hydra's error report, which would add a line about a stack trace that
    there is none of)."""


def refuse(problems: dict[str, list[str]], total: int) -> None:
    """Stop the sweep, one paragraph per distinct reason with the jobs it stops; nothing
    when there is no problem."""
    if not problems:
        return
    count = sum(len(jobs) for jobs in problems.values())
    lines = [f"{count} of {total} job(s) cannot run; nothing was started:"]
    for reason, jobs in problems.items():
        shown = ", ".join(jobs[:4]) + (f" and {len(jobs) - 4} more" if len(jobs) > 4 else "")
        lines += [f"- {reason}", f"  (jobs {shown})"]
    raise SweepConfigError("\n".join(lines))


def check_data(specs: Sequence, indices: Sequence[int], labels: Sequence[str]) -> None:
    """Check the data of the jobs `indices` (of `specs`, named by `labels`); log the notes,
    refuse (SweepConfigError) the jobs whose data would stop them."""
    from c2f.data.errors import DataError
    from c2f.data.launch_check import check_dataset
    from c2f.spec import ConfigError

    found: dict[tuple, str | list[str]] = {}
    problems: dict[str, list[str]] = {}
    for index in indices:
        spec = specs[index]
        d = spec.dataset  # what the check reads: a sweep over other keys checks once
        key = (d.kind, repr(d.builtin), d.train_manifest, d.eval_manifest, d.labels_csv,
               d.num_classes, d.multilabel, d.sample_rate, d.on_bad_audio, str(spec.data_dir),
               spec.pretrain is not None)
        if key not in found:
            try:
                found[key] = check_dataset(spec.dataset, spec.data_dir, spec.pretrain is not None)
            except (ConfigError, DataError) as err:
                found[key] = str(err)
            for note in [] if isinstance(found[key], str) else found[key]:
                log.warning(note)
        if isinstance(found[key], str):
            problems.setdefault(found[key], []).append(labels[index])
    refuse(problems, len(indices))
