"""The human-in-the-loop in the window: train, predict, correct, train again.

``install_loop(window)`` adds the Training, Prediction and Models docks and their actions to the
main window. Long work runs in :class:`gui.loop.worker.Worker` threads; nothing here imports
torch until the user trains or predicts.
"""

from gui.loop.install import Loop, install_loop

__all__ = ["Loop", "install_loop"]
