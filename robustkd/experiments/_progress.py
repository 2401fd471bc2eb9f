"""Progress of a long run, one log line per finished epoch: what the command line shows while fitting."""
import logging
import time

from skorch.callbacks import Callback

__all__ = ["EpochLog", "format_seconds"]

progress_logger = logging.getLogger("robustkd.progress")


class EpochLog(Callback):
    """Log one line per finished epoch: model, epoch, training loss, seconds, and time left.

    Records go to the ``robustkd.progress`` logger at INFO level, so nothing is printed
    unless a handler is attached (``robustkd reproduce`` attaches one that writes above its
    progress bar). The time left for the model is the mean measured epoch time times the
    epochs still to run.

    Parameters
    ----------
    name : str, default="model"
        Label of the model in each line. ``{attack}`` is replaced by the net's training attack
        attribute, so a :class:`~robustkd.TeacherPool` template can name each teacher.

    Examples
    --------
    >>> import logging
    >>> from robustkd import AdversarialTeacher, SmallCNN, load_digits_images
    >>> from robustkd.experiments._progress import EpochLog
    >>> X, y = load_digits_images()
    >>> net = AdversarialTeacher(SmallCNN, module__input_shape=(1, 8, 8), attack=None, max_epochs=2,
    ...                          train_split=None, verbose=0, callbacks=[EpochLog("standard")])
    >>> net.fit(X[:100], y[:100]).history[-1, "epoch"]
    2
    """

    def __init__(self, name="model"):
        self.name = name

    def on_train_begin(self, net, **kwargs):
        self.start_epoch_ = len(net.history)

    def on_epoch_begin(self, net, **kwargs):
        self.epoch_start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        seconds = time.perf_counter() - getattr(self, "epoch_start_", time.perf_counter())
        durations = [row.get("dur", seconds) for row in net.history[self.start_epoch_:-1]] + [seconds]
        left = max(net.max_epochs - epoch, 0) * sum(durations) / len(durations)
        loss = net.history[-1].get("train_loss", float("nan"))
        attack = net.training_attack() if callable(getattr(net, "training_attack", None)) else getattr(net, "attack", "")
        label = self.name.replace("{attack}", str(attack))
        progress_logger.info("%s epoch %d/%d loss %.4f %.1fs, about %s left for this model", label, epoch,
                             net.max_epochs, loss, seconds, format_seconds(left),
                             extra={"model": label, "epoch": epoch, "max_epochs": net.max_epochs,
                                    "seconds": seconds, "left": left})


def format_seconds(seconds):
    """``"1:02:03"``, ``"2:03"`` or ``"5s"`` for a duration in seconds."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}" if minutes else f"{secs}s"
