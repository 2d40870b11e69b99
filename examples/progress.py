"""Training progress for the examples: a tqdm bar on a terminal, else one line every N steps."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, batch_size: int, every: int = 100):
        self.total = total_steps
        self.batch_size = batch_size
        self.every = every
        self.start = time.perf_counter()
        self._bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, step: int, loss: float):
        """Report that ``step`` (1-based) finished with ``loss``."""
        rate = step * self.batch_size / max(time.perf_counter() - self.start, 1e-9)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{rate:.0f}")
        elif step % self.every == 0 or step == self.total:
            print(f"step {step:5d}/{self.total}  loss {loss:.4f}  {rate:8.0f} examples/s",
                  flush=True)

    def close(self) -> float:
        if self._bar is not None:
            self._bar.close()
        return time.perf_counter() - self.start
