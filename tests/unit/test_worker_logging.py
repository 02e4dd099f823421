"""The worker's logging: records below the configured level are not even built."""

import logging

import faust

from streams.app import make_worker


def test_the_worker_leaves_debug_logging_off_at_warning():
    worker = make_worker(faust.App("llmtel-logging-test"), "warning")
    root = logging.Logger("probe", logging.WARNING)  # stands in for the root logger
    root.addHandler(logging.NullHandler())
    worker.on_setup_root_logger(root, logging.WARNING)
    assert not root.isEnabledFor(logging.DEBUG)
