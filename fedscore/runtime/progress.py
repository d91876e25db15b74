"""What a run shows on the console while it goes on: the step, the epoch or iteration, the time left.

The coordinator (:class:`fedscore.runtime.coordinator.Coordinator`) tells the display each
exchange it starts and, from a protocol's loop, how far the loop has come
(:meth:`~fedscore.runtime.coordinator.Coordinator.advance`). The coordinator's part of
the line is only what it knows (step names, epoch and iteration counts), right for a
coordinator run by a third party; a party's own figures join it only where that party
runs (below).

On a terminal it is one live line, redrawn in place: the job, the loop ("epoch 3 of
20"), the step and the time left, estimated from the loop's pace so far. Anywhere else
(a log file, a CI job) it is one plain line per step, so that a long run is never silent.

A party adds its own figures to its own console: a loop inside one step (PSI hashes its
IDs block by block, :func:`party_pass`) and figures only it holds (the brand's validation
score after each epoch, :func:`party_figure`). They reach the display of the process the
party runs in: on the local engine, where one operator runs every party, that is the
run's display; in a Flower ClientApp they are log lines of that party's process.

The command line turns it on for every command (:func:`on_console`); the library stays
quiet unless asked::

    with fedscore.runtime.progress.on_console():
        fedscore.propensity("brand.csv", "media.csv", id_column="email", label_column="bought", out="run")

Runs on the local engine show it; under Flower (simulation or deployment) the coordinator
runs as Flower's ServerApp, whose own log shows each round.
"""

import contextlib
import contextvars
import logging
import sys
import time

_CONSOLE = contextvars.ContextVar("fedscore_progress", default=None)
_PARTY_DISPLAY = contextvars.ContextVar("fedscore_party_display", default=None)
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def on_console(stream=None, live=None, show=None):
    """Show the progress of every run started inside the block on ``stream`` (standard error).

    Parameters
    ----------
    stream : file, optional
        Where to write; standard error by default, so that standard output keeps only results.
    live : bool, optional
        Redraw one line in place (a terminal) or write a line per step; by default, whether
        ``stream`` is a terminal.
    show : callable, optional
        Called with each step's text instead of writing it: for a caller that has a display
        of its own (the demo's progress bars).
    """
    token = _CONSOLE.set({"stream": stream, "live": live, "show": show})
    try:
        yield
    finally:
        _CONSOLE.reset(token)


def for_run(job):
    """The display for a run of ``job`` if the enclosing code asked for one (:func:`on_console`), else None."""
    settings = _CONSOLE.get()
    if settings is None:
        return None
    return ConsoleProgress(job, stream=settings["stream"] or sys.stderr, live=settings["live"], show=settings["show"])


@contextlib.contextmanager
def parties_show_on(display):
    """Let the parties running in this process (the local engine's) add their figures to ``display``."""
    token = _PARTY_DISPLAY.set(display)
    try:
        yield
    finally:
        _PARTY_DISPLAY.reset(token)


def party_pass(role, what, done, total):
    """Party ``role`` begins pass ``done`` of ``total`` of a loop inside one step ("block", 3, 16)."""
    display = _PARTY_DISPLAY.get()
    if display is not None:
        display.party_pass(role, what, done, total)
    else:
        _log.info("%s: %s %d of %d", role, what, done, total)


def party_figure(role, text):
    """Party ``role``'s own figure ("validation Brier 0.0712"), for its own console only."""
    display = _PARTY_DISPLAY.get()
    if display is not None:
        display.party_figure(role, text)
    else:
        _log.info("%s: %s", role, text)


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _left(elapsed, passes, total, qualifier=""):
    """", 40 s left": the time left at the pace of the ``passes`` completed in ``elapsed``, or nothing."""
    if passes < 1 or total <= passes:
        return ""
    return f", {qualifier}{_duration(elapsed / passes * (total - passes))} left"


class ConsoleProgress:
    """One run's progress display; see the module docstring.

    Parameters
    ----------
    job : str
    stream : file
    live : bool or None
        Redraw in place; None: when ``stream`` is a terminal.
    clock : callable
        Seconds, monotonic (a parameter so that the estimate can be tested).
    show : callable, optional
        Receives each step's text instead of ``stream``.
    """

    def __init__(self, job, stream, live=None, clock=time.monotonic, show=None):
        self.job = job
        self.show = show
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.clock = clock
        self.started = clock()
        self.loop = None  # (what, done, total, when the loop's first pass began)
        self._loop_steps = set()  # the steps of the loop's first pass: another step after it ends the loop
        self.party = None  # (role, what, done, total, when its first pass began): a loop inside the step
        self.figures = {}  # role -> its latest own figure
        self._text = ""  # the current step's text, redrawn with a party's loop
        self._width = 0

    def advance(self, what, done, total):
        """A protocol's loop begins pass ``done`` of at most ``total`` (epoch, round, iteration)."""
        now = self.clock()
        if self.loop is None or self.loop[0] != what or done <= 1:
            self.loop, self._loop_steps, self.figures = (what, done, total, now), set(), {}
        else:
            self.loop = (what, done, total, self.loop[3])

    def party_pass(self, role, what, done, total):
        """Party ``role`` begins pass ``done`` of ``total`` of a loop inside the current step: shown at once."""
        now = self.clock()
        began = now if self.party is None or self.party[:2] != (role, what) or done <= 1 else self.party[4]
        self.party = (role, what, done, total, began)
        self._write()

    def party_figure(self, role, text):
        """Party ``role``'s latest own figure, shown beside the loop until the party gives another."""
        self.figures[role] = text
        self._write()

    def step(self, steps):
        """The coordinator starts an exchange of ``steps`` (step names, one per party asked)."""
        self.party = None
        names = ", ".join(dict.fromkeys(steps))
        if self.loop is not None:
            first_pass = self.loop[1] <= 1
            if first_pass:
                self._loop_steps.update(steps)
            elif not set(steps) <= self._loop_steps:
                self.loop, self.figures = None, {}  # a step the loop's passes do not have: the loop is over
        text = f"{self.job}: {names}"
        loop = self._loop_text()
        if loop:
            text += f" · {loop}"
        self._text = text
        self._write()

    def _write(self):
        text = self._text
        if self.party is not None:
            role, what, done, total, began = self.party
            text += f" · {role}: {what} {done} of {total}" + _left(self.clock() - began, done - 1, total)
        for role, figure in self.figures.items():  # each describes the loop's last pass
            text += f" · {role}: {figure}"
        if self.show is not None:
            self.show(text)
            return
        elapsed = _duration(self.clock() - self.started)
        if self.live:
            line = f"[{elapsed}] {text}"
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(f"[{elapsed}] {text}\n")
        self.stream.flush()

    def _loop_text(self):
        if self.loop is None:
            return ""
        what, done, total, began = self.loop
        return f"{what} {done} of {total}" + _left(self.clock() - began, done - 1, total, "at most ")

    def close(self):
        """End the display: a live line is cleared, so that the command's results start on a clean line."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        self._width = 0
