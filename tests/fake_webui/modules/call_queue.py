"""``modules.call_queue``: the FIFO queue lock every model user holds (non-reentrant)."""

import threading
from functools import wraps

from modules import shared

queue_lock = threading.Lock()


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)

    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    @wraps(func)
    def f(*args, **kwargs):
        with queue_lock:
            shared.state.begin(job="task")
            try:
                return func(*args, **kwargs)
            finally:
                shared.state.end()

    return f
