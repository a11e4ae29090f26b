"""Render note phrases on General-MIDI programs of a SoundFont with tinysoundfont."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Note:
    """One note of a phrase: onset and duration in seconds, MIDI key and velocity."""

    onset: float
    duration: float
    key: int
    velocity: int


class Renderer:
    """One loaded SoundFont, reset between parts so each render starts from a clean state."""

    def __init__(self, font: bytes, sample_rate: int) -> None:
        self.rate = sample_rate
        import tinysoundfont  # only the built-in dataset renders audio

        self.synth = tinysoundfont.Synth(samplerate=sample_rate)
        self.sfid = self.synth.sfload(font)

    def has_program(self, program: int) -> bool:
        """Whether the font defines this GM program in bank 0."""
        return self.synth.sfpreset_name(self.sfid, 0, program) is not None

    def _samples(self, n: int) -> np.ndarray:
        """Render n stereo frames and downmix to mono float32."""
        stereo = np.frombuffer(self.synth.generate_simple(n), dtype=np.float32)
        return stereo.reshape(-1, 2).mean(axis=1)

    def render(self, program: int, notes: list[Note], num_samples: int) -> np.ndarray:
        """Render a phrase on one GM program into num_samples mono samples."""
        self.synth.soundfonts[self.sfid].reset()
        for _ in range(40):  # let quick-released voices die out (at most 2 s)
            if not self._samples(self.rate // 20).any():
                break
        self.synth.program_select(0, self.sfid, 0, program)
        events = sorted(
            [(round(n.onset * self.rate), 1, n.key, n.velocity) for n in notes]
            + [(round((n.onset + n.duration) * self.rate), 0, n.key, 0) for n in notes]
        )
        out, pos = [], 0
        for at, is_on, key, velocity in events:
            at = min(at, num_samples)
            if at > pos:
                out.append(self._samples(at - pos))
                pos = at
            if is_on:
                self.synth.noteon(0, key, velocity)
            else:
                self.synth.noteoff(0, key)
        if pos < num_samples:
            out.append(self._samples(num_samples - pos))
        return np.concatenate(out)
