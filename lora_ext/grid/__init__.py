"""The epochs × weights grid: which cells (``spec``), rendering them through a host (``render``), and the
labelled grid image (``image``)."""
