"""``modules.shared_state.State``: progress fields and the interrupt flag."""

import time


class State:
    def __init__(self):
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.job_timestamp = "0"
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_image = None
        self.textinfo = None
        self.time_start = None
        self.id_live_preview = 0

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0

    def begin(self, job="(unknown)"):
        self.__init__()
        self.job = job
        self.time_start = time.time()

    def end(self):
        self.job = ""
        self.job_count = 0

    def assign_current_image(self, image):
        self.current_image = image
        self.id_live_preview += 1
