"""Fshift: the fbank's frame shift becomes 10 ms x C, so the spectrogram has T / C frames."""
from c2f.compression import register
from c2f.compression.base import BaseInput, Compression, PhaseInput, divide_exactly


@register("fshift")
class FrameShift(Compression):
    title = "Fshift"  # the paper's name

    def phase_input(self, base: BaseInput, c: int) -> PhaseInput:
        frames = divide_exactly(base.target_length, c, "fshift")
        # the time mask / C: its duration kept (c2f's choice; the paper is silent)
        return PhaseInput(base.frame_shift_ms * c, frames, frames, base.patch, base.time_mask // c)
