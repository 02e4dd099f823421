import pytest

from streams.broker import start_broker
from tests.integration.harness import Worker, free_port, unique_prefix, worker_env


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory):
    """One embedded broker for the session; tests isolate themselves by topic and group names."""
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    proc = start_broker(port, log)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def start_worker(bootstrap, tmp_path, request):
    """Start worker processes sharing this test's topics; all are stopped at the end."""
    prefix = unique_prefix(request.node.name[:20].replace("[", "-").replace("]", ""))
    workers = []

    def start(data_dir=None, **extra):
        index = len(workers)
        env = worker_env(bootstrap, data_dir or tmp_path / f"data{index}", prefix, **extra)
        worker = Worker(env, tmp_path / f"worker{index}.log").start()
        workers.append(worker)
        return worker

    start.prefix = prefix
    yield start
    for worker in workers:
        worker.stop()
