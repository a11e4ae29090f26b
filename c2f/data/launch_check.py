"""A sweep's data, checked where it is launched, before any job waits in a queue.

A job checks its data when it starts: every manifest entry's labels, the label CSV against
`dataset.num_classes`, every audio file's header. On SLURM it starts after its queue wait, so a
wrong class count or an unreadable folder would cost each job of the sweep that wait to say
what the launching machine could have said in seconds. The submitit launchers call
`check_dataset` once per distinct dataset of the jobs they are about to queue: the manifests
and label CSV parsed and checked as the job checks them, and a sample of each manifest's clips
(SAMPLE, spread over it) decoded as training decodes them. Audio this machine does not see at
all is a note, not a refusal: compute nodes may mount disks a login node does not.
"""
from __future__ import annotations

import socket
from pathlib import Path

from c2f.data.audio import load_waveform
from c2f.data.errors import DataError
from c2f.data.manifest import Clip, Manifest
from c2f.data.resolve import labelled_manifests
from c2f.spec import DatasetSpec

SAMPLE = 8  # clips decoded per manifest: the first, the last and 6 between


def sampled(clips: list[Clip], count: int = SAMPLE) -> list[Clip]:
    """`count` clips spread evenly over `clips` (all of them when there are fewer)."""
    if len(clips) <= count:
        return list(clips)
    return [clips[round(k * (len(clips) - 1) / (count - 1))] for k in range(count)]


def _unreadable(clip: Clip, sample_rate: int) -> str | None:
    if not clip.path.is_file():
        return f"{clip.path} (data[{clip.line}]): audio file not found"
    try:
        load_waveform(clip.path, sample_rate)
    except DataError as err:
        return f"{err} (data[{clip.line}])"
    return None


def _sample_audio(manifest: Manifest, dataset: DatasetSpec) -> str | None:
    """A note for the launching user, or None; DataError where every job would stop."""
    picked = sampled(manifest.clips)
    if picked and not any(clip.path.exists() for clip in picked):
        return (f"note: {manifest.path}: none of {len(picked)} sampled audio files exists on "
                f"{socket.gethostname()} (e.g. {picked[0].path}); the jobs will stop unless "
                "the nodes they run on mount that folder")
    bad = [found for found in (_unreadable(c, dataset.sample_rate) for c in picked) if found]
    if not bad:
        return None
    listed = "\n  ".join(bad)
    if dataset.on_bad_audio == "fail":
        raise DataError(
            f"{manifest.path}: {len(bad)} of {len(picked)} sampled clip(s) cannot be read, and "
            f"every job would stop on them (dataset.on_bad_audio=fail):\n  {listed}\nRestore or "
            "re-encode them, or drop them from the manifest (`python -m c2f.data.prepare` "
            "lists only readable audio); or set dataset.on_bad_audio=skip to train without "
            "the clips that cannot be read")
    return (f"note: {manifest.path}: {len(bad)} of {len(picked)} sampled clip(s) cannot be "
            f"read; the jobs will skip such clips (dataset.on_bad_audio=skip):\n  {listed}")


def check_dataset(dataset: DatasetSpec, data_dir: Path, unlabeled: bool = False) -> list[str]:
    """Notes on `dataset` for the user launching a sweep ([] when all looks fine); DataError or
    ConfigError naming what would stop every job that trains on it. The built-in dataset is
    rendered by each job where it runs: nothing to check here."""
    if dataset.kind == "builtin":
        return []
    trains, evaluation = labelled_manifests(dataset, data_dir, unlabeled)
    notes = [_sample_audio(manifest, dataset) for manifest in (*trains, evaluation)]
    return [note for note in notes if note]
