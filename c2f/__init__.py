"""c2f: coarse-to-fine training of audio spectrogram transformers."""
